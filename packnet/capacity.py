"""Capacity: how much of the network each task gets, on paper and as measured.

With a fixed prune ratio ``r`` every task keeps ``1 - r`` of the weights still free when it starts, so the free
fraction shrinks geometrically: task ``t`` (0-based) starts with ``r**t`` of the network available and keeps
``r**t * (1 - r)`` of it. That is the seed's table for ``r = 0.75``. The alternative is to *plan* ``N`` tasks
and give each an equal share ``1/N``, which needs a different ratio per task: ``1 - 1/(N - t)``. If a task needs
at least a share ``s`` of the network to be useful, a fixed ratio fits only the tasks with ``r**t * (1 - r) >= s``
(:func:`tasks_that_fit`).
"""

from __future__ import annotations

import itertools
from typing import Any, Hashable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from .masks import MAX_TASKS, owner_counts
from .pruning import check_prune_ratio, check_ratio_schedule

__all__ = ["capacity_schedule", "equal_share_schedule", "tasks_that_fit", "format_capacity"]

Ratios = Union[float, Sequence[float]]


def check_n_tasks(n_tasks: int, maximum: Optional[int] = None) -> None:
    """Raise ``ValueError`` unless ``n_tasks`` is an ``int`` of at least 1 (and at most ``maximum``).

    Examples:
        >>> check_n_tasks(5, maximum=5)
        >>> check_n_tasks(6, maximum=5)
        Traceback (most recent call last):
        ...
        ValueError: n_tasks must be an int from 1 to 5, got 6
    """
    if (isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1
            or (maximum is not None and n_tasks > maximum)):
        what = "a positive int" if maximum is None else f"an int from 1 to {maximum}"
        raise ValueError(f"n_tasks must be {what}, got {n_tasks!r}")


def _ratio_list(prune_ratio: Ratios, n_tasks: int) -> list[float]:
    check_n_tasks(n_tasks)
    schedule = check_ratio_schedule(prune_ratio)
    if isinstance(schedule, float):
        return [schedule] * n_tasks
    if len(schedule) != n_tasks:
        raise ValueError(f"a per-task prune_ratio schedule needs {n_tasks} entries, got {len(schedule)}")
    return schedule


def _shares(ratios: Iterable[float]) -> Iterator[tuple[float, float]]:
    """``(available, used)`` for each task in turn: the schedule's arithmetic, in one place.

    Repeated subtraction (``available -= used``) rather than ``r**t``: it is what pruning does to the free pool,
    and for a per-task list of ratios there is no closed form.
    """
    available = 1.0
    for r in ratios:
        used = available * (1.0 - r)
        yield available, used
        available -= used


def capacity_schedule(prune_ratio: Ratios, n_tasks: int) -> list[dict]:
    """The analytic capacity table: fraction of the network available to and used by each task.

    Task ``t`` finds ``available`` of the prunable weights free, and keeps ``used = available * (1 - r_t)``
    of the whole network after pruning with ratio ``r_t``; the rest stays free for task ``t + 1``.

    Args:
        prune_ratio: one ratio for every task, or one per task.
        n_tasks: number of tasks.

    Returns:
        One row per task: ``{"task": t, "available": float, "used": float}`` (fractions of the network).

    Examples:
        >>> [(row["available"], row["used"]) for row in capacity_schedule(0.75, 4)]
        [(1.0, 0.25), (0.75, 0.1875), (0.5625, 0.140625), (0.421875, 0.10546875)]
    """
    return [{"task": t, "available": available, "used": used}
            for t, (available, used) in enumerate(_shares(_ratio_list(prune_ratio, n_tasks)))]


def equal_share_schedule(n_tasks: int) -> list[float]:
    """Per-task prune ratios that give each of ``n_tasks`` planned tasks an equal ``1/n_tasks`` of the network.

    Task ``t`` finds ``(N - t)/N`` free and must keep ``1/N``, i.e. prune ``1 - 1/(N - t)`` of it; the last
    task prunes nothing.

    Args:
        n_tasks: the number of tasks planned.

    Returns:
        ``n_tasks`` prune ratios, to pass as ``PackNet(model, prune_ratio=...)``.

    Examples:
        >>> equal_share_schedule(4)
        [0.75, 0.6666666666666667, 0.5, 0.0]
    """
    check_n_tasks(n_tasks)
    return [1.0 - 1.0 / (n_tasks - t) for t in range(n_tasks)]


_MAX_COUNT = 10**6  # far beyond the 255 tasks an owner map holds, and still counted in under a second


