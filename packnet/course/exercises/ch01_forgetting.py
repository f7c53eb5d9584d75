"""Chapter 1 exercises: the three numbers that score continual learning, from the accuracy matrix.

Reference answers: :func:`packnet.bench.metrics.average_accuracy`, :func:`packnet.bench.metrics.forgetting`,
:func:`packnet.bench.metrics.backward_transfer`. Every case is an accuracy matrix ``R`` as a list of lists, ``R[i][j]``
the accuracy on task ``j`` after learning task ``i`` and ``nan`` above the diagonal (tasks not learned yet).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from packnet.bench.metrics import average_accuracy, backward_transfer, forgetting

from .checking import ExerciseFailed, call, exercise, expect_close, fail, py_random

nan = math.nan

# Hand-made matrices for the mistakes the random ones might miss.
_CASES: list[tuple[str, list[list[float]]]] = [
    ("a single task", [[0.97]]),
    ("the chapter's 3-task matrix", [[0.99, nan, nan], [0.90, 0.98, nan], [0.70, 0.95, 0.97]]),
    ("task 0 improved after it was learned, then fell (its best is not on the diagonal)",
     [[0.90, nan, nan], [0.95, 0.90, nan], [0.80, 0.92, 0.99]]),
    ("task 0 ended above every earlier accuracy (negative forgetting)",
     [[0.80, nan, nan], [0.85, 0.90, nan], [0.90, 0.70, 0.95]]),
    ("PackNet: every column constant", [[0.995, nan, nan], [0.995, 0.98, nan], [0.995, 0.98, 0.97]]),
    ("two tasks", [[0.9, nan], [0.8, 1.0]]),
]


def _random_matrix(seed: int) -> tuple[str, list[list[float]]]:
    rng = py_random(100 + seed)
    T = 1 + seed % 6
    R = [[nan] * T for _ in range(T)]
    for i in range(T):
        for j in range(i + 1):
            R[i][j] = rng.randrange(60, 201) / 200  # what a 200-image test set can give
    return f"a random {T}×{T} matrix (case {seed})", R


def _cases() -> list[tuple[str, list[list[float]]]]:
    """``(description for messages, R)`` of every case: the hand-made matrices, then 30 random ones."""
    return [(f"{name}: {_show(R)}", R) for name, R in _CASES + [_random_matrix(seed) for seed in range(30)]]


def _show(R: list[list[float]]) -> str:
    return "R = [" + ", ".join("[" + ", ".join("nan" if math.isnan(a) else f"{a:g}" for a in row) + "]"
                               for row in R) + "]"


def _copy(R: list[list[float]]) -> list[list[float]]:
    return [list(row) for row in R]


def _unchanged(R: list[list[float]], before: list[list[float]]) -> bool:
    return len(R) == len(before) and all(
        len(r) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(r, b))
        for r, b in zip(R, before))


def _run(fn: Callable[..., Any], R: list[list[float]], case: str) -> Any:
    before = _copy(R)
    got = call(fn, R, case=case)
    if not _unchanged(R, before):
        fail("your function changed R; a metric only reads the matrix", case=case)
    return got


def _is(got: Any, value: float) -> bool:
    return isinstance(got, (int, float)) and not isinstance(got, bool) and (
        math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(got) and math.isnan(value)))


@exercise("1.1", "average_accuracy",
          points=1, library=("packnet.bench.metrics.average_accuracy",),
          title="average accuracy", reference="packnet.bench.metrics.average_accuracy",
          hint="the mean of the last row, R[T-1][0..T-1]: every task's accuracy once all T tasks are learned.")
def check_average_accuracy(fn: Callable[..., Any]) -> str:
    cases = _cases()
    for case, R in cases:
        got = _run(fn, R, case)
        expected = average_accuracy(R)
        T = len(R)
        diagonal = sum(R[j][j] for j in range(T)) / T
        learned = [a for i, row in enumerate(R) for a in row[: i + 1]]
        if not _is(got, expected):
            if isinstance(got, float) and math.isnan(got):
                fail("the result is nan: it averages entries above the diagonal (tasks not learned yet); "
                     "only the last row is complete", case=case)
            if _is(got, diagonal):
                fail(f"{got!r} is the mean of the diagonal (each task just after it was learned), expected "
                     f"{expected!r}, the mean of the last row (each task at the end)", case=case)
            if _is(got, sum(learned) / len(learned)):
                fail(f"{got!r} is the mean of every learned entry, expected {expected!r}, the mean of the last "
                     "row only", case=case)
        expect_close(got, expected, case=case, what="the average accuracy")
    return f"{len(cases)} matrices of 1 to 6 tasks agree with packnet.bench.metrics.average_accuracy"


@exercise("1.2", "forgetting",
          points=2, library=("packnet.bench.metrics.forgetting",),
          title="forgetting per task", reference="packnet.bench.metrics.forgetting",
          hint="for j < T-1: max(R[i][j] for i in range(j, T-1)) - R[T-1][j], the best accuracy task j had "
               "*before* the end minus its final one; 0.0 for the last task.")
def check_forgetting(fn: Callable[..., Any]) -> str:
    cases = _cases()
    for case, R in cases:
        got = _run(fn, R, case)
        expected = forgetting(R)
        T = len(R)
        if not isinstance(got, (list, tuple)):
            fail(f"expected a list of {T} numbers, one per task, got {type(got).__name__}: {got!r}", case=case)
        if len(got) == T - 1:
            fail(f"it returns {T - 1} numbers, expected {T}: the last task gets a forgetting too, 0.0 (it had no "
                 "time to be forgotten)", case=case)
        if len(got) != T:
            fail(f"it returns {len(got)} numbers, expected {T}, one per task", case=case)
        if not _is(got[-1], 0.0):
            fail(f"the last task's forgetting is {got[-1]!r}, expected 0.0: nothing was learned after it, so "
                 "there is no earlier best to compare with", case=case)
        from_diagonal = [R[j][j] - R[-1][j] for j in range(T - 1)] + [0.0]
        with_final_row = [max(R[i][j] for i in range(j, T)) - R[-1][j] for j in range(T)]
        for j in range(T - 1):
            if _is(got[j], expected[j]):
                continue
            if _is(got[j], from_diagonal[j]):
                fail(f"task {j}'s forgetting is {got[j]!r} = R[{j}][{j}] - R[{T - 1}][{j}], expected "
                     f"{expected[j]!r}: forgetting starts from the task's *best* accuracy before the end, "
                     f"max(R[i][{j}] for i in {j}..{T - 2}), not from the diagonal (that is backward transfer's)",
                     case=case)
            if _is(got[j], with_final_row[j]):
                fail(f"task {j}'s forgetting is {got[j]!r}, expected {expected[j]!r}: the max runs over rows "
                     f"{j}..{T - 2} only. With the final row in the max, a task that ended above its earlier "
                     "best gets 0.0 instead of its (negative) forgetting", case=case)
        expect_close(list(got), expected, case=case, what="the forgetting list")
    return f"{len(cases)} matrices of 1 to 6 tasks agree with packnet.bench.metrics.forgetting"


@exercise("1.3", "backward_transfer",
          points=2, library=("packnet.bench.metrics.backward_transfer",),
          title="backward transfer", reference="packnet.bench.metrics.backward_transfer",
          hint="the mean of R[T-1][j] - R[j][j] over the T-1 tasks before the last (final minus just learned: "
               "negative means forgetting); 0.0 for a single task.")
def check_backward_transfer(fn: Callable[..., Any]) -> str:
    cases = _cases()
    for case, R in cases:
        T = len(R)
        try:
            got = _run(fn, R, case)
        except ExerciseFailed as error:
            crash = str(error).partition("your function raised ")[2]
            if T == 1 and crash:
                fail(f"a single task has no earlier task to transfer to: backward transfer is 0.0 by definition, "
                     f"but your function raised {crash}", case=case)
            raise
        expected = backward_transfer(R)
        if T == 1 and not _is(got, 0.0):
            fail(f"got {got!r}, expected 0.0: a single task has no earlier task to transfer to (the mean over "
                 "zero tasks is defined as 0.0)", case=case)
        if not _is(got, expected) and T > 1:
            change = sum(R[-1][j] - R[j][j] for j in range(T - 1))
            if _is(got, change / T):
                fail(f"got {got!r} = (sum of the changes) / {T}, expected {expected!r}: average over the "
                     f"{T - 1} tasks before the last (the last one has no change to measure)", case=case)
            if _is(got, -expected):
                fail(f"got {got!r}, expected {expected!r}: the sign is flipped; backward transfer is final minus "
                     "just learned, R[T-1][j] - R[j][j], so forgetting makes it negative", case=case)
            if _is(got, -sum(forgetting(R)[: T - 1]) / (T - 1)):
                fail(f"got {got!r}, expected {expected!r}: that compares with each task's best accuracy "
                     "(minus the mean forgetting); backward transfer compares with R[j][j], the accuracy just "
                     "after learning", case=case)
        expect_close(got, expected, case=case, what="the backward transfer")
    return f"{len(cases)} matrices of 1 to 6 tasks agree with packnet.bench.metrics.backward_transfer"
