"""Figures the book draws from the library's own data structures (matplotlib, imported lazily).

Every function takes an optional ``ax`` and returns it, so figures compose; none calls ``plt.show()``.
matplotlib is not a dependency of the library: install it (``pip install matplotlib``) to use this module.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from torch import Tensor

__all__ = ["plot_accuracy_matrix", "plot_accuracy_matrices", "plot_owner_map", "plot_capacity", "owner_colormap",
           "plot_task_weights", "plot_weight_histogram", "plot_frozen_drift",
           "plot_forgetting", "plot_used_shares", "plot_method_comparison", "plot_task_accuracy",
           "plot_accuracy_vs_share"]


def _axes(ax: Any, figsize: tuple[float, float] = (5, 4)) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, constrained_layout=True)[1]


def plot_accuracy_matrix(R: Sequence[Sequence[float]], ax: Any = None, *, title: str = "",
                         task_names: Optional[Sequence[str]] = None, cmap: str = "viridis",
                         colorbar: bool = True, fontsize: Optional[float] = None) -> Any:
    """Heatmap of an accuracy matrix: row ``i`` = after learning task ``i``, column ``j`` = tested on task ``j``.

    Cells above the diagonal (tasks not learned yet) are left blank; each cell is annotated in percent with
    one decimal, the rounding of the book's tables (the font shrinks for more than 6 tasks).

    Args:
        R: the accuracy matrix (fractions, ``nan`` for not evaluated).
        ax: axes to draw on (a new figure if omitted).
        title: axes title.
        task_names: tick labels (default ``T0, T1, ...``).
        cmap: matplotlib colormap.
        colorbar: draw a colour bar next to the axes (off when several panels share one, as in
            :func:`plot_accuracy_matrices`).
        fontsize: of the annotations (default: 8, or 6 for more than 6 tasks).

    Returns:
        The axes.
    """
    import numpy as np

    ax = _axes(ax)
    data = np.array(R, dtype=float) * 100
    names = list(task_names) if task_names is not None else [f"T{j}" for j in range(len(R))]
    im = ax.imshow(np.ma.masked_invalid(data), vmin=0, vmax=100, cmap=cmap)
    if fontsize is None:
        fontsize = 8 if data.shape[1] <= 6 else 6
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not math.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center",
                        color="white" if data[i, j] < 60 else "black", fontsize=fontsize)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("tested on task")
    ax.set_ylabel("after learning task")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="test accuracy (%)")
    if title:
        ax.set_title(title)
    return ax


def plot_accuracy_matrices(matrices: dict[str, Sequence[Sequence[float]]], *, title: str = "",
                           task_names: Optional[Sequence[str]] = None, ncols: int = 3,
                           panel_size: float = 3.3, fontsize: float = 9) -> Any:
    """One figure of several accuracy matrices (one panel per run, e.g. per method) with one shared colour bar.

    Sized for a book page: ``ncols`` panels a row, each ``panel_size`` inches square, so that a figure of five
    runs (two rows of three) shows every annotation legibly at the page width.

    Args:
        matrices: ``{panel title: accuracy matrix}``, drawn row by row in this order.
        title: the figure's title (e.g. the benchmark).
        task_names: tick labels of every panel (default ``T0, T1, ...``).
        ncols: panels per row.
        panel_size: width and height of each panel in inches.
        fontsize: of the annotations.

    Returns:
        The figure.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> R = [[0.9, float("nan")], [0.9, 0.8]]
        >>> fig = plot_accuracy_matrices({"PackNet": R, "fine-tune": R, "joint": R}, ncols=2)
        >>> [ax.get_title() for ax in fig.axes if ax.images], len(fig.axes)  # 3 panels + 1 colour bar
        (['PackNet', 'fine-tune', 'joint'], 4)
    """
    import matplotlib.pyplot as plt

    n = len(matrices)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + 0.9, panel_size * nrows),
                             constrained_layout=True, squeeze=False)
    panels = list(axes.flat)
    for ax, (label, R) in zip(panels, matrices.items()):
        plot_accuracy_matrix(R, ax, title=label, task_names=task_names, colorbar=False, fontsize=fontsize)
    for ax in panels[n:]:  # an incomplete last row
        fig.delaxes(ax)
    fig.colorbar(panels[0].images[0], ax=panels[:n], label="test accuracy (%)", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


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


def plot_task_weights(report: Sequence[dict], ax: Any = None, *, task_names: Optional[Sequence[str]] = None,
                      title: str = "") -> Any:
    """Bars of how many prunable weights each task owns, stacked by layer, plus the weights still free.

    Where :func:`plot_capacity` shows fractions of the whole network, this shows counts — what each task
    really costs, and in which layers — read from :meth:`~packnet.PackNet.capacity`. Each bar is labelled
    with its total.

    Args:
        report: rows from :meth:`~packnet.PackNet.capacity` (the ``"total"`` row is skipped).
        ax: axes to draw on (a new figure if omitted).
        task_names: tick labels for the tasks (default: the task ids); the last bar is always ``free``.
        title: axes title.

    Returns:
        The axes; ``ax.containers[k]`` holds layer ``k``'s bars (one per task, then ``free``).

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from torch import nn
        >>> from packnet import PackNet
        >>> pn = PackNet(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), prune_ratio=0.5)
        >>> pn.start_task(0); _ = pn.prune(0); pn.freeze(0)
        >>> ax = plot_task_weights(pn.capacity())
        >>> [int(bar.get_height()) for bar in ax.containers[0]]   # layer "0": task 0 keeps 16 of 32 weights
        [16, 16]
    """
    import numpy as np

    ax = _axes(ax, (6, 3.5))
    layers = [row for row in report if row["layer"] != "total"]
    tasks = list(layers[0]["owned"]) if layers else []
    names = [str(n) for n in (task_names if task_names is not None else tasks)] + ["free"]
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for row in layers:
        n = row["weights"]
        counts = np.array([round(row["owned"][t] * n) for t in tasks] + [round(row["free"] * n)], dtype=float)
        ax.bar(x, counts, bottom=bottom, label=row["layer"])
        bottom += counts
    for xi, total in zip(x, bottom):
        ax.annotate(f"{int(total):,}", (xi, total), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_xlabel("task")
    ax.set_ylabel("prunable weights owned")
    ax.set_ylim(0, bottom.max() * 1.12 if len(bottom) else 1)
    ax.legend(title="layer", frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_weight_histogram(weight: Tensor, pruned_mask: Optional[Tensor] = None, ax: Any = None, *, bins: int = 100,
                          title: str = "", log: bool = False) -> Any:
    """Histogram of a layer's weight values, split into the ones magnitude pruning keeps and the ones it prunes.

    Magnitude pruning removes a band of values around zero: drawn stacked on the same bins, the pruned
    weights fill the middle of the histogram and the kept ones its two tails, with the threshold ``±τ``
    (the largest pruned magnitude) as dashed lines. Without a mask it is a plain histogram, e.g. of the
    survivors after pruning (pass ``weight[~pruned_mask]``: the pruned weights are exactly 0 then).

    Args:
        weight: the weights (any shape; flattened).
        pruned_mask: bool mask of the entries pruning selects (same shape as ``weight``), or ``None``.
        ax: axes to draw on (a new figure if omitted).
        bins: number of histogram bins.
        title: axes title.
        log: logarithmic count axis.

    Returns:
        The axes.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import torch
        >>> w = torch.tensor([-0.75, -0.25, 0.125, 0.5, 1.0])
        >>> ax = plot_weight_histogram(w, w.abs() < 0.3, bins=4)
        >>> [line.get_xdata()[0] for line in ax.get_lines()]   # the threshold: largest pruned |w|
        [-0.25, 0.25]
    """
    import numpy as np

    ax = _axes(ax, (5, 3.5))
    values = weight.detach().cpu().float().flatten().numpy()
    edges = np.histogram_bin_edges(values, bins=bins) if values.size else bins
    if pruned_mask is None:
        ax.hist(values, bins=edges, color="#1f77b4", log=log, label=f"{values.size:,} weights")
    else:
        if pruned_mask.shape != weight.shape:
            raise ValueError(f"pruned_mask shape {tuple(pruned_mask.shape)} != weight shape {tuple(weight.shape)}")
        pruned = pruned_mask.detach().cpu().flatten().numpy().astype(bool)
        kept_values, pruned_values = values[~pruned], values[pruned]
        ax.hist([kept_values, pruned_values], bins=edges, stacked=True, log=log, color=["#1f77b4", "#ff7f0e"],
                label=[f"kept ({kept_values.size:,})", f"pruned ({pruned_values.size:,})"])
        if pruned_values.size:
            tau = float(np.abs(pruned_values).max())
            for x in (-tau, tau):
                ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlabel("weight value")
    ax.set_ylabel("number of weights")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_frozen_drift(drift: dict[str, float], ax: Any = None, *, title: str = "", floor: float = 1e-12) -> Any:
    """Horizontal bars of how far frozen weights moved under each optimizer: ``max |w_after - w_frozen|``.

    Frozen weights must not move at all, so a drift of exactly ``0`` is the only good value; a log scale cannot
    show 0, so those bars are drawn at ``floor`` in green and labelled "0 (bit-exact)".

    Args:
        drift: ``{label: max absolute change}``, e.g. one entry per optimizer.
        ax: axes to draw on (a new figure if omitted).
        title: axes title.
        floor: where to draw an exact zero on the log axis.

    Returns:
        The axes.
    """
    labels = list(drift)
    values = [float(drift[k]) for k in labels]
    ax = _axes(ax, (7, 0.45 * len(labels) + 1.2))
    shown = [v if v > 0 else floor for v in values]
    colors = ["#d62728" if v > 0 else "#2ca02c" for v in values]
    ax.barh(range(len(labels)), shown, color=colors, left=floor * 0.1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(max(shown[i], floor) * 1.3, i, f"{v:.1e}" if v > 0 else "0 (bit-exact)", va="center", fontsize=8)
    ax.set_xlim(floor * 0.1, max(shown) * 50)
    ax.set_xlabel("max |change| of a frozen weight (log scale)")
    if title:
        ax.set_title(title)
    return ax


def plot_forgetting(forgetting: dict[str, Sequence[float]], ax: Any = None, *, title: str = "",
                    task_names: Optional[Sequence[str]] = None) -> Any:
    """Grouped bars of per-task forgetting, one colour per method (e.g. ``ExperimentResult.forgetting``).

    Forgetting of task ``j`` is its best accuracy before the end minus its final accuracy (in percentage
    points here); an exact ``0`` is marked with a "0" above the bar's place so it is visible.

    Args:
        forgetting: ``{method label: [forgetting of task 0, task 1, ...]}`` as fractions.
        ax: axes to draw on (a new figure if omitted).
        title: axes title.
        task_names: tick labels (default ``T0, T1, ...``).

    Returns:
        The axes.
    """
    ax = _axes(ax, (7, 3.5))
    labels = list(forgetting)
    n_tasks = max(len(v) for v in forgetting.values())
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        values = [100 * float(f) for f in forgetting[label]]
        xs = [j - 0.4 + width * (k + 0.5) for j in range(len(values))]
        bars = ax.bar(xs, values, width, label=label)
        for x, v in zip(xs, values):
            if v == 0:
                ax.text(x, 0.5, "0", ha="center", va="bottom", fontsize=7, color=bars.patches[0].get_facecolor())
    names = list(task_names) if task_names is not None else [f"T{j}" for j in range(n_tasks)]
    ax.set_xticks(range(n_tasks), names)
    ax.set_xlabel("task")
    ax.set_ylabel("forgetting (percentage points)")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_used_shares(schedules: dict[str, Sequence[dict]], ax: Any = None, *, min_share: Optional[float] = None,
                     log: bool = False, title: str = "") -> Any:
    """Lines of the fraction of the network each task keeps, one line per capacity schedule.

    Compares schedules from :func:`~packnet.capacity_schedule` (e.g. a fixed prune ratio against an equal share
    per task, or several ratios); an optional horizontal line marks a minimum useful share per task.

    Args:
        schedules: ``{label: capacity_schedule(...) rows}``.
        ax: axes to draw on (a new figure if omitted).
        min_share: draw a dashed line at this share (a task below it is too small to be useful).
        log: logarithmic y axis (for many tasks, where shares span decades).
        title: axes title.

    Returns:
        The axes.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from packnet import capacity_schedule, equal_share_schedule
        >>> ax = plot_used_shares({"r = 0.75": capacity_schedule(0.75, 4),
        ...                        "equal share": capacity_schedule(equal_share_schedule(4), 4)})
        >>> len(ax.get_lines())
        2
    """
    ax = _axes(ax, (6, 3.5))
    for label, rows in schedules.items():
        ax.plot([row["task"] for row in rows], [row["used"] for row in rows], "o-", ms=4, label=label)
    if min_share is not None:
        ax.axhline(min_share, color="#7f7f7f", ls="--", lw=1, label=f"minimum useful share {min_share:g}")
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # tasks are whole numbers: no tick at 2.5
    ax.set_xlabel("task (learning order)")
    ax.set_ylabel("fraction of prunable weights kept")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_method_comparison(values: dict[str, dict[str, float]], ax: Any = None, *, ylabel: str = "",
                           title: str = "", percent: bool = True, ylim: Optional[tuple[float, float]] = None,
                           fontsize: float = 9, label_rotation: float = 0) -> Any:
    """Grouped bars comparing methods across benchmarks: one group per benchmark, one colour per method.

    Each bar is annotated with its value; a ``nan`` (a metric a method does not define, e.g. the forgetting of
    joint training) leaves a gap marked "n/a".

    Args:
        values: ``{benchmark: {method: value}}``; methods in the order of the first benchmark's dict.
        ax: axes to draw on (a new figure if omitted).
        ylabel: y-axis label.
        title: axes title.
        percent: multiply values by 100 (fractions → percent).
        ylim: y-axis limits (default: matplotlib's, plus headroom for the labels).
        fontsize: of the value labels and the legend (tick labels keep matplotlib's size).
        label_rotation: of the value labels, in degrees (90 for bars too narrow for a horizontal label).

    Returns:
        The axes.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> ax = plot_method_comparison({"Split": {"PackNet": 0.98, "joint": 0.99},
        ...                              "Permuted": {"PackNet": 0.91, "joint": float("nan")}})
        >>> len(ax.patches), [t.get_text() for t in ax.texts]
        (4, ['98.0', '91.0', '99.0', 'n/a'])
    """
    ax = _axes(ax, (8, 3.5))
    groups = list(values)
    methods = list(next(iter(values.values()))) if groups else []
    width = 0.8 / max(len(methods), 1)
    scale = 100.0 if percent else 1.0
    missing = []
    for k, method in enumerate(methods):
        xs = [g - 0.4 + width * (k + 0.5) for g in range(len(groups))]
        ys = [scale * float(values[group].get(method, math.nan)) for group in groups]
        ax.bar(xs, [0.0 if math.isnan(y) else y for y in ys], width, label=method)
        for x, y in zip(xs, ys):
            if math.isnan(y):
                missing.append(x)
            else:
                ax.text(x, y, f"{y:.1f}", ha="center", va="bottom", fontsize=fontsize, rotation=label_rotation)
    ax.set_xticks(range(len(groups)), groups)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:  # headroom for the labels above the bars
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top + 0.12 * (top - bottom))
    for x in missing:  # at the bottom of the visible range
        ax.text(x, ax.get_ylim()[0], "n/a", ha="center", va="bottom", fontsize=fontsize, rotation=label_rotation)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=fontsize, ncol=min(len(methods), 5), loc="upper center",
              bbox_to_anchor=(0.5, -0.08))
    if title:
        ax.set_title(title)
    return ax


def plot_task_accuracy(runs: dict[str, Sequence[float]], ax: Any = None, *, level: Optional[float] = None,
                       floor: Optional[float] = None, title: str = "") -> Any:
    """Lines of each task's final accuracy (percent) against its place in the sequence, one line per run.

    For a long sequence whose capacity runs out: an optional dashed line marks the accuracy a task must reach
    to count as learned, an optional dotted one a floor (e.g. what a task with no weight of its own reaches).

    Args:
        runs: ``{label: final accuracy per task}`` (fractions), tasks in learning order.
        ax: axes to draw on (a new figure if omitted).
        level: draw a dashed line at this accuracy (fraction).
        floor: draw a dotted line at this accuracy (fraction).
        title: axes title.

    Returns:
        The axes.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> ax = plot_task_accuracy({"fixed": [0.9, 0.8, 0.5], "equal": [0.85, 0.85, 0.8]}, level=0.7)
        >>> len(ax.get_lines()), all(float(tick).is_integer() for tick in ax.get_xticks())
        (3, True)
    """
    from matplotlib.ticker import MaxNLocator

    ax = _axes(ax, (7, 3.5))
    for label, accuracy in runs.items():
        ax.plot(range(len(accuracy)), [100 * a for a in accuracy], "o-", ms=3.5, label=label)
    if level is not None:
        ax.axhline(100 * level, color="#7f7f7f", ls="--", lw=1, label=f"learned: {100 * level:g} %")
    if floor is not None:
        ax.axhline(100 * floor, color="#7f7f7f", ls=":", lw=1.5, label=f"no weight of its own: {100 * floor:.0f} %")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # tasks are whole numbers: no tick at 2.5
    ax.set_xlabel("task (learning order)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    if title:
        ax.set_title(title)
    return ax


def plot_accuracy_vs_share(points: dict[str, tuple[Sequence[float], Sequence[float]]], ax: Any = None, *,
                           level: Optional[float] = None, title: str = "") -> Any:
    """Accuracy (percent) against the share of the network a task kept, on a logarithmic share axis.

    Each entry is one set of tasks (a run of a long sequence, or one task trained alone at several shares);
    tasks that kept no weight at all (share 0) have no place on a log axis and are left out.

    Args:
        points: ``{label: (shares, accuracies)}`` (fractions); an entry whose label contains ``"alone"`` is
            drawn as a line (a sweep), the others as markers.
        ax: axes to draw on (a new figure if omitted).
        level: draw a dashed line at this accuracy (fraction).
        title: axes title.

    Returns:
        The axes.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> ax = plot_accuracy_vs_share({"fixed": ([0.25, 0.01, 0.0], [0.9, 0.6, 0.5]),
        ...                              "one task alone": ([0.25, 0.01], [0.9, 0.4])})
        >>> [len(line.get_xdata()) for line in ax.get_lines()]
        [2, 2]
    """
    ax = _axes(ax, (6, 3.5))
    for label, (shares, accuracy) in points.items():
        kept = [(s, 100 * a) for s, a in zip(shares, accuracy) if s > 0]
        sweep = "alone" in label
        style = dict(marker="s", ls="-", color="black", lw=1.2, ms=4) if sweep else dict(marker="o", ls="", ms=5,
                                                                                        alpha=0.8)
        ax.plot([s for s, _ in kept], [a for _, a in kept], label=label, **style)
    if level is not None:
        ax.axhline(100 * level, color="#7f7f7f", ls="--", lw=1, label=f"learned: {100 * level:g} %")
    ax.set_xscale("log")
    ax.set_xlabel("share of the prunable weights the task kept")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax
