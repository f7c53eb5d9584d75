"""The capacity planner: its numbers (pure), its figure, and the ipywidgets box that redraws on change."""

from __future__ import annotations

import math

import pytest

from packnet import capacity_schedule
from packnet.book.widgets import capacity_planner, draw_planner, planner_data


def test_planner_data_is_the_geometric_schedule_and_the_equal_share_plan():
    data = planner_data(0.75, 4)
    assert data["schedule"] == capacity_schedule(0.75, 4)
    assert [row["used"] for row in data["equal_share"]] == pytest.approx([0.25] * 4)
    assert data["used_total"] + data["free_after"] == pytest.approx(1.0)
    assert data["free_after"] == 0.75 ** 4
    assert data["tasks_above_min_share"] is None


@pytest.mark.parametrize("ratio, n", [(0.5, 1), (0.5, 7), (0.9, 20), (0.0, 3)])
def test_free_after_is_r_to_the_n(ratio, n):
    assert math.isclose(planner_data(ratio, n)["free_after"], ratio ** n, abs_tol=1e-15)


def test_tasks_above_min_share_counts_the_tasks_that_keep_enough():
    # r = 0.75: shares 0.25, 0.1875, 0.140625, 0.105..., 0.079...
    assert planner_data(0.75, 5, min_share=0.1)["tasks_above_min_share"] == 4
    assert planner_data(0.75, 5, min_share=0.25)["tasks_above_min_share"] == 1
    assert planner_data(0.75, 5, min_share=0.3)["tasks_above_min_share"] == 0


def test_planner_data_rejects_a_bad_ratio_or_task_count():
    with pytest.raises(ValueError, match="prune_ratio"):
        planner_data(1.0, 4)
    with pytest.raises(ValueError, match="n_tasks"):
        planner_data(0.5, 0)


def test_draw_planner_draws_bars_and_the_equal_share_markers():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = draw_planner(0.75, 4, min_share=0.1)
    assert len(ax.patches) == 8  # available + kept bar per task
    assert "31.6% left free" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("equal share 1/4" in s for s in labels) and any("minimum useful share" in s for s in labels)
    plt.close(ax.figure)


def test_capacity_planner_builds_and_redraws_when_a_slider_moves():
    pytest.importorskip("ipywidgets")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    open_before = set(plt.get_fignums())
    box = capacity_planner(0.75, 4, max_tasks=10)
    hint, row = box.children[0], box.children[1]
    assert "Colab" in hint.value and "Binder" in hint.value and "local Jupyter" in hint.value
    sliders = row.children
    assert [s.description for s in sliders] == ["prune ratio", "tasks"]
    assert (sliders[0].value, sliders[1].value, sliders[1].max) == (0.75, 4, 10)
    assert box.planner_data["schedule"] == capacity_schedule(0.75, 4)
    sliders[0].value, sliders[1].value = 0.5, 6
    assert box.planner_data["schedule"] == capacity_schedule(0.5, 6)
    assert set(plt.get_fignums()) == open_before  # every drawn figure was closed after display


def test_capacity_planner_display_carries_a_static_figure_and_says_how_to_make_it_live():
    """A page without a kernel renders the text/html fallback: the how-to-make-it-live line and a PNG."""
    pytest.importorskip("ipywidgets")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    open_before = set(plt.get_fignums())
    bundle = capacity_planner(0.75, 4)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # still the live widget in a kernel
    html = bundle["text/html"]
    assert "Colab" in html and "Binder" in html and "local Jupyter" in html
    assert '<img src="data:image/png;base64,' in html
    assert set(plt.get_fignums()) == open_before
