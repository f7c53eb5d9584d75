"""Baselines to measure PackNet against, trained on the same data with the same budgets.

Every function here returns the same :class:`~packnet.bench.experiment.ExperimentResult` as
:func:`~packnet.bench.experiment.run_packnet` (with ``packnet=None``), so the metrics and plots apply unchanged:

* :func:`run_finetune` — one network fine-tuned on each task in turn, nothing protected: the catastrophic
  forgetting PackNet exists to prevent (McCloskey & Cohen, 1989; Goodfellow et al., 2013). The lower bound.
* :func:`run_ewc` — Elastic Weight Consolidation (Kirkpatrick et al., 2017): fine-tuning plus a quadratic
  penalty that holds each weight near its old value in proportion to how important it was for earlier tasks
  (its diagonal Fisher information). All weights stay shared; forgetting is slowed down, not prevented.
* :func:`run_independent` — one separate network per task: nothing to forget and nothing shared, at ``T`` times
  the parameters. The upper bound for a given architecture.
* :func:`run_joint` — one network trained on all tasks' data at once (multi-task learning): the other classic
  upper bound, which needs every task's data at the same time and so is not continual learning at all.

Budgets: a *sequential* baseline gets ``epochs`` passes over each task, as many as PackNet's
``epochs + retrain_epochs``; :func:`run_joint` gets ``epochs`` passes over the union, the same number of
optimizer steps in total. Shuffling is seeded exactly as in :func:`~packnet.bench.experiment.run_packnet` (task ``i``'s
loader with ``seed + i``) and every task is tested on its whole test set in batches of 1,000.

The EWC building blocks are public too, to use in a hand-written loop: :func:`diagonal_fisher`,
:class:`EWCPenalty`; :func:`count_parameters` counts what each method stores.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Hashable, Iterable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from packnet.heads import TaskHeads
from packnet.training import (OptimizerFactory, check_epochs, default_optimizer, evaluate_accuracy, modes_restored,
                              train_epochs)

from .data import Task
from .experiment import ExperimentResult
from .metrics import nan_matrix

__all__ = ["run_finetune", "run_ewc", "run_independent", "run_joint", "set_active_task", "count_parameters",
           "diagonal_fisher", "EWCPenalty"]

Device = Union[str, torch.device]
EVAL_BATCH = 1000


# ---------------------------------------------------------------------------------------------- helpers
def set_active_task(model: nn.Module, task_id: object) -> None:
    """Point every :class:`~packnet.TaskHeads` in ``model`` at ``task_id`` (no-op for a single shared head)."""
    for module in model.modules():
        if isinstance(module, TaskHeads):
            module.active = task_id


def count_parameters(model: nn.Module, task_id: Optional[Hashable] = None) -> int:
    """Number of parameters in ``model``, or only those it uses for task ``task_id``.

    With ``task_id``, the heads of other tasks are left out: every parameter outside a
    :class:`~packnet.TaskHeads` counts, plus ``task_id``'s own head. That is "one network" for one task, the
    unit in which :func:`run_independent`'s cost is ``T`` networks.

    Args:
        model: any module.
        task_id: a task whose head counts (``None``: count everything).

    Returns:
        The number of scalar parameters.

    Examples:
        >>> from packnet.bench.models import mlp
        >>> net = mlp(range(5), 2, hidden=(8,))          # 784·8+8 trunk, five heads of 8·2+2
        >>> count_parameters(net), count_parameters(net, task_id=0)
        (6370, 6298)
    """
    if task_id is None:
        return sum(p.numel() for p in model.parameters())
    in_heads = {id(p) for m in model.modules() if isinstance(m, TaskHeads) for p in m.parameters()}
    own = {id(p) for m in model.modules() if isinstance(m, TaskHeads) and m.has_head(task_id)
           for p in m.head(task_id).parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in in_heads or id(p) in own)


def _check_tasks(tasks: Sequence[Task]) -> None:
    if len(tasks) == 0:
        raise ValueError("tasks is empty: pass the benchmark, e.g. packnet.bench.data.split_mnist()")
    ids = [task.task_id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task ids must be distinct, got {ids}")


def _check_budget(epochs: int, batch_size: int) -> None:
    check_epochs(epochs)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _check_model(model: object, where: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where} must be an nn.Module, got {type(model).__name__}")
    return model


def _prepare(model: nn.Module, tasks: Sequence[Task], epochs: int, batch_size: int,
             optimizer: Optional[OptimizerFactory], device: Device) -> OptimizerFactory:
    """Check a baseline's arguments, move the model to ``device`` and return the optimizer factory to use."""
    _check_model(model)
    _check_tasks(tasks)
    _check_budget(epochs, batch_size)
    model.to(device)
    return optimizer if optimizer is not None else default_optimizer


