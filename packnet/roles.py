"""The roles of a model's tensors under PackNet: prunable weights, task heads, shared parameters.

PackNet treats a network's tensors in three ways, decided once, when it wraps the model:

* **prunable** weights — the ``weight`` of every module of a prunable type (``Conv1d/2d/3d`` and ``Linear`` by
  default, :data:`DEFAULT_PRUNABLE`), outside task heads and outside the modules named in ``exclude``: each
  gets an owner map and is shared out between tasks by pruning;
* **head** parameters — everything inside a :class:`~packnet.TaskHeads`: task ``t``'s head learns only while
  ``t`` trains, and is never pruned;
* **shared** — every other parameter (biases, normalisation affine parameters, weights of excluded modules)
  and every buffer outside the heads (BatchNorm running statistics), handled by PackNet's ``shared_policy``.

:class:`Roles` does that sorting and answers "what is this tensor?" afterwards. It holds names, not tensors,
so it stays valid when the model moves to another device.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from .heads import TaskHeads

__all__ = ["Roles", "DEFAULT_PRUNABLE"]

DEFAULT_PRUNABLE: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""Module types whose ``weight`` PackNet prunes by default (their biases are *shared* parameters)."""


class Roles:
    """Which of ``module``'s tensors are prunable, which belong to a task head, and which are shared.

    Args:
        module: the network (not a ``DistributedDataParallel`` wrapper: names are the network's own).
        prunable: module types whose ``weight`` is prunable. A ``weight`` with ``requires_grad=False`` (a
            layer the user froze) is not prunable: it becomes shared, and nothing ever changes it.
        exclude: names of modules (as in ``module.named_modules()``) whose weights must not be pruned; their
            parameters become shared.
        prunable_params: names of further parameters to prune (as in ``module.named_parameters()``), for
            tensors not called ``weight`` or modules of other types: ``"lstm.weight_ih_l0"``,
            ``"attn.in_proj_weight"``.

    A weight tied to another (one tensor registered under two names, e.g. an output layer sharing the
    embedding matrix) is one tensor with one owner map, named by its first name in ``named_parameters()``.

    Raises:
        ValueError: if ``exclude`` names a module the model does not have, or nothing is left to prune.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), TaskHeads(8, 2, task_ids=[0, 1]))
        >>> roles = Roles(net, exclude=["2"])
        >>> roles.prunable
        ['0.weight']
        >>> roles.shared_names()
        ['0.bias', '2.weight', '2.bias']
        >>> roles.head_task("3.heads.1.weight")
        '1'
    """

    def __init__(self, module: nn.Module, prunable: Sequence[type[nn.Module]] = DEFAULT_PRUNABLE,
                 exclude: Iterable[str] = (), prunable_params: Iterable[str] = ()) -> None:
        exclude = set(exclude)
        unknown = exclude - {name for name, _ in module.named_modules()}
        if unknown:
            raise ValueError(f"exclude names modules the model does not have: {sorted(unknown)}")
        self.module = module
        self.heads: dict[str, TaskHeads] = {n: m for n, m in module.named_modules()
                                            if isinstance(m, TaskHeads)}
        """Every :class:`~packnet.TaskHeads` of the model, by module name."""
        params = dict(module.named_parameters())  # one name per tensor: a tied weight has its first name
        name_of = {id(p): n for n, p in params.items()}
        chosen: set[str] = set()
        for name, sub in module.named_modules():
            if name in exclude or self.head_prefix(name + ".") is not None:
                continue
            weight = getattr(sub, "weight", None)
            if isinstance(sub, tuple(prunable)) and isinstance(weight, nn.Parameter) and weight.requires_grad:
                chosen.add(name_of[id(weight)])  # tied weights: one tensor, one owner map
        for name in prunable_params:
            chosen.add(self._check_prunable_param(name, params))
        self.prunable: list[str] = [n for n in params if n in chosen]
        """Names of the prunable weight parameters, in model order (tied weights once, by their first name)."""
        if not self.prunable:
            raise ValueError(
                "the model has no prunable weights: PackNet prunes the weights of "
                f"{[t.__name__ for t in prunable]} modules (outside TaskHeads and `exclude`, and with "
                "requires_grad=True); pass prunable=... to choose other module types, or prunable_params=[...] "
                "to name parameters"
            )
        self._prunable_set = set(self.prunable)

    def _check_prunable_param(self, name: str, params: dict[str, nn.Parameter]) -> str:
        if name not in params:
            tied = [n for n, _ in self.module.named_parameters(remove_duplicate=False) if n == name]
            hint = (" (it is tied to another parameter: name the first one)" if tied else
                    f"; it has e.g. {list(params)[:6]}")
            raise ValueError(f"prunable_params names {name!r}, which is not a parameter of the model{hint}")
        p = params[name]
        if self.head_prefix(name) is not None:
            raise ValueError(f"prunable_params names {name!r}, which is inside a TaskHeads: heads are never pruned")
        if not p.is_floating_point() or p.dim() == 0:
            raise ValueError(f"prunable_params names {name!r} ({p.dtype}, shape {tuple(p.shape)}): only "
                             "floating-point tensors with at least one dimension can be pruned")
        if not p.requires_grad:
            raise ValueError(f"prunable_params names {name!r}, which has requires_grad=False: PackNet could "
                             "not train it; set requires_grad=True or leave it out")
        return name

    def head_prefix(self, name: str) -> Optional[str]:
        """The name of the :class:`~packnet.TaskHeads` that tensor ``name`` lies in, or ``None``."""
        for prefix in self.heads:
            if prefix == "" or name.startswith(prefix + "."):
                return prefix
        return None

    def head_task(self, param_name: str) -> Optional[str]:
        """The task id (as a string key) whose head ``param_name`` is in, or ``None`` if not in a head."""
        prefix = self.head_prefix(param_name)
        if prefix is None:
            return None
        rest = param_name[len(prefix) + 1 if prefix else 0:]
        return rest.split(".")[1]  # rest looks like "heads.<task>.<param path>"

    def is_prunable(self, param_name: str) -> bool:
        """Whether ``param_name`` is one of the prunable weights."""
        return param_name in self._prunable_set

    def shared_names(self) -> list[str]:
        """Names of the shared parameters (neither prunable nor in a head), in model order."""
        return [n for n, _ in self.module.named_parameters()
                if not self.is_prunable(n) and self.head_task(n) is None]

    def shared_buffers(self) -> dict[str, Tensor]:
        """The buffers outside every head (BatchNorm running statistics and the like), by name."""
        return {n: b for n, b in self.module.named_buffers() if self.head_prefix(n) is None}

    def norm_modules(self) -> list[_NormBase]:
        """The normalisation layers with running statistics or affine parameters (BatchNorm, InstanceNorm)."""
        return [m for m in self.module.modules() if isinstance(m, _NormBase)]

    def shared_state(self) -> dict[str, Tensor]:
        """A copy of every shared parameter and buffer, by name: one task's own version of them, kept by
        ``shared_policy="per_task"`` when the task is frozen."""
        params = dict(self.module.named_parameters())
        return {**{n: params[n].detach().clone() for n in self.shared_names()},
                **{n: b.detach().clone() for n, b in self.shared_buffers().items()}}

    @torch.no_grad()
    def swap_in_(self, state: dict[str, Tensor]) -> Callable[[], None]:
        """Copy a :meth:`shared_state` into the model in place; return the function that puts back what was there."""
        tensors = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        backup = {n: tensors[n].detach().clone() for n in state}
        for n, v in state.items():
            tensors[n].copy_(v)

        def undo() -> None:
            with torch.no_grad():
                for n, v in backup.items():
                    tensors[n].copy_(v)
        return undo
