"""The lifecycle of a task as an explicit state machine: the stages, one transition table, one guard.

Every task goes through the same steps, and a step out of order must be refused *before* anything changes::

    idle --start--> training --prune--> pruned --freeze--> idle
                    ^   | train         ^   | retrain, recalibrate
                    +---+               +---+

(plus ``abandon``: training --> idle, when a new task's first training stopped before a single step, so
nothing was learned; and ``abort``: training or pruned --> idle, :meth:`~packnet.PackNet.abort_task` giving
up the task in progress). :data:`TRANSITIONS` is that picture as data. :class:`Lifecycle` keeps the frozen tasks
in learning order, the task in progress and its :class:`Stage`; :meth:`Lifecycle.check` is the guard (it
raises an error that says what to call instead, and changes nothing) and :meth:`Lifecycle.advance` is the only
code that changes the stage, always through the guard. :class:`~packnet.PackNet` checks a step, does its work,
then advances, so a step that fails half-way leaves the lifecycle where it was.
"""

from __future__ import annotations

import enum
from typing import Any, Hashable, NamedTuple, Optional

from .masks import MAX_TASKS

__all__ = ["Stage", "Transition", "TRANSITIONS", "ABORTABLE", "Lifecycle", "task_key", "check_task_id"]

TaskId = Hashable


class Stage(str, enum.Enum):
    """Where the task in progress is: not started (``IDLE``), trained (``TRAINING``) or pruned (``PRUNED``).

    A stage is a ``str`` too, so it compares equal to its value (``Stage.PRUNED == "pruned"``), prints as it,
    and checkpoints store the plain string.
    """

    IDLE = "idle"
    TRAINING = "training"
    PRUNED = "pruned"

    def __str__(self) -> str:
        return self.value


class Transition(NamedTuple):
    """One allowed step: the stage it starts from, the stage it leads to, how error messages name it."""

    source: Stage
    target: Stage
    verb: str


TRANSITIONS: dict[str, Transition] = {
    "start": Transition(Stage.IDLE, Stage.TRAINING, "start a task"),
    "train": Transition(Stage.TRAINING, Stage.TRAINING, "train"),
    "abandon": Transition(Stage.TRAINING, Stage.IDLE, "abandon the task"),
    "abort": Transition(Stage.TRAINING, Stage.IDLE, "abort the task"),  # from PRUNED too (see check)
    "prune": Transition(Stage.TRAINING, Stage.PRUNED, "prune"),
    "retrain": Transition(Stage.PRUNED, Stage.PRUNED, "retrain"),
    "recalibrate": Transition(Stage.PRUNED, Stage.PRUNED, "recalibrate BatchNorm statistics"),
    "freeze": Transition(Stage.PRUNED, Stage.IDLE, "freeze"),
}
"""Every step of the lifecycle by name, as ``action -> (source stage, target stage, verb)``. ``abort`` is the
one step allowed from two stages (training and pruned)."""

ABORTABLE = (Stage.TRAINING, Stage.PRUNED)
"""The stages :meth:`~packnet.PackNet.abort_task` may leave."""


def task_key(task_id: TaskId) -> str:
    """The canonical identity of a task id: ``str(task_id)``.

    Task ids are ``int`` or ``str``; heads (``nn.ModuleDict`` keys) and checkpoints know them as strings, so
    two ids with the same string (``0`` and ``"0"``) would share a head. PackNet refuses the second one.
    """
    return str(task_id)


def check_task_id(task_id: Any) -> None:
    """Raise ``TypeError`` unless ``task_id`` is an ``int`` or a ``str`` (not a ``bool``)."""
    if not isinstance(task_id, (int, str)) or isinstance(task_id, bool):
        raise TypeError(f"task ids must be int or str, got {task_id!r} ({type(task_id).__name__})")


