"""The lifecycle state machine (packnet.lifecycle) and the sorting of tensors into roles (packnet.roles)."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import batches, conv_bn_net, learn, snapshot, assert_same_state
from packnet import DEFAULT_PRUNABLE, PackNet, TaskHeads
from packnet.lifecycle import ABORTABLE, TRANSITIONS, Lifecycle, Stage
from packnet.roles import Roles

PACKAGE = Path(__file__).resolve().parents[1] / "packnet"


# ---------------------------------------------------------------------------- lifecycle
def test_the_transition_table_is_the_lifecycle_diagram():
    edges = {action: (t.source, t.target) for action, t in TRANSITIONS.items()}
    assert edges == {
        "start": (Stage.IDLE, Stage.TRAINING), "train": (Stage.TRAINING, Stage.TRAINING),
        "abandon": (Stage.TRAINING, Stage.IDLE), "prune": (Stage.TRAINING, Stage.PRUNED),
        "retrain": (Stage.PRUNED, Stage.PRUNED), "recalibrate": (Stage.PRUNED, Stage.PRUNED),
        "freeze": (Stage.PRUNED, Stage.IDLE), "abort": (Stage.TRAINING, Stage.IDLE),
    }
    assert ABORTABLE == (Stage.TRAINING, Stage.PRUNED)  # abort: the one step allowed from two stages


def test_a_stage_is_an_enum_member_that_equals_and_prints_as_its_string():
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    assert pn.stage is None and pn.lifecycle.stage is Stage.IDLE
    pn.train_task(0, batches(0), 1, progress=False)
    assert pn.stage is Stage.TRAINING and pn.stage == "training"
    assert str(pn.stage) == "training" and f"{pn.stage}" == "training"
    assert "task 0 training" in repr(pn)
    pn.prune(0)
    assert pn.stage is Stage.PRUNED and pn.stage == "pruned"
    pn.freeze(0)
    assert pn.stage is None and pn.tasks == [0] and pn.current is None


def test_the_stage_is_assigned_only_inside_the_lifecycle():
    """Every ``x.stage = ...`` / ``x.current = ...`` in the package is in Lifecycle.__init__ or .advance."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(func):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
                for target in targets:
                    for t in ast.walk(target):
                        if isinstance(t, ast.Attribute) and t.attr in ("stage", "current", "_stage"):
                            found.append((path.name, func.name))
    assert set(found) == {("lifecycle.py", "__init__"), ("lifecycle.py", "advance")}, found


def test_the_guard_refuses_and_changes_nothing():
    life = Lifecycle([0], 1, "pruned")
    with pytest.raises(RuntimeError, match=r"cannot prune: task 1 is already pruned: call retrain\(1, ...\)"):
        life.advance("prune", 1)
    with pytest.raises(RuntimeError, match=r"task 1 is in progress, not 2: finish it with freeze\(1\) first"):
        life.advance("freeze", 2)
    with pytest.raises(RuntimeError, match="task 0 is already frozen"):
        life.check("retrain", 0)
    with pytest.raises(RuntimeError, match=r"task 1 is not frozen yet: call freeze\(1\) before training task 2"):
        life.advance("start", 2)
    assert (life.tasks, life.current, life.stage) == ([0], 1, Stage.PRUNED)


def test_an_inconsistent_or_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown lifecycle stage 'trained'"):
        Lifecycle([], 0, "trained")
    with pytest.raises(ValueError, match="inconsistent"):
        Lifecycle([], None, "pruned")


def test_checkpoints_store_the_stage_as_a_plain_string_that_weights_only_loads():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    pn.train_task(1, batches(1), 1, progress=False)
    pn.prune(1)
    state = pn.state_dict()
    assert type(state["stage"]) is str and state["stage"] == "pruned"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = PackNet(conv_bn_net(), prune_ratio=0.5)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.stage is Stage.PRUNED and fresh.current == 1 and fresh.tasks == [0]
    idle = PackNet(conv_bn_net(), prune_ratio=0.5)
    assert idle.state_dict()["stage"] is None  # idle is stored as None, as before the stages were an enum


def test_a_checkpoint_with_an_unknown_stage_is_refused_and_changes_nothing():
    torch.manual_seed(0)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    learn(pn, 0, batches(0))
    state = pn.state_dict()
    state["current"], state["stage"] = 1, "half-pruned"
    fresh = PackNet(conv_bn_net(), prune_ratio=0.5)
    before = snapshot(fresh)
    with pytest.raises(ValueError, match="unknown lifecycle stage"):
        fresh.load_state_dict(state)
    assert_same_state(before, snapshot(fresh))


# ---------------------------------------------------------------------------- roles
def test_roles_sort_prunable_weights_heads_and_shared_parameters():
    net = conv_bn_net()
    roles = Roles(net)
    assert roles.prunable == ["0.weight", "4.weight"]
    assert roles.shared_names() == ["0.bias", "1.weight", "1.bias", "4.bias", "5.weight", "5.bias"]
    assert roles.head_task("7.heads.2.bias") == "2" and roles.head_task("4.weight") is None
    assert set(roles.shared_buffers()) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert [type(m) for m in roles.norm_modules()] == [nn.BatchNorm2d]
    assert roles.is_prunable("0.weight") and not roles.is_prunable("0.bias")


def test_excluded_modules_become_shared_and_unknown_names_are_refused():
    net = conv_bn_net()
    assert Roles(net, exclude=["4"]).prunable == ["0.weight"]
    assert "4.weight" in Roles(net, exclude=["4"]).shared_names()
    with pytest.raises(ValueError, match=r"exclude names modules the model does not have: \['nope'\]"):
        Roles(net, exclude=["nope"])
    with pytest.raises(ValueError, match="no prunable weights"):
        Roles(nn.Sequential(nn.LayerNorm(4), TaskHeads(4, 2, task_ids=[0])))


def test_packnet_uses_its_roles():
    pn = PackNet(conv_bn_net(), prune_ratio=0.5, exclude=["4"])
    assert pn.prunable_names == pn.roles.prunable == ["0.weight"] and list(pn.owner) == ["0.weight"]
    assert pn.shared_names() == pn.roles.shared_names()
    assert DEFAULT_PRUNABLE == (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
