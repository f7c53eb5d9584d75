"""PackNet never loses a task silently: interrupts, the task view, checkpoints, ids, real models and loops.

Every test here failed on the code before this hardening (issue 11) and states a promise of the README's
"Guarantees and limits" section. Refusals are checked twice: the error names the problem, and nothing changed.
"""

from __future__ import annotations

import ast
import copy
import io
import pathlib
import re

import pytest
import torch
from torch import nn

from helpers import OPTIMIZERS, assert_same_state, batches, conv_bn_net, learn, snapshot
from packnet import PackNet, TaskHeads, WeightGuard
from packnet.lifecycle import Lifecycle

ROOT = pathlib.Path(__file__).resolve().parents[1]
X = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(99))


class Boom(Exception):
    """The fault the tests inject."""


def task_outputs(pn: PackNet, x: torch.Tensor = X) -> dict:
    out = {}
    for t in pn.tasks:
        with pn.task(t):
            out[t] = pn.model(x).detach().clone()
    return out


def frozen_state(pn: PackNet) -> dict:
    """What no later phase may change: earlier tasks' weights and heads, frozen shared tensors, outputs."""
    params = dict(pn.module.named_parameters())
    state = {"outputs": task_outputs(pn)}
    for n in pn.prunable_names:
        owned = (pn.owner[n] >= 1) & (pn.owner[n] <= len(pn.tasks))
        state[n] = (owned, params[n].detach()[owned].clone())
    for n, p in params.items():
        head = pn.roles.head_task(n)
        if head is not None and head in {str(t) for t in pn.tasks}:
            state[n] = p.detach().clone()
    if pn.shared_policy == "first_task":
        state.update({n: params[n].detach().clone() for n in pn.shared_names()})
        state.update({n: b.clone() for n, b in pn.roles.shared_buffers().items()})
    return state


def assert_frozen_intact(before: dict, pn: PackNet) -> None:
    after, now = frozen_state(pn), {**dict(pn.module.named_parameters()), **dict(pn.module.named_buffers())}
    for t, out in before["outputs"].items():
        assert torch.equal(out, after["outputs"][t]), f"task {t}'s outputs changed"
    for n, v in before.items():
        if n in pn.owner:
            owned, values = v
            assert torch.equal(now[n].detach()[owned], values), f"{n} changed"
        elif n != "outputs":
            assert torch.equal(v, now[n]), f"{n} changed"


@pytest.fixture(scope="module")
def one_task_learned() -> dict:
    """Task 0 learned and frozen, per optimizer and shared policy (copied by each test)."""
    learned = {}
    for policy in ("first_task", "per_task"):
        for name, make in OPTIMIZERS.items():
            torch.manual_seed(0)
            pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy=policy)
            learn(pn, 0, batches(0), make)
            learned[policy, name] = pn
    return learned


# ---------------------------------------------------------------------------- 1. interrupt-safe phases
class FaultyLoader:
    """Batches that raise ``error`` when batch number ``at`` (1-based) is requested."""

    def __init__(self, data: list, at: int, error: BaseException) -> None:
        self.data, self.at, self.error = data, at, error

    def __iter__(self):
        for i, batch in enumerate(self.data, start=1):
            if i == self.at:
                raise self.error
            yield batch


