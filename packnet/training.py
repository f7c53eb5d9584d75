"""The plain training and evaluation loops that PackNet and the baselines share.

PackNet's own contribution to a training step is two calls around ``optimizer.step()`` (see
:class:`~packnet.freezing.WeightGuard`); everything else is the ordinary PyTorch loop below, which takes them as
optional callbacks. The loop makes no host-device synchronisation inside an epoch: losses and correct counts
are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import torch
from torch import Tensor, nn
from tqdm import tqdm

__all__ = ["train_epochs", "evaluate_accuracy", "default_optimizer", "loader_length", "unpack_batch"]

Device = Union[str, torch.device]
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
"""How a training phase gets its optimizer, called once with the parameters that may learn."""
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
"""How a training phase gets its learning-rate scheduler: called once with the phase's optimizer, e.g.
``lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)``; stepped after every epoch."""


def loader_length(loader: Iterable) -> Optional[int]:
    """The number of batches ``loader`` yields per pass, or ``None`` when it cannot tell.

    A ``DataLoader`` over an ``IterableDataset`` (a streaming dataset) has a ``__len__`` that raises
    ``TypeError``; generators have none. Both are fine to train on: only the progress bar's total is unknown.

    Examples:
        >>> loader_length([1, 2, 3]), loader_length(iter([1, 2, 3]))
        (3, None)
    """
    try:
        return len(loader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def unpack_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """A batch as ``(inputs, targets)``, or a ``TypeError`` saying what a batch must look like.

    Examples:
        >>> x, y = unpack_batch([torch.zeros(2, 3), torch.zeros(2)])
        >>> unpack_batch({"image": x})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: each batch must be a pair (inputs, targets) of tensors, got a dict; wrap the loader, ...
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch):
        return batch[0], batch[1]
    if isinstance(batch, (tuple, list)):
        got = f"a {type(batch).__name__} of {len(batch)} items ({', '.join(type(t).__name__ for t in batch)})"
    else:
        got = f"a {type(batch).__name__}"
    raise TypeError(f"each batch must be a pair (inputs, targets) of tensors, got {got}; wrap the loader, e.g. "
                    '((b["image"], b["label"]) for b in loader)')


