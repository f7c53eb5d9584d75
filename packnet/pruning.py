"""Magnitude pruning: which of a task's weights to free (pure tensor functions).

After a task trains, PackNet keeps only its largest-magnitude weights and *frees* the rest for later tasks
(Han et al., 2015, applied per task). Of a task's ``n`` candidate weights in a layer, exactly
``round(prune_ratio * n)`` with the smallest ``|w|`` are pruned. Equal magnitudes are broken
deterministically: the entry with the lower flat index is pruned first.

The threshold — the exact k-th smallest magnitude — comes from a two-pass radix select on the float bit
patterns (:func:`_radix_kth`; ``torch.kthvalue`` for small tensors), with no sort and no copy of the whole
model: one layer's scores at a time. The *global* variant (one threshold across all layers) runs the same
select over every layer at once, so it never concatenates the layers either. Then one ``<=`` pass selects;
only when several entries equal the threshold and not all of them fit are the ties settled by flat index.

Two choices are separate here, as in ``torch.nn.utils.prune``: the *scope* (each layer on its own,
:func:`prune_mask`, or all layers together, :func:`global_prune_masks`) and the *criterion*, the scores that
rank the weights. Both functions rank by ``|w|`` unless given ``scores=`` (``torch.nn.utils.prune``'s
``importance_scores``): any non-negative tensor shaped like the weight, lowest pruned first. A
:data:`Criterion` computes such scores from a parameter's name and value, :func:`magnitude` being the default.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["num_to_prune", "prune_mask", "global_prune_masks"]

Criterion = Callable[[str, Tensor], Tensor]
"""A pruning criterion ``(parameter name, weight) -> scores``: a non-negative tensor shaped like the weight, the
weights with the lowest scores pruned first (e.g. ``lambda name, w: (w * fisher[name].sqrt()).abs()``)."""


def magnitude(name: str, weight: Tensor) -> Tensor:
    """The default :data:`Criterion`, the paper's: a weight's magnitude ``|w|`` (``name`` is not used).

    Examples:
        >>> magnitude("0.weight", torch.tensor([-0.5, 0.25]))
        tensor([0.5000, 0.2500])
    """
    return weight.detach().abs()


def num_to_prune(n: int, prune_ratio: float) -> int:
    """How many of ``n`` candidate weights a ratio prunes: ``round(prune_ratio * n)``.

    Args:
        n: number of candidate weights.
        prune_ratio: fraction to free, in ``[0, 1)``.

    Returns:
        An ``int`` (Python's round-half-to-even).

    Examples:
        >>> num_to_prune(1000, 0.75)
        750
    """
    check_prune_ratio(prune_ratio)
    return int(round(prune_ratio * n))


def check_prune_ratio(prune_ratio: float) -> None:
    """Raise ``ValueError`` unless ``0 <= prune_ratio < 1`` (1 would leave a task no weights)."""
    if isinstance(prune_ratio, bool) or not isinstance(prune_ratio, (int, float)):
        raise ValueError(f"prune_ratio must be a number in [0, 1), got {prune_ratio!r}")
    if not 0.0 <= float(prune_ratio) < 1.0:
        raise ValueError(
            f"prune_ratio must be in [0, 1), got {prune_ratio}: it is the fraction of a task's weights freed "
            "for later tasks (0 keeps all of them, e.g. for the last task)"
        )


def check_ratio_schedule(prune_ratio: Union[float, Sequence[float]]) -> Union[float, list[float]]:
    """Check a prune ratio or a per-task schedule of them and return it as a ``float`` or a ``list`` of floats.

    Raises:
        ValueError: for a string, an empty sequence, something that is not numbers, or a ratio outside
            ``[0, 1)``.

    Examples:
        >>> check_ratio_schedule(0.75), check_ratio_schedule((0.5, 0))
        (0.75, [0.5, 0.0])
    """
    if isinstance(prune_ratio, (int, float)) and not isinstance(prune_ratio, bool):
        check_prune_ratio(prune_ratio)
        return float(prune_ratio)
    if isinstance(prune_ratio, (str, bytes)):
        raise ValueError(f"prune_ratio must be a float or a sequence of floats, got the string {prune_ratio!r}")
    try:
        ratios = [float(r) for r in prune_ratio]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"prune_ratio must be a float or a sequence of floats, got {prune_ratio!r}") from None
    if not ratios:
        raise ValueError("a prune_ratio schedule needs at least one entry")
    for r in ratios:
        check_prune_ratio(r)
    return ratios


def schedule_ratio(schedule: Union[float, Sequence[float]], position: int) -> float:
    """The ratio a schedule gives the ``position``-th task (1-based): the float itself, or its entry.

    Examples:
        >>> schedule_ratio(0.75, 3), schedule_ratio([0.5, 0.25], 2)
        (0.75, 0.25)
    """
    if isinstance(schedule, float):
        return schedule
    if position > len(schedule):
        raise ValueError(f"the prune_ratio schedule has {len(schedule)} entries but this is task "
                         f"number {position}: pass prune(t, prune_ratio=...) or a longer schedule")
    return schedule[position - 1]


def _scores(weight: Tensor, candidates: Tensor, scores: Optional[Tensor] = None, *,
            everywhere: bool = False, workspace: Optional[Tensor] = None) -> Tensor:
    """|w| (or ``scores``) on candidates as float32, +inf elsewhere (so non-candidates are never among the k
    smallest); ``everywhere=True`` says every entry is a candidate, which saves that pass. ``workspace``: a
    float32 buffer of at least ``weight.numel()`` entries on the weight's device to write |w| into."""
    inf = torch.tensor(float("inf"), dtype=torch.float32, device=weight.device)
    if scores is None:
        w = weight.detach()
        if workspace is not None and w.dtype == torch.float32:
            magnitudes = torch.abs(w, out=workspace[: w.numel()].view(w.shape))
        else:
            magnitudes = w.abs().float()
        if everywhere:
            return magnitudes
        return torch.where(candidates, magnitudes, inf, out=magnitudes) if workspace is not None \
            else torch.where(candidates, magnitudes, inf)
    if scores.shape != weight.shape:
        raise ValueError(f"scores shape {tuple(scores.shape)} != weight shape {tuple(weight.shape)}: a criterion "
                         "scores every entry of the weight")
    values = scores.detach().to(device=weight.device, dtype=torch.float32)
    if not bool((values[candidates] >= 0).all()):  # also false for NaN
        raise ValueError("pruning scores must be non-negative numbers (no NaN): the lowest are pruned first, "
                         "e.g. |w| or |w * g|")
    return torch.where(candidates, values.abs(), inf)  # abs: -0.0 -> +0.0, so every bit pattern is >= 0


def _count(mask: Tensor) -> int:
    return int(torch.count_nonzero(mask))


def _select_smallest(scores: Tensor, threshold: Tensor, ties_to_take: int) -> Tensor:
    """Entries strictly below ``threshold`` plus the first ``ties_to_take`` entries equal to it (flat order)."""
    below = scores < threshold
    if ties_to_take <= 0:
        return below
    equal = scores == threshold
    if ties_to_take >= _count(equal):  # the usual case: the k-th value itself is the only tie
        return below | equal
    first_ties = equal.flatten().nonzero().squeeze(1)[:ties_to_take]
    below.view(-1)[first_ties] = True
    return below


def prune_mask(weight: Tensor, candidates: Tensor, prune_ratio: float, *,
               scores: Optional[Tensor] = None, workspace: Optional[Tensor] = None) -> Tensor:
    """The per-layer magnitude-pruning decision for one weight tensor.

    Of the ``n`` entries where ``candidates`` is true, the ``round(prune_ratio * n)`` with the smallest
    ``|weight|`` (or smallest ``scores``) are selected; ties at the threshold go to the lowest flat indices.

    Args:
        weight: the layer's weights.
        candidates: bool mask of the entries that may be pruned (the current task's weights).
        prune_ratio: fraction of the candidates to prune, in ``[0, 1)``.
        scores: rank by these instead of ``|weight|``: non-negative, shaped like ``weight`` (compared as
            float32, like ``|weight|``).
        workspace: a float32 tensor of at least ``weight.numel()`` entries on the weight's device, reused
            for the magnitudes instead of a new allocation (:func:`prune_masks` passes one to every layer:
            a fresh tensor of hundreds of MB costs as much in page faults as a pass over it).

    Returns:
        A bool mask, ``True`` for the entries to prune (always a subset of ``candidates``).

    Examples:
        >>> w = torch.tensor([0.5, -0.1, 0.3, 0.2])
        >>> prune_mask(w, torch.ones(4, dtype=torch.bool), 0.5)
        tensor([False,  True, False,  True])
        >>> prune_mask(w, torch.ones(4, dtype=torch.bool), 0.5, scores=torch.tensor([0.0, 9.0, 1.0, 9.0]))
        tensor([ True, False,  True, False])
    """
    if candidates.shape != weight.shape:
        raise ValueError(f"candidates shape {tuple(candidates.shape)} != weight shape {tuple(weight.shape)}")
    n = _count(candidates)
    k = num_to_prune(n, prune_ratio)
    if k == 0:
        return torch.zeros_like(candidates)
    everywhere = n == candidates.numel()
    ranked = _scores(weight, candidates, scores, everywhere=everywhere, workspace=workspace)
    flat = ranked.flatten()
    threshold = torch.kthvalue(flat, k).values if flat.numel() < RADIX_MIN else _radix_kth([flat], k)
    # One pass selects everything up to the threshold; only if several entries equal the k-th value and not
    # all of them fit are the last of those ties (in flat order) put back: a second pass over the ties only.
    selected = ranked <= threshold
    extra = _count(selected) - k
    if extra > 0:
        ties = (ranked.flatten() == threshold).nonzero().squeeze(1)
        selected.view(-1)[ties[ties.numel() - extra:]] = False
    return selected if everywhere else selected & candidates  # never a non-candidate (+inf or NaN ranks)


def _float_bits(scores: Tensor) -> Tensor:
    """Non-negative float32 values as int32 bit patterns: their order is the order of the floats."""
    return scores.contiguous().view(torch.int32)


RADIX_MIN = 1 << 17
"""From this many entries on, :func:`prune_mask` finds its threshold by :func:`_radix_kth` rather than
``torch.kthvalue`` (below it, one ``kthvalue`` is as fast as the radix select's fixed costs)."""

_HIGH_HALF = 1 if sys.byteorder == "little" else 0  # which int16 of an int32 holds its high 16 bits


def _radix_kth(ranked: Sequence[Tensor], k: int) -> Tensor:
    """The exact k-th smallest (1-based) value over non-negative float32 tensors, without sorting or copying.

    Non-negative floats order like their int32 bit patterns (+inf and NaN last), so a two-pass radix select
    finds the k-th: a histogram of the high 16 bits, read straight from an ``int16`` view of the data, gives
    the bucket that holds it; a histogram of the low 16 bits of that bucket's entries gives its exact bits.
    Each pass reads every entry once: several times faster than ``torch.kthvalue``, which copies the values
    with 8-byte indices and partitions them. Returns a 0-dim float32 tensor on the first tensor's device.
    """
    highs = [_float_bits(s).flatten().view(torch.int16)[_HIGH_HALF::2] for s in ranked]
    hist = torch.zeros(1 << 15, dtype=torch.int64)  # a non-negative float's high half is at most 0x7FFF
    for h in highs:
        hist += torch.bincount(h, minlength=1 << 15).cpu()[: 1 << 15]
    cum = torch.cumsum(hist, 0)
    bucket = int(torch.searchsorted(cum, torch.tensor(k)))
    k_in_bucket = k - (int(cum[bucket - 1]) if bucket > 0 else 0)
    low = torch.zeros(1 << 16, dtype=torch.int64)
    for s, h in zip(ranked, highs):
        in_bucket = _float_bits(s).flatten()[h == bucket]
        low += torch.bincount((in_bucket & 0xFFFF).cpu(), minlength=1 << 16)
    low_bits = int(torch.searchsorted(torch.cumsum(low, 0), torch.tensor(k_in_bucket)))
    bits = torch.tensor([(bucket << 16) | low_bits], dtype=torch.int32)
    return bits.view(torch.float32)[0].to(ranked[0].device)


def global_prune_masks(weights: Sequence[Tensor], candidates: Sequence[Tensor], prune_ratio: float, *,
                       scores: Optional[Sequence[Tensor]] = None) -> list[Tensor]:
    """Magnitude pruning with one threshold shared by all layers.

    Exactly ``round(prune_ratio * N)`` of the ``N`` candidates *over all layers* are pruned, the smallest
    ``|w|`` first; ties go to earlier layers, then lower flat indices. Layers with larger weights therefore
    keep more of them than under per-layer pruning. The k-th smallest magnitude is found exactly by a radix
    select over the float32 bit patterns (high 16 bits, then low 16 bits), so no layer is concatenated or sorted.

    Args:
        weights: the layers' weight tensors.
        candidates: one bool mask per layer, as in :func:`prune_mask`.
        prune_ratio: fraction of all candidates to prune, in ``[0, 1)``.
        scores: one tensor per layer to rank by instead of ``|w|``, as in :func:`prune_mask`.

    Returns:
        One bool mask per layer, ``True`` for the entries to prune.

    Examples:
        >>> a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.1, 0.2, 3.0, 4.0])
        >>> [m.tolist() for m in global_prune_masks([a, b], [torch.ones(2, dtype=torch.bool),
        ...                                                  torch.ones(4, dtype=torch.bool)], 0.5)]
        [[True, False], [True, True, False, False]]
    """
    if len(weights) != len(candidates) or (scores is not None and len(scores) != len(weights)):
        raise ValueError("global_prune_masks needs one candidates mask (and one scores tensor) per weight tensor")
    n = sum(_count(c) for c in candidates)
    k = num_to_prune(n, prune_ratio)
    if k == 0:
        return [torch.zeros_like(c) for c in candidates]
    given = list(scores) if scores is not None else [None] * len(weights)
    ranked = [_scores(w, c, s) for w, c, s in zip(weights, candidates, given)]
    threshold = _radix_kth(ranked, k).cpu()
    # Everything strictly below goes; ties are taken in layer order, then flat order.
    masks, ties_left = [], k - sum(_count(s < threshold.to(s.device)) for s in ranked)
    for s, c in zip(ranked, candidates):
        t = threshold.to(s.device)
        mask = _select_smallest(s, t, ties_left) & c
        ties_left -= _count(mask & (s == t))
        masks.append(mask)
    return masks


SCOPES = ("layer", "global")
"""Where one pruning threshold applies: each layer on its own (the paper's), or all layers together."""


def prune_masks(weights: Sequence[Tensor], candidates: Sequence[Tensor], prune_ratio: float, *,
                scope: str = "layer", scores: Optional[Sequence[Tensor]] = None) -> list[Tensor]:
    """The pruning decision for every layer: :func:`prune_mask` per layer, or :func:`global_prune_masks`.

    Args:
        weights, candidates, prune_ratio: as in :func:`global_prune_masks`.
        scope: ``"layer"`` or ``"global"`` (:data:`SCOPES`).
        scores: one tensor per layer to rank by instead of ``|w|`` (a criterion's output), or ``None``.

    Returns:
        One bool mask per layer, ``True`` for the entries to prune.

    Examples:
        >>> a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.1, 0.2, 3.0, 4.0])
        >>> ones = [torch.ones(2, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]
        >>> [m.tolist() for m in prune_masks([a, b], ones, 0.5, scope="layer")]
        [[True, False], [True, True, False, False]]
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "global":
        return global_prune_masks(weights, candidates, prune_ratio, scores=scores)
    given = list(scores) if scores is not None else [None] * len(weights)
    if len(candidates) != len(weights) or len(given) != len(weights):
        raise ValueError("prune_masks needs one candidates mask (and one scores tensor) per weight tensor")
    largest: dict[torch.device, int] = {}  # one float32 buffer per device, as big as its largest layer
    for w in weights:
        largest[w.device] = max(largest.get(w.device, 0), w.numel())
    workspaces = {d: torch.empty(n, dtype=torch.float32, device=d) for d, n in largest.items()}
    return [prune_mask(w, c, prune_ratio, scores=s, workspace=workspaces[w.device])
            for w, c, s in zip(weights, candidates, given)]