def inject(point: str, pn: PackNet, at: int, error: BaseException) -> dict:
    """Arguments for train_task / retrain that raise ``error`` at step ``at`` at ``point`` of a step."""
    calls = {"n": 0}

    def nth() -> bool:
        calls["n"] += 1
        return calls["n"] == at

    data = batches(1)
    kwargs: dict = {}
    if point == "loader":
        return {"loader": FaultyLoader(data, at, error)}
    if point == "forward":
        def pre_hook(module, args):
            if nth():
                raise error
        handle = pn.module[4].register_forward_pre_hook(pre_hook)
        kwargs["cleanup"] = handle.remove
    elif point == "criterion":
        def criterion(out, y):
            if nth():
                raise error
            return nn.functional.cross_entropy(out, y)
        kwargs["criterion"] = criterion
    elif point == "backward":
        def criterion(out, y):
            def hook(grad):  # runs inside backward()
                raise error
            loss = nn.functional.cross_entropy(out, y)
            if nth():
                out.register_hook(hook)
            return loss
        kwargs["criterion"] = criterion
    elif point in ("step_pre_hook", "inside_step"):  # inside optimizer.step(): before / after the update
        def make(params, _make=kwargs.get("optimizer")):
            opt = OPTIMIZERS[pn._test_optimizer](params)

            def hook(*_):
                if nth():
                    raise error
            (opt.register_step_pre_hook if point == "step_pre_hook" else opt.register_step_post_hook)(hook)
            return opt
        kwargs["optimizer"] = make
    elif point == "scheduler":  # at the end of an epoch
        def make_scheduler(opt):
            class Faulty:
                def step(self):
                    if nth():
                        raise error
            return Faulty()
        kwargs["scheduler"] = make_scheduler
    kwargs["loader"] = data
    return kwargs


POINTS = ["loader", "forward", "criterion", "backward", "step_pre_hook", "inside_step", "scheduler"]


def run_phase(pn: PackNet, phase: str, loader, optimizer, **kwargs) -> None:
    call = pn.train_task if phase == "train" else pn.retrain
    call(1, loader, 2, optimizer=optimizer, progress=False, **kwargs)


