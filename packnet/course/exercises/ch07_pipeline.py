"""Chapter 7 exercises: evaluate a learned task as itself, then the whole PackNet loop and its accuracy matrix.

Reference answers: :meth:`packnet.PackNet.evaluate` and :func:`packnet.bench.experiment.run_packnet` (its
``accuracy_matrix``). The checkers train tiny PackNets (8 inputs, 16 hidden units, 2 classes) on tiny synthetic
tasks, with weights and data drawn from private seeded generators, so a check takes a fraction of a second.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset

from packnet.bench.data import Task
from packnet.bench.experiment import run_packnet
from packnet.heads import TaskHeads, heads_active
from packnet.packnet import PackNet
from packnet.training import evaluate_accuracy, modes_restored

from .checking import ExerciseFailed, call, describe, exercise, expect_equal, fail, generator

Batches = list[tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------------------------------- fixtures
def _tiny_net(gen: torch.Generator, task_ids: Optional[Sequence[int]], batchnorm: bool = False) -> nn.Sequential:
    """8 → 16 → 2, with one head per task (``task_ids``) or one shared ``Linear`` head (``None``); weights drawn
    from ``gen`` (the modules are built under ``fork_rng`` so their default initialisation leaves no trace)."""
    with torch.random.fork_rng(devices=[]):
        layers: list[nn.Module] = [nn.Linear(8, 16)] + ([nn.BatchNorm1d(16)] if batchnorm else []) + [nn.ReLU()]
        layers.append(nn.Linear(16, 2) if task_ids is None else TaskHeads(16, 2, task_ids=task_ids))
        net = nn.Sequential(*layers)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif not name.endswith("weight"):  # biases (BatchNorm's weight keeps its 1.0)
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return net


def _examples(gen: torch.Generator, n: int, rule: torch.Tensor, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs and their labels ``x · rule > 0`` (swapped when ``flip``): a linearly separable 2-way task."""
    x = torch.randn(n, 8, generator=gen)
    y = (x @ rule > 0).to(torch.int64)
    return x, (1 - y if flip else y)


