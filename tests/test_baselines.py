"""The baselines PackNet is compared with: fine-tuning, EWC, independent networks, joint training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from packnet.bench.baselines import (EWCPenalty, _linear_fisher, _RoundRobin, _vmap_fisher, count_parameters,
                               diagonal_fisher, run_ewc, run_finetune, run_independent, run_joint, set_active_task)
from packnet.bench.data import Task
from packnet.bench.models import mlp

from helpers import conv_bn_net

CLASSES = 3


def tiny_tasks(n: int = 2, seed: int = 0, train: int = 48, test: int = 24) -> list[Task]:
    """``n`` random 3-way tasks on 8×8 images, each with its own fixed linear rule (learnable, quick)."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n):
        rule = torch.randn(64, CLASSES, generator=g)

        def make(count: int) -> TensorDataset:
            x = torch.randn(count, 1, 8, 8, generator=g)
            return TensorDataset(x, (x.flatten(1) @ rule).argmax(1))

        tasks.append(Task(t, f"tiny {t}", make(train), make(test), tuple(range(CLASSES))))
    return tasks


def tiny_mlp(n_tasks: int = 2) -> nn.Sequential:
    return mlp(range(n_tasks), CLASSES, hidden=(16,), in_features=64)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


FAST = dict(epochs=2, batch_size=16, optimizer=sgd, progress=False)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- fine-tuning
def test_finetune_trains_every_parameter_and_fills_the_lower_triangle():
    torch.manual_seed(0)
    model = tiny_mlp()
    before = weights(model)
    result = run_finetune(model, tiny_tasks(), **FAST)
    assert result.method == "finetune" and result.packnet is None and len(result.histories) == 2
    for name, value in model.state_dict().items():
        assert not torch.equal(value, before[name]), f"{name} did not train"
    R = result.accuracy_matrix
    assert math.isnan(R[0][1]) and all(0.0 <= a <= 1.0 for a in (R[0][0], R[1][0], R[1][1]))


# ---------------------------------------------------------------------------------------------- independent
def test_independent_never_forgets_and_costs_one_network_per_task():
    tasks = tiny_tasks(3)
    torch.manual_seed(0)
    result = run_independent(lambda: tiny_mlp(3), tasks, **FAST)
    assert result.method == "independent"
    assert result.forgetting == [0.0, 0.0, 0.0] and result.backward_transfer == 0.0
    R = result.accuracy_matrix
    assert all(R[i][j] == R[j][j] for j in range(3) for i in range(j, 3))
    assert isinstance(result.model, nn.ModuleList) and len(result.model) == 3
    assert len({id(m) for m in result.model}) == 3
    one = count_parameters(tiny_mlp(3), task_id=0)
    assert sum(count_parameters(m, t.task_id) for m, t in zip(result.model, tasks)) == 3 * one


