"""Chapter 4 exercises: the owner map after pruning, and one task's whole lifecycle.

Reference answers: :func:`packnet.masks.claim_kept` (what :meth:`packnet.PackNet.prune` does to the owner
maps), and the four library calls of one task in order: :meth:`~packnet.PackNet.train_task`,
:meth:`~packnet.PackNet.prune`, :meth:`~packnet.PackNet.retrain`, :meth:`~packnet.PackNet.freeze`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from packnet.bench.models import mlp
from packnet.masks import claim_kept
from packnet.packnet import PackNet

from .checking import call, exercise, expect_equal, fail, generator, py_random


def _stage_text(pn: PackNet) -> "str | None":
    """``pn.stage`` as its plain string (``"training"``, ``"pruned"``) or ``None``, for messages."""
    return None if pn.stage is None else str(pn.stage)


# ---------------------------------------------------------------------------------------------------- 4.1
def _claim_case(seed: int) -> tuple[Tensor, Tensor, Tensor, int, str]:
    g, rng = generator(400 + seed), py_random(400 + seed)
    shape = [(rng.randrange(1, 10),), (rng.randrange(1, 6), rng.randrange(1, 7)),
             (rng.randrange(1, 3), rng.randrange(1, 4), 3, 3)][seed % 3]
    position = [1, 2, 3, 4, 6, 255][seed % 6]
    if seed == 5:
        shape = (0, 4)  # an empty layer
    owner = torch.randint(0, position, shape, generator=g, dtype=torch.uint8)  # free, or tasks 1..position-1
    candidates = owner == 0
    if seed % 4 == 3:  # some free weights took no part (a subset of the free weights are the candidates)
        candidates &= torch.rand(shape, generator=g) < 0.6
    share = [0.5, 0.0, 1.0, 0.75, 0.3][seed % 5]  # nothing pruned, everything pruned, ...
    pruned = candidates & (torch.rand(shape, generator=g) < share)
    return owner, candidates, pruned, position, (
        f"an owner map of shape {tuple(shape)}, position {position}, {int(candidates.sum())} candidates of which "
        f"{int(pruned.sum())} pruned (case {seed})")


@exercise("4.1", "claim_weights",
          points=2, library=("packnet.masks.claim_kept",),
          title="the owner map after pruning", reference="packnet.masks.claim_kept",
          hint="the survivors are candidates & ~pruned; return a new map that holds position there and the old "
               "owner everywhere else: owner.masked_fill(candidates & ~pruned, position) (no trailing _).")
def check_claim_weights(fn: Callable[..., Any]) -> str:
    n_cases = 36
    for seed in range(n_cases):
        owner, candidates, pruned, position, case = _claim_case(seed)
        inputs = [t.clone() for t in (owner, candidates, pruned)]
        got = call(fn, owner, candidates, pruned, position, case=case)
        if not torch.equal(owner, inputs[0]):
            fail("your function changed the owner map it was given (masked_fill_ or index assignment on it?): "
                 "return a new map and leave the input as it was, e.g. owner.masked_fill(...) without the _ or "
                 "owner.clone() first", case=case)
        if not (torch.equal(candidates, inputs[1]) and torch.equal(pruned, inputs[2])):
            fail("your function changed the candidates or pruned masks it was given", case=case)
        expected = claim_kept(owner, candidates, pruned, position)
        if got is None:
            fail("it returned None: return the new owner map", case=case)
        if isinstance(got, Tensor) and got.shape == expected.shape:
            if got.dtype != torch.uint8:
                fail(f"the owner map has dtype {got.dtype}, expected torch.uint8 (one byte per weight): keep the "
                     "input's dtype, as owner.masked_fill(mask, position) does", case=case)
            kept = candidates & ~pruned
            others = ~kept
            if bool((got[pruned] != 0).any()):
                fail(f"it gives {int((got[pruned] != 0).sum())} pruned weights an owner: pruned weights stay free "
                     "(owner 0), they are for the next task", case=case)
            changed = others & (got != owner)
            if bool(changed.any()):
                olds = sorted({int(v) for v in owner[changed].tolist()})
                why = ("free weights that were not candidates" if olds == [0] else
                       f"weights that were not candidates (their owners were {olds})")
                fail(f"it changes the owner of {int(changed.sum())} {why}: only the task's candidates that survived "
                     "pruning change owner", case=case)
            wrong = kept & (got != position)
            if bool(wrong.any()):
                values = sorted({int(v) for v in got[wrong].tolist()})
                if values == [0]:
                    fail(f"it leaves {int(wrong.sum())} weights the task kept free: after pruning they belong to "
                         f"the task (owner value {position})", case=case)
                if values == [position - 1]:
                    fail(f"the weights the task kept get owner value {position - 1}, expected {position}: owner "
                         "values are 1-based positions (0 means free), so the k-th task learned owns value k",
                         case=case)
                fail(f"the weights the task kept get owner values {values}, expected {position}", case=case)
        expect_equal(got, expected, case=case, what="the owner map")
    return f"{n_cases} random owner maps agree with packnet.masks.claim_kept"


# ---------------------------------------------------------------------------------------------------- 4.2
@dataclass(frozen=True)
class _Scenario:
    seed: int
    task_ids: tuple[int, ...]
    prune_ratio: Any
    epochs: int
    retrain_epochs: int
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    description: str


def _sgd_momentum(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _adamw(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)


# the optimizer factories are module-level functions: the grader pickles them to the student's kernel
_SCENARIOS = [
    _Scenario(410, (0, 1, 2), 0.5, 2, 1, _sgd_momentum,
              "3 tasks, prune_ratio 0.5, epochs=2, retrain_epochs=1, SGD(lr=0.1, momentum=0.9)"),
    _Scenario(411, (7, 3), [0.75, 0.6], 1, 2, _adamw,
              "tasks 7 then 3, prune_ratio schedule [0.75, 0.6], epochs=1, retrain_epochs=2, "
              "AdamW(lr=0.01, weight_decay=0.1)"),
]


def _build(sc: _Scenario) -> tuple[PackNet, dict[int, list[tuple[Tensor, Tensor]]]]:
    """A tiny PackNet (an MLP 6 → 10 → 8 → a 3-way head per task, weights from a private generator) and a few
    synthetic batches per task."""
    g = generator(sc.seed)
    model = mlp(sc.task_ids, 3, hidden=(10, 8), in_features=6)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
    data = {t: [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(3)]
            for t in sc.task_ids}
    return PackNet(model, prune_ratio=sc.prune_ratio), data


def _reference_learn_task(pn: PackNet, task_id: int, loader: Any, epochs: int, retrain_epochs: int,
                          optimizer: Any) -> dict[str, int]:
    pn.train_task(task_id, loader, epochs, optimizer=optimizer, progress=False)
    pruned = pn.prune(task_id)
    pn.retrain(task_id, loader, retrain_epochs, optimizer=optimizer, progress=False)
    pn.freeze(task_id)
    return pruned


def _variants(sc: _Scenario) -> list[tuple[str, Callable[[PackNet, int, Any], None]]]:
    """Typical wrong sequences, to name the mistake when the weights differ from the reference."""
    e, r, opt = sc.epochs, sc.retrain_epochs, sc.optimizer

    def sequence(train: tuple[int, Any], retrain: Optional[tuple[int, Any]]) -> Callable[[PackNet, int, Any], None]:
        def run(pn: PackNet, t: int, loader: Any) -> None:
            pn.train_task(t, loader, train[0], optimizer=train[1], progress=False)
            pn.prune(t)
            if retrain is not None:
                pn.retrain(t, loader, retrain[0], optimizer=retrain[1], progress=False)
            pn.freeze(t)
        return run

    return [
        ("it matches train_task → prune → freeze *without* retrain: re-train the weights the task kept, "
         "pn.retrain(task_id, loader, retrain_epochs, ...), after prune and before freeze", sequence((e, opt), None)),
        ("it matches re-training for `epochs` epochs: retrain runs retrain_epochs", sequence((e, opt), (e, opt))),
        ("it matches training for `retrain_epochs` and re-training for `epochs` epochs: the two are swapped",
         sequence((r, opt), (e, opt))),
        ("it matches train_task without the `optimizer` factory (the library's default SGD trained instead): pass "
         "optimizer=optimizer to train_task", sequence((e, None), (r, opt))),
        ("it matches retrain without the `optimizer` factory (the library's default SGD re-trained instead): pass "
         "optimizer=optimizer to retrain too", sequence((e, opt), (r, None))),
    ]


def _same_state(a: PackNet, b: PackNet) -> bool:
    """Owner maps and every parameter bit-identical."""
    pa, pb = dict(a.module.named_parameters()), dict(b.module.named_parameters())
    return (all(torch.equal(a.owner[n], b.owner[n]) for n in a.owner)
            and all(torch.equal(pa[n], pb[n]) for n in pa))


def _diagnose(sc: _Scenario, index: int, student: PackNet) -> Optional[str]:
    for message, variant in _variants(sc):
        pn, data = _build(sc)
        for t in sc.task_ids[:index]:
            _reference_learn_task(pn, t, data[t], sc.epochs, sc.retrain_epochs, sc.optimizer)
        t = sc.task_ids[index]
        try:
            variant(pn, t, data[t])
        except RuntimeError:
            continue
        if _same_state(pn, student):
            return message
    return None


@exercise("4.2", "learn_task",
          points=3, library=(),
          title="one task's whole lifecycle",
          reference="PackNet.train_task, prune, retrain, freeze (in that order)",
          hint="one task's lifecycle is PackNet's four steps in the paper's order (train the free weights, "
               "prune, re-train the survivors, freeze), each given the exercise's epochs and optimizer "
               "factory; the answer is what pruning reports.")
def check_learn_task(fn: Callable[..., Any]) -> str:
    n_tasks = 0
    for sc in _SCENARIOS:
        student, data = _build(sc)
        reference, _ = _build(sc)
        for index, t in enumerate(sc.task_ids):
            case = f"task {t} (number {index + 1}) of {sc.description}"
            expected = _reference_learn_task(reference, t, data[t], sc.epochs, sc.retrain_epochs, sc.optimizer)
            refused: list[RuntimeError] = []

            def attempt(*args: Any) -> Any:
                try:
                    return fn(*args)
                except NotImplementedError:  # the stub (a RuntimeError too)
                    raise
                except RuntimeError as error:  # the state machine refused a call out of order
                    refused.append(error)
                    return None

            got = call(attempt, student, t, data[t], sc.epochs, sc.retrain_epochs, sc.optimizer, case=case)
            if refused:
                fail(f"the library refused a call: {refused[0]} — one task's lifecycle is train_task → prune → "
                     "retrain → freeze, in that order", case=case)
            n_tasks += 1
            if got is None:
                fail("it returned None: return what pn.prune(task_id) returns, the number of weights pruned per "
                     "layer ({layer name: count})", case=case)
            if t not in student.tasks:
                if student.current == t:
                    fail(f"task {t} is not frozen: pn.tasks is {student.tasks} and pn.stage is "
                         f"{_stage_text(student)!r}. "
                         + ("Call pn.freeze(task_id) last, so the next task can start"
                            if student.stage == "pruned" else
                            "Prune it (pn.prune), re-train it (pn.retrain) and freeze it (pn.freeze)"),
                         case=case)
                fail(f"task {t} was not learned: pn.tasks is {student.tasks}; call pn.train_task(task_id, ...) "
                     "first", case=case)
            if student.current is not None or student.stage is not None:
                fail(f"after learn_task the PackNet should be idle, but task {student.current!r} is "
                     f"{_stage_text(student)!r}", case=case)
            expect_equal(student.tasks, reference.tasks, case=case, what="pn.tasks")
            if not _same_state(student, reference):
                why = _diagnose(sc, index, student)
                if why is not None:
                    fail(f"the network differs from the reference sequence's: {why}", case=case)
                for name in reference.prunable_names:
                    expect_equal(student.owner[name], reference.owner[name], case=case,
                                 what=f"the owner map of {name!r}",
                                 hint="prune with the PackNet's own ratio: pn.prune(task_id), no prune_ratio")
                for name, p in student.module.named_parameters():
                    expect_equal(p.detach(), reference.module.get_parameter(name).detach(), case=case,
                                 what=f"parameter {name!r}")
            expect_equal(got, expected, case=case, what="the returned pruned counts")
    return (f"{len(_SCENARIOS)} tiny PackNets, {n_tasks} tasks (SGD and AdamW, a ratio schedule): owner maps, every "
            "parameter and pn.tasks bit-identical to train_task → prune → retrain → freeze")
