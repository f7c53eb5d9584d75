"""When capacity runs out: a long task sequence on a small network, and what each task got.

A fixed prune ratio gives task ``t`` the share ``r**t * (1 - r)`` of the prunable weights; an equal-share plan
gives every planned task ``1/N`` and nothing to a task after the plan. :func:`run_capacity_sequence` learns a
sequence with either schedule and returns, per task, the share it owns (counted on the owner maps) beside its
final accuracy, so the two can be plotted against each other; :func:`share_sweep` measures what one task
reaches with a given share of a fresh network; :func:`last_learning_task` finds where a sequence stops
learning; :func:`visible_shares` says how much of the network each task computes with (its own weights and
every earlier task's).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from packnet.capacity import capacity_schedule

from .data import Task
from .experiment import ExperimentResult, run_packnet
from .models import mlp

__all__ = ["CapacityRun", "run_capacity_sequence", "share_sweep", "last_learning_task", "visible_shares"]


@dataclass
class CapacityRun:
    """The outcome of :func:`run_capacity_sequence`: per task, the share it got and the accuracy it reached.

    Attributes:
        label: what the run was, e.g. ``"fixed r = 0.75"``.
        prune_ratios: the ratio each task pruned with, in learning order.
        shares: the fraction of the prunable weights each task owns, counted on the owner maps.
        planned: the shares :func:`~packnet.capacity_schedule` predicts for those ratios.
        accuracy: each task's final test accuracy (PackNet never forgets, so also its accuracy when learned).
        kept_nothing: the tasks that found no free weight in some layer and so kept none there.
        result: the whole :class:`~packnet.bench.experiment.ExperimentResult` (accuracy matrix, PackNet).
    """

    label: str
    prune_ratios: list[float]
    shares: list[float]
    planned: list[float]
    accuracy: list[float]
    kept_nothing: list[int] = field(default_factory=list)
    result: Optional[ExperimentResult] = field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        """Wall time of the run."""
        return self.result.seconds if self.result is not None else 0.0


def _ratio_per_task(prune_ratio: Union[float, Sequence[float]], n_tasks: int) -> list[float]:
    if isinstance(prune_ratio, (int, float)) and not isinstance(prune_ratio, bool):
        return [float(prune_ratio)] * n_tasks
    ratios = [float(r) for r in prune_ratio]
    if len(ratios) != n_tasks:
        raise ValueError(f"a per-task prune_ratio schedule for {n_tasks} tasks needs {n_tasks} entries, got "
                         f"{len(ratios)}: extend a plan for fewer tasks with 0.0 for the tasks after it")
    return ratios


def run_capacity_sequence(tasks: Sequence[Task], prune_ratio: Union[float, Sequence[float]], *,
                          hidden: Sequence[int] = (32, 32), label: str = "",
                          **run_options: Any) -> CapacityRun:
    """Learn ``tasks`` in order on a fresh MLP with one head per task, and report each task's share and accuracy.

    The network is :func:`~packnet.bench.models.mlp` (``hidden`` widths), built from torch's global RNG:
    seed it before calling. Training is :func:`~packnet.bench.experiment.run_packnet` with ``run_options``
    (``epochs``, ``retrain_epochs``, ``batch_size``, ``optimizer``, ``seed``, ``device``, ``progress``). A task
    that finds no free weight left still trains its own head on top of the earlier tasks' frozen weights;
    PackNet's warning about it is recorded in :attr:`CapacityRun.kept_nothing` instead of being shown.

    Args:
        tasks: the benchmark, e.g. :func:`packnet.bench.data.permuted_mnist`.
        prune_ratio: one ratio for every task, or one per task (e.g. ``equal_share_schedule(N)``, followed by
            ``0.0`` for each task after the plan).
        hidden: the MLP's hidden widths; the smaller, the sooner capacity runs out.
        label: a name for the run.
        **run_options: passed to :func:`~packnet.bench.experiment.run_packnet`.

    Returns:
        A :class:`CapacityRun`.

    Examples:
        >>> import torch
        >>> from packnet.bench.data import permuted_mnist
        >>> from packnet.bench.transforms import transform_task
        >>> tasks = [transform_task(t, lambda x: x, train_size=64) for t in permuted_mnist(3)]
        >>> _ = torch.manual_seed(0)
        >>> run = run_capacity_sequence(tasks, [0.5, 0.0, 0.0], hidden=(8,), epochs=1, retrain_epochs=0,
        ...                             progress=False)
        >>> run.shares, run.planned, run.kept_nothing
        ([0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [2])
    """
    ratios = _ratio_per_task(prune_ratio, len(tasks))
    first = tasks[0]
    model = mlp([task.task_id for task in tasks], first.num_classes, hidden=hidden,
                in_features=math.prod(first.input_shape))
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=r"task .* keeps no weight", category=UserWarning)
        result = run_packnet(model, tasks, prune_ratio=ratios, **run_options)
    kept_nothing = [task.task_id for task in tasks
                    if any(str(w.message).startswith(f"task {task.task_id!r} keeps no weight") for w in caught)]
    for w in caught:  # anything else is the caller's to see
        if not str(w.message).startswith("task ") or "keeps no weight" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    owned = result.packnet.capacity()[-1]["owned"]
    return CapacityRun(label=label, prune_ratios=ratios, shares=[owned[task.task_id] for task in tasks],
                       planned=[row["used"] for row in capacity_schedule(ratios, len(tasks))],
                       accuracy=list(result.accuracy_matrix[-1]), kept_nothing=kept_nothing, result=result)


def share_sweep(task: Task, shares: Sequence[float], *, hidden: Sequence[int] = (32, 32), seed: int = 0,
                **run_options: Any) -> list[float]:
    """What one task reaches when it may keep only ``share`` of a fresh network, for each share.

    For each share ``s``: a fresh MLP (torch's global RNG seeded with ``seed`` before it is built, so every
    share starts from the same weights) learns ``task`` alone with PackNet at ``prune_ratio = 1 - s``: train on
    the whole network, keep the largest ``s`` of its weights, re-train them. Its accuracy is what the share
    buys a task that has the network to itself, the first task's situation.

    Args:
        task: one task of a benchmark.
        shares: the fractions of the prunable weights to keep, each in ``(0, 1]``.
        hidden: the MLP's hidden widths.
        seed: seeds the initial weights and the loaders.
        **run_options: passed to :func:`~packnet.bench.experiment.run_packnet`.

    Returns:
        The test accuracy for each share, in order.

    Examples:
        >>> from packnet.bench.data import permuted_mnist
        >>> from packnet.bench.transforms import transform_task
        >>> task = transform_task(permuted_mnist(1)[0], lambda x: x, train_size=64)
        >>> accuracies = share_sweep(task, [0.5, 0.01], hidden=(8,), epochs=1, retrain_epochs=0, progress=False)
        >>> len(accuracies), all(0.0 <= a <= 1.0 for a in accuracies)
        (2, True)
    """
    import torch

    accuracies = []
    for share in shares:
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
            raise ValueError(f"a share is a fraction of the network in (0, 1], got {share!r}")
        torch.manual_seed(seed)
        run = run_capacity_sequence([task], 1.0 - share, hidden=hidden, seed=seed, **run_options)
        accuracies.append(run.accuracy[0])
    return accuracies


def last_learning_task(accuracy: Sequence[float], level: float) -> int:
    """How many tasks learned before the sequence stopped learning: one past the last task at or above ``level``.

    A sequence whose capacity runs out does not fail at one sharp task: the accuracy sags, with noise. The
    point where it *stops* learning is after the last task that still reached ``level``; every later task
    stayed below it. ``0`` when no task reached it.

    Args:
        accuracy: final accuracy per task, in learning order.
        level: the accuracy a task must reach to count as having learned.

    Returns:
        The number of tasks up to and including the last one that reached ``level``.

    Examples:
        >>> last_learning_task([0.9, 0.8, 0.85, 0.6, 0.7, 0.5], 0.75)
        3
        >>> last_learning_task([0.5, 0.4], 0.75)
        0
    """
    reached = [i for i, a in enumerate(accuracy) if a >= level]
    return reached[-1] + 1 if reached else 0


def visible_shares(prune_ratio: Union[float, Sequence[float]], n_tasks: int) -> list[float]:
    """The fraction of the network each task computes with: its own share plus every earlier task's.

    Task ``t`` owns only ``used_t`` of the prunable weights, but it trained on top of the frozen weights of
    tasks ``0..t-1`` and runs with them (:func:`~packnet.visible_mask`), so it *sees* ``used_0 + ... + used_t``:
    for a fixed ratio ``1 - r**(t + 1)``, which grows while the share it owns shrinks. The sums are taken in
    order over :func:`~packnet.capacity_schedule`'s shares.

    Args:
        prune_ratio: one ratio for every task, or one per task.
        n_tasks: number of tasks.

    Returns:
        One fraction per task, in learning order.

    Examples:
        >>> visible_shares(0.5, 3)
        [0.5, 0.75, 0.875]
        >>> visible_shares([0.5, 0.0, 0.0], 3)  # the network is full after task 1: task 2 sees what task 1 saw
        [0.5, 1.0, 1.0]
    """
    seen, total = [], 0.0
    for row in capacity_schedule(prune_ratio, n_tasks):
        total += row["used"]
        seen.append(total)
    return seen
