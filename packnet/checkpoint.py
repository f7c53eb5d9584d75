"""The checkpoint format: what :meth:`packnet.PackNet.state_dict` writes, and what loading checks first.

A checkpoint is a plain ``dict`` of tensors, strings, numbers, lists and ``None`` (no pickled classes), so
``torch.load(path, weights_only=True)`` reads it:

* ``"format"``: :data:`FORMAT`;
* ``"model"``: the network's ``state_dict`` (its own names, also under DDP or ``torch.compile``);
* ``"owner"``: one ``uint8`` owner map per prunable weight;
* ``"tasks"``, ``"current"``, ``"stage"``: the lifecycle (frozen ids in learning order, the task in progress,
  its stage as a string);
* ``"shared_policy"`` and ``"shared_snapshots"``: under ``"per_task"``, each frozen task's copy of the shared
  tensors;
* ``"config"``: what decides the algorithm's outcome — ``prune_ratio``, ``pruning``,
  ``prunable``, ``shared_policy``;
* ``"start_state"``: for a task in progress, the tensors it may change as they were when it
  started, so :meth:`~packnet.PackNet.abort_task` works after a resume;
* ``"task_inference"`` (optional): what :mod:`packnet.task_inference` recorded.

:func:`check_checkpoint` checks *all* of it against the loading PackNet — every key, every owner map's dtype,
shape and values against the task list, the ids, the stage, every per-task snapshot — and raises
``ValueError`` saying what differs before anything is changed. Checkpoints written before ``"config"``
existed still load (nothing to compare).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from .lifecycle import Lifecycle, Stage

FORMAT = "packnet/1"
"""The ``"format"`` entry of every checkpoint; a dict without it was not written by ``PackNet.state_dict``."""

REQUIRED = ("model", "owner", "tasks", "current", "stage", "shared_policy", "shared_snapshots")
"""The entries every checkpoint has (besides ``"format"``)."""


def _describe(t: Any) -> str:
    return f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__


def check_checkpoint(state: Any, *, owner: Mapping[str, Tensor], model_state: Mapping[str, Tensor],
                     shared_policy: str, shared: Optional[Mapping[str, Tensor]] = None,
                     config: Optional[Mapping[str, Any]] = None, check_config: bool = True) -> Lifecycle:
    """Raise ``ValueError`` unless ``state`` is a PackNet checkpoint that fits this model and policy.

    Args:
        state: what was loaded.
        owner: the model's current owner maps (names, shapes).
        model_state: the model's current ``state_dict()`` (names, shapes).
        shared_policy: the loading PackNet's ``shared_policy``, which must be the checkpoint's.
        shared: the loading PackNet's shared tensors by name (names, shapes, dtypes of per-task snapshots).
        config: the loading PackNet's :attr:`~packnet.PackNet.config`, compared with the checkpoint's.
        check_config: ``False`` accepts a different ``prune_ratio`` or ``pruning`` scope (this PackNet's are
            used from now on).

    Returns:
        The checkpoint's lifecycle, validated.
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a PackNet checkpoint (expected format {FORMAT!r}); was it saved with "
                         "pn.state_dict()?")
    missing_keys = [k for k in REQUIRED if k not in state]
    if missing_keys:
        raise ValueError(f"the checkpoint lacks {missing_keys}: it is truncated or was edited by hand; "
                         "save it again with pn.state_dict()")
    if state["shared_policy"] != shared_policy:
        raise ValueError(f"checkpoint uses shared_policy={state['shared_policy']!r}, this PackNet "
                         f"{shared_policy!r}: construct it with the same policy")
    if not isinstance(state["tasks"], (list, tuple)):
        raise ValueError(f"the checkpoint's 'tasks' must be a list of task ids, got {_describe(state['tasks'])}")
    lifecycle = Lifecycle(list(state["tasks"]), state["current"], state["stage"])  # ids, stage, consistency
    _check_owner(state["owner"], owner, lifecycle)
    _check_model(state["model"], model_state)
    _check_snapshots(state["shared_snapshots"], shared, lifecycle, shared_policy)
    _check_config(state.get("config"), config, check_config)
    if state.get("start_state") is not None:
        _check_tensors("start_state", state["start_state"], model_state, subset=True)
    return lifecycle