@pytest.mark.parametrize("step", ["fused", "general"])
@pytest.mark.parametrize("policy", ["first_task", "per_task"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("phase", ["train", "retrain"])
@pytest.mark.parametrize("point", POINTS)
def test_a_fault_anywhere_in_a_step_loses_nothing_and_the_phase_can_be_run_again(
        one_task_learned, point, phase, optimizer, policy, step):
    """On both training-step paths (WeightGuard.step fused for these optimizers, and the general one)."""
    pn = copy.deepcopy(one_task_learned[policy, optimizer])
    pn._test_optimizer = optimizer
    pn.fused_step = step == "fused"
    make = OPTIMIZERS[optimizer]
    if phase == "retrain":
        pn.train_task(1, batches(1), 1, optimizer=make, progress=False)
        pn.prune(1)
    before = frozen_state(pn)
    at = 3 if point != "scheduler" else 1  # a fault after some steps: the task stays in progress
    for error in (Boom("injected"), KeyboardInterrupt()):
        kwargs = inject(point, pn, at, error)
        cleanup = kwargs.pop("cleanup", None)
        loader = kwargs.pop("loader")
        kwargs.setdefault("optimizer", make)
        with pytest.raises(type(error)):
            run_phase(pn, phase, loader, **kwargs)
        if cleanup:
            cleanup()
        assert_frozen_intact(before, pn)
        assert pn.current == 1 and pn.stage == ("training" if phase == "train" else "pruned")
        if phase == "retrain":  # pruned weights are still exactly zero
            params = dict(pn.module.named_parameters())
            for n in pn.prunable_names:
                assert not params[n].detach()[pn.owner[n] == 0].any(), n
    run_phase(pn, phase, batches(1), make)  # continue the task as if nothing happened
    if phase == "train":
        pn.prune(1)
    pn.freeze(1)
    assert_frozen_intact(before, pn)


@pytest.mark.parametrize("point", ["forward", "inside_step"])
def test_a_fault_in_the_very_first_step_of_a_new_task_leaves_everything_as_it_was(one_task_learned, point):
    pn = copy.deepcopy(one_task_learned["first_task", "adamw"])
    pn._test_optimizer = "adamw"
    before = snapshot(pn)
    kwargs = inject(point, pn, 1, Boom("first step"))
    cleanup = kwargs.pop("cleanup", None)
    with pytest.raises(Boom):
        pn.train_task(1, kwargs.pop("loader"), 1, progress=False, **kwargs)
    if cleanup:
        cleanup()
    assert_same_state(before, snapshot(pn))  # idle again, the free weights as they were


def _hand_loop(pn: PackNet, task: int, restore: bool, train_bn: bool = False) -> None:
    with pn.training(task) as guard:
        if train_bn:
            pn.model.train()  # the user's loop puts frozen BatchNorm back in train mode
        opt = torch.optim.AdamW(guard.parameters(), lr=0.05, weight_decay=0.5)
        for x, y in batches(task):
            opt.zero_grad()
            nn.functional.cross_entropy(pn.model(x), y).backward()
            guard.mask_gradients()
            opt.step()
            if restore:
                guard.restore_frozen()


def test_a_forgotten_restore_frozen_is_detected_and_undone(one_task_learned):
    pn = copy.deepcopy(one_task_learned["first_task", "adamw"])
    before = frozen_state(pn)
    pn.start_task(1)
    free_before = pn.module[4].weight.detach()[pn.owner["4.weight"] == 0].clone()
    with pytest.raises(RuntimeError, match=r"restore_frozen\(\) after every optimizer.step\(\)") as info:
        _hand_loop(pn, 1, restore=False)
    assert "4.weight" in str(info.value) and "0.weight" in str(info.value)
    assert_frozen_intact(before, pn)
    assert not torch.equal(free_before, pn.module[4].weight.detach()[pn.owner["4.weight"] == 0])  # kept
    _hand_loop(pn, 1, restore=True)  # with the call, no complaint


def test_frozen_batchnorm_statistics_changed_by_a_hand_written_loop_are_restored_with_a_warning(
        one_task_learned):
    pn = copy.deepcopy(one_task_learned["first_task", "sgd_momentum_wd"])
    before = frozen_state(pn)
    pn.start_task(1)
    with pytest.warns(RuntimeWarning, match="frozen buffers"):
        _hand_loop(pn, 1, restore=True, train_bn=True)
    assert_frozen_intact(before, pn)


def test_weight_guard_reports_exactly_the_changed_frozen_parameters():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    guard = WeightGuard.from_specs([(a.weight, torch.tensor([[True] * 3, [False] * 3])), (b.weight, False),
                                    (a.bias, True)])
    assert guard.changed_frozen() == []
    with torch.no_grad():
        a.weight[0] += 1  # trainable row: not a change
        a.bias += 1
    assert guard.changed_frozen() == []
    with torch.no_grad():
        a.weight[1, 0] = -0.0 if a.weight[1, 0] == 0 else 0.0  # one bit pattern of a frozen entry
        b.weight.mul_(-1)
    assert [id(p) for p in guard.changed_frozen()] == [id(a.weight), id(b.weight)]
    guard.restore_frozen()
    assert guard.changed_frozen() == []


# ---------------------------------------------------------------------------- 2. the guarded task view
def _pn_at(stage: str) -> PackNet:
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    learn(pn, 0, batches(0))
    pn.train_task(1, batches(1), 1, progress=False)
    if stage == "pruned":
        pn.prune(1)
    return pn


INSIDE = {
    "train_task": ("training", lambda pn: pn.train_task(1, batches(1), 1, progress=False)),
    "new task": ("idle", lambda pn: pn.train_task(1, batches(1), 1, progress=False)),
    "start_task": ("idle", lambda pn: pn.start_task(1)),
    "training": ("training", lambda pn: pn.training(1).__enter__()),
    "prune": ("training", lambda pn: pn.prune(1)),
    "prune_and_freeze": ("training", lambda pn: pn.prune_and_freeze(1)),
    "retrain": ("pruned", lambda pn: pn.retrain(1, batches(1), 1, progress=False)),
    "recalibrate": ("pruned", lambda pn: pn.recalibrate_batchnorm(1, batches(1))),
    "freeze": ("pruned", lambda pn: pn.freeze(1)),
    "abort_task": ("pruned", lambda pn: pn.abort_task()),
    "state_dict": ("pruned", lambda pn: pn.state_dict()),
    "save": ("pruned", lambda pn: pn.save(io.BytesIO())),
    "load_state_dict": ("pruned", None),
    "evaluate": ("pruned", lambda pn: pn.evaluate(0, batches(0))),
    "nested view": ("pruned", lambda pn: pn.task(0).__enter__()),
    "export": ("pruned", lambda pn: pn.export(0)),
    "infer_task": ("pruned", lambda pn: pn.infer_task(X)),
}


@pytest.mark.parametrize("view_of", [0, 1])
@pytest.mark.parametrize("call", sorted(INSIDE))
def test_every_call_that_would_act_on_the_view_is_refused_inside_it_and_changes_nothing(call, view_of):
    stage, action = INSIDE[call]
    if stage == "idle":
        torch.manual_seed(0)
        pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
        learn(pn, 0, batches(0))
        view_of = 0
    else:
        pn = _pn_at(stage)
    if action is None:
        checkpoint = pn.state_dict()
        action = lambda pn: pn.load_state_dict(checkpoint)  # noqa: E731
    before, outputs = snapshot(pn), task_outputs(pn)
    with pn.task(view_of):
        inside = pn.model(X).detach().clone()
        with pytest.raises(RuntimeError, match=r"inside `with pn.task\(" + str(view_of)):
            action(pn)
        assert torch.equal(pn.model(X), inside)  # the view is intact
    assert_same_state(before, snapshot(pn))
    assert all(torch.equal(o, task_outputs(pn)[t]) for t, o in outputs.items())


def test_whatever_a_block_does_to_a_frozen_task_inside_its_view_is_discarded():
    pn = _pn_at("pruned")
    before = snapshot(pn)
    with pn.task(0):
        opt = torch.optim.SGD(pn.model.parameters(), lr=1.0)
        nn.functional.cross_entropy(pn.model(X), torch.zeros(8, dtype=torch.long)).backward()
        opt.step()  # every parameter, visible weights, biases and task 0's head included
        pn.model.train()
        pn.model(X)  # BatchNorm statistics too
    for p in pn.model.parameters():
        p.grad = None
    assert_same_state(before, snapshot(pn))


# ---------------------------------------------------------------------------- 3. checkpoints
def _pn_two_frozen(policy: str = "per_task", **kwargs) -> PackNet:
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy=policy, **kwargs)
    learn(pn, 0, batches(0))
    learn(pn, 1, batches(1))
    return pn


def _edit(key: str, value):
    def edit(state: dict) -> None:
        if value is KeyError:
            del state[key]
        else:
            state[key] = value(state) if callable(value) else value
    return edit


def _owner_value(state):
    owner = {n: o.clone() for n, o in state["owner"].items()}
    owner["0.weight"].view(-1)[0] = 3
    return owner


def _owner_dtype(state):
    return {n: o.to(torch.int64) for n, o in state["owner"].items()}


def _drop_snapshot(state):
    return {t: s for t, s in state["shared_snapshots"].items() if t != 1}


def _snapshot_shape(state):
    snaps = copy.deepcopy(state["shared_snapshots"])
    snaps[0]["1.weight"] = torch.zeros(3)
    return snaps


def _missing_weight(state):
    return {n: v for n, v in state["model"].items() if n != "4.weight"}


BAD_CHECKPOINTS = {
    "no owner": (_edit("owner", KeyError), "lacks \\['owner'\\]"),
    "no shared_snapshots": (_edit("shared_snapshots", KeyError), "lacks"),
    "no model": (_edit("model", KeyError), "lacks"),
    "owner value above the task count": (_edit("owner", _owner_value), "owner value 3"),
    "owner dtype": (_edit("owner", _owner_dtype), "int64"),
    "duplicate ids": (_edit("tasks", [0, 0]), "same task"),
    "colliding ids": (_edit("tasks", [0, "0"]), "same task"),
    "float id": (_edit("tasks", [0, 1.0]), "int or str"),
    "tasks not a list": (_edit("tasks", "01"), "list of task ids"),
    "unknown stage": (_edit("stage", "frozen"), "unknown lifecycle stage"),
    "stage without a task": (_edit("stage", "training"), "inconsistent lifecycle"),
    "current already frozen": (lambda s: s.update(current=1, stage="training"), "same task"),
    "a snapshot missing": (_edit("shared_snapshots", _drop_snapshot), "every frozen task needs exactly one"),
    "a snapshot of the wrong shape": (_edit("shared_snapshots", _snapshot_shape), "different shapes"),
    "a weight missing": (_edit("model", _missing_weight), "missing \\['4.weight'\\]"),
    "another prune ratio": (lambda s: s["config"].update(prune_ratio=0.75), "prune_ratio=0.75"),
    "another scope": (lambda s: s["config"].update(pruning="global"), "pruning='global'"),
    "compiled names": (_edit("model", lambda s: {"_orig_mod." + n: v for n, v in s["model"].items()}),
                       "_orig_mod"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_is_refused_before_anything_changes(case):
    edit, message = BAD_CHECKPOINTS[case]
    source = _pn_two_frozen()
    state = copy.deepcopy(source.state_dict())
    edit(state)
    torch.manual_seed(1)
    target = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    learn(target, 2, batches(3))  # a different state, which must survive the refusal
    before = snapshot(target)
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(state)
    assert_same_state(before, snapshot(target))


def test_a_checkpoint_with_another_prune_ratio_loads_when_asked_and_keeps_this_packnets():
    state = _pn_two_frozen().state_dict()
    target = PackNet(conv_bn_net(), prune_ratio=0.8, shared_policy="per_task")
    target.load_state_dict(state, check_config=False)
    assert target.tasks == [0, 1] and target.prune_ratio == 0.8


def test_the_checkpoint_stores_the_configuration_and_loads_with_weights_only(tmp_path):
    pn = _pn_two_frozen(pruning="global")
    pn.save(tmp_path / "pn.pt")
    state = torch.load(tmp_path / "pn.pt", weights_only=True)
    assert state["config"] == {"prune_ratio": 0.5, "pruning": "global", "prunable": ["0.weight", "4.weight"],
                               "shared_policy": "per_task"}
    other = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task", pruning="global")
    other.load_state_dict(state)
    assert all(torch.equal(o, task_outputs(other)[t]) for t, o in task_outputs(pn).items())


def test_a_checkpoint_written_before_the_config_existed_still_loads():
    pn = _pn_two_frozen()
    state = pn.state_dict()
    for key in ("config", "start_state", "task_inference"):
        del state[key]
    other = PackNet(conv_bn_net(), prune_ratio=0.9, shared_policy="per_task")
    other.load_state_dict(state)
    assert all(torch.equal(o, task_outputs(other)[t]) for t, o in task_outputs(pn).items())


# ---------------------------------------------------------------------------- 4. task ids
def test_an_id_whose_str_collides_with_a_learned_task_is_refused_and_changes_nothing():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    before = snapshot(pn)
    with pytest.raises(ValueError, match="collides with task 0"):
        pn.train_task("0", batches(1), 1, progress=False)
    assert_same_state(before, snapshot(pn))
    with pytest.raises(TypeError, match="int or str"):
        pn.task(0.0).__enter__()
    assert_same_state(before, snapshot(pn))


def test_task_heads_refuse_colliding_and_existing_ids():
    with pytest.raises(ValueError, match="share one head"):
        TaskHeads(4, 2, task_ids=[0, "0"])
    heads = TaskHeads(4, 2, task_ids=[0, 1])
    old = heads.head(0)
    with pytest.raises(KeyError, match="already has a head for task '0'"):
        heads.add("0", nn.Linear(4, 2))
    assert heads.head(0) is old
    heads.add(1, nn.Linear(4, 3), replace=True)
    assert heads.head(1).out_features == 3


def test_a_lifecycle_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="same task"):
        Lifecycle([1, "1"])
    with pytest.raises(ValueError, match="same task"):
        Lifecycle([1], 1, "training")


# ---------------------------------------------------------------------------- 5. the models users have
def test_a_weight_the_user_froze_is_not_prunable_and_never_changes():
    torch.manual_seed(0)
    model = conv_bn_net()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    pn = PackNet(model, prune_ratio=0.5)
    assert pn.prunable_names == ["4.weight"] and "0.weight" in pn.shared_names()
    learn(pn, 0, batches(0), OPTIMIZERS["adamw"])
    learn(pn, 1, batches(1), OPTIMIZERS["adamw"])
    assert torch.equal(model[0].weight, frozen)


def test_pruning_refuses_a_prunable_weight_frozen_after_wrapping_and_changes_nothing():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    pn.train_task(0, batches(0), 1, progress=False)
    pn.module[0].weight.requires_grad_(False)
    before = snapshot(pn)
    with pytest.raises(RuntimeError, match=r"\['0.weight'\] have requires_grad=False"):
        pn.prune(0)
    assert_same_state(before, snapshot(pn))


class Tied(nn.Module):
    """An encoder and a decoder sharing one weight matrix (weight tying)."""

    def __init__(self) -> None:
        super().__init__()
        self.encode, self.decode = nn.Linear(6, 6), nn.Linear(6, 6)
        self.decode.weight = self.encode.weight
        self.heads = TaskHeads(6, 3, task_ids=[0, 1])

    def forward(self, x):
        return self.heads(torch.relu(self.decode(torch.relu(self.encode(x)))))


def _vectors(seed: int, dim: int = 6) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, dim, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(3)]


def _two_tasks_exact(pn: PackNet, data=_vectors, x=None, optimizer="adamw") -> None:
    x = data(9)[0][0] if x is None else x
    learn(pn, 0, data(0), OPTIMIZERS[optimizer])
    with pn.task(0):
        before = pn.model(x).detach().clone()
    learn(pn, 1, data(1), OPTIMIZERS[optimizer])
    with pn.task(0):
        assert torch.equal(pn.model(x), before)
    with pn.task(1):
        assert not torch.equal(pn.model(x), before)


def test_tied_weights_are_one_prunable_tensor_with_one_owner_map():
    torch.manual_seed(0)
    pn = PackNet(Tied(), prune_ratio=0.5)
    assert pn.prunable_names == ["encode.weight"]
    _two_tasks_exact(pn)


def test_a_compiled_model_uses_the_inner_modules_names_and_its_checkpoint_loads_into_the_plain_model():
    torch.manual_seed(0)
    plain = Tied()
    pn = PackNet(torch.compile(plain, backend="eager"), prune_ratio=0.5)
    assert pn.prunable_names == ["encode.weight"] and pn.module is plain
    learn(pn, 0, _vectors(0))
    state = pn.state_dict()
    assert not any(n.startswith("_orig_mod") for n in state["model"])
    other = PackNet(Tied(), prune_ratio=0.5)
    other.load_state_dict(state)
    x = _vectors(9)[0][0]
    with pn.task(0):
        a = pn.model(x)
    with other.task(0):
        assert torch.equal(a, other.model(x))


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.lstm = nn.LSTM(6, 6, batch_first=True)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.up = nn.ConvTranspose1d(6, 6, 3)
        self.heads = TaskHeads(6, 3, task_ids=[0, 1])

    def forward(self, tokens):
        h, _ = self.lstm(self.embed(tokens))
        h, _ = self.attn(h, h, h, need_weights=False)
        h = self.up(h.transpose(1, 2)).mean(2)
        return self.heads(h)


def _tokens(seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 10, (8, 5), generator=g), torch.randint(0, 3, (8,), generator=g))
            for _ in range(3)]


