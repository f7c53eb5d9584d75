"""Inference without a task id: recognise which task an input belongs to, then run that task exactly.

PackNet runs task ``t`` exactly, but only when told ``t``. :class:`TaskInference` records, per frozen task, what
is needed to recognise the task's inputs later, and scores every recorded task on a new input. Two methods:

* ``"input_density"`` (the default): a *class-conditional density of the input* per task — for every class
  ``c`` of task ``t``, a probabilistic PCA model (Tipping & Bishop, 1999) of the flattened input: a Gaussian
  with mean ``mu_c``, covariance ``U diag(lambda) U^T + sigma^2 (I - U U^T)`` on the ``k`` leading principal
  directions ``U`` plus one residual variance ``sigma^2`` for the rest, every variance shrunk towards the
  average one (``+ shrinkage * trace / D``) so that directions the few calibration samples never vary in do
  not dominate. A task's score is its log-likelihood ``log p(x | t) = logsumexp_c [log p(x | c, t) + log
  pi_c]``; the task is the one with the highest score (with equal task priors, the Bayes decision), and for a
  task-homogeneous batch the one with the highest *summed* score (the batch's joint likelihood). It does not
  run the network at all. It recognises tasks that differ in their inputs: other digits (Split-MNIST), another
  pixel order (Permuted-MNIST); two tasks over the *same* inputs with different labels cannot be told apart
  by any input statistic.
* ``"confidence"``: the baseline. Run every task's network on ``x`` (``with pn.task(t):``) and pick the task
  whose head is most confident (the largest maximum log-softmax; for a batch, the largest sum). Nothing is
  stored beyond the task's id, the number of classes and the input shape. It is weak because a head trained
  to tell 2 from 3 is often just as confident on a 7.

Measured on the default Split-MNIST run (``python -m packnet``, MLP 784-256-256, 5 tasks, seeds 0-2): per
sample, ``"input_density"`` picks the right task for 96-97 % of test images (task-agnostic accuracy, right
task and right class, 95.5-96 %) against 57 % for ``"confidence"``; on Permuted-MNIST 100 % (task-agnostic
accuracy = the task-aware one, 93-94 %) against 74 %. Task-homogeneous batches of 32: 100 % for both methods
on both benchmarks. (``benchmarks/task_inference.py`` reproduces these figures.)

**What is stored** (by :meth:`TaskInference.calibrate`, per task; statistics, no sample): the input shape, the
class labels and their counts, and per class the mean input (``D`` floats), the ``k`` leading principal
directions of the class's inputs (``D x k``), their ``k`` variances and one residual variance, and the log
prior — ``C * (D * (k + 1) + k + 2)`` floats (float32) for ``C`` classes. With the defaults on MNIST (``D =
784``, ``k = 30``): 95 KiB per class, so 190 KiB per Split-MNIST task (2 classes) and 951 KiB per
Permuted-MNIST task (10 classes; the MLP itself is 1.05 MiB). Calibration takes 0.3-0.7 s per Split task and
2.2-2.6 s per Permuted task, inference 0.1-0.3 ms per sample in batches of 1000 and 4-5 ms (Split) or 15 ms
(Permuted) per batch of 32 (one CPU thread). A mean and principal directions are averages over
the class's samples, not samples; but with few samples they come close to them — a class calibrated on ``n <=
k + 1`` samples has its samples in the span of its mean and directions — so calibrate on enough data (at least
a few times ``k`` samples per class; ``k`` is lowered to ``n - 1`` when a class has fewer samples) if the
data is private. During calibration the per-class sums of ``x`` and ``x x^T`` are accumulated in float64
(``D^2`` numbers per class; 4.9 MB for MNIST), never the inputs themselves.

Examples:
    >>> from torch import nn
    >>> from packnet import PackNet, TaskHeads
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), TaskHeads(8, 2, task_ids=[0, 1]))
    >>> pn = PackNet(net, prune_ratio=0.5)
    >>> def task_data(shift):  # task 1's inputs live elsewhere than task 0's
    ...     x = torch.randn(64, 6) + shift
    ...     return [(x, (x[:, 0] > shift).long())]
    >>> for t, shift in [(0, 0.0), (1, 4.0)]:
    ...     data = task_data(shift)
    ...     _ = pn.train_task(t, data, epochs=1, progress=False); _ = pn.prune(t); pn.freeze(t)
    ...     pn.calibrate_task_inference(t, data, n_components=2)
    >>> pn.infer_task(torch.full((3, 6), 4.0))
    [1, 1, 1]
    >>> pn.infer_task(torch.randn(32, 6), batch=True)
    0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Optional, Union

import torch
from torch import Tensor

from .training import unpack_batch

if TYPE_CHECKING:
    from .packnet import PackNet

__all__ = ["TaskInference", "METHODS", "fit_class_density", "class_log_density"]

METHODS: tuple[str, ...] = ("input_density", "confidence")
"""The methods that ``TaskInference.infer`` knows, the default first."""

FORMAT = "packnet.task_inference/1"
"""The ``"format"`` entry of :meth:`TaskInference.state_dict`."""

_DENSITY_KEYS = ("mean", "components", "variances", "residual_variance", "log_prior")
TaskId = Hashable


# ---------------------------------------------------------------------------------------------- pure functions
def fit_class_density(count: int, total: Tensor, outer: Tensor, n_components: int = 30,
                      shrinkage: float = 0.1) -> dict[str, Tensor]:
    """Fit one class's probabilistic PCA model from the sums of its inputs (no input is needed).

    The maximum-likelihood PPCA solution (Tipping & Bishop, 1999) keeps the ``k`` leading eigenvectors of the
    class covariance with their eigenvalues and gives every other direction the mean of the remaining
    eigenvalues; all of them are then shrunk by ``+ shrinkage * trace / D``.

    Args:
        count: the number of samples ``n`` (at least 2).
        total: their sum, ``(D,)``.
        outer: the sum of their outer products ``x x^T``, ``(D, D)`` (float64 recommended).
        n_components: ``k``, the number of principal directions kept (lowered to ``min(n - 1, D - 1)``).
        shrinkage: the variance added to every direction, as a fraction of the average variance ``trace / D``.

    Returns:
        ``{"mean": (D,), "components": (D, k), "variances": (k,), "residual_variance": ()}``, float32.

    Examples:
        >>> x = torch.randn(50, 4, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.1, 0.1], dtype=torch.float64)
        >>> d = fit_class_density(50, x.sum(0), x.T @ x, n_components=1, shrinkage=0.0)
        >>> d["components"].shape, d["components"][:, 0].abs().argmax().item()
        (torch.Size([4, 1]), 0)
    """
    if count < 2:
        raise ValueError(f"a class needs at least 2 calibration samples to estimate a variance, got {count}")
    dim = total.numel()
    mean = total.double() / count
    cov = (outer.double() - count * torch.outer(mean, mean)) / (count - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh((cov + cov.T) / 2)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0), eigenvectors.flip(1)
    k = max(0, min(n_components, count - 1, dim - 1))
    floor = shrinkage * eigenvalues.sum() / dim
    floor = floor if floor > 0 else torch.tensor(1e-6, dtype=torch.float64)  # a constant class: keep it finite
    residual = eigenvalues[k:].mean() if k < dim else torch.zeros((), dtype=torch.float64)
    return {"mean": mean.float(), "components": eigenvectors[:, :k].float().contiguous(),
            "variances": (eigenvalues[:k] + floor).float(), "residual_variance": (residual + floor).float()}


def class_log_density(x: Tensor, mean: Tensor, components: Tensor, variances: Tensor,
                      residual_variance: Tensor) -> Tensor:
    """``log p(x | class)`` under the PPCA models of :func:`fit_class_density`, stacked over classes.

    Args:
        x: flattened inputs ``(N, D)``.
        mean: ``(C, D)``; components: ``(C, D, k)``; variances: ``(C, k)``; residual_variance: ``(C,)``.

    Returns:
        ``(N, C)`` log-densities (nats).

    Examples:
        >>> d = {k: v.unsqueeze(0) for k, v in fit_class_density(9, torch.zeros(3), torch.eye(3) * 8).items()}
        >>> class_log_density(torch.zeros(1, 3), **d).shape
        torch.Size([1, 1])
    """
    dim, k = mean.shape[1], components.shape[2]
    columns = []
    for c in range(mean.shape[0]):  # one class at a time: N x D intermediates, not N x C x D
        centred = x - mean[c]
        z = centred @ components[c]
        residual = centred - z @ components[c].T
        mahalanobis = (z.square() / variances[c]).sum(-1) + residual.square().sum(-1) / residual_variance[c]
        log_det = variances[c].log().sum() + (dim - k) * residual_variance[c].log()
        columns.append(-0.5 * (mahalanobis + log_det + dim * math.log(2 * math.pi)))
    return torch.stack(columns, dim=1)


# ---------------------------------------------------------------------------------------------- the recorder
class TaskInference:
    """What recognises each frozen task without its id, and the methods that use it (see the module docstring).

    Normally reached through :class:`~packnet.PackNet`: ``pn.calibrate_task_inference(t, loader)`` after
    ``pn.freeze(t)`` for every task, then ``pn.infer_task(x)``. Everything it stores lies in
    :meth:`state_dict` (plain tensors, strings, numbers, lists and dicts: ``torch.load(weights_only=True)``
    reads it).
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}  # keyed by repr(task_id): 0 and "0" stay apart

    # ------------------------------------------------------------------ what is recorded
    @property
    def tasks(self) -> list[TaskId]:
        """The calibrated task ids in calibration order, which is the order of the columns of ``scores``."""
        return [r["task_id"] for r in self._records.values()]

    @property
    def input_shape(self) -> Optional[tuple[int, ...]]:
        """The shape of one input (without the batch dimension) the tasks were calibrated on, or ``None``."""
        for r in self._records.values():
            return tuple(r["input_shape"])
        return None

    def is_calibrated(self, task_id: TaskId) -> bool:
        """Whether ``task_id`` has a record."""
        return repr(task_id) in self._records

    def memory_bytes(self, task_id: Optional[TaskId] = None) -> int:
        """Bytes of the tensors stored for ``task_id`` (default: for all tasks)."""
        records = [self._record(task_id)] if task_id is not None else list(self._records.values())
        return sum(r[k].numel() * r[k].element_size() for r in records for k in _DENSITY_KEYS)

    def _record(self, task_id: TaskId) -> dict[str, Any]:
        if repr(task_id) not in self._records:
            raise KeyError(f"task {task_id!r} was not calibrated for task inference (calibrated: {self.tasks}): "
                           f"call pn.calibrate_task_inference({task_id!r}, loader) after freeze({task_id!r})")
        return self._records[repr(task_id)]

    def forget(self, task_id: TaskId) -> None:
        """Drop ``task_id``'s record (e.g. when the task is aborted); ``KeyError`` if it has none."""
        self._record(task_id)
        del self._records[repr(task_id)]

    # ------------------------------------------------------------------ calibration
    @torch.no_grad()
    def calibrate(self, pn: "PackNet", task_id: TaskId, loader: Iterable, *, n_components: int = 30,
                  shrinkage: float = 0.1, num_batches: Optional[int] = None, replace: bool = False) -> None:
        """Record what recognises frozen task ``task_id``: its class-conditional input densities.

        One pass over ``loader`` accumulates per class the count, the sum of the flattened inputs and of their
        outer products (in float64, on the model's device); then each class's PPCA model is fitted
        (:func:`fit_class_density`) and only those statistics are kept. The model is not run.

        Args:
            pn: the PackNet; ``task_id`` must be one of ``pn.tasks`` (frozen).
            task_id: the task.
            loader: ``(inputs, targets)`` batches of the task's data (its training set); ``targets`` are the
                task's class labels (integers).
            n_components: ``k``, principal directions kept per class (default 30; more costs memory, and
                beyond ~30 the estimate from a few hundred samples per class gets noisier).
            shrinkage: variance added to every direction, as a fraction of the class's average variance
                (default 0.1).
            num_batches: use only the first ``num_batches`` batches (default: all).
            replace: a task already calibrated is refused unless ``replace=True`` (then its record is
                replaced once the new one is complete).

        Raises:
            KeyError: ``task_id`` is not a task of ``pn``.
            RuntimeError: ``task_id`` is the task in progress (not frozen yet).
            ValueError: the task is calibrated already (and not ``replace``), the loader yields no batch, a
                class has fewer than 2 samples, labels are not integers, inputs have another shape than the
                other tasks', or an option is out of range.

        Nothing changes when it raises.
        """
        self._check_frozen(pn, task_id)
        if self.is_calibrated(task_id) and not replace:
            raise ValueError(f"task {task_id!r} is calibrated already: pass replace=True to record it again, or "
                             f"call forget({task_id!r}) first")
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 0:
            raise ValueError(f"n_components must be a non-negative int, got {n_components!r}")
        if not (isinstance(shrinkage, (int, float)) and shrinkage >= 0 and math.isfinite(shrinkage)):
            raise ValueError(f"shrinkage must be a non-negative number, got {shrinkage!r}")
        device = _model_device(pn)
        expected = self._shape_of_others(task_id)
        count: dict[int, int] = {}
        total: dict[int, Tensor] = {}
        outer: dict[int, Tensor] = {}
        shape: Optional[tuple[int, ...]] = None
        for i, batch in enumerate(loader):
            if num_batches is not None and i >= num_batches:
                break
            x, y = unpack_batch(batch)
            if shape is None:
                shape = tuple(x.shape[1:])
                if expected is not None and shape != expected:
                    raise ValueError(f"task {task_id!r}'s inputs have shape {shape}, the tasks calibrated before "
                                     f"{expected}: every task must be calibrated on inputs of one shape")
            elif tuple(x.shape[1:]) != shape:
                raise ValueError(f"the loader's batches have inputs of shapes {shape} and {tuple(x.shape[1:])}: "
                                 "all batches must have one input shape")
            if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1 or len(y) != len(x):
                raise ValueError(f"targets must be one integer class label per input, got {tuple(y.shape)} "
                                 f"{y.dtype} for {len(x)} inputs")
            flat = x.to(device).flatten(1).double()
            y = y.to(device)
            for c in torch.unique(y).tolist():
                xc = flat[y == c]
                if c not in count:
                    count[c], total[c] = 0, torch.zeros(flat.shape[1], dtype=torch.float64, device=device)
                    outer[c] = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=device)
                count[c] += len(xc)
                total[c] += xc.sum(0)
                outer[c].addmm_(xc.T, xc)
        if shape is None or not count:
            raise ValueError(f"the calibration loader of task {task_id!r} yielded no samples")
        few = {c: n for c, n in count.items() if n < 2}
        if few:
            raise ValueError(f"task {task_id!r}: classes {sorted(few)} have fewer than 2 calibration samples "
                             f"({few}); calibrate on more of the task's data")
        classes = sorted(count)
        k = max(0, min(n_components, min(count.values()) - 1, math.prod(shape) - 1))  # one k per task: stacked
        fits = [fit_class_density(count[c], total[c], outer[c], k, shrinkage) for c in classes]
        n = sum(count.values())
        record: dict[str, Any] = {
            "task_id": task_id, "input_shape": list(shape), "classes": classes,
            "counts": [count[c] for c in classes], "n_components": k, "shrinkage": float(shrinkage),
            **{key: torch.stack([f[key] for f in fits]) for key in _DENSITY_KEYS[:-1]},
            "log_prior": torch.tensor([math.log(count[c] / n) for c in classes], device=device),
        }
        self._records[repr(task_id)] = record  # the only change, at the very end

    @staticmethod
    def _check_frozen(pn: "PackNet", task_id: TaskId) -> None:
        if task_id in pn.tasks:
            return
        if task_id == pn.current:
            raise RuntimeError(f"task {task_id!r} is in progress, not frozen: calibrate it after "
                               f"pn.freeze({task_id!r}) (it may still change until then)")
        raise KeyError(f"task {task_id!r} is not a task of this PackNet (frozen tasks: {pn.tasks}): learn and "
                       "freeze it first")

    def _shape_of_others(self, task_id: TaskId) -> Optional[tuple[int, ...]]:
        for key, r in self._records.items():
            if key != repr(task_id):
                return tuple(r["input_shape"])
        return None

    # ------------------------------------------------------------------ inference
    def _check_inputs(self, pn: "PackNet", x: Tensor) -> Tensor:
        if not self._records:
            raise RuntimeError("no task was calibrated for task inference: call pn.calibrate_task_inference(t, "
                               "loader) after freeze(t) for every task")
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"task inference needs a floating-point tensor of inputs, got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        shape = self.input_shape
        assert shape is not None
        if tuple(x.shape[1:]) != shape:
            hint = " (one sample? add the batch dimension: x.unsqueeze(0))" if tuple(x.shape) == shape else ""
            raise ValueError(f"inputs of shape {tuple(x.shape)} do not fit the calibrated tasks, whose inputs "
                             f"are (N, {', '.join(map(str, shape))}){hint}")
        if x.shape[0] == 0:
            raise ValueError("the batch is empty: task inference needs at least one input")
        gone = [t for t in self.tasks if t not in pn.tasks]
        if gone:
            raise RuntimeError(f"tasks {gone} were calibrated but are no longer frozen tasks of this PackNet: "
                               "call forget(t) for each")
        return x.to(_model_device(pn))

    @torch.no_grad()
    def scores(self, pn: "PackNet", x: Tensor, *, method: str = METHODS[0]) -> Tensor:
        """Per sample, how well each calibrated task explains it: ``(N, number of tasks)``, higher is likelier.

        ``"input_density"``: ``log p(x | t)`` in nats; ``"confidence"``: task ``t``'s maximum log-softmax.
        Columns follow :attr:`tasks`. The model's weights, buffers and modes are left bit-identical.
        """
        if method not in METHODS:
            raise ValueError(f"unknown task inference method {method!r}: choose one of {METHODS}")
        x = self._check_inputs(pn, x)
        columns = []
        for r in self._records.values():
            if method == "input_density":
                density = {k: r[k].to(x.device) for k in _DENSITY_KEYS}
                log_joint = class_log_density(x.flatten(1).float(), **{k: density[k] for k in _DENSITY_KEYS[:-1]})
                columns.append(torch.logsumexp(log_joint + density["log_prior"], dim=1))
            else:
                with pn.task(r["task_id"]):
                    columns.append(pn.module(x).float().log_softmax(-1).amax(-1))
        return torch.stack(columns, dim=1)

    def infer(self, pn: "PackNet", x: Tensor, *, batch: bool = False,
              method: str = METHODS[0]) -> Union[list[TaskId], TaskId]:
        """The task of each sample of ``x``, or with ``batch=True`` the one task of the whole batch.

        A batch's task is the one with the highest summed score: all samples are assumed to come from one
        task, and their evidence adds up (for ``"input_density"``: the joint likelihood).

        Args:
            pn: the PackNet whose tasks were calibrated.
            x: a batch of inputs ``(N, *input_shape)``, ``N >= 1``.
            batch: return one task id for the whole batch.
            method: one of :data:`METHODS` (default ``"input_density"``).

        Returns:
            A list of ``N`` task ids, or one task id.

        Raises:
            RuntimeError: no task was calibrated.
            ValueError: an empty batch, or inputs of another shape than the calibrated ones; an unknown method.
            TypeError: ``x`` is not a floating-point tensor.
        """
        s = self.scores(pn, x, method=method)
        tasks = self.tasks
        if batch:
            return tasks[int(s.sum(0).argmax())]
        return [tasks[i] for i in s.argmax(1).tolist()]

    @torch.no_grad()
    def classify(self, pn: "PackNet", x: Tensor, *, method: str = METHODS[0]) -> tuple[list[TaskId], Tensor]:
        """Task-agnostic prediction: infer each sample's task, then classify it with that task's network.

        Returns:
            ``(task ids, class indices)``: for each sample its inferred task and the argmax of that task's
            output (computed under ``pn.task(t)``, so exactly what task ``t`` would answer).
        """
        s = self.scores(pn, x, method=method)
        x = x.to(_model_device(pn))
        chosen = s.argmax(1)
        classes = torch.empty(len(x), dtype=torch.long, device=x.device)
        tasks = self.tasks
        for i in torch.unique(chosen).tolist():
            rows = chosen == i
            with pn.task(tasks[i]):
                classes[rows] = pn.module(x[rows]).argmax(-1)
        return [tasks[i] for i in chosen.tolist()], classes

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Every record as plain tensors (on the CPU), strings, numbers, lists and dicts.

        ``{"format": FORMAT, "records": [{"task_id", "input_shape", "classes", "counts", "n_components",
        "shrinkage", "mean", "components", "variances", "residual_variance", "log_prior"}, ...]}``, in
        calibration order; ``torch.load(..., weights_only=True)`` reads it back.
        """
        return {"format": FORMAT, "records": [
            {k: (v.detach().cpu().clone() if isinstance(v, Tensor) else
                 list(v) if isinstance(v, list) else v) for k, v in r.items()}
            for r in self._records.values()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every record by those of a :meth:`state_dict`; ``ValueError`` (and no change) if it is not
        a valid one."""
        records = _check_state(state)
        self._records = {repr(r["task_id"]): r for r in records}


