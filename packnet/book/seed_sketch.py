"""The seed's PackNet sketch, verbatim — **with its bugs**. For the book and the benchmarks only; never use it.

This is the implementation from the book's background text (``shared/seed/packnet_seed.md``). The book runs it
to show what goes wrong, and ``benchmarks/`` times it as "a straightforward implementation of the seed's
approach". Its faults, each fixed in :class:`packnet.PackNet`:

1. **No inference masking**: there is no way to run task ``t`` with only the weights it owned, so every
   earlier task sees the weights later tasks trained — forgetting.
2. **It prunes everything**: biases and the output layer go through ``prune_and_freeze`` like weights.
3. **No re-training** after pruning: the accuracy lost to pruning is never recovered.
4. **Frozen weights are protected only by zeroed gradients**: safe with the sketch's own fresh, decay-free SGD,
   but any optimizer with weight decay (SGD's, Adam's, AdamW's) or momentum carried across tasks moves them.
5. A ``torch.quantile`` threshold (slow, limited to 16 M elements) and one ``bool`` mask per task.

The code below is the seed's, unchanged except that ``device`` defaults to the CPU when CUDA is absent.
"""

import torch
import torch.nn as nn


class PackNet:
    """PackNet: Adding Multiple Tasks to a Single Network by Iterative Pruning."""

    def __init__(self, model, prune_ratio=0.75):
        self.model = model
        self.prune_ratio = prune_ratio
        self.masks = {}  # task_id -> parameter masks
        self.frozen_mask = {}  # Parameters frozen across all tasks

        # Initialise: all parameters available
        for n, p in model.named_parameters():
            self.frozen_mask[n] = torch.zeros_like(p, dtype=torch.bool)

    def train_task(self, task_id, train_loader, epochs, device='cuda' if torch.cuda.is_available() else 'cpu'):
        """Train on a new task using available parameters."""
        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        criterion = nn.CrossEntropyLoss()

        for epoch in range(epochs):
            self.model.train()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)

                optimizer.zero_grad()
                loss = criterion(self.model(x), y)
                loss.backward()

                # Zero gradients for frozen parameters
                for n, p in self.model.named_parameters():
                    if p.grad is not None:
                        p.grad[self.frozen_mask[n]] = 0

                optimizer.step()

    def prune_and_freeze(self, task_id):
        """Prune unimportant weights and freeze the rest."""
        task_mask = {}

        for n, p in self.model.named_parameters():
            available = ~self.frozen_mask[n]
            available_weights = p.data.abs()[available]

            if available_weights.numel() == 0:
                task_mask[n] = torch.zeros_like(p, dtype=torch.bool)
                continue

            # Keep top (1 - prune_ratio) by magnitude
            threshold = torch.quantile(available_weights, self.prune_ratio)
            keep_mask = (p.data.abs() >= threshold) & available

            task_mask[n] = keep_mask
            self.frozen_mask[n] = self.frozen_mask[n] | keep_mask

            # Zero out pruned weights
            p.data[available & ~keep_mask] = 0

        self.masks[task_id] = task_mask