def test_embedding_lstm_attention_and_transposed_convolutions_can_be_made_prunable():
    torch.manual_seed(0)
    pn = PackNet(Recurrent(), prune_ratio=0.5, prunable=(nn.Linear, nn.Embedding, nn.ConvTranspose1d),
                 prunable_params=["lstm.weight_ih_l0", "lstm.weight_hh_l0", "attn.in_proj_weight"])
    assert pn.prunable_names == ["embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                                 "attn.in_proj_weight", "attn.out_proj.weight", "up.weight"]
    _two_tasks_exact(pn, _tokens, optimizer="sgd_momentum_wd")


@pytest.mark.parametrize("names, message", [
    (["lstm.weight"], "not a parameter"), (["heads.heads.0.weight"], "inside a TaskHeads"),
])
def test_prunable_params_that_cannot_be_pruned_are_refused(names, message):
    with pytest.raises(ValueError, match=message):
        PackNet(Recurrent(), prunable_params=names)


def test_prunable_params_refuses_a_tensor_with_requires_grad_false():
    model = Recurrent()
    model.lstm.weight_ih_l0.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad=False"):
        PackNet(model, prunable_params=["lstm.weight_ih_l0"])


# ---------------------------------------------------------------------------- 6. the loops users write
class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(32):
            yield torch.randn(1, 8, 8, generator=g), int(torch.randint(0, 3, (), generator=g))


def test_a_streaming_loader_without_a_length_trains():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    loader = torch.utils.data.DataLoader(Stream(), batch_size=8)
    history = pn.train_task(0, loader, 2, progress=False)
    assert len(history) == 2 and pn._steps_taken == 8


def test_a_scheduler_factory_is_stepped_once_per_epoch_in_both_phases():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    made = []

    def scheduler(opt):
        made.append(torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
        return made[-1]
    pn.train_task(0, batches(0), 3, scheduler=scheduler, progress=False)
    pn.prune(0)
    pn.retrain(0, batches(0), 2, scheduler=scheduler, progress=False)
    assert [s.get_last_lr()[0] for s in made] == pytest.approx([0.01 / 8, 0.01 / 4])


@pytest.mark.parametrize("kwargs, message", [
    ({"optimiser": OPTIMIZERS["adam"]}, "unexpected keyword argument 'optimiser'"),
    ({"optimizer": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)}, "not a ready SGD"),
    ({"scheduler": 3}, "scheduler must be a factory"),
])
def test_retrain_takes_train_tasks_arguments_and_refuses_others(kwargs, message):
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    pn.train_task(0, batches(0), 1, progress=False)
    pn.prune(0)
    before = snapshot(pn)
    with pytest.raises(TypeError, match=message):
        pn.retrain(0, batches(0), 1, progress=False, **kwargs)
    assert_same_state(before, snapshot(pn))


@pytest.mark.parametrize("batch", [
    (torch.randn(4, 1, 8, 8),), {"x": torch.randn(4, 1, 8, 8)}, (torch.randn(4, 1, 8, 8), [0, 1, 2, 0]),
])
def test_a_batch_that_is_not_inputs_and_targets_gets_a_clear_error_and_changes_nothing(batch):
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    before = snapshot(pn)
    with pytest.raises(TypeError, match=r"pair \(inputs, targets\)"):
        pn.train_task(1, [batch], 1, progress=False)
    assert_same_state(before, snapshot(pn))


def test_a_full_network_gets_a_clear_error_and_changes_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    pn = PackNet(net, prune_ratio=0.0)
    learn(pn, 0, batches(0))  # keeps every weight: nothing free is left, and the bias is frozen
    before = snapshot(pn)
    with pytest.raises(RuntimeError, match="nothing can learn for task 1.*the network is full"):
        pn.train_task(1, batches(1), 1, progress=False)
    assert_same_state(before, snapshot(pn))


def test_a_layer_whose_share_rounds_to_nothing_is_reported():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.Linear(2, 3))  # round(0.95 * 6) = 6
    pn = PackNet(net, prune_ratio=0.95)
    pn.train_task(0, batches(0), 1, progress=False)
    with pytest.warns(UserWarning, match=r"keeps no weight in \['2.weight'\]") as record:
        pn.prune(0)
    assert len(record) == 1  # the 128-weight layer keeps round(0.05 * 128) = 6: not reported