def test_independent_networks_match_their_own_finetune_run():
    """Network j is exactly a one-task fine-tuning run on task j with loader seed seed + j."""
    tasks = tiny_tasks(2)
    torch.manual_seed(0)
    result = run_independent(lambda: tiny_mlp(), tasks, seed=5, **FAST)
    torch.manual_seed(0)
    tiny_mlp()  # the first network's initialisation
    alone = run_finetune(tiny_mlp(), [tasks[1]], seed=6, **FAST)
    pairs = zip(result.model[1].state_dict().values(), alone.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    assert result.accuracy_matrix[1][1] == alone.accuracy_matrix[0][0]


def test_independent_rejects_a_factory_that_reuses_its_network():
    shared = tiny_mlp()
    with pytest.raises(TypeError, match="new one per call"):
        run_independent(lambda: shared, tiny_tasks(2), **FAST)
    with pytest.raises(TypeError, match="make_model must be a function"):
        run_independent(tiny_mlp(), tiny_tasks(2), **FAST)
    with pytest.raises(TypeError, match="make_model\\(\\) must be an nn.Module"):
        run_independent(lambda: "not a network", tiny_tasks(2), **FAST)


# ---------------------------------------------------------------------------------------------- joint
def test_joint_fills_only_the_last_row_and_trains_every_head():
    torch.manual_seed(0)
    model = tiny_mlp(3)
    before = weights(model)
    result = run_joint(model, tiny_tasks(3), **FAST)
    R = result.accuracy_matrix
    assert result.method == "joint" and len(result.histories) == 1 and len(result.histories[0]["train"]) == 2
    assert all(math.isnan(a) for row in R[:-1] for a in row)
    assert all(0.0 <= a <= 1.0 for a in R[-1]) and result.average_accuracy == sum(R[-1]) / 3
    assert math.isnan(result.backward_transfer)
    for name, value in model.state_dict().items():
        assert not torch.equal(value, before[name]), f"{name} did not train"


def test_round_robin_alternates_tasks_and_routes_each_batch_to_its_head():
    heads = tiny_mlp(3)[-1]
    loaders = [[("a0",), ("a1",), ("a2",)], [("b0",)], [("c0",), ("c1",)]]
    seen = [(batch[0], heads.active) for batch in _RoundRobin(heads, loaders, [0, 1, 2])]
    assert seen == [("a0", 0), ("b0", 1), ("c0", 2), ("a1", 0), ("c1", 2), ("a2", 0)]
    assert len(_RoundRobin(heads, loaders, [0, 1, 2])) == 6


# ---------------------------------------------------------------------------------------------- EWC penalty
def random_fisher(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()}


def nudge(model: nn.Module, seed: int, scale: float = 0.1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p += scale * torch.randn(p.shape, generator=g)


def test_ewc_penalty_is_zero_at_the_anchor_and_positive_away_from_it():
    torch.manual_seed(0)
    model = tiny_mlp()
    penalty = EWCPenalty(model, ewc_lambda=3.0)
    assert penalty().item() == 0.0
    penalty.consolidate(random_fisher(model, 1))
    assert penalty().item() == 0.0
    nudge(model, 2)
    assert penalty().item() > 0.0


def test_ewc_penalty_value_and_gradient_match_the_sum_of_per_task_penalties():
    torch.manual_seed(0)
    model, lam = tiny_mlp(), 7.0
    penalty = EWCPenalty(model, ewc_lambda=lam)
    terms = []
    for k in range(3):  # three tasks, three different anchors
        nudge(model, 10 + k)
        fisher = random_fisher(model, 20 + k)
        terms.append((fisher, {n: p.detach().clone() for n, p in model.named_parameters()}))
        penalty.consolidate(fisher)
    nudge(model, 99)
    params = dict(model.named_parameters())
    expected_value = 0.5 * lam * sum((f[n] * (params[n] - a[n]) ** 2).sum() for f, a in terms for n in f)
    expected_grad = {n: lam * sum(f[n] * (params[n] - a[n]) for f, a in terms).detach() for n in params}

    value = penalty()
    assert torch.allclose(value, expected_value, rtol=1e-5)
    value.backward()
    for n, p in params.items():
        assert torch.allclose(p.grad, expected_grad[n], rtol=1e-5, atol=1e-6), n

    model.zero_grad(set_to_none=True)
    penalty.add_gradient_()
    for n, p in params.items():
        assert torch.allclose(p.grad, expected_grad[n], rtol=1e-5, atol=1e-6), n


def test_ewc_penalty_gradient_is_lambda_fisher_times_displacement_after_one_task():
    torch.manual_seed(0)
    model = tiny_mlp()
    fisher = random_fisher(model, 1)
    anchor = weights(model)
    penalty = EWCPenalty(model, ewc_lambda=4.0)
    penalty.consolidate(fisher)
    assert all(torch.equal(penalty.centre[n], anchor[n]) for n in fisher) and penalty.offset == 0.0
    nudge(model, 2)
    penalty().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, 4.0 * fisher[n] * (p.detach() - anchor[n]), rtol=1e-6, atol=1e-7), n


def test_ewc_add_gradient_skips_parameters_without_importance():
    model = tiny_mlp()
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    fisher["1.weight"] = torch.ones_like(fisher["1.weight"])
    penalty = EWCPenalty(model, ewc_lambda=1.0)
    penalty.consolidate(fisher)
    nudge(model, 3)
    penalty.add_gradient_()
    assert [n for n, p in model.named_parameters() if p.grad is not None] == ["1.weight"]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1"])
def test_ewc_rejects_a_bad_lambda(bad):
    with pytest.raises(ValueError, match="ewc_lambda"):
        EWCPenalty(tiny_mlp(), ewc_lambda=bad)
    with pytest.raises(ValueError, match="ewc_lambda"):
        run_ewc(tiny_mlp(), tiny_tasks(), ewc_lambda=bad, **FAST)


def test_ewc_consolidate_rejects_a_fisher_that_does_not_fit_the_model():
    model = tiny_mlp()
    penalty = EWCPenalty(model, ewc_lambda=1.0)
    with pytest.raises(KeyError, match="does not have"):
        penalty.consolidate({"nope.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="shape"):
        penalty.consolidate({"1.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="negative"):
        penalty.consolidate({"1.bias": -torch.ones(16)})
    assert penalty.tasks_consolidated == 0 and penalty.importance == {}


# ---------------------------------------------------------------------------------------------- EWC runs
def test_ewc_with_lambda_zero_is_finetuning_bit_for_bit():
    tasks = tiny_tasks(3)
    torch.manual_seed(0)
    finetuned = run_finetune(tiny_mlp(3), tasks, **FAST)
    torch.manual_seed(0)
    ewc = run_ewc(tiny_mlp(3), tasks, ewc_lambda=0.0, **FAST)
    assert ewc.method == "ewc"
    pairs = zip(finetuned.model.state_dict().values(), ewc.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    lower = [row[: i + 1] for i, row in enumerate(finetuned.accuracy_matrix)]
    assert [row[: i + 1] for i, row in enumerate(ewc.accuracy_matrix)] == lower
    assert [h["train"] for h in ewc.histories] == [h["train"] for h in finetuned.histories]


def test_ewc_keeps_the_important_weights_closer_to_the_first_task_than_finetuning():
    tasks = tiny_tasks(2)
    moved = {}
    for lam in (0.0, 1000.0):
        torch.manual_seed(0)
        model = tiny_mlp()
        run_ewc(model, tasks[:1], ewc_lambda=lam, **FAST)  # the first task alone: the anchor
        set_active_task(model, 0)
        fisher = diagonal_fisher(model, tasks[0].loaders(16, shuffle=False)[0])
        anchor = weights(model)
        torch.manual_seed(0)
        model2 = tiny_mlp()
        run_ewc(model2, tasks, ewc_lambda=lam, **FAST)
        moved[lam] = sum(float((fisher[n] * (p.detach() - anchor[n]) ** 2).sum()) for n, p in model2.named_parameters())
    assert moved[1000.0] < 0.1 * moved[0.0]


# ---------------------------------------------------------------------------------------------- Fisher
def brute_force_fisher(model: nn.Module, data, per_sample: bool = True) -> dict[str, torch.Tensor]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    model.eval()
    for x, y in data:
        pieces = [(x[i:i + 1], y[i:i + 1]) for i in range(len(y))] if per_sample else [(x, y)]
        for xs, ys in pieces:
            grads = torch.autograd.grad(nn.functional.cross_entropy(model(xs), ys), list(params.values()),
                                        allow_unused=True)
            for n, g in zip(params, grads):
                if g is not None:
                    total[n] += g.pow(2) * len(ys)
        count += len(y)
    return {n: t / count for n, t in total.items()}


def test_fisher_of_an_mlp_uses_the_linear_shortcut_and_matches_per_example_gradients():
    torch.manual_seed(0)
    model = tiny_mlp()
    set_active_task(model, 1)
    data = list(tiny_tasks(1)[0].loaders(10, shuffle=False)[0])
    params = {n: p for n, p in model.named_parameters()}
    assert _linear_fisher(model, params, data, torch.device("cpu")) is not None
    fisher = diagonal_fisher(model, data)
    expected = brute_force_fisher(model, data)
    vmapped, _ = _vmap_fisher(model, params, data, torch.device("cpu"))
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-4, atol=1e-8), n
        assert torch.allclose(vmapped[n] / 48, expected[n], rtol=1e-4, atol=1e-8), n
    assert not fisher["3.heads.0.weight"].any(), "an inactive head has no Fisher information"


def test_fisher_of_a_conv_net_falls_back_to_vmap_and_matches_per_example_gradients():
    torch.manual_seed(0)
    model = conv_bn_net(n_tasks=2, classes=CLASSES)
    set_active_task(model, 0)
    model(torch.randn(32, 1, 8, 8))  # give BatchNorm some running statistics
    data = list(tiny_tasks(1)[0].loaders(12, shuffle=False)[0])
    params = {n: p for n, p in model.named_parameters()}
    assert _linear_fisher(model, params, data, torch.device("cpu")) is None
    model.train()
    fisher = diagonal_fisher(model, data)
    assert model.training, "diagonal_fisher must restore the model's modes"
    expected = brute_force_fisher(model, data)
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-4, atol=1e-8), n


def test_minibatch_fisher_squares_batch_gradients():
    torch.manual_seed(0)
    model = tiny_mlp()
    set_active_task(model, 0)
    data = list(tiny_tasks(1)[0].loaders(16, shuffle=False)[0])
    fisher = diagonal_fisher(model, data, per_sample=False)
    expected = brute_force_fisher(model, data, per_sample=False)
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-5, atol=1e-9), n
    assert all(p.grad is None for p in model.parameters())


def test_fisher_rejects_an_empty_loader():
    with pytest.raises(ValueError, match="no batches"):
        diagonal_fisher(tiny_mlp(), [])


# ---------------------------------------------------------------------------------------------- shared checks
def test_count_parameters_counts_one_head_per_task():
    model = tiny_mlp(4)
    head = 16 * CLASSES + CLASSES
    trunk = 64 * 16 + 16
    assert count_parameters(model) == trunk + 4 * head
    assert count_parameters(model, task_id=2) == trunk + head
    assert count_parameters(nn.Linear(3, 2), task_id=0) == 8  # no heads: everything is the network


RUNNERS = {
    "finetune": lambda tasks, **kw: run_finetune(tiny_mlp(), tasks, **kw),
    "ewc": lambda tasks, **kw: run_ewc(tiny_mlp(), tasks, ewc_lambda=1.0, **kw),
    "independent": lambda tasks, **kw: run_independent(tiny_mlp, tasks, **kw),
    "joint": lambda tasks, **kw: run_joint(tiny_mlp(), tasks, **kw),
}


@pytest.mark.parametrize("method", RUNNERS)
@pytest.mark.parametrize("bad, match", [
    (dict(tasks=[]), "tasks is empty"),
    (dict(tasks="duplicate"), "distinct"),
    (dict(epochs=-1), "epochs"),
    (dict(epochs=1.5), "epochs"),
    (dict(batch_size=0), "batch_size"),
])
def test_every_baseline_rejects_bad_arguments(method, bad, match):
    kwargs = {**FAST, **bad}
    tasks = kwargs.pop("tasks", tiny_tasks())
    if tasks == "duplicate":
        tasks = [tiny_tasks()[0]] * 2
    with pytest.raises(ValueError, match=match):
        RUNNERS[method](tasks, **kwargs)


@pytest.mark.parametrize("run", [run_finetune, run_joint])
def test_baselines_reject_a_model_that_is_not_a_module(run):
    with pytest.raises(TypeError, match="nn.Module"):
        run("model", tiny_tasks(), **FAST)


def test_fisher_of_a_weight_shared_by_two_layers_is_not_taken_by_the_shortcut():
    torch.manual_seed(0)
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight  # tied: the weight gets gradient from both layers
    model = nn.Sequential(first, nn.Tanh(), second)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g))]
    params = {n: p for n, p in model.named_parameters()}
    assert _linear_fisher(model, params, data, torch.device("cpu")) is None
    fisher, expected = diagonal_fisher(model, data), brute_force_fisher(model, data)
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-4, atol=1e-8), n