def _check_config(saved: Any, ours: Optional[Mapping[str, Any]], check: bool) -> None:
    if saved is None or ours is None:
        return
    if not isinstance(saved, dict):
        raise ValueError(f"the checkpoint's 'config' must be a dict, got {_describe(saved)}")
    if saved.get("prunable", ours["prunable"]) != ours["prunable"]:
        raise ValueError(f"the checkpoint prunes {saved['prunable']}, this PackNet {ours['prunable']}: "
                         "construct it with the same prunable=, exclude= and prunable_params=")
    if not check:
        return
    for key in ("prune_ratio", "pruning"):
        if key in saved and saved[key] != ours[key]:
            raise ValueError(f"the checkpoint was made with {key}={saved[key]!r}, this PackNet has "
                             f"{key}={ours[key]!r}: construct it with {key}={saved[key]!r}, or pass "
                             "check_config=False to continue with this PackNet's")


def _check_owner(saved: Any, owner: Mapping[str, Tensor], lifecycle: Lifecycle) -> None:
    if not isinstance(saved, dict):
        raise ValueError(f"the checkpoint's 'owner' must be a dict of owner maps, got {_describe(saved)}")
    if set(saved) != set(owner):
        raise ValueError("checkpoint does not match this model's prunable layers: "
                         f"checkpoint has {sorted(saved)}, model has {sorted(owner)}")
    top = len(lifecycle.tasks) + (1 if lifecycle.stage is Stage.PRUNED else 0)
    for n, o in saved.items():
        if not isinstance(o, Tensor) or o.shape != owner[n].shape or o.dtype != torch.uint8:
            raise ValueError(f"owner map of {n!r} in the checkpoint is {_describe(o)}, the model's weight is "
                             f"{tuple(owner[n].shape)}: the checkpoint is for another model")
        if o.numel() and int(o.max()) > top:
            raise ValueError(f"owner map of {n!r} has owner value {int(o.max())}, but the checkpoint has only "
                             f"{top} task(s) that can own weights ({lifecycle}): it is corrupt")


def _check_tensors(what: str, saved: Any, reference: Mapping[str, Tensor], *, subset: bool = False) -> None:
    if not isinstance(saved, dict) or not all(isinstance(v, Tensor) for v in saved.values()):
        raise ValueError(f"the checkpoint's {what!r} must be a dict of tensors")
    missing = set() if subset else set(reference) - set(saved)
    unexpected = set(saved) - set(reference)
    bad = sorted(n for n in set(reference) & set(saved)
                 if saved[n].shape != reference[n].shape or saved[n].dtype != reference[n].dtype)
    if missing or unexpected or bad:
        raise ValueError(f"checkpoint's {what!r} does not match this model: missing {sorted(missing)}, "
                         f"unexpected {sorted(unexpected)}, different shapes or dtypes {bad}")


def _check_model(saved: Any, model_state: Mapping[str, Tensor]) -> None:
    if not isinstance(saved, dict):
        raise ValueError(f"the checkpoint's 'model' must be a state_dict, got {_describe(saved)}")
    missing, unexpected = set(model_state) - set(saved), set(saved) - set(model_state)
    bad_shapes = [n for n in set(model_state) & set(saved)
                  if not isinstance(saved[n], Tensor) or model_state[n].shape != saved[n].shape]
    if missing or unexpected or bad_shapes:
        hint = (" (names start with '_orig_mod.' or 'module.': it was saved from a torch.compile / DDP "
                "wrapper's state_dict; save pn.state_dict() instead)"
                if any(n.startswith(("_orig_mod.", "module.")) for n in unexpected) else "")
        raise ValueError(f"checkpoint does not match this model: missing {sorted(missing)}, unexpected "
                         f"{sorted(unexpected)}, different shapes {sorted(bad_shapes)}{hint}")


def _check_snapshots(saved: Any, shared: Optional[Mapping[str, Tensor]], lifecycle: Lifecycle,
                     shared_policy: str) -> None:
    if not isinstance(saved, dict):
        raise ValueError(f"the checkpoint's 'shared_snapshots' must be a dict, got {_describe(saved)}")
    if shared_policy != "per_task":
        if saved:
            raise ValueError("the checkpoint has per-task shared snapshots but shared_policy='first_task'")
        return
    if set(saved) != set(lifecycle.tasks):
        raise ValueError(f"the checkpoint's per-task shared snapshots are for {list(saved)}, its frozen tasks "
                         f"are {lifecycle.tasks}: every frozen task needs exactly one")
    if shared is not None:
        for t, snap in saved.items():
            _check_tensors(f"shared_snapshots[{t!r}]", snap, shared)
