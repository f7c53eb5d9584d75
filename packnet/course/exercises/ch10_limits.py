"""Chapter 10 exercises: how much of the network a task sees, and guessing the task from its heads' confidence.

Reference answers: :func:`packnet.bench.capacity_sequence.visible_shares`, and
:func:`_reference_confidence_task` below (the confidence baseline of task inference: the head whose softmax
is most sure of its answer).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from packnet.bench.capacity_sequence import visible_shares
from packnet.capacity import capacity_schedule, equal_share_schedule

from .checking import call, exercise, expect_close, expect_equal, fail, generator, py_random


# ---------------------------------------------------------------------------------------- 10.1 visible_shares
def _visible_cases() -> list[tuple[Any, int]]:
    rng = py_random(101)
    cases: list[tuple[Any, int]] = [(0.75, 4), (0.5, 1), (0.0, 3), (0.9, 25), (0.75, 25), ([0.5, 0.0, 0.0], 3),
                                    (equal_share_schedule(6), 6), (equal_share_schedule(4) + [0.0, 0.0], 6),
                                    ([0.0, 0.9, 0.5], 3)]
    cases += [(round(rng.random() * 0.99, 3), rng.randrange(1, 30)) for _ in range(16)]
    for _ in range(10):  # one ratio per task
        n = rng.randrange(1, 12)
        cases.append(([rng.choice([0.0, round(rng.random() * 0.99, 2)]) for _ in range(n)], n))
    return cases


@exercise("10.1", "visible_shares",
          points=1, library=("packnet.bench.capacity_sequence.visible_shares",),
          title="how much of the network each task sees",
          reference="packnet.bench.capacity_sequence.visible_shares",
          hint="task t computes with its own weights and every earlier task's: add up the 'used' shares of "
               "capacity_schedule(prune_ratio, n_tasks) from task 0 to task t (a running sum), one per task.")
def check_visible_shares(fn: Callable[..., Any]) -> str:
    cases = _visible_cases()
    for prune_ratio, n_tasks in cases:
        kind = "one ratio per task" if isinstance(prune_ratio, list) else "the same ratio for every task"
        case = f"prune_ratio = {prune_ratio!r} ({kind}), n_tasks = {n_tasks}"
        got = call(fn, list(prune_ratio) if isinstance(prune_ratio, list) else prune_ratio, n_tasks, case=case)
        expected = visible_shares(prune_ratio, n_tasks)
        if not isinstance(got, (list, tuple)) or len(got) != n_tasks:
            fail(f"expected a list of {n_tasks} fractions, one per task, got {type(got).__name__}"
                 + (f" of length {len(got)}" if hasattr(got, "__len__") else ""), case=case)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in got)
        rows = capacity_schedule(prune_ratio, n_tasks)
        used, available = [row["used"] for row in rows], [row["available"] for row in rows]

        def same(values: list[float]) -> bool:
            return all(math.isclose(g, v, rel_tol=1e-9, abs_tol=1e-12) for g, v in zip(got, values))

        if numbers and not same(expected):
            if same(used):
                fail("these are the shares each task *owns* (capacity_schedule's 'used'); a task also sees "
                     "the frozen weights of every earlier task, so add the earlier shares to its own", case=case)
            if same(available):
                fail("these are the fractions *free* when each task starts ('available'): a task trains on "
                     "those, but after pruning keeps only its share of them; it sees its share plus the earlier "
                     "tasks' shares", case=case)
            if same([e - u for e, u in zip(expected, used)]):
                fail("each task's own share is missing: task t sees the earlier tasks' weights *and* its own "
                     f"(task 0 sees its own {used[0]!r}, not 0)", case=case)
        expect_close(list(got), expected, case=case, what="the visible shares")
    return (f"{len(cases)} schedules (fixed ratios, equal-share plans, a plan followed by tasks that find "
            "nothing free) agree with packnet.bench.capacity_sequence.visible_shares")


# ---------------------------------------------------------------------------------------- 10.2 confidence_task
def _reference_confidence_task(logits: Tensor) -> Tensor:
    """Exercise 10.2's reference: per sample, the task whose head gives the highest softmax probability.

    ``logits`` has shape ``(tasks, samples, classes)``: task ``k``'s head applied to every sample. Ties go to
    the lowest task index.
    """
    confidence = torch.softmax(logits, dim=-1).amax(dim=-1)  # (tasks, samples)
    return confidence.argmax(dim=0)


def _logit_cases() -> list[tuple[Tensor, str]]:
    cases: list[tuple[Tensor, str]] = []
    # the largest raw logit and the most confident head disagree: head 0 is loud but undecided, head 1 quiet
    # but sure, head 2 knows nothing (uniform)
    cases.append((torch.tensor([[[8.9, 9.0, 8.95]], [[2.0, -3.0, -3.0]], [[0.0, 0.0, 0.0]]]),
                  "a loud but undecided head 0"))
    # a tie between heads 1 and 2 (the same logits): the lower index wins
    cases.append((torch.tensor([[[0.0, 0.1]], [[3.0, 0.0]], [[3.0, 0.0]]]), "heads 1 and 2 tied"))
    # more classes than tasks and the reverse, so a wrong axis shows
    for seed in range(14):
        g, rng = generator(1000 + seed), py_random(1000 + seed)
        tasks, samples, classes = rng.randrange(2, 7), rng.randrange(1, 9), rng.randrange(2, 11)
        scale = [1.0, 4.0, 0.3][seed % 3]
        logits = torch.randn(tasks, samples, classes, generator=g) * scale
        logits += torch.randn(tasks, samples, 1, generator=g) * 5  # a per-head offset: the raw maximum misleads
        cases.append((logits, f"{tasks} heads, {samples} samples, {classes} classes (case {seed})"))
    cases.append((torch.randn(3, 0, 4, generator=generator(1099)), "an empty batch"))
    return cases


@exercise("10.2", "confidence_task",
          points=2,
          title="the task whose head is most confident",
          reference="the confidence baseline (max softmax probability over the heads)",
          hint="softmax over the classes (the last dimension), the largest probability per head and sample "
               "(.amax(dim=-1), shape (tasks, samples)), then argmax over the heads (dim=0).")
def check_confidence_task(fn: Callable[..., Any]) -> str:
    cases = _logit_cases()
    for logits, label in cases:
        case = f"logits of shape {tuple(logits.shape)}: {label}"
        given = logits.clone()
        got = call(fn, given, case=case)
        if not torch.equal(given, logits):
            fail("your function changed the logits it was given; compute from them, never write into them",
                 case=case)
        expected = _reference_confidence_task(logits)
        if isinstance(got, Tensor) and got.shape == expected.shape and not torch.equal(got.long(), expected):
            raw = logits.amax(dim=-1).argmax(dim=0)
            classes = logits.softmax(dim=-1).argmax(dim=-1)[0]
            if torch.equal(got.long(), classes) and not torch.equal(classes, raw):
                fail("this is a class (the argmax over the classes of head 0), not a task: take the largest "
                     "probability of each head (over the classes), then the argmax over the heads", case=case)
            least = logits.softmax(dim=-1).amax(dim=-1).argmin(dim=0)
            if torch.equal(got.long(), least) and not torch.equal(least, raw):
                fail("this is the *least* confident head (argmin): the task is the head whose largest "
                     "probability is highest", case=case)
            if torch.equal(got.long(), raw) and not torch.equal(raw, least):
                fail("this is the head with the largest raw logit; logits of different heads are not on one "
                     "scale (a head can be loud and undecided). Compare probabilities: softmax over each head's "
                     "classes first", case=case)
        if isinstance(got, Tensor) and got.shape != expected.shape:
            fail(f"expected one task index per sample, shape {tuple(expected.shape)}, got shape "
                 f"{tuple(got.shape)}: reduce over the classes (last dimension), then over the heads (first)",
                 case=case)
        if isinstance(got, Tensor) and got.dtype != torch.int64 and not got.is_floating_point():
            got = got.long()  # any integer dtype will do
        expect_equal(got, expected, case=case, what="the task per sample",
                     hint="ties go to the lowest task index, as torch.argmax breaks them")
    return (f"{len(cases)} batches of logits (ties, a loud but undecided head, an empty batch) agree with the "
            "confidence baseline")
