"""The PackNet lifecycle: zero forgetting bit for bit, exact pruning, checkpoints, and refusals that change nothing."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from helpers import OPTIMIZERS, assert_same_state, batches, conv_bn_net, learn, snapshot
from packnet import PackNet, TaskHeads, capacity_schedule
from packnet.masks import MAX_TASKS, visible_mask


def outputs_per_task(pn: PackNet, x: torch.Tensor) -> dict:
    out = {}
    for t in pn.tasks:
        with pn.task(t):
            out[t] = pn.model(x).detach().clone()
    return out


# ---------------------------------------------------------------------------- zero forgetting
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("shared_policy", ["first_task", "per_task"])
def test_zero_forgetting_is_bit_exact_under_any_optimizer(optimizer, shared_policy):
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy=shared_policy)
    x = torch.randn(10, 1, 8, 8)
    right_after = {}
    for t in range(3):
        learn(pn, t, batches(t), OPTIMIZERS[optimizer])
        right_after[t] = outputs_per_task(pn, x)[t]
    final = outputs_per_task(pn, x)
    for t in range(3):
        assert torch.equal(final[t], right_after[t]), f"task {t} changed after later tasks"


def test_tasks_actually_learn_and_differ():
    """A guard that froze everything would also give zero forgetting: check the later tasks did change weights."""
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    w0 = pn.model[4].weight.detach().clone()
    learn(pn, 1, batches(1))
    owned_by_1 = pn.owner["4.weight"] == 2
    assert owned_by_1.any()
    assert not torch.equal(pn.model[4].weight[owned_by_1], w0[owned_by_1])


def test_frozen_weights_survive_deepcopy_and_pickle_of_the_model():
    """Protection lives in the training step, not in hooks that copying drops."""
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    x = torch.randn(5, 1, 8, 8)
    before = outputs_per_task(pn, x)[0]
    pn2 = copy.deepcopy(pn)
    pn3 = PackNet(pickle.loads(pickle.dumps(pn.model)), prune_ratio=0.5)
    pn3.load_state_dict(pn.state_dict())
    for clone in (pn2, pn3):
        learn(clone, 1, batches(1), OPTIMIZERS["adamw"])
        assert torch.equal(outputs_per_task(clone, x)[0], before)


def test_resnet18_zero_forgetting():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)
    pn = PackNet(model, prune_ratio=0.5, exclude=["fc"])
    x = torch.randn(4, 3, 16, 16)
    data = lambda s: [(torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(s)),
                       torch.randint(0, 4, (8,), generator=torch.Generator().manual_seed(s)))]
    right_after = {}
    for t in range(3):
        pn.train_task(t, data(t), 1, optimizer=OPTIMIZERS["sgd_momentum_wd"], progress=False)
        pn.prune(t)
        pn.retrain(t, data(t), 1, optimizer=OPTIMIZERS["adamw"], progress=False)
        pn.freeze(t)
        right_after[t] = outputs_per_task(pn, x)[t]
    final = outputs_per_task(pn, x)
    assert all(torch.equal(final[t], right_after[t]) for t in range(3))
    assert len(pn.prunable_names) == 20  # 20 convolutions; fc excluded, so it is a shared parameter


# ---------------------------------------------------------------------------- the task(t) context
def test_task_context_is_non_destructive():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    learn(pn, 1, batches(1))
    before = snapshot(pn)
    with pn.task(0):
        pn.model(torch.randn(2, 1, 8, 8))
        assert not pn.model.training
    assert_same_state(before, snapshot(pn))


def test_task_context_hides_exactly_the_weights_the_task_did_not_own():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    for t in range(3):
        learn(pn, t, batches(t))
    full = pn.model[4].weight.detach().clone()
    with pn.task(1):
        seen = pn.model[4].weight.detach().clone()
    vis = visible_mask(pn.owner["4.weight"], 2)
    assert torch.equal(seen, torch.where(vis, full, torch.zeros(())))


def test_task_context_restores_after_an_exception():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    learn(pn, 1, batches(1))
    before = snapshot(pn)
    with pytest.raises(ZeroDivisionError):
        with pn.task(0):
            1 / 0
    assert_same_state(before, snapshot(pn))


def test_inactive_heads_never_change():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    head0 = copy.deepcopy(pn.model[-1].head(0).state_dict())
    learn(pn, 0, batches(0), OPTIMIZERS["adamw"])
    trained0 = copy.deepcopy(pn.model[-1].head(0).state_dict())
    assert not torch.equal(trained0["weight"], head0["weight"])
    head2_before = copy.deepcopy(pn.model[-1].head(2).state_dict())
    learn(pn, 1, batches(1), OPTIMIZERS["adamw"])
    for k, v in pn.model[-1].head(0).state_dict().items():
        assert torch.equal(v, trained0[k])
    for k, v in pn.model[-1].head(2).state_dict().items():
        assert torch.equal(v, head2_before[k])


def test_single_shared_head_is_pruned_like_any_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    pn = PackNet(model, prune_ratio=0.5)
    assert pn.prunable_names == ["1.weight", "3.weight"]
    x = torch.randn(6, 1, 8, 8)
    learn(pn, 0, batches(0))
    first = outputs_per_task(pn, x)[0]
    learn(pn, 1, batches(1))
    assert torch.equal(outputs_per_task(pn, x)[0], first)


def test_batchnorm_statistics_frozen_after_first_task():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    stats = pn.model[1].running_mean.clone()
    learn(pn, 1, batches(1))
    assert torch.equal(pn.model[1].running_mean, stats)


def test_per_task_policy_keeps_a_copy_of_shared_parameters_per_task():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    learn(pn, 0, batches(0))
    learn(pn, 1, batches(1, shape=(1, 8, 8)))
    s0, s1 = pn._shared_snapshots[0], pn._shared_snapshots[1]
    assert "1.running_mean" in s0 and "0.bias" in s0
    assert not torch.equal(s0["1.running_mean"], s1["1.running_mean"])
    with pn.task(0):
        assert torch.equal(pn.model[1].running_mean, s0["1.running_mean"])


# ---------------------------------------------------------------------------- pruning and re-training
def test_prune_frees_exactly_round_ratio_n_per_layer():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.75)
    pn.train_task(0, batches(0), 1, progress=False)
    n = {name: dict(pn.module.named_parameters())[name].numel() for name in pn.prunable_names}
    pruned = pn.prune(0)
    for name in pn.prunable_names:
        assert pruned[name] == round(0.75 * n[name])
        assert int((pn.owner[name] == 1).sum()) == n[name] - pruned[name]
        assert bool((dict(pn.module.named_parameters())[name][pn.owner[name] == 0] == 0).all())


def test_pruned_weights_stay_zero_and_frozen_unchanged_through_retraining():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    frozen = {n: dict(pn.module.named_parameters())[n].detach().clone() for n in pn.prunable_names}
    pn.train_task(1, batches(1), 2, optimizer=OPTIMIZERS["adamw"], progress=False)
    pn.prune(1)
    after_prune = {n: dict(pn.module.named_parameters())[n].detach().clone() for n in pn.prunable_names}
    pn.retrain(1, batches(1), 3, optimizer=OPTIMIZERS["sgd_momentum_wd"], progress=False)
    for n in pn.prunable_names:
        w, owner = dict(pn.module.named_parameters())[n], pn.owner[n]
        assert torch.equal(w[owner == 0], torch.zeros_like(w[owner == 0]))
        assert torch.equal(w[owner == 1], frozen[n][owner == 1])
        assert not torch.equal(w[owner == 2], after_prune[n][owner == 2])  # survivors did re-train


def test_a_task_can_keep_all_its_weights_with_ratio_zero():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=[0.5, 0.0])
    learn(pn, 0, batches(0))
    learn(pn, 1, batches(1))
    assert all(int((o == 0).sum()) == 0 for o in pn.owner.values())


def test_global_pruning_prunes_the_global_smallest():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.6, pruning="global")
    pn.train_task(0, batches(0), 1, progress=False)
    mags = torch.cat([dict(pn.module.named_parameters())[n].detach().abs().flatten() for n in pn.prunable_names])
    pruned = pn.prune(0)
    assert sum(pruned.values()) == round(0.6 * mags.numel())
    params = dict(pn.module.named_parameters())
    kept = torch.cat([params[n].detach().abs()[pn.owner[n] == 1] for n in pn.prunable_names])
    assert kept.min() >= torch.sort(mags).values[sum(pruned.values()) - 1]


def test_prune_ratio_schedule_and_override():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=[0.5, 0.25])
    pn.train_task(0, batches(0), 1, progress=False)
    n = dict(pn.module.named_parameters())["4.weight"].numel()
    assert pn.prune(0)["4.weight"] == round(0.5 * n)
    pn.freeze(0)
    pn.train_task(1, batches(1), 1, progress=False)
    assert pn.prune(1, prune_ratio=0.1)["4.weight"] == round(0.1 * n / 2)


def test_a_100_million_weight_layer_prunes():
    big = nn.Linear(10_000, 10_000, bias=False)  # 100 M weights, 400 MB
    with torch.no_grad():
        big.weight.normal_()
    pn = PackNet(big, prune_ratio=0.75)
    pn.start_task(0)
    pruned = pn.prune(0)
    assert pruned["weight"] == 75_000_000
    assert int((pn.owner["weight"] == 1).sum()) == 25_000_000


# ---------------------------------------------------------------------------- capacity
def test_capacity_schedule_reproduces_the_seed_table():
    rows = capacity_schedule(0.75, 4)
    assert [(r["task"], r["available"], r["used"]) for r in rows] == [
        (0, 1.0, 0.25), (1, 0.75, 0.1875), (2, 0.5625, 0.140625), (3, 0.421875, 0.10546875)]


def test_measured_capacity_matches_the_seed_table_after_four_tasks():
    torch.manual_seed(0)
    # layer sizes divisible by 4**4 make round(0.75 * n) exact at every step
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), TaskHeads(256, 3, task_ids=range(4)))
    pn = PackNet(model, prune_ratio=0.75)
    for t in range(4):
        learn(pn, t, batches(t), epochs=1)
    total = pn.capacity()[-1]
    for row in capacity_schedule(0.75, 4):
        assert total["owned"][row["task"]] == row["used"]
    assert total["free"] == 1 - sum(r["used"] for r in capacity_schedule(0.75, 4))


# ---------------------------------------------------------------------------- checkpoints
def test_state_dict_round_trip_gives_identical_outputs_for_every_task(tmp_path):
    torch.manual_seed(0)
    for policy in ("first_task", "per_task"):
        pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy=policy)
        for t in range(3):
            learn(pn, t, batches(t))
        x = torch.randn(7, 1, 8, 8)
        expected = outputs_per_task(pn, x)
        torch.save(pn.state_dict(), tmp_path / "ckpt.pt")
        fresh = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy=policy)
        fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
        assert fresh.tasks == [0, 1, 2]
        got = outputs_per_task(fresh, x)
        assert all(torch.equal(got[t], expected[t]) for t in range(3))


def test_checkpoint_resumes_a_task_in_progress():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    pn.train_task(1, batches(1), 1, progress=False)
    pn.prune(1)
    fresh = PackNet(conv_bn_net(), prune_ratio=0.5)
    fresh.load_state_dict(pn.state_dict())
    assert (fresh.current, fresh.stage) == (1, "pruned")
    fresh.retrain(1, batches(1), 1, progress=False)
    fresh.freeze(1)


def test_loading_into_a_mismatched_model_is_refused_and_changes_nothing():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    other = PackNet(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), TaskHeads(16, 3, task_ids=range(3))))
    before = snapshot(other)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(pn.state_dict())
    assert_same_state(before, snapshot(other))
    with pytest.raises(ValueError, match="not a PackNet checkpoint"):
        other.load_state_dict(pn.model.state_dict())


# ---------------------------------------------------------------------------- lifecycle and bad input
def _two_task_packnet():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    return pn


@pytest.mark.parametrize("call, error, message", [
    (lambda pn: pn.retrain(1, batches(1), 1, progress=False), RuntimeError, "no task is in progress"),
    (lambda pn: pn.prune(1), RuntimeError, "no task is in progress"),
    (lambda pn: pn.freeze(1), RuntimeError, "no task is in progress"),
    (lambda pn: pn.train_task(0, batches(0), 1, progress=False), RuntimeError, "already learned"),
    (lambda pn: pn.task(7).__enter__(), KeyError, "unknown task 7"),
    (lambda pn: pn.train_task(1, batches(1), -1, progress=False), ValueError, "epochs"),
    (lambda pn: pn.train_task(1, [], 1, progress=False), ValueError, "empty"),
    (lambda pn: pn.train_task(1, iter([]), 1, progress=False), ValueError, "no batches"),
    (lambda pn: pn.train_task(9, batches(1), 1, progress=False), KeyError, "no head for task 9"),
    (lambda pn: pn.train_task(1.5, batches(1), 1, progress=False), TypeError, "int or str"),
])
def test_refused_calls_change_nothing(call, error, message):
    pn = _two_task_packnet()
    before = snapshot(pn)
    with pytest.raises(error, match=message):
        call(pn)
    assert_same_state(before, snapshot(pn))


@pytest.mark.parametrize("stage_calls, call, message", [
    (lambda pn: pn.train_task(1, batches(1), 1, progress=False),
     lambda pn: pn.retrain(1, batches(1), 1, progress=False), "not pruned yet"),
    (lambda pn: pn.train_task(1, batches(1), 1, progress=False), lambda pn: pn.freeze(1), "not pruned yet"),
    (lambda pn: pn.train_task(1, batches(1), 1, progress=False),
     lambda pn: pn.train_task(2, batches(2), 1, progress=False), "task 1 is not frozen yet"),
    (lambda pn: (pn.train_task(1, batches(1), 1, progress=False), pn.prune(1)),
     lambda pn: pn.prune(1), "already pruned"),
    (lambda pn: (pn.train_task(1, batches(1), 1, progress=False), pn.prune(1)),
     lambda pn: pn.train_task(1, batches(1), 1, progress=False), "already pruned"),
    (lambda pn: pn.train_task(1, batches(1), 1, progress=False), lambda pn: pn.prune(1, prune_ratio=1.0), r"\[0, 1\)"),
])
def test_steps_out_of_order_are_refused_and_change_nothing(stage_calls, call, message):
    pn = _two_task_packnet()
    stage_calls(pn)
    before = snapshot(pn)
    with pytest.raises(RuntimeError if "[" not in message else ValueError, match=message):
        call(pn)
    assert_same_state(before, snapshot(pn))


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", True, [0.5, 1.0], []])
def test_bad_prune_ratios_are_refused(ratio):
    with pytest.raises(ValueError, match="prune_ratio"):
        PackNet(conv_bn_net(), prune_ratio=ratio)


def test_a_model_without_prunable_weights_is_refused():
    with pytest.raises(ValueError, match="no prunable weights"):
        PackNet(nn.Sequential(nn.BatchNorm1d(4), nn.ReLU()))
    with pytest.raises(ValueError, match="exclude names modules"):
        PackNet(conv_bn_net(), exclude=["nope"])


@pytest.mark.filterwarnings("ignore:task .* keeps no weight")
def test_the_256th_task_is_refused():
    model = nn.Linear(4, 1024, bias=False)
    pn = PackNet(model, prune_ratio=0.0)
    for t in range(MAX_TASKS):
        pn.start_task(t)
        pn.prune_and_freeze(t)
    before = snapshot(pn)
    with pytest.raises(RuntimeError, match="at most 255 tasks"):
        pn.start_task(MAX_TASKS)
    assert_same_state(before, snapshot(pn))


def test_training_history_and_progress_bar(capsys):
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    history = pn.train_task(0, batches(0), 3, progress=True)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(set(row) == {"epoch", "loss", "accuracy"} for row in history)
    assert "train task 0" in capsys.readouterr().err
    pn.train_task(0, batches(0), 1, progress=False)  # more epochs before pruning are allowed
    assert capsys.readouterr().err == ""


def test_evaluate_returns_accuracy_of_the_task():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    data = batches(0)
    learn(pn, 0, data, epochs=10)
    acc = pn.evaluate(0, data)
    with pn.task(0):
        manual = sum(int((pn.model(x).argmax(1) == y).sum()) for x, y in data) / sum(len(y) for _, y in data)
    assert acc == manual


# ---------------------------------------------------------------------------- devices and precision
def test_model_moved_after_wrapping_keeps_working():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    pn.model.to(torch.float64).to(torch.float32)  # parameters re-created by .to(): names still resolve
    learn(pn, 1, batches(1))
    assert pn.tasks == [0, 1]


def test_amp_bfloat16_on_cpu_keeps_zero_forgetting():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    x = torch.randn(4, 1, 8, 8)
    pn.train_task(0, batches(0), 1, progress=False, amp=True)
    pn.prune_and_freeze(0)
    before = outputs_per_task(pn, x)[0]
    pn.train_task(1, batches(1), 1, progress=False, amp=True, optimizer=OPTIMIZERS["adamw"])
    pn.prune_and_freeze(1)
    assert torch.equal(outputs_per_task(pn, x)[0], before)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_training_step_makes_no_host_device_sync():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net().cuda(), prune_ratio=0.5)
    learn(pn, 0, [(x.cuda(), y.cuda()) for x, y in batches(0)])
    pn.start_task(1)
    x, y = (t.cuda() for t in batches(1)[0])
    with pn.training(1) as guard:
        opt = torch.optim.AdamW(guard.parameters(), lr=1e-3, weight_decay=1e-2, foreach=True)
        for _ in range(2):  # warm-up (lazy optimizer state) outside the check
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(pn.model(x), y).backward()
            guard.mask_gradients(); opt.step(); guard.restore_frozen()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(pn.model(x), y).backward()
            guard.mask_gradients(); opt.step(); guard.restore_frozen()
        finally:
            torch.cuda.set_sync_debug_mode("default")


@cuda
def test_cuda_amp_with_grad_scaler_keeps_zero_forgetting():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    pn.model.cuda()  # moved after wrapping: owner maps follow
    data = lambda s: [(x.cuda(), y.cuda()) for x, y in batches(s)]
    x = torch.randn(4, 1, 8, 8, device="cuda")
    pn.train_task(0, data(0), 1, progress=False, amp=True)
    pn.prune_and_freeze(0)
    before = outputs_per_task(pn, x)[0]
    pn.train_task(1, data(1), 1, progress=False, amp=True)
    pn.prune_and_freeze(1)
    assert torch.equal(outputs_per_task(pn, x)[0], before)
    assert pn.owner["4.weight"].is_cuda


def test_pruning_a_diverged_task_is_refused_and_changes_nothing():
    torch.manual_seed(0)
    pn = _two_task_packnet()
    pn.train_task(1, batches(1), 1, progress=False)
    with torch.no_grad():
        pn.model[4].weight[pn.owner["4.weight"] == 0] = float("nan")
    before = snapshot(pn)
    with pytest.raises(RuntimeError, match="not finite"):
        pn.prune(1)
    after = snapshot(pn)
    assert (before["tasks"], before["stage"]) == (after["tasks"], after["stage"])
    assert all(torch.equal(before["owner"][k], after["owner"][k]) for k in before["owner"])


# ------------------------------------------------------------------ re-estimating BatchNorm statistics
def _bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_recalibrate_batchnorm_sets_exact_batch_averages_on_the_pruned_network_and_changes_no_weight():
    model, data = _bn_net(), batches(0)
    pn = PackNet(model, prune_ratio=0.75, shared_policy="per_task")
    pn.train_task(0, data, 2, progress=False)
    pn.prune(0)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    assert pn.recalibrate_batchnorm(0, data) == 1
    with torch.no_grad():  # the pruned network's per-batch statistics, averaged (momentum=None)
        feats = [model[0](x) for x, _ in data]
        mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
        var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    bn = model[1]
    assert torch.allclose(bn.running_mean, mean, atol=1e-6) and torch.allclose(bn.running_var, var, atol=1e-5)
    assert int(bn.num_batches_tracked) == len(data) and bn.momentum == 0.1
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    assert [m.training for m in model.modules()] == modes


def test_recalibrate_batchnorm_uses_only_the_first_batches_when_asked():
    model, data = _bn_net(), batches(1)
    pn = PackNet(model, shared_policy="per_task")
    pn.train_task(0, data, 1, progress=False)
    pn.prune(0)
    pn.recalibrate_batchnorm(0, data, num_batches=2)
    assert int(model[1].num_batches_tracked) == 2


def test_recalibrated_statistics_are_what_the_frozen_task_runs_with_and_later_tasks_leave_them_alone():
    model, data = _bn_net(), batches(2)
    pn = PackNet(model, shared_policy="per_task")
    pn.train_task(0, data, 1, progress=False)
    pn.prune(0)
    pn.recalibrate_batchnorm(0, data)
    stats = model[1].running_mean.clone()
    x = data[0][0]
    with torch.no_grad():
        expected = model.eval()(x)
    pn.freeze(0)
    learn(pn, 1, batches(3))
    with pn.task(0), torch.no_grad():
        assert torch.equal(model[1].running_mean, stats)
        assert torch.equal(model(x), expected)


def test_recalibrate_batchnorm_refuses_shared_statistics_and_the_wrong_stage_and_changes_nothing():
    model, data = _bn_net(), batches(4)
    pn = PackNet(model)  # first_task: later tasks share task 0's statistics
    learn(pn, 0, data)
    pn.train_task(1, data, 1, progress=False)
    with pytest.raises(RuntimeError, match="not pruned yet"):
        pn.recalibrate_batchnorm(1, data)
    pn.prune(1)
    before = snapshot(pn)
    with pytest.raises(RuntimeError, match="shared_policy='per_task'"):
        pn.recalibrate_batchnorm(1, data)
    assert_same_state(before, snapshot(pn))
    per_task = PackNet(_bn_net(), shared_policy="per_task")
    per_task.train_task(0, data, 1, progress=False)
    per_task.prune(0)
    before = snapshot(per_task)
    with pytest.raises(ValueError, match="num_batches"):
        per_task.recalibrate_batchnorm(0, data, num_batches=0)
    assert_same_state(before, snapshot(per_task))


def test_recalibrate_batchnorm_is_a_no_op_without_batchnorm():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    pn = PackNet(model)
    data = [(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))]
    pn.train_task(0, data, 1, progress=False)
    pn.prune(0)
    assert pn.recalibrate_batchnorm(0, data) == 0
