"""PackNet under ``torch.distributed``: consistency checks and rank-0 checkpoints (PyTorch's own engine only).

With ``DistributedDataParallel`` every process holds a full replica; DDP averages gradients during
``backward()``. Everything PackNet adds is then *deterministic and local*: every rank masks the same gradients,
restores the same frozen values, and — because the weights are identical on every rank — selects the same
weights to prune. Nothing of PackNet's needs communicating. What this module adds is the *proof*: a digest of
tensors compared across ranks, used by :meth:`packnet.PackNet.prune` before it changes anything, and by
:meth:`packnet.PackNet.verify_consistent` on demand.

The recommended wrapping order is **DDP first, PackNet around it**::

    model = DistributedDataParallel(model, find_unused_parameters=True)
    pn = PackNet(model)

so training forwards go through DDP (gradients averaged) while names, owner maps and checkpoints refer to
``model.module`` (a checkpoint loads into a single-process model). The other order — ``PackNet(model)`` and a
DDP wrapper PackNet never sees — trains each rank on its own shard without averaging: the replicas drift apart,
and the digest check in :meth:`~packnet.PackNet.prune` stops with an error instead of letting ranks disagree about
which task owns which weight. ``find_unused_parameters=True`` is required because in every phase some parameters
get no gradient (other tasks' heads, frozen biases and norms).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Union

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "rank", "world_size", "tensor_digest", "check_identical_across_ranks",
           "broadcast_buffers", "save_on_rank0", "unwrap_parallel"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def tensor_digest(tensors: Iterable[Tensor]) -> str:
    """A SHA-256 of the tensors' bytes, dtypes and shapes, in order: equal digests mean bit-identical tensors.

    Examples:
        >>> tensor_digest([torch.zeros(2)]) == tensor_digest([torch.zeros(2)])
        True
        >>> tensor_digest([torch.zeros(2)]) == tensor_digest([torch.tensor([0.0, -0.0])])
        False
    """
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_identical_across_ranks(tensors: Iterable[Tensor], what: str) -> None:
    """Raise ``RuntimeError`` unless ``tensors`` are bit-identical on every rank (no-op in a single process).

    Every rank must call it (it is a collective): it gathers one digest per rank.
    """
    if not is_distributed():
        return
    digests: list[Any] = [None] * world_size()
    dist.all_gather_object(digests, tensor_digest(tensors))
    if len(set(digests)) > 1:
        groups = {d: [r for r, x in enumerate(digests) if x == d] for d in digests}
        raise RuntimeError(
            f"{what} differ across ranks (groups of identical ranks: {list(groups.values())}). Wrap the model in "
            "DistributedDataParallel *before* PackNet — PackNet(DistributedDataParallel(model, "
            "find_unused_parameters=True)) — so every rank trains the same replica")


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank (no-op in a single process).

    DDP broadcasts buffers at the *start* of each forward, so after the last training step every rank holds
    statistics of its own last batch. PackNet freezes them, so it makes them identical first — rank 0's, as DDP
    would on the next forward.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def save_on_rank0(obj: Any, path: Union[str, os.PathLike]) -> None:
    """``torch.save`` from rank 0 only, then wait for it on every rank, so no process reads a half-written file."""
    if rank() == 0:
        torch.save(obj, path)
    if is_distributed():
        dist.barrier()


def unwrap_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers (else
    ``model`` itself), unwrapping nested ones.

    Raises ``ValueError`` for a DDP wrapper built without ``find_unused_parameters=True``: under PackNet some
    parameters get no gradient in a phase, which plain DDP treats as an error.

    Examples:
        >>> net = torch.nn.Linear(2, 2)
        >>> unwrap_parallel(torch.nn.DataParallel(net)) is net, unwrap_parallel(net) is net
        (True, True)
    """
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    module = model
    while True:
        if isinstance(module, wrappers):
            if not getattr(module, "find_unused_parameters", True):
                raise ValueError(
                    "wrap the model as DistributedDataParallel(model, find_unused_parameters=True): under "
                    "PackNet some parameters get no gradient in a phase (other tasks' heads, frozen biases and "
                    "norms)")
            module = module.module
        elif type(module).__name__ == "OptimizedModule" and isinstance(getattr(module, "_orig_mod", None),
                                                                         torch.nn.Module):
            module = module._orig_mod  # torch.compile(model): names without the "_orig_mod." prefix
        else:
            return module
