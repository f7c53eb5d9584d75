"""Capacity: how much of the network each task gets, on paper and as measured.

With a fixed prune ratio ``r`` every task keeps ``1 - r`` of the weights still free when it starts, so the free
fraction shrinks geometrically: task ``t`` (0-based) starts with ``r**t`` of the network available and keeps
``r**t * (1 - r)`` of it. That is the seed's table for ``r = 0.75``. The alternative is to *plan* ``N`` tasks
and give each an equal share ``1/N``, which needs a different ratio per task: ``1 - 1/(N - t)``.
"""

from __future__ import annotations

from typing import Sequence, Union

from .pruning import check_prune_ratio

__all__ = ["capacity_schedule", "equal_share_schedule", "format_capacity"]

Ratios = Union[float, Sequence[float]]


def _ratio_list(prune_ratio: Ratios, n_tasks: int) -> list[float]:
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks must be a positive int, got {n_tasks!r}")
    if isinstance(prune_ratio, (int, float)) and not isinstance(prune_ratio, bool):
        ratios = [float(prune_ratio)] * n_tasks
    else:
        ratios = [float(r) for r in prune_ratio]
        if len(ratios) != n_tasks:
            raise ValueError(f"a per-task prune_ratio schedule needs {n_tasks} entries, got {len(ratios)}")
    for r in ratios:
        check_prune_ratio(r)
    return ratios


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
    rows, available = [], 1.0
    for t, r in enumerate(_ratio_list(prune_ratio, n_tasks)):
        used = available * (1.0 - r)
        rows.append({"task": t, "available": available, "used": used})
        available -= used
    return rows


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
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks must be a positive int, got {n_tasks!r}")
    return [1.0 - 1.0 / (n_tasks - t) for t in range(n_tasks)]


def format_capacity(report: list[dict]) -> str:
    """Render :meth:`packnet.PackNet.capacity` rows as a fixed-width text table (percent of each layer)."""
    tasks = [k for k in report[0]["owned"]] if report else []
    header = f"{'layer':<28}{'weights':>11}{'free':>8}" + "".join(f"{'task ' + str(t):>9}" for t in tasks)
    lines = [header, "-" * len(header)]
    for row in report:
        lines.append(
            f"{row['layer']:<28}{row['weights']:>11,}{100 * row['free']:>7.1f}%"
            + "".join(f"{100 * row['owned'][t]:>8.1f}%" for t in tasks)
        )
    return "\n".join(lines)
