"""The :class:`PackNet` lifecycle: train on free weights → prune → re-train → freeze, then task-``t`` inference.

:class:`PackNet` wraps any ``nn.Module`` without changing its class or forward: it keeps one ``uint8`` owner
map per prunable weight (:mod:`packnet.masks`), decides what may learn in each phase
(:class:`~packnet.freezing.WeightGuard`), prunes with :mod:`packnet.pruning`, and swaps weights in place for
``with pn.task(t):`` so inference runs at the speed of the plain model.

The lifecycle of one task is an explicit state machine; a call in the wrong state raises and changes nothing::

    idle --train_task(t)--> training --prune(t)--> pruned --freeze(t)--> idle
              ^   |                                 |   ^
              +---+ (more epochs)                   +---+ retrain(t)
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Hashable, Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from .distributed import broadcast_buffers, check_identical_across_ranks, save_on_rank0
from .freezing import TrainableSpec, WeightGuard
from .heads import TaskHeads
from .masks import (MAX_TASKS, apply_visibility_, claim_kept, free_mask, new_owner_map, owner_counts, restore_,
                    trainable_mask)
from .pruning import check_prune_ratio, global_prune_masks, prune_mask
from .training import OptimizerFactory, default_optimizer, evaluate_accuracy, train_epochs

__all__ = ["PackNet", "DEFAULT_PRUNABLE"]

DEFAULT_PRUNABLE: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""Module types whose ``weight`` PackNet prunes by default (their biases are *shared* parameters)."""

SHARED_POLICIES = ("first_task", "per_task")
TaskId = Hashable

_FORMAT = "packnet/1"


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (else ``model`` itself)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


