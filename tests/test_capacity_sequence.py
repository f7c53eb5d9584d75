"""packnet.bench.capacity_sequence: a long sequence's shares against its accuracies, the lone-task share sweep, the
point where a sequence stops learning, and the visible shares (chapter 10)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from packnet import capacity_schedule, equal_share_schedule, visible_mask
from packnet.bench.capacity_sequence import last_learning_task, run_capacity_sequence, share_sweep, visible_shares
from packnet.bench.data import permuted_mnist
from packnet.bench.models import mlp
from packnet.bench.transforms import transform_task

TINY = dict(epochs=1, retrain_epochs=1, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def tasks():
    return [transform_task(t, lambda x: x, train_size=96, seed=t.task_id) for t in permuted_mnist(4)]


def test_a_fixed_ratio_run_reports_the_shares_of_capacity_schedule_and_never_forgets(tasks):
    torch.manual_seed(0)
    run = run_capacity_sequence(tasks, 0.5, hidden=(8, 8), label="r = 0.5", **TINY)
    assert run.label == "r = 0.5" and run.prune_ratios == [0.5] * 4
    assert run.planned == [row["used"] for row in capacity_schedule(0.5, 4)]
    n = 784 * 8 + 8 * 8
    assert all(abs(s - p) <= 2 / n for s, p in zip(run.shares, run.planned))
    assert run.shares == [run.result.packnet.capacity()[-1]["owned"][t] for t in range(4)]
    assert run.accuracy == run.result.accuracy_matrix[-1] and run.result.forgetting == [0.0] * 4
    assert run.kept_nothing == [] and run.seconds > 0


def test_tasks_after_a_full_plan_keep_nothing_train_their_heads_and_the_warning_is_recorded_not_shown(tasks):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PackNet's "keeps no weight" warning must not escape
        run = run_capacity_sequence(tasks, equal_share_schedule(2) + [0.0, 0.0], hidden=(8,), **TINY)
    assert run.kept_nothing == [2, 3]
    assert run.shares[2:] == [0.0, 0.0] and math.isclose(sum(run.shares), 1.0)
    torch.manual_seed(0)
    initial = mlp(range(4), 10, hidden=(8,))  # the same initial weights run_capacity_sequence built
    heads = run.result.model[-1].heads
    for t in ("2", "3"):  # only their heads learned
        assert not torch.equal(heads[t].weight, initial[-1].heads[t].weight)


def test_a_schedule_of_the_wrong_length_is_refused_with_the_remedy(tasks):
    with pytest.raises(ValueError, match="extend a plan for fewer tasks with 0.0"):
        run_capacity_sequence(tasks, equal_share_schedule(2), hidden=(8,), **TINY)


def test_share_sweep_starts_every_share_from_the_same_weights_and_leaves_torch_rng_seeded(tasks):
    first = share_sweep(tasks[0], [0.5, 0.05], hidden=(8,), seed=3, **TINY)
    again = share_sweep(tasks[0], [0.05], hidden=(8,), seed=3, **TINY)
    assert len(first) == 2 and first[1] == again[0]  # the same share from the same start: the same accuracy
    assert all(0.0 <= a <= 1.0 for a in first)


@pytest.mark.parametrize("share", [0.0, 1.5, -0.1, True])
def test_share_sweep_refuses_a_share_outside_0_1(tasks, share):
    with pytest.raises(ValueError, match=r"a share is a fraction of the network in \(0, 1\]"):
        share_sweep(tasks[0], [share], hidden=(8,), **TINY)


@pytest.mark.parametrize("accuracy, level, learned", [
    ([0.9, 0.8, 0.85, 0.6, 0.7, 0.5], 0.75, 3),
    ([0.9, 0.6, 0.8], 0.75, 3),  # a dip is not a stop: the last task at the level counts
    ([0.5, 0.4], 0.75, 0),
    ([0.75], 0.75, 1),  # at the level counts as learned
    ([], 0.75, 0),
])
def test_last_learning_task_counts_up_to_the_last_task_at_the_level(accuracy, level, learned):
    assert last_learning_task(accuracy, level) == learned


@pytest.mark.parametrize("r", [0.0, 0.5, 0.75, 0.9])
def test_visible_shares_of_a_fixed_ratio_are_one_minus_r_to_the_t_plus_1(r):
    assert all(math.isclose(v, 1 - r ** (t + 1), abs_tol=1e-12) for t, v in enumerate(visible_shares(r, 30)))


def test_visible_shares_match_the_owner_maps_of_a_trained_run(tasks):
    torch.manual_seed(0)
    run = run_capacity_sequence(tasks, 0.5, hidden=(8,), **TINY)
    pn = run.result.packnet
    n = sum(o.numel() for o in pn.owner.values())
    for k, expected in enumerate(visible_shares(0.5, 4), start=1):
        seen = sum(int(visible_mask(o, k).sum()) for o in pn.owner.values()) / n
        assert abs(seen - expected) <= 4 / n


def test_visible_shares_after_a_full_plan_stay_at_the_whole_network():
    assert visible_shares(equal_share_schedule(3) + [0.0], 4)[2:] == pytest.approx([1.0, 1.0])
