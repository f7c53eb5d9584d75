"""An interactive capacity planner: how a prune ratio shares the network out over a number of tasks.

:func:`planner_data` computes what the planner shows (pure: numbers in, numbers out), :func:`draw_planner`
draws it with matplotlib, and :func:`capacity_planner` wraps both in two ``ipywidgets`` sliders. The widget is
live only in a running Jupyter / Colab kernel; a static page shows the view it was saved with. Neither
``ipywidgets`` nor ``matplotlib`` is a dependency of the library: both are imported inside the functions that
need them (``pip install ipywidgets matplotlib``, or the ``book`` extra).
"""

from __future__ import annotations

from typing import Any, Optional

from packnet.capacity import capacity_schedule, equal_share_schedule

__all__ = ["planner_data", "draw_planner", "capacity_planner"]


def planner_data(prune_ratio: float, n_tasks: int, min_share: Optional[float] = None) -> dict[str, Any]:
    """The numbers behind the planner's figure, for a fixed ``prune_ratio`` over ``n_tasks`` tasks.

    With a fixed ratio ``r`` task ``t`` finds ``r**t`` of the network free and keeps ``r**t * (1 - r)`` of it
    (:func:`~packnet.capacity_schedule`); planning the same number of tasks with
    :func:`~packnet.equal_share_schedule` would give each ``1 / n_tasks`` instead.

    Args:
        prune_ratio: the fixed prune ratio, in ``[0, 1)``.
        n_tasks: number of tasks, at least 1.
        min_share: optional smallest share of the network a task can make use of.

    Returns:
        ``{"schedule": capacity_schedule rows, "equal_share": capacity rows of the equal-share plan,
        "used_total": fraction owned by the n tasks, "free_after": fraction left free for later tasks,
        "tasks_above_min_share": how many of the n tasks keep at least ``min_share`` (``None`` without one)}``.

    Examples:
        >>> data = planner_data(0.75, 4, min_share=0.15)
        >>> [row["used"] for row in data["schedule"]]
        [0.25, 0.1875, 0.140625, 0.10546875]
        >>> data["free_after"], data["tasks_above_min_share"]
        (0.31640625, 2)
    """
    schedule = capacity_schedule(prune_ratio, n_tasks)
    used_total = sum(row["used"] for row in schedule)
    free_after = schedule[-1]["available"] - schedule[-1]["used"]
    above = None if min_share is None else sum(row["used"] >= min_share for row in schedule)
    return {
        "schedule": schedule,
        "equal_share": capacity_schedule(equal_share_schedule(n_tasks), n_tasks),
        "used_total": used_total,
        "free_after": free_after,
        "tasks_above_min_share": above,
    }


