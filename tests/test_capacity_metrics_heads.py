"""Capacity schedules, continual-learning metrics and per-task heads."""

from __future__ import annotations

import math

import pytest
import torch

from packnet import TaskHeads, capacity_schedule, equal_share_schedule, format_capacity
from packnet.metrics import average_accuracy, backward_transfer, forgetting


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


def test_format_capacity_renders_a_table():
    report = [{"layer": "fc.weight", "weights": 1000, "free": 0.5, "owned": {0: 0.25, 1: 0.25}}]
    text = format_capacity(report)
    assert "fc.weight" in text and "1,000" in text and "25.0%" in text and "task 1" in text


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