class PackNet:
    """Pack several tasks into one network by iterative pruning (Mallya & Lazebnik, CVPR 2018).

    Each task trains on the weights still *free*, keeps its largest-magnitude fraction ``1 - prune_ratio``
    of them, re-trains those, and *freezes* them; the pruned ones are free again for the next task.
    ``with pn.task(t):`` hides every weight task ``t`` did not see, so it computes exactly — bit for bit — what
    it computed when it was frozen: zero forgetting.

    Parameters fall into three roles:

    * **prunable** weights (``weight`` of ``Conv1d/2d/3d`` and ``Linear`` by default): one owner map each;
    * **heads**: parameters inside a :class:`~packnet.TaskHeads`; each task's head learns only while that
      task trains, and is never pruned;
    * **shared**: everything else — biases, BatchNorm/LayerNorm/GroupNorm affine parameters — and the
      BatchNorm running statistics. With ``shared_policy="first_task"`` (the paper's) they learn with the first
      task and are frozen afterwards (BatchNorm layers then run in eval mode while later tasks train). With
      ``"per_task"`` every task trains its own copy, saved at :meth:`freeze` and swapped in by :meth:`task`:
      better accuracy when tasks differ (different input statistics), at the cost of a few parameters and
      buffers per task.

    Args:
        model: any ``nn.Module``; PackNet keeps a reference and changes its weights in place.
        prune_ratio: fraction of each task's weights to free, in ``[0, 1)``: one float, or one per task in
            learning order (see :func:`~packnet.equal_share_schedule`).
        prunable: module types whose ``weight`` is prunable.
        exclude: names of modules (as in ``model.named_modules()``) whose weights must not be pruned; their
            parameters become shared.
        shared_policy: ``"first_task"`` or ``"per_task"``, as above.
        pruning: ``"layer"`` (each layer prunes its own ratio; the paper's) or ``"global"`` (one magnitude
            threshold across all prunable layers).

    Examples:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> pn = PackNet(model, prune_ratio=0.5)
        >>> data = [(torch.randn(16, 4), torch.randint(0, 2, (16,)))]
        >>> for t in range(2):
        ...     _ = pn.train_task(t, data, epochs=1, progress=False)
        ...     _ = pn.prune(t)
        ...     _ = pn.retrain(t, data, epochs=1, progress=False)
        ...     pn.freeze(t)
        >>> with pn.task(0):
        ...     logits = model(data[0][0])
        >>> pn.tasks
        [0, 1]
    """

    def __init__(
        self,
        model: nn.Module,
        prune_ratio: Union[float, Sequence[float]] = 0.75,
        *,
        prunable: Sequence[type[nn.Module]] = DEFAULT_PRUNABLE,
        exclude: Iterable[str] = (),
        shared_policy: str = "first_task",
        pruning: str = "layer",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"PackNet wraps an nn.Module, got {type(model).__name__}")
        self.prune_ratio = self._check_ratio_schedule(prune_ratio)
        if shared_policy not in SHARED_POLICIES:
            raise ValueError(f"shared_policy must be one of {SHARED_POLICIES}, got {shared_policy!r}")
        if pruning not in ("layer", "global"):
            raise ValueError(f"pruning must be 'layer' or 'global', got {pruning!r}")
        module = _unwrap(model)
        if module is not model and not getattr(model, "find_unused_parameters", True):
            raise ValueError(
                "wrap the model as DistributedDataParallel(model, find_unused_parameters=True): under PackNet some "
                "parameters get no gradient in a phase (other tasks' heads, frozen biases and norms)")
        exclude = set(exclude)
        unknown = exclude - {name for name, _ in module.named_modules()}
        if unknown:
            raise ValueError(f"exclude names modules the model does not have: {sorted(unknown)}")
        self.model = model
        """What was wrapped, used for every training forward pass (a ``DistributedDataParallel`` wrapper stays in
        the loop, so gradients are averaged across processes)."""
        self.module = module
        """The network itself (``model.module`` for a DDP wrapper). Names, owner maps and checkpoints refer to it,
        so a checkpoint written under DDP loads into a single-process model and back."""
        self.shared_policy = shared_policy
        self.pruning = pruning

        self._heads: dict[str, TaskHeads] = {n: m for n, m in module.named_modules() if isinstance(m, TaskHeads)}
        self._prunable_names: list[str] = []
        for name, sub in module.named_modules():
            if name in exclude or self._head_prefix(name + ".") is not None:
                continue
            weight = getattr(sub, "weight", None)
            if isinstance(sub, tuple(prunable)) and isinstance(weight, nn.Parameter):
                self._prunable_names.append(f"{name}.weight" if name else "weight")
        if not self._prunable_names:
            raise ValueError(
                "the model has no prunable weights: PackNet prunes the weights of "
                f"{[t.__name__ for t in prunable]} modules (outside TaskHeads and `exclude`); pass prunable=... "
                "to choose other module types"
            )
        params = dict(module.named_parameters())
        self.owner: dict[str, Tensor] = {n: new_owner_map(params[n]) for n in self._prunable_names}
        self.tasks: list[TaskId] = []
        """Task ids frozen so far, in learning order; the k-th owns the weights with owner value k."""
        self.current: Optional[TaskId] = None
        """The task in progress (trained but not yet frozen), or ``None``."""
        self.stage: Optional[str] = None
        """``None`` (idle), ``"training"`` (before pruning) or ``"pruned"`` (pruned, re-training allowed)."""
        self._shared_snapshots: dict[TaskId, dict[str, Tensor]] = {}
        self._steps_taken = 0

    # ------------------------------------------------------------------ roles of parameters
    def _head_prefix(self, name: str) -> Optional[str]:
        for prefix in self._heads:
            if prefix == "" or name.startswith(prefix + "."):
                return prefix
        return None

    def _head_task(self, param_name: str) -> Optional[str]:
        """The task id (as a string key) whose head ``param_name`` belongs to, or None if not in a head."""
        prefix = self._head_prefix(param_name)
        if prefix is None:
            return None
        rest = param_name[len(prefix) + 1 if prefix else 0:]
        # rest looks like "heads.<task>.<param path>"
        return rest.split(".")[1]

    @property
    def prunable_names(self) -> list[str]:
        """Names of the prunable weight parameters, in model order."""
        return list(self._prunable_names)

    def shared_names(self) -> list[str]:
        """Names of the shared parameters (neither prunable nor in a head)."""
        return [n for n, _ in self.module.named_parameters() if n not in self.owner and self._head_task(n) is None]

    def _shared_buffers(self) -> dict[str, Tensor]:
        return {n: b for n, b in self.module.named_buffers() if self._head_prefix(n) is None}

    def _norm_modules(self) -> list[_NormBase]:
        return [m for m in self.module.modules() if isinstance(m, _NormBase)]

    def _params(self) -> dict[str, nn.Parameter]:
        return dict(self.module.named_parameters())

    def _owner(self, name: str, like: Tensor) -> Tensor:
        """The owner map of ``name``, moved to ``like``'s device if the model moved (``model.to(device)``)."""
        owner = self.owner[name]
        if owner.device != like.device:
            owner = self.owner[name] = owner.to(like.device)
        return owner

    # ------------------------------------------------------------------ state
    @property
    def position(self) -> int:
        """Owner value of the task in progress (or of the next one), i.e. the number of frozen tasks + 1."""
        return len(self.tasks) + 1

    def task_position(self, task_id: TaskId) -> int:
        """The owner value (1-based learning order) of a frozen task; ``KeyError`` for an unknown id."""
        if task_id in self.tasks:
            return self.tasks.index(task_id) + 1
        if task_id == self.current:
            return self.position
        raise KeyError(f"unknown task {task_id!r}: learned tasks are {self.tasks}"
                       + (f", task {self.current!r} in progress" if self.current is not None else ""))

    def _ratio_for(self, position: int) -> float:
        if isinstance(self.prune_ratio, float):
            return self.prune_ratio
        if position > len(self.prune_ratio):
            raise ValueError(f"the prune_ratio schedule has {len(self.prune_ratio)} entries but this is task "
                             f"number {position}: pass prune(t, prune_ratio=...) or a longer schedule")
        return self.prune_ratio[position - 1]

    @staticmethod
    def _check_ratio_schedule(prune_ratio: Union[float, Sequence[float]]) -> Union[float, list[float]]:
        if isinstance(prune_ratio, (int, float)) and not isinstance(prune_ratio, bool):
            check_prune_ratio(prune_ratio)
            return float(prune_ratio)
        if isinstance(prune_ratio, (str, bytes)):
            raise ValueError(f"prune_ratio must be a float or a sequence of floats, got the string {prune_ratio!r}")
        try:
            ratios = [float(r) for r in prune_ratio]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"prune_ratio must be a float or a sequence of floats, got {prune_ratio!r}") from None
        if not ratios:
            raise ValueError("a prune_ratio schedule needs at least one entry")
        for r in ratios:
            check_prune_ratio(r)
        return ratios

    def __repr__(self) -> str:
        state = "idle" if self.current is None else f"task {self.current!r} {self.stage}"
        return (f"PackNet(tasks={self.tasks}, {state}, prune_ratio={self.prune_ratio}, "
                f"prunable={len(self._prunable_names)} tensors, shared_policy={self.shared_policy!r})")

    def _require_stage(self, task_id: TaskId, stage: str, action: str) -> None:
        if task_id in self.tasks:
            raise RuntimeError(f"task {task_id!r} is already frozen: {action} is only for the task in progress")
        if self.current is None:
            raise RuntimeError(f"no task is in progress: call train_task({task_id!r}, ...) first")
        if task_id != self.current:
            raise RuntimeError(f"task {self.current!r} is in progress, not {task_id!r}: finish it with "
                               f"freeze({self.current!r}) first")
        if self.stage != stage:
            hint = {"training": f"task {task_id!r} is already pruned: call retrain({task_id!r}, ...) or "
                                f"freeze({task_id!r})",
                    "pruned": f"task {task_id!r} is not pruned yet: call prune({task_id!r}) first "
                              "(prune_ratio=0 keeps every weight)"}[stage]
            raise RuntimeError(f"cannot {action}: {hint}")

    def start_task(self, task_id: TaskId) -> None:
        """Begin a new task: from now on its free weights (and head) may train.

        :meth:`train_task` calls this for a new id; call it yourself before a hand-written loop in
        :meth:`training`.
        """
        if not isinstance(task_id, (int, str)) or isinstance(task_id, bool):
            raise TypeError(f"task ids must be int or str, got {task_id!r}")
        if task_id in self.tasks:
            raise RuntimeError(f"task {task_id!r} was already learned and frozen: its weights can no longer "
                               "change; give the new task a new id")
        if self.current is not None:
            raise RuntimeError(f"task {self.current!r} is not frozen yet: call "
                               + (f"prune({self.current!r}) and " if self.stage == "training" else "")
                               + f"freeze({self.current!r}) before training task {task_id!r}")
        if len(self.tasks) >= MAX_TASKS:
            raise RuntimeError(f"owner maps are uint8: at most {MAX_TASKS} tasks fit in one PackNet")
        for name, heads in self._heads.items():
            if not heads.has_head(task_id):
                raise KeyError(f"the model's TaskHeads '{name}' has no head for task {task_id!r}: add one with "
                               f"heads.add({task_id!r}, nn.Linear(...)) first")
        self.current, self.stage = task_id, "training"

    # ------------------------------------------------------------------ training
    def trainable_specs(self) -> list[tuple[str, nn.Parameter, TrainableSpec]]:
        """What may learn in the current phase: ``(name, parameter, True | False | bool mask)`` per parameter.

        Prunable weights: their free entries before pruning, the current task's entries after. Heads: the
        current task's. Shared parameters: per ``shared_policy``. Parameters the user set
        ``requires_grad=False`` never learn.
        """
        if self.current is None:
            raise RuntimeError("no task is in progress: call start_task(t) or train_task(t, ...) first")
        k, retraining = self.position, self.stage == "pruned"
        specs: list[tuple[str, nn.Parameter, TrainableSpec]] = []
        for name, p in self.module.named_parameters():
            spec: TrainableSpec
            if not p.requires_grad:
                spec = False
            elif name in self.owner:
                spec = trainable_mask(self._owner(name, p), k, retraining=retraining)
            elif (head := self._head_task(name)) is not None:
                spec = head == str(self.current)
            else:
                spec = self.shared_policy == "per_task" or k == 1
            specs.append((name, p, spec))
        return specs

    @contextlib.contextmanager
    def training(self, task_id: TaskId) -> Iterator[WeightGuard]:
        """Set the model up for training the task in progress and yield its :class:`WeightGuard`.

        Inside: the model is in train mode (BatchNorm layers in eval mode when their statistics are frozen),
        the task's head is active, fully frozen parameters have ``requires_grad=False``. Build the optimizer
        from ``guard.parameters()`` and call ``guard.mask_gradients()`` / ``guard.restore_frozen()`` around
        every ``step()``. Everything is put back on exit.

        Examples:
            >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            >>> pn = PackNet(model); pn.start_task(0)
            >>> with pn.training(0) as guard:
            ...     opt = torch.optim.AdamW(guard.parameters(), lr=1e-3, weight_decay=1e-2)
            ...     loss = nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long))
            ...     opt.zero_grad(); loss.backward()
            ...     guard.mask_gradients(); opt.step(); guard.restore_frozen()
        """
        if task_id != self.current:
            self._require_stage(task_id, self.stage or "training", "train")
        guard = WeightGuard.from_specs([(p, spec) for _, p, spec in self.trainable_specs()])
        modes = [(m, m.training) for m in self.model.modules()]
        grad_flags = [(p, p.requires_grad) for p in guard.frozen_parameters()]
        actives = [(h, h.active) for h in self._heads.values()]
        try:
            self.model.train()
            if self.shared_policy == "first_task" and self.position > 1:
                for m in self._norm_modules():
                    m.eval()
            for p, _ in grad_flags:
                p.requires_grad_(False)
            for h, _ in actives:
                h.active = task_id
            yield guard
            broadcast_buffers(self.module)  # DDP leaves each rank with its own last batch's statistics
        finally:
            for m, mode in modes:
                m.training = mode
            for p, flag in grad_flags:
                p.requires_grad_(flag)
            for h, active in actives:
                h.active = active

    def _device(self) -> torch.device:
        return self._params()[self._prunable_names[0]].device

    def _fit(self, task_id: TaskId, loader: Iterable, epochs: int, optimizer: Optional[OptimizerFactory],
             criterion: Optional[nn.Module], device: Optional[Union[str, torch.device]], progress: bool,
             amp: bool, desc: str) -> list[dict[str, float]]:
        make_optimizer = optimizer if optimizer is not None else default_optimizer
        self._steps_taken = 0

        def count_step() -> None:
            self._steps_taken += 1

        with self.training(task_id) as guard:
            return train_epochs(self.model, loader, epochs, make_optimizer(guard.parameters()),
                                criterion=criterion, device=device if device is not None else self._device(),
                                after_backward=guard.mask_gradients, after_step=guard.restore_frozen, amp=amp,
                                progress=progress, desc=desc, on_step=count_step)

    @staticmethod
    def _check_fit_args(loader: Iterable, epochs: int) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
        if hasattr(loader, "__len__") and len(loader) == 0:  # type: ignore[arg-type]
            raise ValueError("the training loader is empty: pass a loader with at least one batch")

    def train_task(self, task_id: TaskId, loader: Iterable, epochs: int = 1, *,
                   optimizer: Optional[OptimizerFactory] = None, criterion: Optional[nn.Module] = None,
                   device: Optional[Union[str, torch.device]] = None, progress: bool = True,
                   amp: bool = False) -> list[dict[str, float]]:
        """Train task ``task_id`` on the free weights (step 1 of the paper). A new id starts the task.

        Frozen weights of earlier tasks take part in the forward pass but stay bit-identical, whatever the
        optimizer. Calling it again before :meth:`prune` trains further.

        Args:
            task_id: an ``int`` or ``str`` not used before (or the task in progress).
            loader: an iterable of ``(inputs, targets)`` batches, e.g. a ``DataLoader``.
            epochs: passes over ``loader`` (0 only starts the task).
            optimizer: a factory ``params -> Optimizer``, called once for this phase, e.g.
                ``lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2)``. Default: SGD, lr 0.01,
                momentum 0.9 (the seed's).
            criterion: the loss; default ``nn.CrossEntropyLoss()``.
            device: where batches go; default the model's device.
            progress: show a ``tqdm`` bar.
            amp: mixed precision (``torch.autocast``; float16 with a ``GradScaler`` on CUDA, bfloat16 on CPU).

        Returns:
            One ``{"epoch", "loss", "accuracy"}`` row per epoch (training-set figures).
        """
        self._check_fit_args(loader, epochs)
        started = task_id != self.current
        if started:
            self.start_task(task_id)
        else:
            self._require_stage(task_id, "training", "train")
        try:
            return self._fit(task_id, loader, epochs, optimizer, criterion, device, progress, amp,
                             f"train task {task_id}")
        except BaseException:
            if started and self._steps_taken == 0:  # nothing was learned: leave the state as it was
                self.current, self.stage = None, None
            raise

    def retrain(self, task_id: TaskId, loader: Iterable, epochs: int = 1, **kwargs: Any) -> list[dict[str, float]]:
        """Fine-tune the weights task ``task_id`` kept after :meth:`prune` (step 3 of the paper).

        Pruned weights stay exactly zero and frozen weights unchanged. Takes the same keyword arguments as
        :meth:`train_task`.
        """
        self._check_fit_args(loader, epochs)
        self._require_stage(task_id, "pruned", "retrain")
        return self._fit(task_id, loader, epochs, kwargs.pop("optimizer", None), kwargs.pop("criterion", None),
                         kwargs.pop("device", None), kwargs.pop("progress", True), kwargs.pop("amp", False),
                         f"retrain task {task_id}")

    # ------------------------------------------------------------------ prune and freeze
    @torch.no_grad()
    def prune(self, task_id: TaskId, prune_ratio: Optional[float] = None) -> dict[str, int]:
        """Free the smallest-magnitude fraction of task ``task_id``'s weights and zero them (step 2).

        Per layer (or globally, with ``pruning="global"``), ``round(prune_ratio * n)`` of the task's ``n``
        weights with the smallest ``|w|`` become free again and are set to exactly 0; the rest now belong to
        the task.

        Args:
            task_id: the task in progress.
            prune_ratio: overrides the ratio given to the constructor for this task.

        Returns:
            ``{layer name: number of weights pruned}``.
        """
        ratio = self._ratio_for(self.position) if prune_ratio is None else prune_ratio
        check_prune_ratio(ratio)
        self._require_stage(task_id, "training", "prune")
        params = self._params()
        weights = [params[n] for n in self._prunable_names]
        candidates = [free_mask(self._owner(n, w)) for n, w in zip(self._prunable_names, weights)]
        for name, w, c in zip(self._prunable_names, weights, candidates):
            if not bool(torch.isfinite(w[c]).all()):
                raise RuntimeError(f"task {task_id!r}'s weights in {name!r} are not finite: training diverged. "
                                   "Nothing was pruned; lower the learning rate and train the task again")
        if self.pruning == "global":
            masks = global_prune_masks(weights, candidates, ratio)
        else:
            masks = [prune_mask(w, c, ratio) for w, c in zip(weights, candidates)]
        check_identical_across_ranks(masks, f"pruning masks of task {task_id!r}")  # before anything changes
        pruned = {}
        for name, w, cand, mask in zip(self._prunable_names, weights, candidates, masks):
            w.masked_fill_(mask, 0)
            self.owner[name].copy_(claim_kept(self.owner[name], cand, mask, self.position))  # in place: views stay valid
            pruned[name] = int(torch.count_nonzero(mask))
        self.stage = "pruned"
        return pruned

    def freeze(self, task_id: TaskId) -> None:
        """Make the weights task ``task_id`` kept its own for good (step 4); the pruned ones stay free (step 5)."""
        self._require_stage(task_id, "pruned", "freeze")
        if self.shared_policy == "per_task":
            state = dict(self.module.named_parameters())
            self._shared_snapshots[task_id] = {
                **{n: state[n].detach().clone() for n in self.shared_names()},
                **{n: b.detach().clone() for n, b in self._shared_buffers().items()},
            }
        self.tasks.append(task_id)
        self.current, self.stage = None, None

    def prune_and_freeze(self, task_id: TaskId, prune_ratio: Optional[float] = None) -> dict[str, int]:
        """:meth:`prune` then :meth:`freeze`, without re-training (what the seed's sketch does)."""
        self._require_stage(task_id, "training", "prune")
        pruned = self.prune(task_id, prune_ratio)
        self.freeze(task_id)
        return pruned

    @torch.no_grad()
    def recalibrate_batchnorm(self, task_id: TaskId, loader: Iterable, *, num_batches: Optional[int] = None,
                              device: Optional[Union[str, torch.device]] = None) -> int:
        """Re-estimate the BatchNorm running statistics of the pruned task in progress, before :meth:`freeze`.

        Pruning zeroes most of a task's weights at once, so the running means and variances that BatchNorm
        collected while training describe a network that no longer exists; a short re-training only partly
        updates them (its momentum forgets slowly), and the frozen task would be evaluated with stale
        statistics. This recomputes them on the pruned network as the exact average over ``loader``'s batches
        (``torch.optim.swa_utils.update_bn``: cumulative averaging, train-mode forwards without gradients). No
        weight changes.

        Only statistics that belong to the task can be re-estimated: the first task's, or every task's with
        ``shared_policy="per_task"``. Under ``"first_task"`` later tasks run through the first task's frozen
        statistics, and changing them would change the earlier tasks.

        Args:
            task_id: the task in progress, after :meth:`prune` (and usually :meth:`retrain`).
            loader: batches ``(inputs, targets)`` of the task's training data (targets are ignored).
            num_batches: use only the first ``num_batches`` batches (default: all).
            device: where batches go; default the model's device.

        Returns:
            The number of BatchNorm layers re-estimated (0 if the model has none).
        """
        self._require_stage(task_id, "pruned", "recalibrate BatchNorm statistics")
        if self.shared_policy == "first_task" and self.position > 1:
            raise RuntimeError(f"task {task_id!r} cannot re-estimate BatchNorm statistics: with "
                               "shared_policy='first_task' they were frozen with the first task and are shared "
                               "by every task; use shared_policy='per_task' to give each task its own")
        if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                        or num_batches < 1):
            raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")
        norms = [m for m in self._norm_modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not norms:
            return 0
        from itertools import islice

        from torch.optim.swa_utils import update_bn

        batches = loader if num_batches is None else islice(loader, num_batches)
        undo_modes = self._restore_modes()  # update_bn leaves every module in one mode; put each back
        actives = [(h, h.active) for h in self._heads.values()]
        try:
            for h, _ in actives:
                h.active = task_id
            update_bn(batches, self.module, device=device if device is not None else self._device())
        finally:
            undo_modes()
            for h, active in actives:
                h.active = active
        broadcast_buffers(self.module)  # under DDP every rank keeps rank 0's estimate
        return len(norms)

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def task(self, task_id: TaskId) -> Iterator[nn.Module]:
        """Run the model as task ``task_id``: exact, non-destructive, at plain-model speed.

        On entry every weight the task did not own or inherit (free weights, later tasks' weights) is set to
        zero in place, its head is activated, its shared parameters swapped in (``per_task`` policy) and the
        model put in eval mode; on exit everything is restored bit for bit. Inside, ``model(x)`` is the plain
        forward with no masking work. For the task in progress the model is shown as it is.

        Examples:
            >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            >>> pn = PackNet(model, prune_ratio=0.5)
            >>> _ = pn.train_task(0, [(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))], progress=False)
            >>> _ = pn.prune(0); pn.freeze(0)
            >>> with pn.task(0):
            ...     logits = model(torch.randn(3, 4))
            >>> logits.shape
            torch.Size([3, 2])
        """
        k = self.task_position(task_id)
        in_progress = task_id == self.current
        restores: list[Callable[[], None]] = []
        try:
            restores.append(self._restore_modes())
            self.model.eval()
            if not in_progress:
                params = self._params()
                for name in self._prunable_names:
                    w = params[name]
                    backup = apply_visibility_(w, self._owner(name, w), k)
                    restores.append(lambda w=w, b=backup: restore_(w, b))
                if self.shared_policy == "per_task":
                    restores.append(self._swap_shared(self._shared_snapshots[task_id]))
            for heads in self._heads.values():
                restores.append(lambda h=heads, a=heads.active: setattr(h, "active", a))
                heads.active = task_id
            yield self.model
        finally:
            for undo in reversed(restores):
                undo()

    def _restore_modes(self) -> Callable[[], None]:
        modes = [(m, m.training) for m in self.model.modules()]

        def undo() -> None:
            for m, mode in modes:
                m.training = mode
        return undo

    @torch.no_grad()
    def _swap_shared(self, snapshot: dict[str, Tensor]) -> Callable[[], None]:
        tensors = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        backup = {n: tensors[n].detach().clone() for n in snapshot}
        for n, v in snapshot.items():
            tensors[n].copy_(v)

        def undo() -> None:
            with torch.no_grad():
                for n, v in backup.items():
                    tensors[n].copy_(v)
        return undo

    def evaluate(self, task_id: TaskId, loader: Iterable, device: Optional[Union[str, torch.device]] = None) -> float:
        """Top-1 accuracy of task ``task_id`` on ``loader`` (run inside :meth:`task`)."""
        with self.task(task_id):
            return evaluate_accuracy(self.module, loader, device if device is not None else self._device())

    # ------------------------------------------------------------------ capacity
    def capacity(self) -> list[dict[str, Any]]:
        """How the prunable weights are shared out: per layer and in total.

        Returns:
            One row per prunable layer and a last row ``"total"``:
            ``{"layer", "weights", "free": fraction, "owned": {task_id: fraction}}``. A pruned task in progress
            is listed after the frozen ones.
        """
        tasks = self.tasks + ([self.current] if self.stage == "pruned" else [])
        rows, totals = [], torch.zeros(MAX_TASKS + 1, dtype=torch.int64)
        for name in self._prunable_names:
            counts = owner_counts(self.owner[name]).cpu()
            totals += counts
            rows.append(self._capacity_row(name, counts, tasks))
        rows.append(self._capacity_row("total", totals, tasks))
        return rows

    @staticmethod
    def _capacity_row(layer: str, counts: Tensor, tasks: list[TaskId]) -> dict[str, Any]:
        n = int(counts.sum())
        return {"layer": layer, "weights": n, "free": int(counts[0]) / n,
                "owned": {t: int(counts[k + 1]) / n for k, t in enumerate(tasks)}}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume or to run any task: the model's weights, owner maps, lifecycle state and
        per-task shared parameters. Save it with ``torch.save``."""
        return {
            "format": _FORMAT,
            "model": self.module.state_dict(),
            "owner": {n: o.detach().cpu().clone() for n, o in self.owner.items()},
            "tasks": list(self.tasks),
            "current": self.current,
            "stage": self.stage,
            "shared_policy": self.shared_policy,
            "shared_snapshots": {t: {n: v.cpu().clone() for n, v in s.items()}
                                 for t, s in self._shared_snapshots.items()},
        }

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write :meth:`state_dict` to ``path`` — from rank 0 only when running distributed (all ranks call it)."""
        save_on_rank0(self.state_dict(), path)

    def verify_consistent(self) -> None:
        """Check that owner maps, weights and buffers are bit-identical on every rank (a collective; no-op in
        a single process). Raises ``RuntimeError`` naming the groups of ranks that disagree."""
        check_identical_across_ranks(list(self.owner.values()), "owner maps")
        check_identical_across_ranks(list(self.module.state_dict().values()), "model weights and buffers")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; checks that it fits this model first and changes nothing if not."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"not a PackNet checkpoint (expected format {_FORMAT!r}); was it saved with "
                             "pn.state_dict()?")
        if state["shared_policy"] != self.shared_policy:
            raise ValueError(f"checkpoint uses shared_policy={state['shared_policy']!r}, this PackNet "
                             f"{self.shared_policy!r}: construct it with the same policy")
        if set(state["owner"]) != set(self.owner):
            raise ValueError("checkpoint does not match this model's prunable layers: "
                             f"checkpoint has {sorted(state['owner'])}, model has {sorted(self.owner)}")
        for n, o in state["owner"].items():
            if o.shape != self.owner[n].shape or o.dtype != torch.uint8:
                raise ValueError(f"owner map of {n!r} in the checkpoint is {tuple(o.shape)} {o.dtype}, the model's "
                                 f"weight is {tuple(self.owner[n].shape)}: the checkpoint is for another model")
        own = self.module.state_dict()
        missing, unexpected = set(own) - set(state["model"]), set(state["model"]) - set(own)
        bad_shapes = [n for n in set(own) & set(state["model"]) if own[n].shape != state["model"][n].shape]
        if missing or unexpected or bad_shapes:
            raise ValueError(f"checkpoint does not match this model: missing {sorted(missing)}, unexpected "
                             f"{sorted(unexpected)}, different shapes {sorted(bad_shapes)}")
        self.module.load_state_dict(state["model"])
        self.owner = {n: o.to(self.owner[n].device).clone() for n, o in state["owner"].items()}
        self.tasks = list(state["tasks"])
        self.current, self.stage = state["current"], state["stage"]
        device = self._device()
        self._shared_snapshots = {t: {n: v.to(device).clone() for n, v in s.items()}
                                  for t, s in state["shared_snapshots"].items()}
