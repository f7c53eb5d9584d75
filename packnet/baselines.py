"""Baselines to measure PackNet against, trained on the same data with the same budgets.

* :func:`run_finetune` — one network fine-tuned on each task in turn, nothing protected: the catastrophic
  forgetting PackNet exists to prevent (McCloskey & Cohen, 1989; Goodfellow et al., 2013).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .data import Task
from .experiment import ExperimentResult
from .heads import TaskHeads
from .metrics import nan_matrix
from .packnet import OptimizerFactory, _default_optimizer
from .training import evaluate_accuracy, train_epochs

__all__ = ["run_finetune", "set_active_task"]


def set_active_task(model: nn.Module, task_id: object) -> None:
    """Point every :class:`~packnet.TaskHeads` in ``model`` at ``task_id`` (no-op for a single shared head)."""
    for module in model.modules():
        if isinstance(module, TaskHeads):
            module.active = task_id


def run_finetune(model: nn.Module, tasks: Sequence[Task], *, epochs: int = 5, batch_size: int = 128,
                 optimizer: Optional[OptimizerFactory] = None, device: Union[str, torch.device] = "cpu",
                 seed: int = 0, progress: bool = True) -> ExperimentResult:
    """Sequential fine-tuning: train every parameter on task 0, then task 1, ...; evaluate all seen tasks.

    With per-task heads each task still has its own classifier, so the forgetting measured here is the trunk
    drifting away from what earlier heads expect.

    Args:
        model: the network (moved to ``device``).
        tasks: the benchmark.
        epochs: training epochs per task (match PackNet's ``epochs + retrain_epochs`` for a fair budget).
        batch_size: training batch size.
        optimizer: factory ``params -> Optimizer``, a fresh one per task (default: SGD, lr 0.01, momentum 0.9).
        device: where to train.
        seed: seeds the loaders' shuffling (the same as :func:`~packnet.experiment.run_packnet` uses).
        progress: show tqdm bars.

    Returns:
        An :class:`~packnet.experiment.ExperimentResult` with ``method="finetune"``.
    """
    start = time.perf_counter()
    model.to(device)
    make_optimizer = optimizer if optimizer is not None else _default_optimizer
    R = nan_matrix(len(tasks))
    histories = []
    for i, task in enumerate(tasks):
        train_loader, _ = task.loaders(batch_size, seed=seed + i)
        set_active_task(model, task.task_id)
        model.train()
        histories.append({"train": train_epochs(model, train_loader, epochs, make_optimizer(list(model.parameters())),
                                                device=device, progress=progress, desc=f"fine-tune task {task.task_id}")})
        model.eval()
        for j, seen in enumerate(tasks[: i + 1]):
            set_active_task(model, seen.task_id)
            R[i][j] = evaluate_accuracy(model, seen.loaders(1000, shuffle=False)[1], device)
    return ExperimentResult(R, model, None, "finetune", histories, time.perf_counter() - start)
