"""``pn.export(t)``: a plain module that computes exactly what ``with pn.task(t):`` computes (issue 14, part 3)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from helpers import assert_same_state, batches, conv_bn_net, learn, snapshot
from packnet import PackNet, TaskHeads
from packnet.export import sparse_size


def mlp_net(n_tasks: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         TaskHeads(32, 3, task_ids=range(n_tasks)))


def cnn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return conv_bn_net(n_tasks=3, classes=3)


def trained(make, policy: str = "first_task", frozen: int = 2, in_progress: bool = True) -> PackNet:
    """``frozen`` tasks learned and frozen, then (optionally) task ``frozen`` trained but not frozen."""
    pn = PackNet(make(), prune_ratio=0.5, shared_policy=policy)
    for t in range(frozen):
        learn(pn, t, batches(t), epochs=1)
    if in_progress:
        pn.train_task(frozen, batches(frozen), epochs=1, progress=False)
    return pn


def as_task(pn: PackNet, t, x: torch.Tensor) -> torch.Tensor:
    with pn.task(t), torch.no_grad():
        return pn.model(x)


def heads_state(pn: PackNet) -> list:
    return [h.active for h in pn.roles.heads.values()]


X = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(99))

CASES = [pytest.param(mlp_net, "first_task", id="mlp"),
         pytest.param(cnn_net, "first_task", id="cnn-bn-first_task"),
         pytest.param(cnn_net, "per_task", id="cnn-bn-per_task")]


@pytest.mark.parametrize("make, policy", CASES)
def test_exported_task_computes_exactly_what_the_task_computes(make, policy):
    pn = trained(make, policy)
    for t in [0, 1, 2]:  # two frozen tasks and the one in progress
        exported = pn.export(t)
        assert type(exported) is type(pn.module) and not exported.training
        with torch.no_grad():
            assert torch.equal(exported(X), as_task(pn, t, X)), t


@pytest.mark.parametrize("make, policy", CASES)
def test_export_leaves_packnet_and_its_model_bit_identical(make, policy):
    pn = trained(make, policy)
    pn.model.train()
    before, active = snapshot(pn), heads_state(pn)
    exported = [pn.export(t) for t in (0, 1, 2)]
    assert_same_state(before, snapshot(pn))
    assert heads_state(pn) == active
    with torch.no_grad():  # a deep copy: changing it changes nothing of PackNet's
        for p in exported[0].parameters():
            p.add_(1.0)
    assert_same_state(before, snapshot(pn))


def test_exported_prunable_weights_are_what_the_task_sees_and_zero_elsewhere():
    pn = trained(mlp_net, in_progress=False)
    params = dict(pn.module.named_parameters())
    for t, k in [(0, 1), (1, 2)]:
        exported = dict(pn.export(t).named_parameters())
        for name in pn.prunable_names:
            visible = (pn.owner[name] >= 1) & (pn.owner[name] <= k)
            assert torch.equal(exported[name][visible], params[name][visible])
            assert (exported[name][~visible] == 0).all() and not exported[name][~visible].signbit().any()


def test_exported_module_has_only_its_own_head_active_and_non_zero():
    pn = trained(mlp_net)
    exported = pn.export(1)
    heads = exported[-1]
    assert heads.active == 1
    for key, head in heads.heads.items():
        nonzero = any(bool(p.ne(0).any()) for p in head.parameters())
        assert nonzero == (key == "1"), key
    assert torch.equal(heads.heads["1"].weight, pn.module[-1].heads["1"].weight)


@pytest.mark.parametrize("make, policy", CASES)
def test_exported_state_dict_loads_weights_only_into_a_fresh_instance(make, policy):
    pn = trained(make, policy)
    exported = pn.export(1)
    buffer = io.BytesIO()
    torch.save(exported.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = make()
    fresh.load_state_dict(state)  # strict: same names and shapes
    for heads in fresh.modules():
        if isinstance(heads, TaskHeads):
            heads.active = 1  # an attribute, not a tensor: documented
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(X), as_task(pn, 1, X))


@pytest.mark.parametrize("make, policy", CASES)
def test_torch_export_traces_the_exported_task(make, policy):
    pn = trained(make, policy, in_progress=False)
    exported = pn.export(0)
    program = torch.export.export(exported, (X,))
    with torch.no_grad():
        expected = as_task(pn, 0, X)
        assert torch.equal(program.module()(X), expected)


def test_exporting_an_unknown_task_raises_key_error_and_changes_nothing():
    pn = trained(mlp_net)
    before = snapshot(pn)
    with pytest.raises(KeyError, match="7"):
        pn.export(7)
    assert_same_state(before, snapshot(pn))


def test_sparse_size_counts_only_what_the_task_sees():
    pn = trained(mlp_net, in_progress=False)
    dense = sparse_size(pn.module)["dense_bytes"]
    sizes = [sparse_size(pn.export(t)) for t in (0, 1)]
    assert all(s["dense_bytes"] == dense and s["sparse_bytes"] <= dense for s in sizes)
    assert sizes[0]["nonzero"] < sizes[1]["nonzero"]  # task 1 also sees task 0's weights
    exported = dict(pn.export(0).named_parameters())
    for name in pn.prunable_names:  # one value and one 4-byte index per non-zero weight, or dense if cheaper
        holder = nn.Module()
        holder.register_buffer("w", exported[name].detach())
        nonzero = int(exported[name].ne(0).sum())
        numel = exported[name].numel()
        assert sparse_size(holder)["sparse_bytes"] == min(numel * 4, nonzero * 8)
        assert sparse_size(holder)["bitmap_bytes"] == min(numel * 4, nonzero * 4 + (numel + 7) // 8)
    high = PackNet(mlp_net(), prune_ratio=0.9)
    learn(high, 0, batches(0), epochs=1)
    assert sparse_size(high.export(0))["sparse_bytes"] < 0.3 * dense  # task 0 sees 10 % of the weights