def _batches(x: torch.Tensor, y: torch.Tensor, size: int) -> Batches:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def _sgd(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _adam(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=0.02)


def _trained_packnet(seed: int, shared_head: bool) -> tuple[PackNet, list[tuple[int, Batches]]]:
    """A PackNet that learned three tiny tasks; task 1 has task 0's inputs with the labels swapped, so the
    weights task 1 trained are exactly the ones task 0 must not see. Returns it and each task's test batches
    (25 examples in batches of 10: the last batch is smaller)."""
    gen = generator(seed)
    rules = [torch.randn(8, generator=gen) for _ in range(2)]
    plan = [(rules[0], False), (rules[0], True), (rules[1], False)]
    net = _tiny_net(gen, None if shared_head else [0, 1, 2], batchnorm=not shared_head)
    pn = PackNet(net, prune_ratio=0.5)
    tests = []
    for t, (rule, flip) in enumerate(plan):
        train = _batches(*_examples(gen, 64, rule, flip), 16)
        pn.train_task(t, train, 4, optimizer=_sgd, progress=False)
        pn.prune(t)
        pn.retrain(t, train, 1, optimizer=_sgd, progress=False)
        pn.freeze(t)
        tests.append((t, _batches(*_examples(gen, 25, rule, flip), 10)))
    return pn, tests


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def _mode_name(training: bool) -> str:
    return "train" if training else "eval"


# ---------------------------------------------------------------------------------------------- 7.1
def _check_one_evaluation(fn: Callable[..., Any], pn: PackNet, task_id: int, loader: Batches, case: str) -> None:
    model = pn.module
    expected = pn.evaluate(task_id, loader)
    before, modes = _state(model), _modes(model)
    got = call(fn, pn, task_id, loader, case=case)
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        if any("running" in k or "num_batches" in k for k in changed):
            fail(f"your function changed the BatchNorm statistics ({', '.join(changed)}): it ran the model in "
                 "train mode, where BatchNorm normalises with the batch's own statistics and updates its running "
                 "averages. `with pn.task(task_id):` puts the model in eval mode: don't switch it back to train "
                 "mode inside", case=case)
        fail(f"your function changed the model's weights ({', '.join(changed)}); evaluating must not train",
             case=case)
    if _modes(model) != modes:
        now = _mode_name(model.training)
        fail(f"your function left the model in {now} mode; it was in {_mode_name(modes[0])} mode before the "
             "call. Leave the mode as you found it: `with pn.task(task_id):` switches to eval mode on entry and "
             f"restores the mode on exit, so there is no need to call model.eval() or model.train()", case=case)
    if isinstance(got, torch.Tensor):
        fail(f"it returns a tensor ({describe(got)}); return a Python float: int(correct) / total, or "
             "tensor.item()", case=case)
    n = sum(len(y) for _, y in loader)
    if isinstance(got, int) and not isinstance(got, bool) and got == round(expected * n) and got != expected:
        fail(f"it returns {got}, the number of correct predictions; the accuracy is that divided by the {n} "
             "examples", case=case)
    if isinstance(got, float) and got != expected:
        if got == torch.tensor(expected, dtype=torch.float32).item():
            fail(f"it returns {got!r}, the accuracy {expected!r} rounded to float32 (a float tensor's .mean(), "
                 "or correct / total computed as tensors); count the correct predictions as an int and divide "
                 "in Python, as pn.evaluate does, so accuracies compare exactly", case=case)
        if got == _accuracy_in_train_mode(pn, task_id, loader):
            fail(f"it returns {got!r}, expected {expected!r}: it ran the model in train mode, "
                 "where BatchNorm normalises each batch with the batch's own statistics instead of the task's "
                 "running averages. `with pn.task(task_id):` puts the model in eval mode: don't switch it back "
                 "to train mode inside", case=case)
        if got == _accuracy_with_every_weight(pn, task_id, loader):
            fail(f"it returns {got!r}, expected {expected!r}: that is the accuracy of the network with every "
                 f"weight, including the ones later tasks trained after task {task_id} was frozen. Run the "
                 f"forward pass inside `with pn.task({task_id}):`, which shows the task only its own weights",
                 case=case)
        batch_means = [float((model_out == y).float().mean()) for model_out, y in _predictions(pn, task_id, loader)]
        if math.isclose(got, sum(batch_means) / len(batch_means), rel_tol=1e-6):
            fail(f"it returns {got!r}, expected {expected!r}: that is the mean of the per-batch accuracies, which "
                 "weighs the smaller last batch as much as a full one; count the correct predictions over all "
                 "batches and divide by the total number of examples", case=case)
    expect_equal(got, expected, case=case, what="the accuracy")


@torch.no_grad()
def _accuracy_in_train_mode(pn: PackNet, task_id: int, loader: Batches) -> float:
    """Task ``task_id``'s accuracy with the model in train mode inside its view (on a copy: nothing changes)."""
    clone = copy.deepcopy(pn)
    with clone.task(task_id):
        clone.module.train()
        return evaluate_accuracy(clone.module, loader)


def _accuracy_with_every_weight(pn: PackNet, task_id: int, loader: Batches) -> float:
    """What a forward pass outside ``pn.task`` computes: task ``task_id``'s head, but every weight visible."""
    model = pn.module
    heads = [h for h in model.modules() if isinstance(h, TaskHeads)]
    with modes_restored(model), heads_active(heads, task_id):
        model.eval()
        return evaluate_accuracy(model, loader)


def _predictions(pn: PackNet, task_id: int, loader: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    with torch.no_grad(), pn.task(task_id):
        return [(pn.module(x).argmax(1), y) for x, y in loader]


@exercise("7.1", "evaluate_task",
          points=2, library=("packnet.packnet.PackNet.evaluate", "packnet.training.evaluate_accuracy"),
          title="the accuracy of one learned task", reference="packnet.PackNet.evaluate",
          hint="evaluate as the task itself (its own weights and head, eval mode, no gradients), count the "
               "correct predictions over all batches, and divide once by the number of examples.")
def check_evaluate_task(fn: Callable[..., Any]) -> str:
    n = 0
    for seed, shared_head in [(71, True), (72, False)]:
        pn, tests = _trained_packnet(seed, shared_head)
        kind = "one shared head" if shared_head else "one head per task and a BatchNorm layer"
        for training in (False, True):
            pn.module.train(training)
            for task_id, loader in tests:
                case = (f"task {task_id} of a PackNet 8-16-2 with {kind} that learned tasks 0, 1, 2 "
                        f"(called with the model in {_mode_name(training)} mode)")
                _check_one_evaluation(fn, pn, task_id, loader, case)
                n += 1
    return f"{n} evaluations of tasks of two trained PackNets agree with PackNet.evaluate exactly"


# ---------------------------------------------------------------------------------------------- 7.2
def _tasks(gen: torch.Generator, ids: Sequence[int]) -> list[Task]:
    tasks = []
    for position, task_id in enumerate(ids):
        rule = torch.randn(8, generator=gen)
        train = TensorDataset(*_examples(gen, 40, rule, False))
        test = TensorDataset(*_examples(gen, 30, rule, False))
        tasks.append(Task(task_id, f"synthetic {position}", train, test, (0, 1)))
    return tasks


_CONFIGS = [  # (seed, task ids in learning order, shared head, keyword arguments)
    (701, [5, 2, 7], False, dict(prune_ratio=0.5, epochs=3, retrain_epochs=1, optimizer=_sgd, batch_size=16,
                                 seed=5)),
    (702, [0, 1], True, dict(prune_ratio=[0.75, 0.5], epochs=2, retrain_epochs=2, optimizer=_adam,
                             batch_size=8, seed=0)),
]


_EXACT = ("For an exact match: PackNet(model, prune_ratio); the task at position i trains on "
          "task.loaders(batch_size, seed=seed + i)[0] and re-trains on that same loader object (re-training "
          "continues its random stream); `optimizer` and the epochs go to train_task and retrain")


def _zeros(model: nn.Module, names: list[str]) -> int:
    params = dict(model.named_parameters())
    return sum(int((params[n] == 0).sum()) for n in names)


def _check_learn_tasks_case(fn: Callable[..., Any], seed: int, ids: list[int], shared_head: bool,
                            kwargs: dict[str, Any]) -> None:
    gen = generator(seed)
    model = _tiny_net(gen, None if shared_head else ids)
    tasks = _tasks(gen, ids)
    reference_model = copy.deepcopy(model)
    shown = {k: (v.__name__.strip("_") + " factory" if callable(v) else v) for k, v in kwargs.items()}
    case = (f"{len(tasks)} tasks with ids {ids} (in this order), a PackNet 8-16-2 with "
            f"{'one shared head' if shared_head else 'one head per task'}, {shown}")
    try:
        R = call(fn, model, tasks, case=case, **kwargs)
    except ExerciseFailed as error:
        text = str(error)
        if "unknown task" in text:
            fail("it evaluates a task that is not learned yet: after tasks[i] only tasks[0..i] can be tested "
                 f"(R[i][j] for j > i stays nan). The error was: {text.partition('your function raised ')[2]}",
                 case=case)
        if "has no head for task" in text:
            fail("it uses a task id that is not one of the tasks': the id of a task is task.task_id, not its "
                 f"position i in the list. The error was: {text.partition('your function raised ')[2]}", case=case)
        if "not pruned yet" in text:
            fail("it skips pruning some task (the last?): every task is pruned, the last one too, so the network "
                 f"keeps free capacity for more. The error was: {text.partition('your function raised ')[2]}",
                 case=case)
        raise
    reference = run_packnet(reference_model, tasks, progress=False, **kwargs)
    expected, T = reference.accuracy_matrix, len(tasks)
    if not isinstance(R, (list, tuple)) or len(R) != T or any(not isinstance(r, (list, tuple)) for r in R):
        fail(f"expected the accuracy matrix as a list of {T} rows (one per task learned), got {describe(R)}",
             case=case)
    for i, row in enumerate(R):
        if len(row) != T:
            fail(f"row {i} has {len(row)} {'entry' if len(row) == 1 else 'entries'}, expected {T}: R is a {T}×{T} "
                 f"matrix, with nan for the {T - 1 - i} tasks not learned yet after tasks[{i}]", case=case)
    for i in range(T):
        for j in range(i + 1, T):
            a = R[i][j]
            if not (isinstance(a, float) and math.isnan(a)):
                fail(f"R[{i}][{j}] is {a!r}, expected nan: after learning tasks[{i}], tasks[{j}] is not learned yet, "
                     "and what a future task scores means nothing; leave it nan", case=case)
    names = reference.packnet.prunable_names
    zeros, ref_zeros = _zeros(model, names), _zeros(reference.model, names)
    unpruned = (f"your network has {zeros} prunable weights at exactly 0, run_packnet's {ref_zeros}: the last task "
                "was not pruned. run_packnet prunes, re-trains and freezes every task, the last one too, so "
                "capacity stays free for more")
    for i in range(T):
        if [R[i][j] for j in range(i + 1)] != expected[i][: i + 1]:
            if i == T - 1 and zeros < ref_zeros:
                fail(f"the last row is {R[i][: i + 1]}, expected {expected[i][: i + 1]}, and {unpruned}", case=case)
            fail(f"row {i} is {R[i][: i + 1]}, expected {expected[i][: i + 1]} (rows before it agree). "
                 f"{_EXACT}; each learned task is tested on task.loaders(1000, shuffle=False)[1]", case=case)
        for j in range(i + 1):
            expect_equal(R[i][j], expected[i][j], case=case, what=f"R[{i}][{j}]")
    got_state = model.state_dict()
    for name, value in reference.model.state_dict().items():
        if not torch.equal(got_state[name], value):
            why = unpruned if zeros < ref_zeros else _EXACT
            fail(f"the accuracy matrix agrees, but the trained weights do not: {name!r} differs from "
                 f"run_packnet's; {why}", case=case)


@exercise("7.2", "learn_tasks",
          points=3, library=("packnet.bench.experiment.run_packnet",),
          title="the whole PackNet loop and its accuracy matrix",
          reference="packnet.bench.experiment.run_packnet",
          hint="follow the exercise's rules literally: which loader the task at position i trains on, one "
               "loader for training and re-training, every task pruned and frozen, and row i filled for the "
               "tasks learned so far only.")
def check_learn_tasks(fn: Callable[..., Any]) -> str:
    for seed, ids, shared_head, kwargs in _CONFIGS:
        _check_learn_tasks_case(fn, seed, ids, shared_head, kwargs)
    return (f"{len(_CONFIGS)} runs on tiny synthetic benchmarks give run_packnet's accuracy matrix and weights "
            "exactly")
