"""The checkpoint format: what :meth:`packnet.PackNet.state_dict` writes, and what loading checks first.

A checkpoint is a plain ``dict`` of tensors, strings, lists and ``None`` (no pickled classes), so
``torch.load(path, weights_only=True)`` reads it: the model's ``state_dict``, one ``uint8`` owner map per
prunable weight, the lifecycle (frozen task ids, the task in progress, its stage as a string) and, under
``shared_policy="per_task"``, each task's copy of the shared tensors. :func:`check_checkpoint` refuses a
checkpoint that does not fit the model *before* anything is changed, with a message that says what differs.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

FORMAT = "packnet/1"
"""The ``"format"`` entry of every checkpoint; a dict without it was not written by ``PackNet.state_dict``."""


def check_checkpoint(state: Any, *, owner: Mapping[str, Tensor], model_state: Mapping[str, Tensor],
                     shared_policy: str) -> None:
    """Raise ``ValueError`` unless ``state`` is a PackNet checkpoint that fits this model and policy.

    Args:
        state: what was loaded.
        owner: the model's current owner maps (names, shapes).
        model_state: the model's current ``state_dict()`` (names, shapes).
        shared_policy: the loading PackNet's ``shared_policy``, which must be the checkpoint's.
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a PackNet checkpoint (expected format {FORMAT!r}); was it saved with "
                         "pn.state_dict()?")
    if state["shared_policy"] != shared_policy:
        raise ValueError(f"checkpoint uses shared_policy={state['shared_policy']!r}, this PackNet "
                         f"{shared_policy!r}: construct it with the same policy")
    if set(state["owner"]) != set(owner):
        raise ValueError("checkpoint does not match this model's prunable layers: "
                         f"checkpoint has {sorted(state['owner'])}, model has {sorted(owner)}")
    for n, o in state["owner"].items():
        if o.shape != owner[n].shape or o.dtype != torch.uint8:
            raise ValueError(f"owner map of {n!r} in the checkpoint is {tuple(o.shape)} {o.dtype}, the "
                             f"model's weight is {tuple(owner[n].shape)}: the checkpoint is for another model")
    saved = state["model"]
    missing, unexpected = set(model_state) - set(saved), set(saved) - set(model_state)
    bad_shapes = [n for n in set(model_state) & set(saved) if model_state[n].shape != saved[n].shape]
    if missing or unexpected or bad_shapes:
        raise ValueError(f"checkpoint does not match this model: missing {sorted(missing)}, unexpected "
                         f"{sorted(unexpected)}, different shapes {sorted(bad_shapes)}")
