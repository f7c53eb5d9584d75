"""Owner maps and the masks derived from them (pure tensor functions).

PackNet remembers, for every prunable weight, *which task owns it*. We keep that as one ``uint8`` tensor per
weight tensor, the **owner map**: ``0`` means the weight is *free* (not yet used by any task, or pruned), and
``k >= 1`` means it was kept by the ``k``-th task learned. One byte per weight, however many tasks (at most
255) — a bool mask per task would cost one byte per weight *per task*.

Everything PackNet needs is a comparison on that map:

* the weights task ``k`` may *see* at inference are those owned by tasks ``1..k``;
* while a new task trains, only the *free* weights may change;
* while task ``k`` re-trains after pruning, only the weights it *owns* may change.

These functions are pure: owner map in, mask out. The :class:`~packnet.PackNet` class only stores the maps.
"""

from __future__ import annotations

import torch
from torch import Tensor

FREE = 0
"""Owner value of a weight that no task owns (never used, or pruned)."""

INT_OF_SIZE: dict[int, torch.dtype] = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
"""The integer dtype of each element size in bytes. Viewed as that dtype a tensor has exactly its own bits, so
an AND with all-ones / all-zeros patterns (:func:`bit_pattern`) keeps or zeroes entries exactly, NaN, ±inf
and -0.0 included, with no data-dependent branch: inference masking here and
:class:`~packnet.WeightGuard` both work this way."""

MAX_TASKS = 255
"""An owner map is ``uint8``: owner values 1..255, so at most 255 tasks fit in one network."""


def new_owner_map(weight: Tensor) -> Tensor:
    """An all-free owner map for ``weight``: same shape and device, dtype ``uint8``, every entry :data:`FREE`.

    Args:
        weight: the parameter the map describes.

    Returns:
        A ``torch.uint8`` tensor of zeros shaped like ``weight``.

    Examples:
        >>> new_owner_map(torch.empty(2, 3)).dtype
        torch.uint8
    """
    return torch.zeros_like(weight, dtype=torch.uint8, memory_format=torch.contiguous_format)


def free_mask(owner: Tensor) -> Tensor:
    """Weights no task owns: the ones a new task may train.

    Args:
        owner: an owner map.

    Returns:
        A bool tensor, ``True`` where ``owner == 0``.

    Examples:
        >>> free_mask(torch.tensor([0, 1, 2, 0], dtype=torch.uint8))
        tensor([ True, False, False,  True])
    """
    return owner == FREE


def owned_mask(owner: Tensor, k: int) -> Tensor:
    """Weights owned by the ``k``-th task learned (``k >= 1``): the ones it may re-train after pruning.

    Args:
        owner: an owner map.
        k: the task's 1-based position in learning order (its owner value).

    Returns:
        A bool tensor, ``True`` where ``owner == k``.

    Examples:
        >>> owned_mask(torch.tensor([0, 1, 2, 1], dtype=torch.uint8), 1)
        tensor([False,  True, False,  True])
    """
    _check_owner_value(k)
    return owner == k


def visible_mask(owner: Tensor, k: int) -> Tensor:
    """Weights the ``k``-th task sees at inference: those owned by tasks ``1..k``.

    Free weights and weights of later tasks are hidden (treated as zero), so task ``k`` computes exactly what
    it computed when it was frozen.

    Args:
        owner: an owner map.
        k: the task's 1-based position in learning order.

    Returns:
        A bool tensor, ``True`` where ``1 <= owner <= k``.

    Examples:
        >>> visible_mask(torch.tensor([0, 1, 2, 3], dtype=torch.uint8), 2)
        tensor([False,  True,  True, False])
    """
    _check_owner_value(k)
    # uint8 arithmetic wraps 0 to 255, so one comparison tests 1 <= owner <= k.
    return (owner - 1) < k


def trainable_mask(owner: Tensor, k: int, *, retraining: bool) -> Tensor:
    """Weights that may change while the ``k``-th task trains.

    Before pruning a task trains on the free weights; after pruning it re-trains only the weights it kept
    (pruned weights are free again, but must stay exactly zero until the next task).

    Args:
        owner: an owner map.
        k: the current task's 1-based position in learning order.
        retraining: ``False`` for the first training phase, ``True`` after pruning.

    Returns:
        A bool tensor.

    Examples:
        >>> owner = torch.tensor([0, 1, 2, 2], dtype=torch.uint8)
        >>> trainable_mask(owner, 2, retraining=False)
        tensor([ True, False, False, False])
        >>> trainable_mask(owner, 2, retraining=True)
        tensor([False, False,  True,  True])
    """
    return owned_mask(owner, k) if retraining else free_mask(owner)


