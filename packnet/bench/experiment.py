"""One PackNet experiment end to end: every task through the four steps, the accuracy matrix after each.

This is what ``python -m packnet`` runs, and what the book's later chapters call; the steps themselves are
:class:`~packnet.PackNet`'s methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from packnet.distributed import is_distributed
from packnet.packnet import PackNet
from packnet.task_inference import METHODS
from packnet.training import OptimizerFactory

from .data import Task
from .metrics import average_accuracy, backward_transfer, forgetting, nan_matrix

__all__ = ["ExperimentResult", "run_packnet", "evaluate_seen", "evaluate_task_inference"]


def _json_number(value: float) -> Optional[float]:
    return None if value != value else value  # NaN is the only float unequal to itself


@dataclass
class ExperimentResult:
    """The outcome of :func:`run_packnet`.

    Attributes:
        accuracy_matrix: ``R[i][j]``, test accuracy on task ``j`` after learning task ``i`` (``nan`` above the
            diagonal).
        model: the trained network.
        packnet: the :class:`~packnet.PackNet` that trained it (``None`` for baselines).
        method: what produced it, e.g. ``"packnet"``, ``"finetune"``.
        histories: per task, the training and re-training histories.
        seconds: wall time of the whole run.
        task_inference: with ``run_packnet(..., task_inference=True)``, the figures of
            :func:`evaluate_task_inference` for the default method, each method's under ``"by_method"``,
            and the memory and calibration time; ``None`` otherwise.
    """

    accuracy_matrix: list[list[float]]
    model: nn.Module
    packnet: Optional[PackNet] = None
    method: str = "packnet"
    histories: list[dict[str, list[dict[str, float]]]] = field(default_factory=list)
    seconds: float = 0.0
    task_inference: Optional[dict[str, Any]] = None

    @property
    def average_accuracy(self) -> float:
        """Mean final accuracy over all tasks."""
        return average_accuracy(self.accuracy_matrix)

    @property
    def forgetting(self) -> list[float]:
        """Per task, best earlier accuracy minus final accuracy (exactly 0.0 for PackNet)."""
        return forgetting(self.accuracy_matrix)

    @property
    def backward_transfer(self) -> float:
        """Mean final-minus-just-learned accuracy over the earlier tasks."""
        return backward_transfer(self.accuracy_matrix)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``python -m packnet --json`` prints); an undefined figure (``nan``: tasks not
        learned yet, or joint training's forgetting) becomes ``None``, i.e. JSON ``null``, so strict JSON
        parsers accept it."""
        summary: dict[str, Any] = {
            "method": self.method,
            "accuracy_matrix": [[_json_number(a) for a in row] for row in self.accuracy_matrix],
            "average_accuracy": _json_number(self.average_accuracy),
            "forgetting": [_json_number(f) for f in self.forgetting],
            "backward_transfer": _json_number(self.backward_transfer),
            "seconds": self.seconds,
        }
        if self.packnet is not None:
            total = self.packnet.capacity()[-1]
            summary["capacity"] = {"owned": {str(t): f for t, f in total["owned"].items()}, "free": total["free"]}
        if self.task_inference is not None:
            summary["task_inference"] = self.task_inference
        return summary


def evaluate_seen(pn: PackNet, tasks: Sequence[Task], upto: int, batch_size: int = 1000,
                  device: Optional[Union[str, torch.device]] = None) -> list[float]:
    """Test accuracy of each of ``tasks[0..upto]`` under ``pn.task(t)``."""
    return [pn.evaluate(task.task_id, task.loaders(batch_size, shuffle=False)[1], device=device)
            for task in tasks[: upto + 1]]


@torch.no_grad()
def evaluate_task_inference(pn: PackNet, tasks: Sequence[Task], *, method: str = METHODS[0], batch_size: int = 32,
                            batches_per_task: int = 100, seed: int = 0, chunk: int = 1000) -> dict[str, Any]:
    """How well ``pn.task_inference`` recognises the task of each test input, and of task-homogeneous batches.

    * ``per_sample_task_accuracy``: over every test input of every task, the fraction whose inferred task is
      its own (:meth:`~packnet.task_inference.TaskInference.infer`);
    * ``task_agnostic_accuracy``: the fraction whose inferred task is right **and** whose class, predicted by
      that task's network, is right (:meth:`~packnet.task_inference.TaskInference.classify`);
    * ``batch_task_accuracy``: for each task, ``batches_per_task`` batches of ``batch_size`` distinct test
      inputs drawn at random (seeded) from its test set; the fraction of batches whose one inferred task
      (``batch=True``) is right;
    * ``seconds_per_sample`` (per-sample inference, classification included) and ``seconds_per_batch``.

    Every task of ``tasks`` must have been calibrated.
    """
    ti = pn.task_inference
    if ti is None:
        raise RuntimeError("no task was calibrated: run_packnet(..., task_inference=True) or call "
                           "pn.calibrate_task_inference(t, loader) for every task first")
    device = next(pn.module.parameters()).device
    right_task = right_both = seen = 0
    start = time.perf_counter()
    for task in tasks:
        x_all, y_all = task.test.tensors
        for i in range(0, len(x_all), chunk):
            x, y = x_all[i: i + chunk].to(device), y_all[i: i + chunk].to(device)
            inferred, classes = ti.classify(pn, x, method=method)
            hit = torch.tensor([t == task.task_id for t in inferred], device=device)
            right_task += int(hit.sum())
            right_both += int((hit & (classes == y)).sum())
            seen += len(x)
    per_sample_seconds = (time.perf_counter() - start) / seen
    generator = torch.Generator().manual_seed(seed)
    right_batches = n_batches = 0
    start = time.perf_counter()
    for task in tasks:
        x_all = task.test.tensors[0]
        size = min(batch_size, len(x_all))
        for _ in range(batches_per_task):
            idx = torch.randperm(len(x_all), generator=generator)[:size]
            right_batches += int(ti.infer(pn, x_all[idx].to(device), batch=True, method=method) == task.task_id)
            n_batches += 1
    return {"method": method, "per_sample_task_accuracy": right_task / seen,
            "task_agnostic_accuracy": right_both / seen, "batch_task_accuracy": right_batches / n_batches,
            "batch_size": batch_size, "batches": n_batches, "samples": seen,
            "seconds_per_sample": per_sample_seconds,
            "seconds_per_batch": (time.perf_counter() - start) / max(n_batches, 1)}