def _test_accuracy(model: nn.Module, task: Task, device: Device) -> float:
    """Test accuracy of ``model`` on ``task`` with its head active (eval mode, batches of 1,000)."""
    model.eval()
    set_active_task(model, task.task_id)
    return evaluate_accuracy(model, task.loaders(EVAL_BATCH, shuffle=False)[1], device)


def _train_sequentially(model: nn.Module, tasks: Sequence[Task], method: str, *, epochs: int, batch_size: int,
                        optimizer: Optional[OptimizerFactory], device: Device, seed: int, progress: bool,
                        after_backward: Optional[Callable[[], None]] = None,
                        after_task: Optional[Callable[[Task], None]] = None) -> ExperimentResult:
    """The loop of every sequential baseline: per task, train all parameters, ``after_task``, test all seen tasks.

    ``after_backward`` runs after every ``loss.backward()`` (EWC adds its penalty's gradient there).
    ``after_task(task)`` runs after training, before testing (EWC computes its Fisher there).
    """
    start = time.perf_counter()
    make_optimizer = _prepare(model, tasks, epochs, batch_size, optimizer, device)
    R = nan_matrix(len(tasks))
    histories = []
    for i, task in enumerate(tasks):
        train_loader, _ = task.loaders(batch_size, seed=seed + i)
        set_active_task(model, task.task_id)
        model.train()
        history = train_epochs(model, train_loader, epochs, make_optimizer(list(model.parameters())),
                               after_backward=after_backward, device=device, progress=progress,
                               desc=f"{method} task {task.task_id}")
        histories.append({"train": history})
        if after_task is not None:
            after_task(task)
        for j, seen in enumerate(tasks[: i + 1]):
            R[i][j] = _test_accuracy(model, seen, device)
    return ExperimentResult(R, model, None, method, histories, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- fine-tuning
def run_finetune(model: nn.Module, tasks: Sequence[Task], *, epochs: int = 5, batch_size: int = 128,
                 optimizer: Optional[OptimizerFactory] = None, device: Device = "cpu",
                 seed: int = 0, progress: bool = True) -> ExperimentResult:
    """Sequential fine-tuning: train every parameter on task 0, then task 1, ...; evaluate all seen tasks.

    With per-task heads each task still has its own classifier, so the forgetting measured here is the trunk
    drifting away from what earlier heads expect.

    Args:
        model: the network (moved to ``device``).
        tasks: the benchmark.
        epochs: training epochs per task (match PackNet's ``epochs + retrain_epochs`` for a fair budget).
        batch_size: training batch size.
        optimizer: factory ``params -> Optimizer``, a fresh one per task (default: SGD, lr 0.01, momentum 0.9).
        device: where to train.
        seed: seeds the loaders' shuffling (the same as :func:`~packnet.bench.experiment.run_packnet` uses).
        progress: show tqdm bars.

    Returns:
        An :class:`~packnet.bench.experiment.ExperimentResult` with ``method="finetune"``: the full lower-triangular
        accuracy matrix, ``histories[i] = {"train": [...]}``.

    Raises:
        ValueError: if ``tasks`` is empty or has repeated ids, or ``epochs`` / ``batch_size`` are invalid.

    Examples:
        >>> from packnet.bench.data import split_mnist
        >>> from packnet.bench.models import mlp
        >>> tasks = split_mnist(2)
        >>> _ = torch.manual_seed(0)
        >>> result = run_finetune(mlp(range(2), 2, hidden=(16,)), tasks, epochs=1, progress=False)
        >>> result.method, len(result.accuracy_matrix)
        ('finetune', 2)
    """
    return _train_sequentially(model, tasks, "finetune", epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                               device=device, seed=seed, progress=progress)


# ---------------------------------------------------------------------------------------------- EWC
def diagonal_fisher(model: nn.Module, loader: Iterable, *, device: Optional[Device] = None,
                    per_sample: bool = True) -> dict[str, Tensor]:
    r"""The diagonal of the *empirical* Fisher information of ``model`` on ``loader``'s data.

    For every trainable parameter :math:`\theta_i`, the mean over the data of the squared gradient of the
    log-likelihood of the *true* label (hence "empirical", as most EWC implementations do):

    .. math:: F_i = \frac{1}{N}\sum_{n=1}^{N}
              \Big(\frac{\partial \log p_\theta(y_n \mid x_n)}{\partial \theta_i}\Big)^2 .

    With ``per_sample=True`` (the default) every example's gradient is squared on its own, as in EWC's
    definition; the result does not depend on the batch size or order. When every trainable parameter belongs to an
    ``nn.Linear`` layer (an MLP with :class:`~packnet.TaskHeads`) this costs one backward pass per batch: the
    gradient of example :math:`n` for a weight matrix is the outer product :math:`d_n a_n^\top` of the layer's
    output gradient and input, so :math:`\sum_n (d_n a_n^\top)^2 = (d \odot d)^\top (a \odot a)`. Other
    models get explicit per-example gradients from ``torch.func.vmap`` (slower, same numbers).

    With ``per_sample=False`` each *minibatch*'s mean gradient is squared and the squares are averaged over
    batches (weighted by batch size): it works with any model, but averaging inside a batch cancels noise, so the
    values come out smaller (by up to the batch size when the gradients are mostly noise) and depend on the
    batch size and order. The model is run in eval mode (BatchNorm uses its running statistics) and its
    modes are put back afterwards; whichever head is active is the one differentiated.

    Args:
        model: the trained network, with the task's head active.
        loader: ``(inputs, labels)`` batches of the task's training data (re-iterable, e.g. a ``DataLoader``).
        device: where batches go (default: the model's device).
        per_sample: square per-example gradients (``True``) or per-minibatch gradients (``False``).

    Returns:
        ``{parameter name: F}``, one tensor shaped like each parameter with ``requires_grad``; parameters that get
        no gradient (other tasks' heads) have ``F = 0``.

    Raises:
        ValueError: if ``loader`` yields no batch.

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 2))
        >>> data = [(torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1]))]
        >>> fisher = diagonal_fisher(net, data)
        >>> sorted(fisher), fisher["0.weight"].shape, bool((fisher["0.weight"] >= 0).all())
        (['0.bias', '0.weight'], torch.Size([2, 3]), True)
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with modes_restored(model):
        model.eval()
        if not per_sample:
            fisher, seen = _minibatch_fisher(model, params, loader, device)
        else:
            found = _linear_fisher(model, params, loader, device)
            fisher, seen = found if found is not None else _vmap_fisher(model, params, loader, device)
    if seen == 0:
        raise ValueError("the Fisher loader yielded no batches: pass the task's (non-empty) training data")
    return {n: f / seen for n, f in fisher.items()}


def _minibatch_fisher(model: nn.Module, params: dict[str, nn.Parameter], loader: Iterable,
                      device: torch.device) -> tuple[dict[str, Tensor], int]:
    """Sum over batches of (batch size × squared mean-batch gradient), and the number of examples."""
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()), allow_unused=True)
        for n, g in zip(params, grads):
            if g is not None:
                fisher[n] += g.detach().pow(2) * y.shape[0]
        seen += y.shape[0]
    return fisher, seen


def _vmap_fisher(model: nn.Module, params: dict[str, nn.Parameter], loader: Iterable,
                 device: torch.device) -> tuple[dict[str, Tensor], int]:
    """Sum of squared per-example gradients (any model ``torch.func`` can vmap), and the number of examples."""
    from torch.func import functional_call, grad, vmap

    detached = {n: p.detach() for n, p in params.items()}
    buffers = dict(model.named_buffers())

    def nll_one(theta: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, (theta, buffers), (x.unsqueeze(0),)), y.unsqueeze(0))

    per_example_grads = vmap(grad(nll_one), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        grads = per_example_grads(detached, x, y)
        for n in fisher:
            fisher[n] += grads[n].pow(2).sum(0)
        seen += y.shape[0]
    return fisher, seen


class _NotPlainLinear(Exception):
    """A ``Linear`` layer was used in a way the outer-product shortcut does not cover."""


def _linear_fisher(model: nn.Module, params: dict[str, nn.Parameter], loader: Iterable,
                   device: torch.device) -> Optional[tuple[dict[str, Tensor], int]]:
    """Squared per-example gradients of a network whose trainable parameters all belong to ``nn.Linear`` layers.

    For a ``Linear`` layer with input ``a_n`` and output gradient ``d_n`` (example ``n``, loss summed over the
    batch) the per-example weight gradient is the outer product ``d_n a_n^T``, so the sum of their squares is
    one matrix product, ``(d*d)^T (a*a)``, and the bias's is ``sum_n d_n^2``: the same numbers as
    :func:`_vmap_fisher` without materialising a gradient per example. ``None`` when the shortcut does not
    apply (other parameters, inputs that are not ``(batch, features)``, a layer called twice per forward).
    """
    owners: dict[str, tuple[nn.Linear, str]] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            for kind in ("weight", "bias"):
                if getattr(module, kind) is not None:
                    owners[f"{module_name}.{kind}" if module_name else kind] = (module, kind)
    if not params or any(n not in owners for n in params):
        return None
    holders: dict[int, int] = {}  # a weight shared by two modules gets gradients the hooks would miss
    for module in model.modules():
        for p in module.parameters(recurse=False):
            holders[id(p)] = holders.get(id(p), 0) + 1
    if any(holders[id(p)] != 1 for p in params.values()):
        return None
    layers = {owners[n][0] for n in params}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    inputs: dict[nn.Linear, Tensor] = {}
    outputs: dict[nn.Linear, Tensor] = {}

    def keep_input_output(module: nn.Module, args: tuple, output: Tensor) -> None:
        if module in inputs or args[0].dim() != 2 or not output.requires_grad:
            raise _NotPlainLinear
        inputs[module], outputs[module] = args[0].detach(), output

    handles = [layer.register_forward_hook(keep_input_output) for layer in layers]
    seen = 0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            inputs.clear()
            outputs.clear()
            loss = F.cross_entropy(model(x), y, reduction="sum")  # example n's gradient is its own
            called = list(outputs)
            out_grads = dict(zip(called, torch.autograd.grad(loss, [outputs[m] for m in called], allow_unused=True)))
            for n in params:
                layer, kind = owners[n]
                if out_grads.get(layer) is None:  # not called, or not on the path to the loss (another head)
                    continue
                d2 = out_grads[layer].pow(2)
                fisher[n] += d2.t() @ inputs[layer].pow(2) if kind == "weight" else d2.sum(0)
            seen += y.shape[0]
    except _NotPlainLinear:
        return None
    finally:
        for handle in handles:
            handle.remove()
    return fisher, seen


class EWCPenalty:
    r"""The EWC regulariser :math:`\frac{\lambda}{2}\sum_{k}\sum_i F_{k,i}\,(\theta_i - \theta^*_{k,i})^2`.

    Each consolidated task ``k`` contributes its diagonal Fisher :math:`F_k` (how much each weight mattered to
    it) and its anchor :math:`\theta^*_k` (the weights when it was learned), one penalty per earlier task as in
    Kirkpatrick et al. (2017). The gradient is :math:`\lambda\sum_k F_k(\theta-\theta^*_k)`: a spring pulling
    each weight back, stiff where the Fisher is large.

    A sum of quadratics in :math:`\theta` is one quadratic, so the terms are stored merged, without
    approximation: the *importance* :math:`S = \sum_k F_k`, the *centre*
    :math:`\bar\theta = \sum_k F_k\theta^*_k / S` (where :math:`S > 0`) and the constant
    :math:`c = \sum_k\sum_i F_{k,i}(\theta^*_{k,i}-\bar\theta_i)^2`, and

    .. math:: \frac{\lambda}{2}\Big(\sum_i S_i(\theta_i - \bar\theta_i)^2 + c\Big)

    has the same value and gradient as the sum of per-task penalties, for two copies of the parameters however
    many tasks there are (what "online" EWC variants store, but here nothing is decayed or approximated). After
    a single task, :math:`S = F` and :math:`\bar\theta = \theta^*` exactly.

    Args:
        model: the network whose parameters are penalised.
        ewc_lambda: :math:`\lambda \ge 0`, the strength (0: plain fine-tuning).

    Examples:
        >>> net = nn.Linear(2, 1)
        >>> penalty = EWCPenalty(net, ewc_lambda=2.0)
        >>> penalty().item()                                   # nothing consolidated yet
        0.0
        >>> penalty.consolidate({n: torch.ones_like(p) for n, p in net.named_parameters()})
        >>> penalty().item()                                   # at the anchor
        0.0
        >>> with torch.no_grad():
        ...     net.bias += 3.0
        >>> penalty().item()                                   # λ/2 · F · 3² = 9
        9.0
    """

    def __init__(self, model: nn.Module, ewc_lambda: float) -> None:
        _check_model(model)
        if isinstance(ewc_lambda, bool) or not isinstance(ewc_lambda, (int, float)) or not math.isfinite(ewc_lambda) \
                or ewc_lambda < 0:
            raise ValueError(f"ewc_lambda must be a finite number >= 0, got {ewc_lambda!r}")
        self.model = model
        self.ewc_lambda = float(ewc_lambda)
        self.importance: dict[str, Tensor] = {}
        r""":math:`S = \sum_k F_k` per parameter name."""
        self.centre: dict[str, Tensor] = {}
        r""":math:`\bar\theta`, the importance-weighted mean of the anchors."""
        self.offset = 0.0
        r""":math:`c`, the penalty's value at the centre before the factor :math:`\lambda/2` (0 after one task)."""
        self.tasks_consolidated = 0
        self._active: list[str] = []  # names with some nonzero importance: the only ones the penalty pulls

    @torch.no_grad()
    def consolidate(self, fisher: dict[str, Tensor]) -> None:
        """Add the penalty of the task just learned: its Fisher, anchored at the model's current weights.

        Raises:
            KeyError: if ``fisher`` names a parameter the model does not have.
            ValueError: if a Fisher tensor's shape differs from its parameter's, or has negative entries.
        """
        params = dict(self.model.named_parameters())
        unknown = set(fisher) - set(params)
        if unknown:
            raise KeyError(f"fisher names parameters the model does not have: {sorted(unknown)}")
        for n, f in fisher.items():
            if f.shape != params[n].shape:
                raise ValueError(f"fisher[{n!r}] has shape {tuple(f.shape)}, the parameter {tuple(params[n].shape)}")
            if bool((f < 0).any()):
                raise ValueError(f"fisher[{n!r}] has negative entries: a Fisher diagonal is a mean of squares")
        for n, f in fisher.items():
            f, anchor = f.detach().to(params[n].device, params[n].dtype), params[n].detach().clone()
            if n not in self.importance:
                self.importance[n], self.centre[n] = f.clone(), anchor
                continue
            old_s, old_c = self.importance[n], self.centre[n]
            s = old_s + f
            centre = torch.where(s > 0, (old_s * old_c + f * anchor) / s.clamp_min(torch.finfo(s.dtype).tiny), anchor)
            # parallel-axis theorem: moving both quadratics' centres to the new one adds constants
            self.offset += float((old_s.double() * (old_c.double() - centre.double()).pow(2)).sum()
                                 + (f.double() * (anchor.double() - centre.double()).pow(2)).sum())
            self.importance[n], self.centre[n] = s, centre
        self._active = [n for n, s in self.importance.items() if bool(s.any())]
        self.tasks_consolidated += 1

    def __call__(self) -> Tensor:
        """The penalty at the model's current weights, a differentiable scalar (``0.0`` before any task)."""
        params = dict(self.model.named_parameters())
        total = torch.zeros((), device=next(self.model.parameters()).device)
        for n, s in self.importance.items():
            total = total + (s * (params[n] - self.centre[n]).pow(2)).sum()
        return 0.5 * self.ewc_lambda * (total + self.offset)

    @torch.no_grad()
    def add_gradient_(self) -> None:
        r"""Add the penalty's gradient :math:`\lambda S(\theta-\bar\theta)` to every ``param.grad``, in place.

        The same gradient as ``penalty().backward()``, an order of magnitude cheaper: no graph, no temporaries to
        differentiate. Parameters whose importance is zero everywhere (e.g. heads of tasks not consolidated) are
        skipped, so one without a ``.grad`` keeps none. Call it after ``loss.backward()`` and before
        ``optimizer.step()``, e.g. ``train_epochs(..., after_backward=penalty.add_gradient_)``.
        """
        params = dict(self.model.named_parameters())
        for n in self._active:
            p = params[n]
            g = self.importance[n] * (p - self.centre[n])
            if p.grad is None:
                p.grad = g.mul_(self.ewc_lambda)
            else:
                p.grad.add_(g, alpha=self.ewc_lambda)


def run_ewc(model: nn.Module, tasks: Sequence[Task], *, ewc_lambda: float = 100.0, epochs: int = 5,
            batch_size: int = 128, optimizer: Optional[OptimizerFactory] = None, device: Device = "cpu",
            seed: int = 0, progress: bool = True, fisher_per_sample: bool = True) -> ExperimentResult:
    r"""Elastic Weight Consolidation: fine-tuning with a quadratic pull towards each earlier task's weights.

    Exactly :func:`run_finetune` (same loop, loaders, optimizers, evaluation) except that after task ``k`` is
    learned, its diagonal empirical Fisher :math:`F_k` is computed on its whole training set
    (:func:`diagonal_fisher`) and the weights are stored as the anchor :math:`\theta^*_k`; every later task
    then minimises

    .. math:: \mathcal{L}_t(\theta) + \frac{\lambda}{2}\sum_{k<t}\sum_i F_{k,i}\,(\theta_i-\theta^*_{k,i})^2 .

    With ``ewc_lambda=0`` the result is bit-identical to :func:`run_finetune`'s. The penalty is on *all*
    parameters (trunk, biases, heads: an earlier head only feels it if it moves, which it does not).

    Args:
        model: the network (moved to ``device``).
        tasks: the benchmark.
        ewc_lambda: :math:`\lambda`, the penalty strength; it trades new-task accuracy for old-task accuracy and
            needs tuning per benchmark (the Fisher's scale depends on the data and the network).
        epochs: training epochs per task.
        batch_size: training batch size (the Fisher is computed in batches of the same size).
        optimizer: factory ``params -> Optimizer``, a fresh one per task (default: SGD, lr 0.01, momentum 0.9).
        device: where to train.
        seed: seeds the loaders' shuffling.
        progress: show tqdm bars.
        fisher_per_sample: per-example squared gradients (default) or per-minibatch (see :func:`diagonal_fisher`).

    Returns:
        An :class:`~packnet.bench.experiment.ExperimentResult` with ``method="ewc"``; ``histories[i]["train"]`` holds
        the task loss only (the penalty's gradient is added after each backward pass by
        :meth:`EWCPenalty.add_gradient_`; its value is never needed for training).

    Raises:
        ValueError: for an empty or repeated task list, invalid ``epochs``/``batch_size``, or a negative or
            non-finite ``ewc_lambda``.

    Examples:
        >>> from packnet.bench.data import split_mnist
        >>> from packnet.bench.models import mlp
        >>> _ = torch.manual_seed(0)
        >>> result = run_ewc(mlp(range(2), 2, hidden=(16,)), split_mnist(2), ewc_lambda=10.0, epochs=1,
        ...                  progress=False)
        >>> result.method, result.forgetting[-1]
        ('ewc', 0.0)
    """
    penalty = EWCPenalty(_check_model(model), ewc_lambda)
    _check_budget(epochs, batch_size)

    def consolidate(task: Task) -> None:
        fisher_loader = task.loaders(batch_size, shuffle=False)[0]
        set_active_task(model, task.task_id)
        penalty.consolidate(diagonal_fisher(model, fisher_loader, device=device, per_sample=fisher_per_sample))

    return _train_sequentially(model, tasks, "ewc", epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                               device=device, seed=seed, progress=progress, after_backward=penalty.add_gradient_,
                               after_task=consolidate)


# ---------------------------------------------------------------------------------------------- upper bounds
def run_independent(make_model: Callable[[], nn.Module], tasks: Sequence[Task], *, epochs: int = 5,
                    batch_size: int = 128, optimizer: Optional[OptimizerFactory] = None, device: Device = "cpu",
                    seed: int = 0, progress: bool = True) -> ExperimentResult:
    """One fresh network per task: the accuracy a single network of this size reaches on each task alone.

    ``make_model()`` is called ``T`` times up front (new networks, initialised from the global random state: seed
    it before calling); task ``i`` trains the ``i``-th for ``epochs``, with the same loader seed (``seed + i``)
    and optimizer factory as the sequential methods. Nothing is shared, so nothing can be forgotten: each task's test accuracy is measured once, when it
    is learned, and repeated down its column of the accuracy matrix (forgetting exactly ``0.0`` and backward
    transfer ``0.0`` by construction). The price is ``T`` networks:
    ``sum(count_parameters(result.model[j], tasks[j].task_id))`` parameters.

    Args:
        make_model: a factory called once per task, returning a new ``nn.Module`` (with a head for the task).
        tasks: the benchmark.
        epochs: training epochs per task.
        batch_size: training batch size.
        optimizer: factory ``params -> Optimizer`` (default: SGD, lr 0.01, momentum 0.9).
        device: where to train.
        seed: seeds the loaders' shuffling.
        progress: show tqdm bars.

    Returns:
        An :class:`~packnet.bench.experiment.ExperimentResult` with ``method="independent"`` whose ``model`` is an
        ``nn.ModuleList`` of the ``T`` networks, ``model[j]`` for ``tasks[j]``.

    Raises:
        TypeError: if ``make_model`` is not callable or does not return an ``nn.Module``, or returns the same
            module twice.
        ValueError: for an empty or repeated task list or invalid ``epochs``/``batch_size``.

    Examples:
        >>> from packnet.bench.data import split_mnist
        >>> from packnet.bench.models import mlp
        >>> tasks = split_mnist(2)
        >>> result = run_independent(lambda: mlp(range(2), 2, hidden=(16,)), tasks, epochs=1, progress=False)
        >>> len(result.model), result.forgetting
        (2, [0.0, 0.0])
    """
    if isinstance(make_model, nn.Module) or not callable(make_model):  # a module is callable: its forward
        raise TypeError("make_model must be a function returning a new network (e.g. lambda: mlp(...)), "
                        f"got {type(make_model).__name__}")
    _check_tasks(tasks)
    _check_budget(epochs, batch_size)
    start = time.perf_counter()
    models = nn.ModuleList()
    for _ in tasks:  # all built before any training, so their initial weights depend only on the random state
        model = _check_model(make_model(), "make_model()")
        if any(model is m for m in models):
            raise TypeError("make_model() returned a network it returned before: it must build a new one per call")
        models.append(model)
    R = nan_matrix(len(tasks))
    histories = []
    for i, (task, model) in enumerate(zip(tasks, models)):
        result = _train_sequentially(model, [task], "independent", epochs=epochs, batch_size=batch_size,
                                     optimizer=optimizer, device=device, seed=seed + i, progress=progress)
        histories += result.histories
        for row in range(i, len(tasks)):  # the network is never touched again: its accuracy stands
            R[row][i] = result.accuracy_matrix[0][0]
    return ExperimentResult(R, models, None, "independent", histories, time.perf_counter() - start)


class _RoundRobin:
    """Batches of several loaders, one from each in turn, with the model's head switched to the batch's task.

    Iterating sets the active :class:`~packnet.TaskHeads` just before yielding each batch, so a loop that
    consumes the batch at once (as :func:`~packnet.training.train_epochs` does) routes it to its task's head.
    Loaders that run out drop from the rotation; ``len()`` is the total number of batches.
    """

    def __init__(self, model: nn.Module, loaders: Sequence[Iterable], task_ids: Sequence[Hashable]) -> None:
        self.model, self.loaders, self.task_ids = model, list(loaders), list(task_ids)

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        active = [(task_id, iter(loader)) for task_id, loader in zip(self.task_ids, self.loaders)]
        while active:
            still = []
            for task_id, it in active:
                batch = next(it, None)
                if batch is None:
                    continue
                still.append((task_id, it))
                set_active_task(self.model, task_id)
                yield batch
            active = still


def run_joint(model: nn.Module, tasks: Sequence[Task], *, epochs: int = 5, batch_size: int = 128,
              optimizer: Optional[OptimizerFactory] = None, device: Device = "cpu", seed: int = 0,
              progress: bool = True) -> ExperimentResult:
    """Joint (multi-task) training on every task's data at once: an upper bound that is not continual learning.

    One optimizer trains the network for ``epochs`` passes over the union of the training sets. Batches are
    drawn from the tasks in turn (a batch of task 0, one of task 1, ..., round-robin; each task's loader
    shuffled with ``seed + i`` as elsewhere) and each batch goes through its own task's head, so every stretch
    of ``T`` steps sees every task. The budget equals a sequential method's ``epochs`` per task: the same
    number of optimizer steps in total.

    There is no "after task ``i``" here: only the **last row** of the accuracy matrix is filled (the final
    test accuracy on every task); the rows above are ``nan``. ``average_accuracy`` is therefore meaningful;
    ``forgetting`` and ``backward_transfer`` are not defined for joint training and come out ``nan`` (the
    forgetting of the last task is ``0.0`` by that metric's convention; ignore it).

    Args:
        model: the network (moved to ``device``), normally with one head per task.
        tasks: the benchmark.
        epochs: passes over all tasks' training data.
        batch_size: training batch size (every batch holds one task's examples).
        optimizer: factory ``params -> Optimizer``, called once (default: SGD, lr 0.01, momentum 0.9).
        device: where to train.
        seed: seeds the loaders' shuffling.
        progress: show a tqdm bar.

    Returns:
        An :class:`~packnet.bench.experiment.ExperimentResult` with ``method="joint"`` and
        ``histories == [{"train": [...]}]`` (one entry: there is one training run).

    Raises:
        ValueError: for an empty or repeated task list or invalid ``epochs``/``batch_size``.

    Examples:
        >>> from packnet.bench.data import split_mnist
        >>> from packnet.bench.models import mlp
        >>> _ = torch.manual_seed(0)
        >>> result = run_joint(mlp(range(2), 2, hidden=(16,)), split_mnist(2), epochs=1, progress=False)
        >>> [math.isnan(a) for a in result.accuracy_matrix[0]], math.isnan(result.backward_transfer)
        ([True, True], True)
    """
    start = time.perf_counter()
    make_optimizer = _prepare(model, tasks, epochs, batch_size, optimizer, device)
    loader = _RoundRobin(model, [task.loaders(batch_size, seed=seed + i)[0] for i, task in enumerate(tasks)],
                         [task.task_id for task in tasks])
    model.train()
    history = train_epochs(model, loader, epochs, make_optimizer(list(model.parameters())), device=device,
                           progress=progress, desc="joint")
    R = nan_matrix(len(tasks))
    R[-1] = [_test_accuracy(model, task, device) for task in tasks]
    return ExperimentResult(R, model, None, "joint", [{"train": history}], time.perf_counter() - start)