# ---------------------------------------------------------------------------- 7. recovery
def _diverge(pn: PackNet, task) -> None:
    pn.train_task(task, batches(1), 1, optimizer=lambda ps: torch.optim.SGD(ps, lr=1e30), progress=False)


@pytest.mark.parametrize("stage", ["training", "pruned"])
def test_abort_task_gives_up_the_task_and_the_same_id_trains_again_from_the_start(stage):
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    learn(pn, 0, batches(0))
    before, outputs = snapshot(pn), task_outputs(pn)
    if stage == "training":
        _diverge(pn, 1)
        with pytest.raises(RuntimeError, match="abort_task"):
            pn.prune(1)
    else:
        pn.train_task(1, batches(1), 1, progress=False)
        pn.prune(1)
    assert pn.abort_task() == 1
    assert_same_state(before, snapshot(pn))  # weights, owner maps, buffers, lifecycle: as before task 1
    assert all(torch.equal(o, task_outputs(pn)[t]) for t, o in outputs.items())
    torch.manual_seed(5)
    learn(pn, 1, batches(1))
    reference = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    reference.load_state_dict(_reload(before, pn))
    torch.manual_seed(5)
    learn(reference, 1, batches(1))
    for a, b in zip(pn.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)  # the retried task is exactly a first attempt


