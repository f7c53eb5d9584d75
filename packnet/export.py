"""One task, exported: a plain ``nn.Module`` that computes exactly what ``with pn.task(t):`` computes.

Inside ``pn.task(t)`` the shared network is task ``t``'s for a while: the weights ``t`` must not see are zeroed
in place, its head is active, its shared parameters are swapped in (``shared_policy="per_task"``), the model is
in eval mode. :func:`export_task` deep-copies the network in exactly that state, so the copy needs neither
PackNet nor owner maps to run as task ``t``, bit for bit:

* **the architecture is kept** (same classes, same parameter names and shapes), so its ``state_dict`` loads
  into a fresh instance of the network — ``torch.load(path, weights_only=True)`` reads it, it holds tensors
  only;
* **prunable weights** hold what task ``t`` sees (its own and earlier tasks' weights) and exactly ``+0.0``
  everywhere else (free weights, later tasks' weights);
* **task heads**: every :class:`~packnet.TaskHeads` keeps all its heads (that is the architecture), but the
  heads of other tasks are set to zero and task ``t``'s head is the fixed active one. ``active`` is an
  attribute, not a tensor: a fresh instance that loads the ``state_dict`` must set ``heads.active = t`` itself;
* **shared parameters and buffers** (biases, BatchNorm affine parameters and running statistics) are task
  ``t``'s: its own snapshot under ``"per_task"``, the first task's under ``"first_task"``;
* the copy is **in eval mode**, as inside ``pn.task(t)``: calling ``.train()`` on it would make BatchNorm use
  batch statistics and change what it computes.

For the task in progress the network is copied as it is (as ``pn.task(current)`` shows it), with the other
tasks' heads zeroed. ``torch.export.export(exported, (x,))`` traces the copy (the active head is a constant).
:func:`sparse_size` tells how small it is when only its non-zero weights are stored.

Examples:
    >>> from torch import nn
    >>> from packnet import PackNet, TaskHeads
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), TaskHeads(8, 2, task_ids=[0, 1]))
    >>> pn = PackNet(net, prune_ratio=0.5)
    >>> data = [(torch.randn(16, 4), torch.randint(0, 2, (16,)))]
    >>> for t in range(2):
    ...     _ = pn.train_task(t, data, epochs=1, progress=False); _ = pn.prune(t); pn.freeze(t)
    >>> task0 = pn.export(0)
    >>> x = torch.randn(3, 4)
    >>> with pn.task(0):
    ...     expected = net(x)
    >>> torch.equal(task0(x), expected), task0[2].active
    (True, 0)
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Hashable

import torch
from torch import nn

from .heads import TaskHeads

if TYPE_CHECKING:
    from .packnet import PackNet

__all__ = ["export_task", "sparse_size"]


@torch.no_grad()
def export_task(pn: "PackNet", task_id: Hashable) -> nn.Module:
    """A deep copy of ``pn``'s network that computes, as a plain module, exactly what ``pn.task(task_id)`` does.

    What the copy holds is described in the module docstring: the same architecture, task ``task_id``'s
    weights (hidden ones ``+0.0``), its shared parameters and buffers, only its head non-zero and active, eval
    mode. ``pn`` and its model are left bit-identical (weights, buffers, owner maps, modes, active heads).

    Args:
        pn: the PackNet.
        task_id: a frozen task, or the task in progress.

    Returns:
        The exported ``nn.Module`` (the network's own class, not a DDP wrapper), on the network's device.

    Raises:
        KeyError: ``task_id`` is neither frozen nor in progress.
    """
    pn.task_position(task_id)  # KeyError naming the known tasks, before anything is copied
    with pn.task(task_id):
        exported = copy.deepcopy(pn.module)
    for heads in exported.modules():
        if isinstance(heads, TaskHeads):
            for key, head in heads.heads.items():
                if key != str(task_id):  # another task's head: kept for the architecture, emptied
                    for tensor in (*head.parameters(), *head.buffers()):
                        tensor.zero_()
            heads.active = task_id
    return exported


def sparse_size(module: nn.Module, index_bytes: int = 4) -> dict[str, int]:
    """Bytes of ``module``'s ``state_dict`` stored dense, and stored sparse (only the non-zero entries).

    An exported task sees only a fraction of the prunable weights (``1 - prune_ratio`` of the first task's
    share, more for later tasks, which also see the earlier tasks' weights); the rest are zeros that a sparse
    format need not store. Two formats, each tensor counted in the cheaper of it and dense:

    * ``sparse_bytes``: one value and one ``index_bytes`` flat index per non-zero entry (COO-like);
    * ``bitmap_bytes``: the non-zero values plus one bit per entry saying where they go.

    Returns:
        ``{"dense_bytes", "sparse_bytes", "bitmap_bytes", "nonzero", "numel"}``.

    Examples:
        >>> lin = nn.Linear(4, 4); _ = lin.weight.data[1:].zero_()
        >>> sparse_size(lin)
        {'dense_bytes': 80, 'sparse_bytes': 48, 'bitmap_bytes': 34, 'nonzero': 8, 'numel': 20}
    """
    dense = sparse = bitmap = nonzero = numel = 0
    for tensor in module.state_dict().values():
        size = tensor.numel() * tensor.element_size()
        nz = int(torch.count_nonzero(tensor)) if tensor.numel() else 0
        dense += size
        sparse += min(size, nz * (tensor.element_size() + index_bytes))
        bitmap += min(size, nz * tensor.element_size() + (tensor.numel() + 7) // 8)
        nonzero += nz
        numel += tensor.numel()
    return {"dense_bytes": dense, "sparse_bytes": sparse, "bitmap_bytes": bitmap, "nonzero": nonzero,
            "numel": numel}