def run_packnet(model: nn.Module, tasks: Sequence[Task], *, prune_ratio: Union[float, Sequence[float]] = 0.75,
                epochs: int = 5, retrain_epochs: int = 2, batch_size: int = 128,
                optimizer: Optional[OptimizerFactory] = None, retrain_optimizer: Optional[OptimizerFactory] = None,
                device: Union[str, torch.device] = "cpu", seed: int = 0, progress: bool = True,
                amp: bool = False, recalibrate_batchnorm: bool = False, task_inference: bool = False,
                task_inference_options: Optional[dict[str, Any]] = None,
                **packnet_options: Any) -> ExperimentResult:
    """Learn ``tasks`` in order with PackNet and record the accuracy matrix.

    For each task: :meth:`~packnet.PackNet.train_task` for ``epochs``, :meth:`~packnet.PackNet.prune`,
    :meth:`~packnet.PackNet.retrain` for ``retrain_epochs`` (the last task is pruned too, so capacity stays
    free for more), :meth:`~packnet.PackNet.freeze`; then every task seen so far is evaluated on its test set.

    Args:
        model: the network (moved to ``device``), or a ``DistributedDataParallel`` wrapper of it: inside a
            ``torch.distributed`` process group the training sets are then sharded across processes.
        tasks: the benchmark, e.g. :func:`packnet.bench.data.split_mnist`.
        prune_ratio: passed to :class:`~packnet.PackNet`.
        epochs: training epochs per task.
        retrain_epochs: re-training epochs after pruning.
        batch_size: training batch size (per process when running distributed).
        optimizer: optimizer factory for training (default: SGD, lr 0.01, momentum 0.9).
        retrain_optimizer: for re-training (default: the same as ``optimizer``).
        device: where to train.
        seed: seeds the loaders' shuffling.
        progress: show tqdm bars.
        amp: train and re-train with mixed precision (see :meth:`~packnet.PackNet.train_task`); evaluation runs
            in full precision.
        recalibrate_batchnorm: after re-training, re-estimate BatchNorm's running statistics on the pruned
            network (:meth:`~packnet.PackNet.recalibrate_batchnorm`, over the task's training batches) wherever
            they are the task's own: the first task's with ``shared_policy="first_task"`` (later tasks use
            those, frozen), every task's with ``"per_task"``.
        task_inference: after each task is frozen, record what recognises it without its id
            (:meth:`~packnet.PackNet.calibrate_task_inference`, on its training set); at the end measure every
            method of :data:`~packnet.task_inference.METHODS` with :func:`evaluate_task_inference` and put the
            figures, the memory stored and the time per calibration in :attr:`ExperimentResult.task_inference`.
        task_inference_options: keyword arguments for the calibration (``n_components``, ``shrinkage``).
        **packnet_options: further :class:`~packnet.PackNet` keyword arguments (``shared_policy``, ``pruning``).

    Returns:
        An :class:`ExperimentResult`.
    """
    start = time.perf_counter()
    if not isinstance(model, nn.parallel.DistributedDataParallel):  # a DDP wrapper is built on its device
        model.to(device)
    distributed = is_distributed()
    pn = PackNet(model, prune_ratio, **packnet_options)
    R = nan_matrix(len(tasks))
    histories = []
    calibration_seconds = []
    for i, task in enumerate(tasks):
        train_loader, _ = task.loaders(batch_size, seed=seed + i, distributed=distributed)
        t = task.task_id
        trained = pn.train_task(t, train_loader, epochs, optimizer=optimizer, device=device, progress=progress,
                                amp=amp)
        pn.prune(t)
        retrained = pn.retrain(t, train_loader, retrain_epochs, optimizer=retrain_optimizer or optimizer,
                               device=device, progress=progress, amp=amp)
        if recalibrate_batchnorm and (i == 0 or pn.shared_policy == "per_task"):
            pn.recalibrate_batchnorm(t, train_loader, device=device)
        pn.freeze(t)
        if task_inference:  # every rank calibrates on the whole training set, so the records agree
            calibration_start = time.perf_counter()
            pn.calibrate_task_inference(t, task.loaders(batch_size, seed=seed + i)[0],
                                        **(task_inference_options or {}))
            calibration_seconds.append(time.perf_counter() - calibration_start)
        histories.append({"train": trained, "retrain": retrained})
        R[i][: i + 1] = evaluate_seen(pn, tasks, i, device=device)
    figures = None
    if task_inference:
        by_method = {m: evaluate_task_inference(pn, tasks, method=m, seed=seed) for m in METHODS}
        assert pn.task_inference is not None
        figures = {**by_method[METHODS[0]], "by_method": by_method,
                   "memory_bytes": pn.task_inference.memory_bytes(),
                   "memory_bytes_per_task": [pn.task_inference.memory_bytes(t.task_id) for t in tasks],
                   "calibration_seconds": calibration_seconds}
    return ExperimentResult(R, pn.module, pn, "packnet", histories, time.perf_counter() - start, figures)