def _model_device(pn: "PackNet") -> torch.device:
    for p in pn.module.parameters():
        return p.device
    return torch.device("cpu")  # pragma: no cover - PackNet refuses a model without prunable weights


def _check_state(state: Any) -> list[dict[str, Any]]:
    """Validate a :meth:`TaskInference.state_dict` completely and return copies of its records."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a task inference state (expected format {FORMAT!r}); was it saved with "
                         "task_inference.state_dict()?")
    records = state.get("records")
    if not isinstance(records, (list, tuple)):
        raise ValueError("a task inference state needs a list 'records'")
    checked, seen, shape = [], set(), None
    needed = ("task_id", "input_shape", "classes", "counts", "n_components", "shrinkage") + _DENSITY_KEYS
    for i, r in enumerate(records):
        if not isinstance(r, dict) or any(k not in r for k in needed):
            raise ValueError(f"record {i} of the task inference state lacks "
                             f"{[k for k in needed if not isinstance(r, dict) or k not in r]}")
        where = f"task {r['task_id']!r}'s task inference record"
        if repr(r["task_id"]) in seen:
            raise ValueError(f"task {r['task_id']!r} has two task inference records")
        seen.add(repr(r["task_id"]))
        if (not isinstance(r["input_shape"], (list, tuple)) or not r["input_shape"]
                or not all(isinstance(d, int) and d > 0 for d in r["input_shape"])):
            raise ValueError(f"{where} has an invalid input_shape {r['input_shape']!r}")
        if shape is not None and list(r["input_shape"]) != shape:
            raise ValueError(f"{where} has input shape {list(r['input_shape'])}, another {shape}: one shape only")
        shape = list(r["input_shape"])
        dim, k = math.prod(shape), r["n_components"]
        n_classes = len(r["classes"]) if isinstance(r["classes"], (list, tuple)) else -1
        if n_classes < 1 or not isinstance(k, int) or not 0 <= k < dim or len(r["counts"]) != n_classes:
            raise ValueError(f"{where} has inconsistent classes / counts / n_components")
        expected = {"mean": (n_classes, dim), "components": (n_classes, dim, k), "variances": (n_classes, k),
                    "residual_variance": (n_classes,), "log_prior": (n_classes,)}
        for key, want in expected.items():
            v = r[key]
            if not isinstance(v, Tensor) or tuple(v.shape) != want or not v.is_floating_point():
                got = f"{tuple(v.shape)} {v.dtype}" if isinstance(v, Tensor) else type(v).__name__
                raise ValueError(f"{where}: {key!r} must be a floating-point tensor of shape {want}, got {got}")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"{where}: {key!r} is not finite")
        if not bool((r["variances"] > 0).all()) or not bool((r["residual_variance"] > 0).all()):
            raise ValueError(f"{where}: variances must be positive")
        checked.append({k: (v.clone() if isinstance(v, Tensor) else list(v) if isinstance(v, (list, tuple))
                            and k != "task_id" else v) for k, v in r.items()})
    return checked

