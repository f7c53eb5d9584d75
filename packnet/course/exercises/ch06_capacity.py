"""Chapter 6 exercises: the capacity schedule, the equal-share ratios, and how many tasks fit.

Reference answers: :func:`packnet.capacity_schedule`, :func:`packnet.equal_share_schedule`,
:func:`packnet.tasks_that_fit`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from packnet.capacity import capacity_schedule, equal_share_schedule, tasks_that_fit

from .checking import call, exercise, expect_close, expect_equal, fail, py_random


def _schedule_cases() -> list[tuple[Any, int]]:
    rng = py_random(61)
    cases: list[tuple[Any, int]] = [(0.75, 4), (0.5, 1), (0.0, 3), (0.9, 30), (0.25, 6), ([0.5, 0.0], 2),
                                    (equal_share_schedule(5), 5), ([0.0, 0.9, 0.5], 3)]
    cases += [(round(rng.random() * 0.99, 3), rng.randrange(1, 25)) for _ in range(24)]
    for _ in range(12):  # one ratio per task, the last ones sometimes 0 (keep everything that is left)
        n = rng.randrange(1, 12)
        cases.append(([rng.choice([0.0, round(rng.random() * 0.99, 2)]) for _ in range(n)], n))
    return cases


@exercise("6.1", "capacity_schedule",
          points=1, library=("packnet.capacity.capacity_schedule",),
          title="the capacity schedule", reference="packnet.capacity_schedule",
          hint="each task keeps the fraction 1 - r_t of what it finds available, and what it keeps is no "
               "longer available to the tasks after it. A list prune_ratio gives one r_t per task; a number "
               "is the same r for every task.")
def check_capacity_schedule(fn: Callable[..., Any]) -> str:
    cases = _schedule_cases()
    for prune_ratio, n_tasks in cases:
        kind = "one ratio per task" if isinstance(prune_ratio, list) else "the same ratio for every task"
        case = f"prune_ratio = {prune_ratio!r} ({kind}), n_tasks = {n_tasks}"
        got = call(fn, list(prune_ratio) if isinstance(prune_ratio, list) else prune_ratio, n_tasks, case=case)
        expected = capacity_schedule(prune_ratio, n_tasks)
        if not isinstance(got, list) or len(got) != n_tasks:
            fail(f"expected a list of {n_tasks} rows, one per task, got {type(got).__name__}"
                 + (f" of length {len(got)}" if hasattr(got, "__len__") else ""), case=case)
        for t, (row, want) in enumerate(zip(got, expected)):
            if not isinstance(row, dict) or set(row) != {"task", "available", "used"}:
                fail(f"row {t} should be a dict with the keys 'task', 'available' and 'used', got {row!r}",
                     case=case)
            expect_equal(row["task"], t, case=case, what=f"row {t}'s 'task'",
                         hint="tasks are numbered from 0, in learning order")
            r = prune_ratio[t] if isinstance(prune_ratio, list) else prune_ratio
            if (isinstance(row["used"], float) and isinstance(row["available"], float) and r != 0.5
                    and math.isclose(row["used"], row["available"] * r, rel_tol=1e-9)
                    and not math.isclose(want["used"], want["available"] * r, rel_tol=1e-9)):
                fail(f"row {t}'s 'used' is available * r = {row['used']!r}: that is what task {t} frees for the "
                     f"next task; it keeps available * (1 - r) = {want['used']!r}", case=case)
            expect_close(row["available"], want["available"], case=case, what=f"row {t}'s 'available'")
            expect_close(row["used"], want["used"], case=case, what=f"row {t}'s 'used'")
    return f"{len(cases)} schedules (fixed ratios and per-task lists) agree with packnet.capacity_schedule"


@exercise("6.2", "equal_share_schedule",
          points=2, library=("packnet.capacity.equal_share_schedule",),
          title="prune ratios for equal shares",
          reference="packnet.equal_share_schedule",
          hint="task t finds (N - t)/N of the network free and must keep 1/N of the whole, i.e. the fraction "
               "1/(N - t) of what it finds: it prunes r_t = 1 - 1/(N - t). The last task (t = N - 1) prunes 0.")
def check_equal_share_schedule(fn: Callable[..., Any]) -> str:
    sizes = list(range(1, 41)) + [64, 100, 255]
    for n in sizes:
        case = f"n_tasks = {n}"
        got = call(fn, n, case=case)
        expected = equal_share_schedule(n)
        if not isinstance(got, (list, tuple)) or len(got) != n:
            fail(f"expected a list of {n} prune ratios, one per task, got {type(got).__name__}"
                 + (f" of length {len(got)}" if hasattr(got, "__len__") else ""), case=case)
        numbers = all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in got)
        if numbers and n >= 2 and all(math.isclose(r, 1 - 1 / n, abs_tol=1e-12) for r in got):
            fail(f"every task prunes the same 1 - 1/N = {1 - 1 / n!r}: a constant ratio gives geometric shares "
                 "((1/N), (1/N)(1 - 1/N), ...), not equal ones. Each task must prune a fraction of what it "
                 "finds free, and that shrinks from task to task", case=case)
        if numbers and n >= 3 and all(math.isclose(r, (n - t - 1) / n, abs_tol=1e-12) for t, r in enumerate(got)):
            fail("these are (N - t - 1)/N, fractions of the whole network; a prune ratio is a fraction of what "
                 "the task finds free ((N - t)/N of the network), so keeping 1/N of the whole means keeping "
                 "1/(N - t) of it", case=case)
        if numbers and not math.isclose(got[-1], 0.0, abs_tol=1e-12):
            fail(f"the last task prunes {got[-1]!r}; it should prune 0: it keeps everything that is left, which "
                 "is exactly its share 1/N", case=case)
        expect_close(list(got), expected, case=case, what="the prune ratios")
    return f"{len(sizes)} task counts from 1 to 255 agree with packnet.equal_share_schedule"


def _closed_form(r: float, min_share: float) -> "int | None":
    """The chapter's closed form, evaluated in floating point (``None`` where it is undefined: r = 0)."""
    if 1 - r < min_share:
        return 0
    return None if r == 0 else math.floor(math.log(min_share / (1 - r)) / math.log(r)) + 1