def _reload(before: dict, pn: PackNet) -> dict:
    """A checkpoint of the state ``before`` (taken by ``snapshot``) with ``pn``'s configuration."""
    return {"format": "packnet/1", "model": before["model"], "owner": before["owner"],
            "tasks": before["tasks"], "current": None, "stage": None, "shared_policy": pn.shared_policy,
            "shared_snapshots": before["shared"]}


def test_abort_task_without_a_task_in_progress_is_refused():
    pn = _pn_two_frozen()
    before = snapshot(pn)
    with pytest.raises(RuntimeError, match="nothing to abort"):
        pn.abort_task()
    assert_same_state(before, snapshot(pn))


def test_abort_task_works_after_resuming_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    before = snapshot(pn)
    _diverge(pn, 1)
    pn.save(tmp_path / "diverged.pt")
    resumed = PackNet(conv_bn_net(), prune_ratio=0.5)
    resumed.load_state_dict(torch.load(tmp_path / "diverged.pt", weights_only=True))
    resumed.abort_task()
    assert_same_state(before, snapshot(resumed))


# ---------------------------------------------------------------------------- 8. the Python it needs
def test_requires_python_is_what_the_code_needs():
    pyproject = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', pyproject)
    assert minimum and minimum.group(1) == "10", "requires-python must be >=3.10"
    for path in sorted((ROOT / "packnet").rglob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


# ---------------------------------------------------------------------------- checkpoints carry task inference
def test_task_inference_records_travel_in_the_checkpoint_and_are_validated(tmp_path):
    pn = _pn_two_frozen()
    for t in pn.tasks:
        pn.calibrate_task_inference(t, batches(t), n_components=4)
    expected = pn.infer_task(X)
    pn.save(tmp_path / "pn.pt")
    state = torch.load(tmp_path / "pn.pt", weights_only=True)
    other = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    other.load_state_dict(state)
    assert other.infer_task(X) == expected
    bad = _pn_two_frozen().state_dict()
    bad["task_inference"] = state["task_inference"]
    bad["tasks"], bad["shared_snapshots"] = [0], {0: bad["shared_snapshots"][0]}
    bad["owner"] = {n: o.clamp(max=1) for n, o in bad["owner"].items()}
    target = PackNet(conv_bn_net(), prune_ratio=0.5, shared_policy="per_task")
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"records of \[1\]"):
        target.load_state_dict(bad)
    assert_same_state(before, snapshot(target))
    assert target.task_inference is None


def test_abort_task_keeps_the_records_of_frozen_tasks():
    pn = _pn_two_frozen()
    pn.calibrate_task_inference(0, batches(0), n_components=4)
    pn.train_task(2, batches(2), 1, progress=False)
    pn.abort_task()
    assert pn.task_inference.tasks == [0]
