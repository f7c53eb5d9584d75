"""The :class:`PackNet` lifecycle: train on free weights → prune → re-train → freeze, then task-``t`` inference.

:class:`PackNet` wraps any ``nn.Module`` without changing its class or forward: it keeps one ``uint8`` owner
map per prunable weight (:mod:`packnet.masks`), decides what may learn in each phase
(:class:`~packnet.freezing.WeightGuard`), prunes with :mod:`packnet.pruning`, and swaps weights in place for
``with pn.task(t):`` so inference runs at the speed of the plain model.

The lifecycle of one task is an explicit state machine (:mod:`packnet.lifecycle`); a call in the wrong state
raises and changes nothing::

    idle --train_task(t)--> training --prune(t)--> pruned --freeze(t)--> idle
              ^   |                                 |   ^
              +---+ (more epochs)                   +---+ retrain(t)

Which tensors are prunable, task heads or shared is decided once, by :class:`~packnet.roles.Roles`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .capacity import measured_capacity
from .checkpoint import FORMAT, check_checkpoint
from .distributed import broadcast_buffers, check_identical_across_ranks, save_on_rank0, unwrap_parallel
from .freezing import TrainableSpec, WeightGuard
from .heads import heads_active
from .lifecycle import Lifecycle, Stage, TaskId, check_task_id
from .masks import apply_visibility_, claim_kept, free_mask, new_owner_map, restore_, trainable_mask
from .pruning import SCOPES, Criterion, check_prune_ratio, check_ratio_schedule, prune_masks, schedule_ratio
from .roles import DEFAULT_PRUNABLE, Roles
from .training import (OptimizerFactory, SchedulerFactory, check_epochs, default_optimizer, evaluate_accuracy,
                       loader_length, modes_restored, reestimate_batchnorm, train_epochs)

if TYPE_CHECKING:
    from .task_inference import TaskInference

__all__ = ["PackNet", "DEFAULT_PRUNABLE"]

SHARED_POLICIES = ("first_task", "per_task")


class PackNet:
    """Pack several tasks into one network by iterative pruning (Mallya & Lazebnik, CVPR 2018).

    Each task trains on the weights still *free*, keeps its largest-magnitude fraction ``1 - prune_ratio``
    of them, re-trains those, and *freezes* them; the pruned ones are free again for the next task.
    ``with pn.task(t):`` hides every weight task ``t`` did not see, so it computes exactly — bit for bit — what
    it computed when it was frozen: zero forgetting.

    Parameters fall into three roles (:mod:`packnet.roles`): **prunable** weights (``weight`` of
    ``Conv1d/2d/3d`` and ``Linear`` by default; one owner map each), **heads** (inside a
    :class:`~packnet.TaskHeads`: each task's head learns only while that task trains, and is never pruned) and
    **shared**: everything else (biases, normalisation affine parameters) and the BatchNorm running
    statistics. With ``shared_policy="first_task"`` (the paper's) they learn with the first task and are
    frozen afterwards (BatchNorm layers then run in eval mode while later tasks train). With ``"per_task"``
    every task trains its own copy, saved at :meth:`freeze` and swapped in by :meth:`task`: better accuracy
    when tasks differ (different input statistics), at the cost of a few parameters and buffers per task.

    Args:
        model: any ``nn.Module``; PackNet keeps a reference and changes its weights in place.
        prune_ratio: fraction of each task's weights to free, in ``[0, 1)``: one float, or one per task in
            learning order (see :func:`~packnet.equal_share_schedule`).
        prunable: module types whose ``weight`` is prunable (a ``weight`` with ``requires_grad=False``, a
            layer you froze, is not: it becomes shared and never changes).
        exclude: names of modules (as in ``model.named_modules()``) whose weights must not be pruned; their
            parameters become shared.
        shared_policy: ``"first_task"`` or ``"per_task"``, as above.
        pruning: the *scope*: ``"layer"`` (each layer prunes its own ratio; the paper's) or ``"global"`` (one
            threshold across all prunable layers).
        prune_criterion: the *scores* pruning ranks by: a callable ``(parameter name, weight) -> scores``
            returning a non-negative tensor shaped like the weight, lowest pruned first (like
            ``torch.nn.utils.prune``'s ``importance_scores``). Default ``None``: the magnitude ``|w|``
            (:func:`~packnet.pruning.magnitude`).
        prunable_params: names of further parameters to prune (as in ``model.named_parameters()``), for
            tensors not called ``weight`` or modules of other types, e.g. ``["lstm.weight_ih_l0",
            "attn.in_proj_weight"]``.

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

    def __init__(self, model: nn.Module, prune_ratio: Union[float, Sequence[float]] = 0.75, *,
                 prunable: Sequence[type[nn.Module]] = DEFAULT_PRUNABLE, exclude: Iterable[str] = (),
                 shared_policy: str = "first_task", pruning: str = "layer",
                 prune_criterion: Optional[Criterion] = None, prunable_params: Iterable[str] = ()) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"PackNet wraps an nn.Module, got {type(model).__name__}")
        self.prune_ratio = check_ratio_schedule(prune_ratio)
        if shared_policy not in SHARED_POLICIES:
            raise ValueError(f"shared_policy must be one of {SHARED_POLICIES}, got {shared_policy!r}")
        if pruning not in SCOPES:
            raise ValueError(f"pruning must be 'layer' or 'global', got {pruning!r}")
        if prune_criterion is not None and not callable(prune_criterion):
            raise TypeError("prune_criterion must be a callable (name, weight) -> scores, "
                            f"got {prune_criterion!r}")
        module = unwrap_parallel(model)
        roles = Roles(module, prunable, exclude, prunable_params)
        self.model = model
        """What was wrapped, used for every training forward pass (a ``DistributedDataParallel`` wrapper stays in
        the loop, so gradients are averaged across processes)."""
        self.module = module
        """The network itself (``model.module`` for a DDP wrapper). Names, owner maps and checkpoints refer to it,
        so a checkpoint written under DDP loads into a single-process model and back."""
        self.shared_policy = shared_policy
        self.pruning = pruning
        self.prune_criterion = prune_criterion
        """What pruning ranks weights by, ``(name, weight) -> scores``, or ``None`` for their magnitude."""
        self.roles = roles
        """Which parameters are prunable, task heads or shared (:class:`~packnet.roles.Roles`)."""
        params = dict(module.named_parameters())
        self.owner: dict[str, Tensor] = {n: new_owner_map(params[n]) for n in roles.prunable}
        """One ``uint8`` owner map per prunable weight (:mod:`packnet.masks`), by parameter name."""
        self.lifecycle = Lifecycle()
        """The frozen tasks, the task in progress and its stage (:class:`~packnet.lifecycle.Lifecycle`)."""
        self._shared_snapshots: dict[TaskId, dict[str, Tensor]] = {}
        self._steps_taken = 0
        self._view: Optional[TaskId] = None  # the task whose view `with pn.task(t):` shows, if inside one
        self._start_state: dict[str, Tensor] = {}  # what the task in progress may change, as it was at start
        self.task_inference: Optional["TaskInference"] = None
        """What recognises each task without its id (:mod:`packnet.task_inference`), once
        :meth:`calibrate_task_inference` was called; ``None`` before."""
        self.fused_step = True
        """Whether :meth:`train_task` and :meth:`retrain` step with :meth:`WeightGuard.step`'s fused path
        (SGD, Adam, AdamW; one pass fewer per weight). ``False`` forces the general path, mask, step,
        restore; frozen weights are bit-identical either way."""

    # ------------------------------------------------------------------ roles of parameters
    @property
    def prunable_names(self) -> list[str]:
        """Names of the prunable weight parameters, in model order."""
        return list(self.roles.prunable)

    def shared_names(self) -> list[str]:
        """Names of the shared parameters (neither prunable nor in a head)."""
        return self.roles.shared_names()

    def _owner(self, name: str, like: Tensor) -> Tensor:
        """The owner map of ``name``, moved to ``like``'s device if the model moved (``model.to(device)``)."""
        owner = self.owner[name]
        if owner.device != like.device:
            owner = self.owner[name] = owner.to(like.device)
        return owner

    # ------------------------------------------------------------------ state
    @property
    def tasks(self) -> list[TaskId]:
        """Task ids frozen so far, in learning order; the k-th owns the weights with owner value k."""
        return self.lifecycle.tasks

    @property
    def current(self) -> Optional[TaskId]:
        """The task in progress (trained but not yet frozen), or ``None``."""
        return self.lifecycle.current

    @property
    def stage(self) -> Optional[Stage]:
        """``None`` (idle), ``Stage.TRAINING`` or ``Stage.PRUNED``, equal to ``"training"`` / ``"pruned"``."""
        stage = self.lifecycle.stage
        return None if stage is Stage.IDLE else stage

    @property
    def position(self) -> int:
        """Owner value of the task in progress (or of the next one), i.e. the number of frozen tasks + 1."""
        return self.lifecycle.position

    def task_position(self, task_id: TaskId) -> int:
        """The owner value (1-based learning order) of a frozen task; ``KeyError`` for an unknown id."""
        check_task_id(task_id)
        return self.lifecycle.task_position(task_id)

    def __repr__(self) -> str:
        state = "idle" if self.current is None else f"task {self.current!r} {self.stage}"
        return (f"PackNet(tasks={self.tasks}, {state}, prune_ratio={self.prune_ratio}, "
                f"prunable={len(self.roles.prunable)} tensors, shared_policy={self.shared_policy!r})")

    @property
    def config(self) -> dict[str, Any]:
        """What decides the algorithm's outcome, stored in every checkpoint and checked when one is loaded:
        the prune ratio (or schedule), the pruning scope, the prunable tensors and the shared policy."""
        ratio = self.prune_ratio
        return {"prune_ratio": list(ratio) if isinstance(ratio, (list, tuple)) else ratio,
                "pruning": self.pruning, "prunable": list(self.roles.prunable),
                "shared_policy": self.shared_policy}

    def _refuse_in_view(self, verb: str) -> None:
        """Raise if called inside ``with pn.task(t):``, where hidden weights are zeroed in place."""
        if self._view is not None:
            raise RuntimeError(
                f"cannot {verb} inside `with pn.task({self._view!r}):`: in there the model shows task "
                f"{self._view!r}'s view (every weight it may not see is zeroed in place, and restored on "
                "exit), so this would act on that view and be undone or corrupted; leave the block first")

    def start_task(self, task_id: TaskId) -> None:
        """Begin a new task: from now on its free weights (and head) may train.

        :meth:`train_task` calls this for a new id; call it yourself before a hand-written loop in
        :meth:`training`. It keeps a CPU copy of every tensor the task may change (for :meth:`abort_task`),
        dropped at :meth:`freeze`.
        """
        self._refuse_in_view("start a task")
        self.lifecycle.check("start", task_id)
        for name, heads in self.roles.heads.items():
            if not heads.has_head(task_id):
                raise KeyError(f"the model's TaskHeads '{name}' has no head for task {task_id!r}: add one with "
                               f"heads.add({task_id!r}, nn.Linear(...)) first")
        self.lifecycle.advance("start", task_id)
        self._start_state = self._changeable_state()

    def _changeable_state(self) -> dict[str, Tensor]:
        """A CPU copy of every parameter and buffer the task in progress may change (see :meth:`abort_task`)."""
        changeable = {name for name, _, spec in self.trainable_specs() if spec is not False}
        shared_learns = self.shared_policy == "per_task" or self.position == 1
        state = {n: p.detach().to("cpu", copy=True) for n, p in self.module.named_parameters()
                 if n in changeable}
        for n, b in self.module.named_buffers():
            head = self.roles.head_task(n)
            if (head == str(self.current)) if head is not None else shared_learns:
                state[n] = b.detach().to("cpu", copy=True)
        return state

    # ------------------------------------------------------------------ training
    def trainable_specs(self) -> list[tuple[str, nn.Parameter, TrainableSpec]]:
        """What may learn in the current phase: ``(name, parameter, True | False | bool mask)`` per parameter.

        Prunable weights: their free entries before pruning, the current task's entries after. Heads: the
        current task's. Shared parameters: per ``shared_policy``. Parameters the user set
        ``requires_grad=False`` never learn.
        """
        if self.current is None:
            raise RuntimeError("no task is in progress: call start_task(t) or train_task(t, ...) first")
        k, retraining = self.position, self.lifecycle.stage is Stage.PRUNED
        specs: list[tuple[str, nn.Parameter, TrainableSpec]] = []
        for name, p in self.module.named_parameters():
            spec: TrainableSpec
            if not p.requires_grad:
                spec = False
            elif name in self.owner:
                spec = trainable_mask(self._owner(name, p), k, retraining=retraining)
            elif (head := self.roles.head_task(name)) is not None:
                spec = head == str(self.current)
            else:
                spec = self.shared_policy == "per_task" or k == 1
            specs.append((name, p, spec))
        return specs

    def _frozen_buffers(self) -> dict[str, Tensor]:
        """The buffers no step of this phase may change, by name: shared ones once frozen (``first_task``
        after the first task) and those inside other tasks' heads."""
        shared_frozen = self.shared_policy == "first_task" and self.position > 1
        frozen = {}
        for n, b in self.module.named_buffers():
            head = self.roles.head_task(n)
            if (head != str(self.current)) if head is not None else shared_frozen:
                frozen[n] = b
        return frozen

    @contextlib.contextmanager
    def training(self, task_id: TaskId) -> Iterator[WeightGuard]:
        """Set the model up for training the task in progress and yield its :class:`WeightGuard`.

        Inside: the model is in train mode (BatchNorm layers in eval mode when their statistics are frozen),
        the task's head is active, fully frozen parameters have ``requires_grad=False``. Build the optimizer
        from ``guard.parameters()`` and step with ``guard.step(opt)`` (or call ``guard.mask_gradients()`` /
        ``guard.restore_frozen()`` around every ``opt.step()``). Everything is put back on exit.

        On exit — normal or by any exception, ``KeyboardInterrupt`` included, even one raised inside
        ``optimizer.step()`` — every frozen entry (earlier tasks' weights, other heads, frozen shared
        parameters; pruned weights while re-training) and every frozen buffer is written back bit for bit, so
        an interrupted phase loses nothing learned before it and can simply be run again. On a normal exit
        the block is also checked: if a frozen entry had changed (a step without ``guard.restore_frozen()``
        after it), the values are restored and ``RuntimeError`` names the tensors.

        Examples:
            >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            >>> pn = PackNet(model); pn.start_task(0)
            >>> with pn.training(0) as guard:
            ...     opt = torch.optim.AdamW(guard.parameters(), lr=1e-3, weight_decay=1e-2)
            ...     loss = nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long))
            ...     opt.zero_grad(); loss.backward()
            ...     guard.step(opt)
        """
        self._refuse_in_view("train")
        if task_id != self.current:
            self.lifecycle.require_in_progress(task_id, "train")
        specs = self.trainable_specs()
        guard = WeightGuard.from_specs([(p, spec) for _, p, spec in specs])
        if not guard.parameters():
            raise RuntimeError(f"nothing can learn for task {task_id!r}: no prunable weight is free, and no "
                               "head or shared parameter may train; the network is full (see pn.capacity()): "
                               "use a larger network, or a higher prune_ratio for the earlier tasks")
        names = {id(p): n for n, p, _ in specs}
        frozen_buffers = self._frozen_buffers()
        buffer_backup = {n: b.detach().clone() for n, b in frozen_buffers.items()}
        grad_flags = [(p, p.requires_grad) for p in guard.frozen_parameters()]
        completed = False
        with modes_restored(self.model), heads_active(self.roles.heads.values(), task_id):
            try:
                self.model.train()
                if self.shared_policy == "first_task" and self.position > 1:
                    for m in self.roles.norm_modules():
                        m.eval()
                for p, _ in grad_flags:
                    p.requires_grad_(False)
                yield guard
                broadcast_buffers(self.module)  # DDP leaves each rank with its own last batch's statistics
                completed = True
            finally:
                changed = guard.changed_frozen() if completed else []
                guard.restore_frozen()  # whatever interrupted a step, nothing frozen keeps a changed value
                moved = [n for n, b in frozen_buffers.items() if not torch.equal(b, buffer_backup[n])]
                with torch.no_grad():
                    for n, b in frozen_buffers.items():
                        b.copy_(buffer_backup[n])
                for p, flag in grad_flags:
                    p.requires_grad_(flag)
                guard.close()
        if moved and completed:
            warnings.warn(f"frozen buffers {moved} changed during training({task_id!r}) (a BatchNorm layer "
                          "put in train mode?) and were restored: the task trained with statistics it will "
                          "not run with", RuntimeWarning, stacklevel=3)
        if changed:
            raise RuntimeError(
                f"frozen entries of {[names[id(p)] for p in changed]} changed during training({task_id!r}) and "
                "were restored (the trainable entries kept their updates): call guard.restore_frozen() "
                "after every optimizer.step()")

    def _device(self) -> torch.device:
        return self.module.get_parameter(self.roles.prunable[0]).device

    def _fit(self, task_id: TaskId, loader: Iterable, epochs: int, optimizer: Optional[OptimizerFactory],
             scheduler: Optional[SchedulerFactory], criterion: Optional[nn.Module],
             device: Optional[Union[str, torch.device]], progress: bool, amp: bool,
             desc: str) -> list[dict[str, float]]:
        make_optimizer = optimizer if optimizer is not None else default_optimizer
        self._steps_taken = 0

        def count_step() -> None:
            self._steps_taken += 1

        with self.training(task_id) as guard:
            opt = make_optimizer(guard.parameters())
            return train_epochs(self.model, loader, epochs, opt, criterion=criterion,
                                device=device if device is not None else self._device(),
                                after_backward=guard.mask_gradients, after_step=guard.restore_frozen, amp=amp,
                                progress=progress, desc=desc, on_step=count_step,
                                scheduler=None if scheduler is None else scheduler(opt),
                                step=lambda: guard.step(opt, fused=self.fused_step))

    @staticmethod
    def _check_fit_args(loader: Iterable, epochs: int, optimizer: Any, scheduler: Any) -> None:
        check_epochs(epochs)
        if loader_length(loader) == 0:
            raise ValueError("the training loader is empty: pass a loader with at least one batch")
        for name, factory in (("optimizer", optimizer), ("scheduler", scheduler)):
            if isinstance(factory, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
                raise TypeError(f"{name} must be a factory, not a ready {type(factory).__name__}: PackNet "
                                "builds each phase's own from the parameters that may learn, e.g. "
                                "optimizer=lambda params: torch.optim.SGD(params, lr=0.01)")
            if factory is not None and not callable(factory):
                raise TypeError(f"{name} must be a factory (a callable), e.g. optimizer=lambda params: "
                                "torch.optim.SGD(params, lr=0.01), scheduler=lambda opt: "
                                f"torch.optim.lr_scheduler.StepLR(opt, 2); got {factory!r}")

    def train_task(self, task_id: TaskId, loader: Iterable, epochs: int = 1, *,
                   optimizer: Optional[OptimizerFactory] = None, scheduler: Optional[SchedulerFactory] = None,
                   criterion: Optional[nn.Module] = None, device: Optional[Union[str, torch.device]] = None,
                   progress: bool = True, amp: bool = False) -> list[dict[str, float]]:
        """Train task ``task_id`` on the free weights (step 1 of the paper). A new id starts the task.

        Frozen weights of earlier tasks take part in the forward pass but stay bit-identical, whatever the
        optimizer — and whatever interrupts the training (an exception, Ctrl-C): then the task stays in
        progress with the steps it completed, and calling ``train_task`` again continues it (or
        :meth:`abort_task` gives it up). Calling it again before :meth:`prune` trains further.

        Args:
            task_id: an ``int`` or ``str`` not used before (or the task in progress). Ids are compared as
                strings too: ``"0"`` after ``0`` is refused, since both would name one head.
            loader: an iterable of ``(inputs, targets)`` batches, e.g. a ``DataLoader`` (one over an
                ``IterableDataset``, without a length, works too).
            epochs: passes over ``loader`` (0 only starts the task).
            optimizer: a factory ``params -> Optimizer``, called once for this phase, e.g. ``lambda ps:
                torch.optim.AdamW(ps, lr=1e-3)``. Default: SGD, lr 0.01, momentum 0.9 (the seed's).
            scheduler: a factory ``optimizer -> LR scheduler``, called once for this phase and stepped after
                every epoch, e.g. ``lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)``.
            criterion: the loss; default ``nn.CrossEntropyLoss()``.
            device: where batches go; default the model's device.
            progress: show a ``tqdm`` bar.
            amp: mixed precision (``torch.autocast``; float16 with a ``GradScaler`` on CUDA, bfloat16 on CPU).

        Returns:
            One ``{"epoch", "loss", "accuracy"}`` row per epoch (training-set figures).
        """
        self._refuse_in_view("train a task")
        self._check_fit_args(loader, epochs, optimizer, scheduler)
        started = task_id != self.current
        if started:
            self.start_task(task_id)
        else:
            self.lifecycle.check("train", task_id)
        try:
            return self._fit(task_id, loader, epochs, optimizer, scheduler, criterion, device, progress, amp,
                             f"train task {task_id}")
        except BaseException:
            if started and self._steps_taken == 0:  # nothing was learned: leave the state as it was
                self._abort(task_id, "abandon")
            raise

    def retrain(self, task_id: TaskId, loader: Iterable, epochs: int = 1, *,
                optimizer: Optional[OptimizerFactory] = None, scheduler: Optional[SchedulerFactory] = None,
                criterion: Optional[nn.Module] = None, device: Optional[Union[str, torch.device]] = None,
                progress: bool = True, amp: bool = False) -> list[dict[str, float]]:
        """Fine-tune the weights task ``task_id`` kept after :meth:`prune` (step 3 of the paper).

        Pruned weights stay exactly zero and frozen weights unchanged, also when it is interrupted (then call
        it again). Takes the same arguments as :meth:`train_task`.
        """
        self._refuse_in_view("retrain")
        self._check_fit_args(loader, epochs, optimizer, scheduler)
        self.lifecycle.check("retrain", task_id)
        return self._fit(task_id, loader, epochs, optimizer, scheduler, criterion, device, progress, amp,
                         f"retrain task {task_id}")

    # ------------------------------------------------------------------ giving a task up
    def abort_task(self) -> TaskId:
        """Abandon the task in progress — e.g. after its training diverged — and return its id.

        Every tensor the task could change (its free weights, its head, shared parameters and buffers it
        trained) is put back exactly as it was at :meth:`start_task`, the weights :meth:`prune` gave it are
        free again, and PackNet is idle: every earlier task is bit-identical, and the same id (or another)
        can be trained from the start.

        Raises:
            RuntimeError: if no task is in progress (nothing changes).
        """
        self._refuse_in_view("abort a task")
        if self.current is None:
            raise RuntimeError("no task is in progress: there is nothing to abort")
        task_id = self.current
        self._abort(task_id, "abort")
        return task_id

    @torch.no_grad()
    def _abort(self, task_id: TaskId, action: str) -> None:
        self.lifecycle.check(action, task_id)
        if action == "abort" and not self._start_state:
            warnings.warn(f"task {task_id!r} has no start state (it was resumed from a checkpoint written "
                          "before start states were stored): its weights are freed, but its head and the shared "
                          "tensors it trained keep their trained values", RuntimeWarning, stacklevel=3)
        tensors = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        for n, saved in self._start_state.items():
            tensors[n].copy_(saved)
        k = self.position
        for name, owner in self.owner.items():
            owner.masked_fill_(owner == k, 0)  # in place, so views of the owner map stay valid
        if self.task_inference is not None and self.task_inference.is_calibrated(task_id):
            self.task_inference.forget(task_id)
        self._start_state = {}
        self.lifecycle.advance(action, task_id)

    # ------------------------------------------------------------------ prune and freeze
    @torch.no_grad()
    def prune(self, task_id: TaskId, prune_ratio: Optional[float] = None) -> dict[str, int]:
        """Free the smallest-magnitude fraction of task ``task_id``'s weights and zero them (step 2).

        Per layer (or globally, with ``pruning="global"``), ``round(prune_ratio * n)`` of the task's ``n``
        weights with the smallest ``|w|`` (or the lowest ``prune_criterion`` scores) become free again and are
        set to exactly 0; the rest now belong to the task. A layer where the task keeps nothing (no free
        weight was left, or its share rounds to 0) is reported with a ``UserWarning``.

        Args:
            task_id: the task in progress.
            prune_ratio: overrides the ratio given to the constructor for this task.

        Returns:
            ``{layer name: number of weights pruned}``.
        """
        self._refuse_in_view("prune")
        ratio = schedule_ratio(self.prune_ratio, self.position) if prune_ratio is None else prune_ratio
        check_prune_ratio(ratio)
        self.lifecycle.check("prune", task_id)
        params = dict(self.module.named_parameters())
        weights = [params[n] for n in self.roles.prunable]
        fixed = [n for n, w in zip(self.roles.prunable, weights) if not w.requires_grad]
        if fixed:
            raise RuntimeError(f"prunable weights {fixed} have requires_grad=False: pruning would zero entries "
                               "of tensors you froze. Nothing was pruned; set requires_grad=True again, or "
                               "leave them out with PackNet(..., exclude=[module names])")
        candidates = [free_mask(self._owner(n, w)) for n, w in zip(self.roles.prunable, weights)]
        for name, w, c in zip(self.roles.prunable, weights, candidates):
            if not bool(torch.isfinite(w[c]).all()):
                raise RuntimeError(f"task {task_id!r}'s weights in {name!r} are not finite: training diverged. "
                                   "Nothing was pruned; call pn.abort_task() and train the task again with a "
                                   "lower learning rate")
        scores = (None if self.prune_criterion is None
                  else [self.prune_criterion(n, w.detach()) for n, w in zip(self.roles.prunable, weights)])
        masks = prune_masks(weights, candidates, ratio, scope=self.pruning, scores=scores)
        check_identical_across_ranks(masks, f"pruning masks of task {task_id!r}")  # before anything changes
        pruned, empty = {}, []
        for name, w, cand, mask in zip(self.roles.prunable, weights, candidates, masks):
            w.masked_fill_(mask, 0)
            # in place, so views of the owner map stay valid
            self.owner[name].copy_(claim_kept(self.owner[name], cand, mask, self.position))
            pruned[name] = int(torch.count_nonzero(mask))
            if pruned[name] == int(torch.count_nonzero(cand)):
                empty.append(name)
        self.lifecycle.advance("prune", task_id)
        if empty:
            warnings.warn(f"task {task_id!r} keeps no weight in {empty} (no free weight was left there, or its "
                          f"share at prune_ratio={ratio} rounds to 0): it computes through earlier tasks' "
                          "weights alone in those layers", UserWarning, stacklevel=3)
        return pruned

    def freeze(self, task_id: TaskId) -> None:
        """Make the weights task ``task_id`` kept its own for good (step 4); the pruned ones stay free (step 5)."""
        self._refuse_in_view("freeze")
        self.lifecycle.check("freeze", task_id)
        if self.shared_policy == "per_task":
            self._shared_snapshots[task_id] = self.roles.shared_state()
        self.lifecycle.advance("freeze", task_id)
        self._start_state = {}

    def prune_and_freeze(self, task_id: TaskId, prune_ratio: Optional[float] = None) -> dict[str, int]:
        """:meth:`prune` then :meth:`freeze`, without re-training (what the seed's sketch does)."""
        self._refuse_in_view("prune")
        self.lifecycle.check("prune", task_id)
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
        self._refuse_in_view("recalibrate BatchNorm statistics")
        self.lifecycle.check("recalibrate", task_id)
        if self.shared_policy == "first_task" and self.position > 1:
            raise RuntimeError(f"task {task_id!r} cannot re-estimate BatchNorm statistics: with "
                               "shared_policy='first_task' they were frozen with the first task and are shared "
                               "by every task; use shared_policy='per_task' to give each task its own")
        with heads_active(self.roles.heads.values(), task_id):
            n_layers = reestimate_batchnorm(self.module, loader, num_batches=num_batches,
                                            device=device if device is not None else self._device())
        if n_layers:
            broadcast_buffers(self.module)  # under DDP every rank keeps rank 0's estimate
        return n_layers

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def task(self, task_id: TaskId) -> Iterator[nn.Module]:
        """Run the model as task ``task_id``: exact, non-destructive, at plain-model speed.

        On entry every weight the task did not own or inherit (free weights, later tasks' weights) is set to
        zero in place, its head is activated, its shared parameters swapped in (``per_task`` policy) and the
        model put in eval mode; on exit everything is restored bit for bit. Inside, ``model(x)`` is the plain
        forward with no masking work. For the task in progress the model is shown as it is.

        The view is guarded: views do not nest (``pn.task(1)`` inside ``pn.task(0)`` raises), and every call
        that would train, prune, freeze, abort, save or load raises inside one, changing nothing. Whatever
        the block itself does to a frozen task's weights, shared tensors or head is discarded on exit.

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
        if self._view is not None:
            raise RuntimeError(f"`with pn.task({task_id!r}):` inside `with pn.task({self._view!r}):`: task views "
                               "do not nest (the model already shows the outer task's weights); leave the "
                               "outer block first")
        k = self.task_position(task_id)
        in_progress = task_id == self.current
        with contextlib.ExitStack() as undo:  # on exit, everything below is undone in reverse order
            undo.enter_context(modes_restored(self.model))
            self.model.eval()
            if not in_progress:
                params = dict(self.module.named_parameters())
                for name in self.roles.prunable:
                    w = params[name]
                    undo.callback(restore_, w, apply_visibility_(w, self._owner(name, w), k))
                swapped: dict[str, Tensor] = {}
                if self.shared_policy == "per_task":
                    swapped = self._shared_snapshots[task_id]
                    undo.callback(self.roles.swap_in_(swapped))
                # heads and shared tensors are small: whatever the block does to them is undone too
                kept = [t for n, t in [*params.items(), *self.module.named_buffers()]
                        if n not in self.owner and n not in swapped]
                undo.callback(_copy_back, [(t, t.detach().clone()) for t in kept])
            undo.enter_context(heads_active(self.roles.heads.values(), task_id))
            self._view = task_id
            undo.callback(setattr, self, "_view", None)
            yield self.model

    def evaluate(self, task_id: TaskId, loader: Iterable, device: Optional[Union[str, torch.device]] = None) -> float:
        """Top-1 accuracy of task ``task_id`` on ``loader`` (run inside :meth:`task`)."""
        with self.task(task_id):
            return evaluate_accuracy(self.module, loader, device if device is not None else self._device())

    # ------------------------------------------------------------------ beyond the task id
    def calibrate_task_inference(self, task_id: TaskId, loader: Iterable, **options: Any) -> None:
        """Record what task ``task_id`` needs to be recognised without its id (call it after :meth:`freeze`).

        Delegates to :meth:`packnet.task_inference.TaskInference.calibrate`, which documents the options
        (``n_components``, ``shrinkage``, ``num_batches``; ``replace=True`` to calibrate a task again) and what
        is stored: per-class statistics of the inputs, never the inputs. The records are part of
        :meth:`state_dict`.
        """
        self._refuse_in_view("calibrate task inference")
        from .task_inference import TaskInference

        if self.task_inference is None:
            self.task_inference = TaskInference()
        self.task_inference.calibrate(self, task_id, loader, **options)

    def infer_task(self, x: Tensor, *, batch: bool = False, **options: Any) -> Any:
        """The task of each sample of ``x`` (``batch=True``: the one task most consistent with the whole batch).

        Delegates to :meth:`packnet.task_inference.TaskInference.infer`.
        """
        self._refuse_in_view("infer the task")
        if self.task_inference is None:
            raise RuntimeError("no task was calibrated for task inference: call "
                               "pn.calibrate_task_inference(t, loader) after freeze(t) for every task")
        return self.task_inference.infer(self, x, batch=batch, **options)

    def export(self, task_id: TaskId) -> nn.Module:
        """A plain ``nn.Module`` that computes exactly what ``with pn.task(task_id):`` computes.

        A copy: this PackNet and its model are untouched. See :func:`packnet.export.export_task`.
        """
        self._refuse_in_view("export a task")
        from .export import export_task

        return export_task(self, task_id)

    # ------------------------------------------------------------------ capacity
    def capacity(self) -> list[dict[str, Any]]:
        """How the prunable weights are shared out: per layer and in total.

        Returns:
            One row per prunable layer and a last row ``"total"``:
            ``{"layer", "weights", "free": fraction, "owned": {task_id: fraction}}``. A pruned task in progress
            is listed after the frozen ones.
        """
        tasks = self.tasks + ([self.current] if self.lifecycle.stage is Stage.PRUNED else [])
        return measured_capacity({n: self.owner[n] for n in self.roles.prunable}, tasks)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume or to run any task: the model's weights, owner maps, lifecycle state,
        per-task shared parameters and the configuration (:mod:`packnet.checkpoint` lists the entries). Save it
        with ``torch.save``; ``torch.load(path, weights_only=True)`` reads it back."""
        self._refuse_in_view("save a checkpoint")
        return {
            "format": FORMAT,
            "model": self.module.state_dict(),
            "owner": {n: o.detach().cpu().clone() for n, o in self.owner.items()},
            "tasks": list(self.tasks),
            "current": self.current,
            "stage": None if self.stage is None else self.stage.value,  # a plain str: weights_only loads it
            "shared_policy": self.shared_policy,
            "shared_snapshots": {t: {n: v.cpu().clone() for n, v in s.items()}
                                 for t, s in self._shared_snapshots.items()},
            "config": self.config,
            "start_state": ({n: v.clone() for n, v in self._start_state.items()}
                            if self.current is not None else None),
            "task_inference": None if self.task_inference is None else self.task_inference.state_dict(),
        }

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write :meth:`state_dict` to ``path`` — from rank 0 only when running distributed (all ranks call it)."""
        save_on_rank0(self.state_dict(), path)

    def verify_consistent(self) -> None:
        """Check that owner maps, weights and buffers are bit-identical on every rank (a collective; no-op in
        a single process). Raises ``RuntimeError`` naming the groups of ranks that disagree."""
        check_identical_across_ranks(list(self.owner.values()), "owner maps")
        check_identical_across_ranks(list(self.module.state_dict().values()), "model weights and buffers")

    def load_state_dict(self, state: dict[str, Any], *, check_config: bool = True) -> None:
        """Restore a :meth:`state_dict`, all or nothing.

        The whole checkpoint is checked first (:func:`~packnet.checkpoint.check_checkpoint`: format, every
        key, owner maps against the task list, ids, stage, per-task snapshots, configuration); a checkpoint
        that does not fit raises ``ValueError`` and changes nothing.

        Args:
            state: what :meth:`state_dict` returned (e.g. ``torch.load(path, weights_only=True)``).
            check_config: refuse a checkpoint made with another ``prune_ratio`` or ``pruning`` scope
                (default); ``False`` loads it and keeps this PackNet's settings for the tasks to come.
        """
        self._refuse_in_view("load a checkpoint")
        shared = {**{n: p for n, p in self.module.named_parameters() if n in set(self.shared_names())},
                  **self.roles.shared_buffers()}
        lifecycle = check_checkpoint(state, owner=self.owner, model_state=self.module.state_dict(),
                                     shared_policy=self.shared_policy, shared=shared, config=self.config,
                                     check_config=check_config)
        inference = None
        if state.get("task_inference") is not None:
            from .task_inference import TaskInference

            inference = TaskInference()
            inference.load_state_dict(state["task_inference"])  # validates; raises before any change here
            unknown = [t for t in inference.tasks if t not in lifecycle.tasks]
            if unknown:
                raise ValueError(f"the checkpoint's task inference has records of {unknown}, which are not among "
                                 f"its frozen tasks {lifecycle.tasks}: it is corrupt")
        backup = {n: v.detach().clone() for n, v in self.module.state_dict().items()}
        try:
            self.module.load_state_dict(state["model"])
        except BaseException:  # e.g. a dtype that cannot be copied: put back what was there
            self.module.load_state_dict(backup)
            raise
        self.owner = {n: o.to(self.owner[n].device).clone() for n, o in state["owner"].items()}
        self.lifecycle = lifecycle
        device = self._device()
        self._shared_snapshots = {t: {n: v.to(device).clone() for n, v in s.items()}
                                  for t, s in state["shared_snapshots"].items()}
        self._start_state = {n: v.clone() for n, v in (state.get("start_state") or {}).items()}
        self.task_inference = inference

@torch.no_grad()
def _copy_back(saved: list[tuple[Tensor, Tensor]]) -> None:
    """Write each saved copy back into its tensor, in place."""
    for tensor, copy in saved:
        tensor.copy_(copy)
