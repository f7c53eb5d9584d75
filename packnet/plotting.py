"""Figures the book draws from the library's own data structures (matplotlib, imported lazily).

Every function takes an optional ``ax`` and returns it, so figures compose; none calls ``plt.show()``.
matplotlib is not a dependency of the library: install it (``pip install matplotlib``) to use this module.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from torch import Tensor

__all__ = ["plot_accuracy_matrix", "plot_owner_map", "plot_capacity", "owner_colormap"]


def _axes(ax: Any, figsize: tuple[float, float] = (5, 4)) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, constrained_layout=True)[1]


def plot_accuracy_matrix(R: Sequence[Sequence[float]], ax: Any = None, *, title: str = "",
                         task_names: Optional[Sequence[str]] = None, cmap: str = "viridis") -> Any:
    """Heatmap of an accuracy matrix: row ``i`` = after learning task ``i``, column ``j`` = tested on task ``j``.

    Cells above the diagonal (tasks not learned yet) are left blank; each cell is annotated in percent.

    Args:
        R: the accuracy matrix (fractions, ``nan`` for not evaluated).
        ax: axes to draw on (a new figure if omitted).
        title: axes title.
        task_names: tick labels (default ``T0, T1, ...``).
        cmap: matplotlib colormap.

    Returns:
        The axes.
    """
    import numpy as np

    ax = _axes(ax)
    data = np.array(R, dtype=float) * 100
    names = list(task_names) if task_names is not None else [f"T{j}" for j in range(len(R))]
    im = ax.imshow(np.ma.masked_invalid(data), vmin=0, vmax=100, cmap=cmap)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not math.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center",
                        color="white" if data[i, j] < 60 else "black", fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("tested on task")
    ax.set_ylabel("after learning task")
    ax.figure.colorbar(im, ax=ax, label="test accuracy (%)")
    if title:
        ax.set_title(title)
    return ax


def owner_colormap(n_tasks: int) -> Any:
    """A discrete colormap for owner maps: light grey for free (0), one distinct colour per task 1..n."""
    from matplotlib.colors import ListedColormap
    import matplotlib

    palette = matplotlib.colormaps["tab10" if n_tasks <= 10 else "tab20"]
    return ListedColormap(["#e8e8e8"] + [palette(k % palette.N) for k in range(n_tasks)])


def plot_owner_map(owner: Tensor, ax: Any = None, *, task_names: Optional[Sequence[str]] = None,
                   title: str = "", max_side: int = 256) -> Any:
    """Draw which task owns each weight of a layer (a 2-D view of the ``uint8`` owner map).

    Conv weights ``(out, in, kh, kw)`` are shown as ``out × (in·kh·kw)``; large maps are cropped to the
    top-left ``max_side × max_side`` block so single weights stay visible.

    Args:
        owner: an owner map (``0`` free, ``k`` the k-th task).
        ax: axes to draw on.
        task_names: legend labels for tasks 1..n (default ``task 0, task 1, ...``).
        title: axes title.
        max_side: crop size.

    Returns:
        The axes.
    """
    from matplotlib.patches import Patch

    ax = _axes(ax, (5, 5))
    grid = owner.detach().cpu().reshape(owner.shape[0], -1)[:max_side, :max_side].numpy()
    n = int(owner.max()) if owner.numel() else 0
    names = list(task_names) if task_names is not None else [f"task {k}" for k in range(n)]
    cmap = owner_colormap(max(n, 1))
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=max(n, 1) + 0.5, interpolation="nearest")
    ax.set_xlabel("input index")
    ax.set_ylabel("output index")
    handles = [Patch(color=cmap(0), label="free")] + [Patch(color=cmap(k + 1), label=names[k]) for k in range(n)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    if title:
        ax.set_title(title)
    return ax


def plot_capacity(schedule: Sequence[dict], ax: Any = None, *, measured: Optional[Sequence[float]] = None,
                  title: str = "") -> Any:
    """Bars of the fraction of the network each task keeps (``used``) and finds free (``available``).

    Args:
        schedule: rows from :func:`~packnet.capacity_schedule`.
        ax: axes to draw on.
        measured: optional measured fractions per task (e.g. from :meth:`~packnet.PackNet.capacity`), drawn
            as markers over the analytic bars.
        title: axes title.

    Returns:
        The axes.
    """
    ax = _axes(ax, (6, 3.5))
    tasks = [row["task"] for row in schedule]
    ax.bar(tasks, [row["available"] for row in schedule], color="#d0d0d0", label="available when the task starts")
    ax.bar(tasks, [row["used"] for row in schedule], color="#1f77b4", label="kept by the task (analytic)")
    if measured is not None:
        ax.plot(tasks[: len(measured)], measured, "o", color="#d62728", label="kept by the task (measured)")
    ax.set_xticks(tasks)
    ax.set_xlabel("task")
    ax.set_ylabel("fraction of prunable weights")
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return ax