def claim_kept(owner: Tensor, candidates: Tensor, pruned: Tensor, k: int) -> Tensor:
    """The owner map after the ``k``-th task is pruned: the candidates it kept become its own.

    A task trains on its *candidates* (the weights that were free when it started) and pruning frees some of
    them again; the survivors now belong to the task (owner value ``k``), the pruned ones stay free, and every
    other weight keeps its owner. This is the only place an owner map gains a task.

    Args:
        owner: the owner map before pruning (not modified).
        candidates: bool mask of the weights the task trained on (free when it started).
        pruned: bool mask of the candidates pruning freed (``prune_mask``'s result); entries outside
            ``candidates`` are ignored.
        k: the task's 1-based position in learning order (its owner value).

    Returns:
        A new ``uint8`` owner map: ``k`` where ``candidates & ~pruned``, ``owner`` elsewhere.

    Examples:
        >>> owner = torch.tensor([1, 0, 0, 0, 2], dtype=torch.uint8)
        >>> candidates = owner == 0
        >>> pruned = torch.tensor([False, True, False, False, False])
        >>> claim_kept(owner, candidates, pruned, 3)
        tensor([1, 0, 3, 3, 2], dtype=torch.uint8)
    """
    _check_owner_value(k)
    if candidates.shape != owner.shape or pruned.shape != owner.shape:
        raise ValueError(f"candidates {tuple(candidates.shape)} and pruned {tuple(pruned.shape)} must have the "
                         f"owner map's shape {tuple(owner.shape)}")
    return owner.masked_fill(candidates & ~pruned, k)


def bit_pattern(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` as bits for ``like``'s integer view (:data:`INT_OF_SIZE`): all bits set where ``True``, none
    where ``False``.

    Args:
        mask: a bool mask.
        like: the tensor the pattern will be ANDed with (only its element size matters).

    Returns:
        An integer tensor shaped like ``mask``: ``-1`` (every bit set) where ``True``, ``0`` where ``False``.

    Examples:
        >>> w = torch.tensor([1.5, float("nan"), -0.0])
        >>> keep = bit_pattern(torch.tensor([True, False, True]), w)
        >>> keep.tolist()
        [-1, 0, -1]
        >>> _ = w.view(keep.dtype).bitwise_and_(keep); w
        tensor([1.5000, 0.0000, -0.0000])
    """
    return mask.to(INT_OF_SIZE[like.element_size()]).neg_()


def apply_visibility_(weight: Tensor, owner: Tensor, k: int) -> Tensor:
    """Zero, in place, every entry of ``weight`` task ``k`` must not see; return the original values.

    Args:
        weight: the parameter (modified in place, without autograd tracking).
        owner: its owner map.
        k: the task's 1-based position in learning order.

    Returns:
        A copy of ``weight`` as it was, to hand to :func:`restore_` afterwards.
    """
    with torch.no_grad():
        backup = weight.detach().clone()
        bits = INT_OF_SIZE.get(weight.element_size())
        if bits is None:
            torch.where(visible_mask(owner, k), weight, torch.zeros((), dtype=weight.dtype, device=weight.device),
                        out=weight.data)
        else:  # AND with all-ones / all-zeros bit patterns: +0.0 where hidden, no data-dependent branch
            weight.detach().view(bits).bitwise_and_(bit_pattern(visible_mask(owner, k), weight))
    return backup


def restore_(weight: Tensor, backup: Tensor) -> None:
    """Copy ``backup`` back into ``weight`` in place (the inverse of :func:`apply_visibility_`)."""
    with torch.no_grad():
        weight.copy_(backup)


def owner_counts(owner: Tensor) -> Tensor:
    """How many weights each owner value has: index 0 counts free weights, index k the k-th task's.

    Args:
        owner: an owner map.

    Returns:
        An ``int64`` tensor of length 256.

    Examples:
        >>> owner_counts(torch.tensor([0, 1, 1, 3], dtype=torch.uint8))[:4]
        tensor([1, 2, 0, 1])
    """
    return torch.bincount(owner.flatten().to(torch.int64), minlength=MAX_TASKS + 1)


def _check_owner_value(k: int) -> None:
    if not 1 <= k <= MAX_TASKS:
        raise ValueError(f"owner value must be a task position from 1 to {MAX_TASKS}, got {k}")