def tasks_that_fit(prune_ratio: float, min_share: float) -> int:
    """How many tasks keep at least ``min_share`` of the network under a fixed ``prune_ratio``.

    Task ``t`` keeps ``r**t * (1 - r)``, a share that shrinks by a factor ``r`` per task, so the tasks that fit
    are the first ``T``: in exact arithmetic ``T = floor(ln(min_share / (1 - r)) / ln r) + 1``, and ``0`` when
    even the first task keeps less than ``min_share``. In floating point that formula can be off by one
    wherever the log ratio is (nearly) a whole number, e.g. when ``min_share`` is exactly some task's share.
    So the count is taken on the shares themselves, computed as :func:`capacity_schedule` computes them:
    ``tasks_that_fit(r, s)`` is exactly the number of rows of ``capacity_schedule(r, n)`` with
    ``used >= s``, for any ``n`` larger than the count.

    Args:
        prune_ratio: the ratio every task prunes with, in ``[0, 1)``.
        min_share: the smallest fraction of the network a task can use, in ``(0, 1]``; a task whose share
            equals it exactly fits.

    Returns:
        The number of tasks, ``0`` or more.

    Raises:
        ValueError: for a ratio outside ``[0, 1)``, a ``min_share`` outside ``(0, 1]``, or a count of more
            than a million tasks (which this does not take).

    Examples:
        >>> tasks_that_fit(0.75, 0.1)  # shares 0.25, 0.1875, 0.140625, 0.10546875, then 0.079...
        4
        >>> tasks_that_fit(0.5, 0.125)  # shares 0.5, 0.25, 0.125 (exactly), then 0.0625
        3
        >>> tasks_that_fit(0.9, 0.2)  # the first task keeps 0.1: none fits
        0
    """
    check_prune_ratio(prune_ratio)
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be a fraction of the network in (0, 1], got {min_share!r}: a task "
                         "needs a positive share (with 0, every task would fit, forever)")
    shares = _shares(itertools.repeat(float(prune_ratio)))
    for count, (_, used) in enumerate(itertools.islice(shares, _MAX_COUNT + 1)):
        if used < min_share:  # the shares never grow, so every later task keeps less too
            return count
    raise ValueError(f"more than {_MAX_COUNT:,} tasks keep min_share={min_share} at prune_ratio={prune_ratio}: "
                     "too many to count (an owner map holds at most 255 tasks)")


def measured_capacity(owner_maps: Mapping[str, Tensor], tasks: Sequence[Hashable]) -> list[dict[str, Any]]:
    """How the prunable weights are shared out, counted on the owner maps: per layer and in total.

    What :meth:`packnet.PackNet.capacity` returns. ``tasks[k]`` is the task whose owner value is ``k + 1``.

    Args:
        owner_maps: the owner map of each prunable layer, by name.
        tasks: the task ids to report, in learning order.

    Returns:
        One row per layer and a last row ``"total"``:
        ``{"layer", "weights", "free": fraction, "owned": {task_id: fraction}}``.

    Examples:
        >>> rows = measured_capacity({"fc": torch.tensor([0, 1, 1, 2], dtype=torch.uint8)}, ["a", "b"])
        >>> rows[-1]
        {'layer': 'total', 'weights': 4, 'free': 0.25, 'owned': {'a': 0.5, 'b': 0.25}}
    """
    rows, totals = [], torch.zeros(MAX_TASKS + 1, dtype=torch.int64)
    for name, owner in owner_maps.items():
        counts = owner_counts(owner).cpu()
        totals += counts
        rows.append(_capacity_row(name, counts, tasks))
    rows.append(_capacity_row("total", totals, tasks))
    return rows


def _capacity_row(layer: str, counts: Tensor, tasks: Sequence[Hashable]) -> dict[str, Any]:
    n = int(counts.sum())
    return {"layer": layer, "weights": n, "free": int(counts[0]) / n,
            "owned": {t: int(counts[k + 1]) / n for k, t in enumerate(tasks)}}


def format_capacity(report: list[dict]) -> str:
    """Render :meth:`packnet.PackNet.capacity` rows as a fixed-width text table (percent of each layer).

    The layer column is as wide as the longest layer name, so that a small network's table of five tasks fits in
    88 characters (the width of the book's pages).

    Examples:
        >>> print(format_capacity([{"layer": "fc.weight", "weights": 1000, "free": 0.5,
        ...                         "owned": {0: 0.25, 1: 0.25}}]))
        layer          weights    free  task 0  task 1
        ----------------------------------------------
        fc.weight        1,000   50.0%   25.0%   25.0%
    """
    tasks = [k for k in report[0]["owned"]] if report else []
    width = max([len("layer")] + [len(str(row["layer"])) for row in report]) + 2
    columns = {t: max(8, len(f"task {t}") + 2) for t in tasks}
    header = f"{'layer':<{width}}{'weights':>11}{'free':>8}" + "".join(f"{f'task {t}':>{columns[t]}}" for t in tasks)
    lines = [header, "-" * len(header)]
    for row in report:
        lines.append(
            f"{row['layer']:<{width}}{row['weights']:>11,}{100 * row['free']:>7.1f}%"
            + "".join(f"{100 * row['owned'][t]:>{columns[t] - 1}.1f}%" for t in tasks)
        )
    return "\n".join(lines)