class Lifecycle:
    """The tasks learned so far, the task in progress and its stage; changed only by :meth:`advance`.

    Args:
        tasks: the frozen task ids in learning order (default: none).
        current: the task in progress, or ``None``.
        stage: the stage of ``current`` (a :class:`Stage` or its string; ``None`` means idle, as checkpoints
            written before the stages were an enum say).

    Examples:
        >>> life = Lifecycle()
        >>> life.advance("start", 0); life.stage
        <Stage.TRAINING: 'training'>
        >>> try:
        ...     life.advance("freeze", 0)       # refused: a task is pruned before it is frozen
        ... except RuntimeError as error:
        ...     print(error)
        cannot freeze: task 0 is not pruned yet: call prune(0) first (prune_ratio=0 keeps every weight)
        >>> life.advance("prune", 0); life.advance("freeze", 0)
        >>> life.tasks, life.current, life.stage
        ([0], None, <Stage.IDLE: 'idle'>)
    """

    def __init__(self, tasks: Optional[list[TaskId]] = None, current: Optional[TaskId] = None,
                 stage: Any = None) -> None:
        try:
            stage = Stage.IDLE if stage is None else Stage(stage)
        except ValueError:
            raise ValueError(f"unknown lifecycle stage {stage!r}: expected one of "
                             f"{[s.value for s in Stage]} (or None for idle)") from None
        if (current is None) != (stage is Stage.IDLE):
            raise ValueError(f"inconsistent lifecycle: task in progress {current!r} at stage {stage.value!r}")
        tasks = list(tasks or [])
        seen: dict[str, TaskId] = {}
        for t in tasks + ([] if current is None else [current]):
            try:
                check_task_id(t)
            except TypeError as error:
                raise ValueError(f"invalid lifecycle: {error}") from None
            if task_key(t) in seen:
                raise ValueError(f"invalid lifecycle: task ids {seen[task_key(t)]!r} and {t!r} are the same "
                                 "task (ids are compared as strings); every task needs its own id")
            seen[task_key(t)] = t
        if len(tasks) > MAX_TASKS:
            raise ValueError(f"invalid lifecycle: {len(tasks)} tasks, at most {MAX_TASKS} fit")
        self.tasks: list[TaskId] = tasks
        """Task ids frozen so far, in learning order; the k-th owns the weights with owner value k."""
        self.current: Optional[TaskId] = current
        """The task in progress (started but not yet frozen), or ``None``."""
        self.stage: Stage = stage
        """The stage of the task in progress (:attr:`Stage.IDLE` when there is none)."""

    def __repr__(self) -> str:
        return f"Lifecycle(tasks={self.tasks!r}, current={self.current!r}, stage={self.stage.value!r})"

    @property
    def position(self) -> int:
        """Owner value of the task in progress (or of the next one), i.e. the number of frozen tasks + 1."""
        return len(self.tasks) + 1

    def task_position(self, task_id: TaskId) -> int:
        """The owner value (1-based learning order) of a frozen task or the current one, else ``KeyError``."""
        if task_id in self.tasks:
            return self.tasks.index(task_id) + 1
        if task_id == self.current:
            return self.position
        raise KeyError(f"unknown task {task_id!r}: learned tasks are {self.tasks}"
                       + (f", task {self.current!r} in progress" if self.current is not None else ""))

    # ------------------------------------------------------------------ the guard
    def require_in_progress(self, task_id: TaskId, verb: str) -> None:
        """Raise ``RuntimeError`` unless ``task_id`` is the task in progress (``verb`` names the step)."""
        if task_id in self.tasks:
            raise RuntimeError(f"task {task_id!r} is already frozen: {verb} is only for the task in progress")
        if self.current is None:
            raise RuntimeError(f"no task is in progress: call train_task({task_id!r}, ...) first")
        if task_id != self.current:
            raise RuntimeError(f"task {self.current!r} is in progress, not {task_id!r}: finish it with "
                               f"freeze({self.current!r}) first")

    def check(self, action: str, task_id: TaskId) -> Stage:
        """The guard: raise unless ``action`` may happen to ``task_id`` now; return the stage it leads to.

        Changes nothing. The error names the step that would be allowed instead.

        Raises:
            KeyError: for an action not in :data:`TRANSITIONS`.
            TypeError: for a task id that is not an ``int`` or ``str`` (``start``).
            RuntimeError: for a step out of order.
        """
        source, target, verb = TRANSITIONS[action]
        if action == "start":
            self._check_start(task_id)
            return target
        self.require_in_progress(task_id, verb)
        if action == "abort" and self.stage in ABORTABLE:
            return target
        if self.stage is not source:
            hint = {Stage.TRAINING: f"task {task_id!r} is already pruned: call retrain({task_id!r}, ...) or "
                                    f"freeze({task_id!r})",
                    Stage.PRUNED: f"task {task_id!r} is not pruned yet: call prune({task_id!r}) first "
                                  "(prune_ratio=0 keeps every weight)"}[source]
            raise RuntimeError(f"cannot {verb}: {hint}")
        return target

    def _check_start(self, task_id: TaskId) -> None:
        check_task_id(task_id)
        if task_id in self.tasks:
            raise RuntimeError(f"task {task_id!r} was already learned and frozen: its weights can no longer "
                               "change; give the new task a new id")
        clash = [t for t in self.tasks + [self.current] if t is not None and task_key(t) == task_key(task_id)]
        if clash:
            raise ValueError(f"task id {task_id!r} collides with task {clash[0]!r}: ids are compared as strings "
                             f"(heads and checkpoints key them by str), so {task_id!r} would share task "
                             f"{clash[0]!r}'s head; choose an id whose str() is new")
        if self.current is not None:
            raise RuntimeError(f"task {self.current!r} is not frozen yet: call "
                               + (f"prune({self.current!r}) and " if self.stage is Stage.TRAINING else "")
                               + f"freeze({self.current!r}) before training task {task_id!r}")
        if len(self.tasks) >= MAX_TASKS:
            raise RuntimeError(f"owner maps are uint8: at most {MAX_TASKS} tasks fit in one PackNet")

    # ------------------------------------------------------------------ the only place the stage changes
    def advance(self, action: str, task_id: TaskId) -> None:
        """Take step ``action`` for ``task_id`` (after :meth:`check`, which raises and changes nothing if the
        step is not allowed now). ``start`` makes the task current; ``freeze`` appends it to :attr:`tasks`."""
        target = self.check(action, task_id)
        if action == "start":
            self.current = task_id
        elif action == "freeze":
            self.tasks.append(task_id)
        if target is Stage.IDLE:
            self.current = None
        self.stage = target
