"""Per-task output heads.

In the paper each task gets its own classifier layer on top of the shared, pruned trunk; heads are small, so
they are never pruned. :class:`TaskHeads` holds one head per task id and routes ``forward`` to the *active*
one. :class:`~packnet.PackNet` sets the active head inside ``pn.task(t)`` and while task ``t`` trains, and
protects every other head's weights. A model with one shared output layer needs none of this: that layer is an
ordinary prunable ``Linear``.
"""

from __future__ import annotations

import contextlib
from typing import Hashable, Iterable, Iterator, Optional

from torch import Tensor, nn

__all__ = ["TaskHeads"]


class TaskHeads(nn.Module):
    """One output head per task, of which exactly one is active at a time.

    Args:
        in_features: width of the features the heads read.
        out_features: classes per task: one ``int`` for every task, or a ``{task_id: n_classes}`` mapping.
        task_ids: the task ids to create heads for when ``out_features`` is an ``int``.

    Examples:
        >>> heads = TaskHeads(16, 2, task_ids=range(5))     # Split-MNIST: five 2-way heads
        >>> heads.active = 3
        >>> heads(torch.randn(4, 16)).shape
        torch.Size([4, 2])
    """

    def __init__(self, in_features: int, out_features: "int | dict[Hashable, int]",
                 task_ids: Optional[Iterable[Hashable]] = None) -> None:
        super().__init__()
        if isinstance(out_features, int):
            if task_ids is None:
                raise ValueError("TaskHeads(in_features, n_classes) needs task_ids=..., e.g. task_ids=range(5)")
            out_features = {t: out_features for t in task_ids}
        keys: dict[str, Hashable] = {}
        for t in out_features:
            if str(t) in keys:
                raise ValueError(f"task ids {keys[str(t)]!r} and {t!r} would share one head (heads are keyed "
                                 "by str(task_id)): give every task an id with its own str()")
            keys[str(t)] = t
        self.heads = nn.ModuleDict({str(t): nn.Linear(in_features, n) for t, n in out_features.items()})
        self.active: Optional[Hashable] = None

    def add(self, task_id: Hashable, head: nn.Module, *, replace: bool = False) -> None:
        """Add the head of ``task_id`` — e.g. for a task not planned at construction.

        Refuses (``KeyError``) an id that already has a head, including another id with the same ``str()``
        (``0`` and ``"0"``): replacing a frozen task's head would change that task. Pass ``replace=True`` to
        replace the head of a task that has not been trained yet.
        """
        if not isinstance(head, nn.Module):
            raise TypeError(f"a head must be an nn.Module, got {type(head).__name__}")
        if str(task_id) in self.heads and not replace:
            raise KeyError(f"TaskHeads already has a head for task {task_id!r} (key {str(task_id)!r}); pass "
                           "replace=True to replace it (only for a task not trained yet) or use a new id")
        self.heads[str(task_id)] = head

    def head(self, task_id: Hashable) -> nn.Module:
        """The head of ``task_id``; ``KeyError`` naming the known ids if there is none."""
        key = str(task_id)
        if key not in self.heads:
            raise KeyError(f"TaskHeads has no head for task {task_id!r}; it has {list(self.heads.keys())}: "
                           "add one with heads.add(task_id, nn.Linear(...))")
        return self.heads[key]

    def has_head(self, task_id: Hashable) -> bool:
        """Whether a head exists for ``task_id``."""
        return str(task_id) in self.heads

    def forward(self, features: Tensor) -> Tensor:
        if self.active is None:
            raise RuntimeError("TaskHeads has no active task: run the model inside `with pn.task(t):` "
                               "(or set heads.active = t)")
        return self.head(self.active)(features)

    def extra_repr(self) -> str:
        return f"active={self.active!r}"


@contextlib.contextmanager
def heads_active(heads: Iterable[TaskHeads], task_id: Hashable) -> Iterator[None]:
    """Make ``task_id`` the active task of every one of ``heads`` inside the block; put the old ones back after.

    Examples:
        >>> heads = TaskHeads(4, 2, task_ids=[0, 1]); heads.active = 0
        >>> with heads_active([heads], 1):
        ...     inside = heads.active
        >>> inside, heads.active
        (1, 0)
    """
    saved = [(h, h.active) for h in heads]
    try:
        for h, _ in saved:
            h.active = task_id
        yield
    finally:
        for h, active in saved:
            h.active = active