def default_optimizer(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer a training phase gets when none is given: SGD, learning rate 0.01, momentum 0.9.

    These are the seed's settings; PackNet and every baseline use them, so a comparison without an explicit
    ``optimizer=`` is still like for like.

    Examples:
        >>> opt = default_optimizer([nn.Parameter(torch.zeros(2))])
        >>> type(opt).__name__, opt.defaults["lr"], opt.defaults["momentum"]
        ('SGD', 0.01, 0.9)
    """
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def check_epochs(epochs: int) -> None:
    """Raise ``ValueError`` unless ``epochs`` is a non-negative ``int`` (0 trains nothing)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")


@contextlib.contextmanager
def modes_restored(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule's train / eval mode back on exit as it was on entry, whatever happened inside.

    ``model.train()`` and ``model.eval()`` set one mode for every submodule; code that switches modes for a
    while (training one phase, evaluating, re-estimating BatchNorm statistics) must leave each submodule as it
    found it, including models whose submodules were in different modes.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()); net[1].eval()
        Dropout(p=0.5, inplace=False)
        >>> with modes_restored(net):
        ...     _ = net.train()
        >>> [m.training for m in net]
        [True, False]
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def train_epochs(model: nn.Module, loader: Iterable, epochs: int, optimizer: torch.optim.Optimizer, *,
                 criterion: Optional[nn.Module] = None, device: Optional[Device] = None,
                 after_backward: Optional[Callable[[], None]] = None,
                 after_step: Optional[Callable[[], None]] = None, amp: bool = False, progress: bool = True,
                 desc: str = "train", on_step: Optional[Callable[[], None]] = None,
                 scheduler: Any = None, step: Optional[Callable[[], None]] = None) -> list[dict[str, float]]:
    """Run ``epochs`` passes of minibatch training and return one ``{"epoch", "loss", "accuracy"}`` row each.

    Each step: forward, loss, backward, ``after_backward()`` (PackNet: mask gradients), ``optimizer.step()``,
    ``after_step()`` (PackNet: restore frozen values). The model's train/eval modes are left as the caller set
    them.

    Args:
        model: the network.
        loader: ``(inputs, targets)`` batches.
        epochs: number of passes.
        optimizer: a ready optimizer.
        criterion: the loss (default ``nn.CrossEntropyLoss()``).
        device: where batches go (default: the model's first parameter's device).
        after_backward: called after ``backward()``, before the step.
        after_step: called after the step.
        amp: ``torch.autocast`` (float16 with a ``GradScaler`` on CUDA, bfloat16 on CPU).
        progress: show a ``tqdm`` bar (plain tqdm, so it works in terminals and notebooks alike).
        desc: the bar's label.
        on_step: called after every completed step (e.g. to count steps).
        scheduler: a learning-rate scheduler of ``optimizer``; ``scheduler.step()`` after every epoch.
        step: called after ``backward()`` *instead of* ``after_backward(); optimizer.step(); after_step()``
            (PackNet: :meth:`~packnet.WeightGuard.step`, the fused guarded step); ignored under a CUDA
            ``GradScaler``, which must drive the step itself.

    Returns:
        Per-epoch mean training loss and accuracy (accuracy 0.0 when outputs are not class logits).

    Raises:
        ValueError: if ``loader`` yields no batch.
        TypeError: if a batch is not a pair ``(inputs, targets)``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if amp and device.type == "cuda" else None
    history: list[dict[str, float]] = []
    length = loader_length(loader)
    total = None if length is None else epochs * length
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            _set_sampler_epoch(loader, epoch)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            for batch in loader:
                x, y = unpack_batch(batch)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    out = model(x)
                    loss = criterion(out, y)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if after_backward is not None:
                        after_backward()
                    scaler.step(optimizer)
                    scaler.update()
                    if after_step is not None:
                        after_step()
                elif step is not None:
                    loss.backward()
                    step()
                else:
                    loss.backward()
                    if after_backward is not None:
                        after_backward()
                    optimizer.step()
                    if after_step is not None:
                        after_step()
                if on_step is not None:
                    on_step()
                with torch.no_grad():
                    loss_sum += loss.detach().float() * y.shape[0]
                    if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
                        correct += (out.argmax(1) == y).sum()
                seen += y.shape[0]
                bar.update()
            if seen == 0:
                raise ValueError("the training loader yielded no batches: pass a non-empty loader")
            row = {"epoch": epoch + 1, "loss": (loss_sum / seen).item(), "accuracy": (correct / seen).item()}
            history.append(row)
            if scheduler is not None:
                scheduler.step()
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.3f}")
    return history


def _set_sampler_epoch(loader: Iterable, epoch: int) -> None:
    """Tell a ``DistributedSampler`` (possibly inside a ``BatchSampler``) which epoch it is: new shuffle each."""
    for holder in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        for sampler in (holder, getattr(holder, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
                return


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader: Iterable, device: Optional[Device] = None) -> float:
    """Top-1 accuracy of ``model`` on ``loader``, as the model is now (mode and weights untouched).

    Raises:
        ValueError: if ``loader`` yields no batch.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for batch in loader:
        x, y = unpack_batch(batch)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum()
        seen += y.shape[0]
    if seen == 0:
        raise ValueError("the evaluation loader yielded no batches")
    return correct.item() / seen


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, loader: Iterable, *, num_batches: Optional[int] = None,
                         device: Optional[Device] = None) -> int:
    """Recompute the running statistics of every BatchNorm layer in ``model`` from ``loader``'s batches.

    The statistics become the exact average over the batches (``torch.optim.swa_utils.update_bn``: cumulative
    averaging, train-mode forwards without gradients); no weight changes, and every submodule's mode is put
    back afterwards.

    Args:
        model: the network.
        loader: batches ``(inputs, targets)`` (targets are ignored).
        num_batches: use only the first ``num_batches`` batches (default: all).
        device: where batches go (default: the model's first parameter's device).

    Returns:
        The number of BatchNorm layers re-estimated (0, and nothing run, if the model has none).
    """
    if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                    or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    from itertools import islice

    from torch.optim.swa_utils import update_bn

    batches = loader if num_batches is None else islice(loader, num_batches)
    with modes_restored(model):  # update_bn leaves every module in one mode
        update_bn(batches, model, device=device if device is not None else next(model.parameters()).device)
    return len(norms)