def _pow_count(r: float, min_share: float) -> int:
    """The count with the shares written (1 - r) * r**t, which round differently from the schedule's."""
    count = 0
    while (1 - r) * r**count >= min_share:
        count += 1
    return count


def _fit_cases() -> list[tuple[float, float]]:
    def share(r: float, t: int) -> float:  # task t's share exactly as capacity_schedule computes it
        return capacity_schedule(r, t + 1)[-1]["used"]

    rng = py_random(63)
    cases = [(0.75, 0.1), (0.5, 0.125), (0.75, 0.25), (0.75, 0.1875), (0.9, 0.2), (0.5, 0.75), (0.97, 0.01),
             (0.9, 0.05), (0.95, 0.01)]
    # min_share equal to some task's share, where the closed form's floor lands one off in floating point
    # (0.55 and task 3), where (1 - r) * r**t rounds differently from the schedule's repeated subtraction (0.52
    # and task 5), or both (0.55 and task 4)
    cases += [(r, share(r, t)) for r, t in [(0.55, 3), (0.52, 5), (0.55, 4), (0.51, 9), (0.56, 2), (0.02, 1)]]
    cases += [(0.0, 1.0), (0.0, 0.3)]  # the first task keeps everything; ln 0 is undefined
    for _ in range(40):
        r = round(rng.random() * 0.99, 2)
        cases.append((r, share(r, rng.randrange(0, 12))) if rng.random() < 0.5 else (r, 10 ** -rng.uniform(0, 4)))
    return cases


@exercise("6.3", "tasks_that_fit",
          points=2, library=("packnet.capacity.tasks_that_fit",),
          title="how many tasks keep a minimum share", reference="packnet.tasks_that_fit",
          hint="walk the schedule: available = 1.0; while available * (1 - r) >= min_share, count the task and "
               "subtract its share from available. Those are the shares capacity_schedule computes, bit for bit, "
               "so a share equal to min_share is never mistaken for a smaller one.")
def check_tasks_that_fit(fn: Callable[..., Any]) -> str:
    cases = _fit_cases()
    for r, min_share in cases:
        case = f"prune_ratio = {r}, min_share = {min_share!r}"
        got = call(fn, r, min_share, case=case)
        expected = tasks_that_fit(r, min_share)
        if isinstance(got, int) and not isinstance(got, bool) and got < 0:
            fail(f"a negative count ({got}): when even the first task keeps less than min_share "
                 "(1 - r < min_share), no task fits, so the count is 0", case=case)
        if isinstance(got, int) and not isinstance(got, bool) and 0 < abs(got - expected) <= 2:
            closed = _closed_form(r, min_share)
            shares = [row["used"] for row in capacity_schedule(r, max(got, expected) + 1)]
            if got > expected:
                why = f"task {got - 1}'s share is {shares[got - 1]!r} < min_share, so only {expected} fit"
            else:
                why = f"task {expected - 1}'s share is {shares[expected - 1]!r} >= min_share, so {expected} fit"
            if got == closed:
                ratio = math.log(min_share / (1 - r)) / math.log(r)
                fail(f"{got} is the closed form floor(ln(s / (1 - r)) / ln r) + 1, off by one here: the log ratio is "
                     f"{ratio!r} in floating point, while, computed as capacity_schedule computes it, {why}. "
                     "Check the count against the shares themselves", case=case)
            if got == _pow_count(r, min_share):
                fail(f"{got} counts the shares written (1 - r) * r**t; capacity_schedule computes them by repeated "
                     f"subtraction (available -= used), which rounds differently, and {why}"
                     + (" (min_share is exactly that share)" if min_share in shares else "")
                     + ". Count the schedule's own shares", case=case)
            if got == expected - 1 and min_share in shares:
                fail(f"{got}: the task whose share equals min_share exactly was not counted; it keeps at least "
                     f"min_share (>=, not >), so {expected} tasks fit", case=case)
            if got == expected - 1:
                fail(f"{got} is one less than the count, {expected}: tasks are numbered from 0, so when task "
                     f"{expected - 1} is the last to keep min_share, {expected} tasks fit", case=case)
        expect_equal(got, expected, case=case, what="the number of tasks")
    return f"{len(cases)} cases (shares equal to min_share included) agree with packnet.tasks_that_fit"