def draw_planner(prune_ratio: float, n_tasks: int, ax: Any = None, *, min_share: Optional[float] = None) -> Any:
    """Draw the planner's view: available / kept bars for the fixed ratio and the equal-share line ``1/N``.

    Args:
        prune_ratio: the fixed prune ratio.
        n_tasks: number of tasks.
        ax: matplotlib axes to draw on (a new figure if omitted).
        min_share: optional minimum useful share, drawn as a dashed line.

    Returns:
        The axes.

    Examples:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> ax = draw_planner(0.75, 4)
        >>> ax.get_title()
        'prune ratio 0.75, 4 tasks: 68.4% used, 31.6% left free'
    """
    from .plotting import plot_capacity

    data = planner_data(prune_ratio, n_tasks, min_share)
    ax = plot_capacity(data["schedule"], ax)
    equal = [row["used"] for row in data["equal_share"]]
    ax.plot([row["task"] for row in data["equal_share"]], equal, "_", ms=18, mew=2, color="#ff7f0e",
            label=f"equal share 1/{n_tasks} (planned)")
    if min_share is not None:
        ax.axhline(min_share, color="#7f7f7f", ls="--", lw=1, label=f"minimum useful share {min_share:g}")
    if n_tasks > 12:  # keep the tick labels readable
        ax.set_xticks(range(0, n_tasks, max(1, n_tasks // 10)))
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"prune ratio {prune_ratio:g}, {n_tasks} tasks: {data['used_total']:.1%} used, "
                 f"{data['free_after']:.1%} left free")
    return ax


LIVE_HINT = ("The sliders are live only while a Python kernel runs this notebook: open the chapter in Colab or "
             "Binder (the rocket button at the top of the book's page), or run it in a local Jupyter with "
             "<code>pip install ipywidgets</code>. Without a kernel you see the initial view.")
"""How to make the capacity planner live: shown above its sliders and in its static fallback."""


def static_planner_html(prune_ratio: float, n_tasks: int, *, min_share: Optional[float] = None) -> str:
    """The planner's initial view as a self-contained HTML snippet: :data:`LIVE_HINT` and a PNG of the figure.

    This is what a page without a kernel shows in place of the widget (the online book, a notebook viewer).
    """
    import base64
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    try:
        draw_planner(prune_ratio, n_tasks, ax, min_share=min_share)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    alt = f"capacity planner: prune ratio {prune_ratio:g}, {n_tasks} tasks"
    return (f'<div class="capacity-planner-static"><p><em>{LIVE_HINT}</em></p>'
            f'<img src="data:image/png;base64,{png}" alt="{alt}" style="max-width: 100%;"></div>')


def capacity_planner(prune_ratio: float = 0.75, n_tasks: int = 4, *, max_tasks: int = 20,
                     min_share: Optional[float] = None) -> Any:
    """A widget with two sliders (prune ratio, number of tasks) that redraws :func:`draw_planner` on change.

    Live only while a Python kernel runs the notebook (Colab, Binder, a local Jupyter with ipywidgets); the box
    says so in a line of text above the sliders. Besides the widget, its display carries a static fallback
    (``text/html``: that line and a PNG of the initial view), which is what a page without a kernel shows: the
    book renders the fallback, not the widget (``nb_mime_priority_overrides`` in _config.yml). The returned box
    has an attribute ``planner_data``: the :func:`planner_data` of the view currently shown.

    Args:
        prune_ratio: initial ratio (the slider runs from 0 to 0.95 in steps of 0.05).
        n_tasks: initial number of tasks (the slider runs from 1 to ``max_tasks``).
        max_tasks: the task slider's maximum.
        min_share: optional minimum useful share, drawn as a dashed line.

    Returns:
        An ``ipywidgets.VBox``: the sliders above the figure.

    Raises:
        ImportError: if ipywidgets is not installed.
    """
    try:
        import ipywidgets as widgets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the capacity planner needs ipywidgets: pip install ipywidgets "
                          "(or use draw_planner for a static figure)") from err
    import matplotlib.pyplot as plt
    from IPython.display import display

    class PlannerBox(widgets.VBox):
        """The planner's box; its display adds the static fallback to the widget view."""

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            bundle = super()._repr_mimebundle_(**kwargs)
            if isinstance(bundle, dict):
                bundle["text/html"] = static_planner_html(prune_ratio, n_tasks, min_share=min_share)
            return bundle

    ratio = widgets.FloatSlider(value=prune_ratio, min=0.0, max=0.95, step=0.05, description="prune ratio",
                                continuous_update=False, readout_format=".2f")
    tasks = widgets.IntSlider(value=n_tasks, min=1, max=max_tasks, step=1, description="tasks",
                              continuous_update=False)
    box = PlannerBox([widgets.HTML(f"<p>{LIVE_HINT}</p>"), widgets.HBox([ratio, tasks])])

    def show(prune_ratio: float, n_tasks: int) -> None:
        box.planner_data = planner_data(prune_ratio, n_tasks, min_share)
        fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
        draw_planner(prune_ratio, n_tasks, ax, min_share=min_share)
        display(fig)
        plt.close(fig)  # displayed once, inside the output widget; never again by the inline backend

    figure = widgets.interactive_output(show, {"prune_ratio": ratio, "n_tasks": tasks})
    box.children = (*box.children, figure)
    return box
