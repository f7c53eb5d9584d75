"""Capacity schedules, continual-learning metrics and per-task heads."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from packnet import TaskHeads, capacity_schedule, equal_share_schedule, format_capacity, tasks_that_fit
from packnet.bench.metrics import average_accuracy, backward_transfer, forgetting


def test_capacity_schedule_with_a_per_task_schedule():
    rows = capacity_schedule([0.5, 0.0], 2)
    assert [(r["available"], r["used"]) for r in rows] == [(1.0, 0.5), (0.5, 0.5)]
    with pytest.raises(ValueError, match="needs 3 entries"):
        capacity_schedule([0.5, 0.5], 3)
    with pytest.raises(ValueError, match="n_tasks"):
        capacity_schedule(0.5, 0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
def test_equal_share_schedule_gives_each_task_one_nth(n):
    rows = capacity_schedule(equal_share_schedule(n), n)
    assert all(math.isclose(r["used"], 1 / n) for r in rows)
    assert math.isclose(sum(r["used"] for r in rows), 1.0)


def _closed_form(r: float, min_share: float) -> int:
    """floor(ln(s / (1 - r)) / ln r) + 1, the formula of chapter 6, evaluated in floating point."""
    return 0 if 1 - r < min_share else math.floor(math.log(min_share / (1 - r)) / math.log(r)) + 1


@settings(max_examples=150, deadline=None)
@given(st.floats(0.0, 0.99), st.integers(0, 60), st.sampled_from(["below", "exactly", "above", "random"]),
       st.floats(1e-6, 1.0))
def test_tasks_that_fit_counts_the_rows_of_capacity_schedule(ratio, t, where, share):
    # min_share on, or one float next to, the share of task t: where the closed form's rounding matters
    exact = capacity_schedule(ratio, t + 1)[-1]["used"]
    min_share = {"below": math.nextafter(exact, 0.0), "exactly": exact, "above": math.nextafter(exact, 1.0),
                 "random": share}[where]
    if not 0.0 < min_share <= 1.0:
        return
    count = tasks_that_fit(ratio, min_share)
    rows = capacity_schedule(ratio, count + 2)
    assert count == sum(row["used"] >= min_share for row in rows)
    assert rows[count]["used"] < min_share  # and no task after them fits either: the shares never grow


def test_tasks_that_fit_is_exact_where_the_closed_form_is_off_by_one():
    share = capacity_schedule(0.55, 4)[-1]["used"]  # the share of task 3: log ratio 2.9999999999999996
    assert _closed_form(0.55, share) == 3
    assert tasks_that_fit(0.55, share) == 4  # tasks 0..3 keep at least `share`, task 3 exactly that


def test_tasks_that_fit_agrees_with_the_closed_form_away_from_the_boundaries():
    for r in (0.5, 0.75, 0.8, 0.9, 0.95, 0.97):
        for min_share in (0.05, 0.02, 0.01, 0.001):
            assert tasks_that_fit(r, min_share) == _closed_form(r, min_share)


def test_tasks_that_fit_at_the_edges():
    assert tasks_that_fit(0.0, 1.0) == 1  # the first task keeps everything, nothing is left
    assert tasks_that_fit(0.0, 1e-9) == 1
    assert tasks_that_fit(0.5, 0.5) == 1 and tasks_that_fit(0.5, 0.51) == 0
    assert tasks_that_fit(0.5, 0.125) == 3  # a share equal to min_share fits
    assert isinstance(tasks_that_fit(0.75, 1), int)


@pytest.mark.parametrize("ratio, min_share, message", [
    (1.0, 0.1, "prune_ratio must be in"), (-0.1, 0.1, "prune_ratio must be in"), (math.nan, 0.1, "prune_ratio"),
    (0.5, 0.0, "min_share must be"), (0.5, -0.1, "min_share must be"), (0.5, 1.5, "min_share must be"),
    (0.5, math.nan, "min_share must be"), (0.5, True, "min_share must be"), (0.5, "0.1", "min_share must be"),
])
def test_tasks_that_fit_rejects_bad_arguments(ratio, min_share, message):
    with pytest.raises(ValueError, match=message):
        tasks_that_fit(ratio, min_share)


def test_tasks_that_fit_refuses_to_count_beyond_a_million_tasks():
    with pytest.raises(ValueError, match="more than 1,000,000 tasks"):
        tasks_that_fit(0.9999999, 1e-12)


def test_format_capacity_renders_a_table():
    report = [{"layer": "fc.weight", "weights": 1000, "free": 0.5, "owned": {0: 0.25, 1: 0.25}}]
    text = format_capacity(report)
    assert "fc.weight" in text and "1,000" in text and "25.0%" in text and "task 1" in text


def test_format_capacity_of_five_tasks_fits_the_page_and_keeps_its_columns_aligned():
    """The book's MLP after five tasks: 88 characters at most (the book's page width), every line as wide as
    the header; long layer names and task ids widen their columns instead of running into the next one."""
    owned = {t: 0.25 * 0.75**t for t in range(5)}
    report = [{"layer": name, "weights": n, "free": 0.2373, "owned": owned}
              for name, n in (("1.weight", 200_704), ("3.weight", 65_536), ("total", 266_240))]
    lines = format_capacity(report).splitlines()
    assert max(map(len, lines)) <= 88, lines
    assert len({len(line) for line in lines}) == 1, lines
    long = [{"layer": "layer4.1.downsample.0.weight", "weights": 10, "free": 1.0,
             "owned": {"permutation 10": 0.0}}]
    header, _, row = format_capacity(long).splitlines()
    assert len(header) == len(row) and "  task permutation 10" in header and "layer4.1.downsample.0.weight  " in row


def test_metrics_on_a_known_matrix():
    nan = math.nan
    R = [[0.9, nan, nan], [0.7, 0.8, nan], [0.6, 0.8, 1.0]]
    assert math.isclose(average_accuracy(R), 0.8)
    assert [round(f, 6) for f in forgetting(R)] == [0.3, 0.0, 0.0]
    assert math.isclose(backward_transfer(R), ((0.6 - 0.9) + (0.8 - 0.8)) / 2)
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[1.0, 2.0]])


def test_task_heads_route_to_the_active_head_and_explain_errors():
    heads = TaskHeads(4, {0: 2, "b": 5})
    x = torch.randn(3, 4)
    with pytest.raises(RuntimeError, match="no active task"):
        heads(x)
    heads.active = "b"
    assert heads(x).shape == (3, 5)
    heads.active = 7
    with pytest.raises(KeyError, match="no head for task 7"):
        heads(x)
    heads.add(7, torch.nn.Linear(4, 1))
    assert heads(x).shape == (3, 1)
    with pytest.raises(ValueError, match="task_ids"):
        TaskHeads(4, 2)
