"""The machinery behind self-checking exercises: a registry, :func:`check`, and precise failure messages.

Every coding exercise in the book asks the student to write one function (``layer_prune_mask``,
``guarded_step``, ...) that the library already has. Its *checker* runs the student's function and the
library's reference on the same random cases and stops at the first disagreement with a message that says
what was expected, what came back, and a hint. Checkers are deterministic (they draw from their own seeded
generators, never from torch's or Python's global random state, so running a check does not change what a
notebook computes afterwards) and fast (well under a second).

A checker is a function ``checker(student_fn) -> str`` registered with :func:`exercise`; it raises
:class:`ExerciseFailed` (usually through :func:`expect_equal` / :func:`expect_close` / :func:`fail`) and
returns a short description of what agreed, e.g. ``"40 random cases agree with packnet.prune_mask"``.
"""

from __future__ import annotations

import math
import os
import random
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

__all__ = [
    "Exercise",
    "ExerciseFailed",
    "CheckResult",
    "EXERCISES",
    "exercise",
    "check",
    "run_check",
    "exercises_of_chapter",
    "fail",
    "call",
    "expect_equal",
    "expect_close",
    "generator",
    "py_random",
    "describe",
    "no_global_rng_change",
]

Checker = Callable[[Callable[..., Any]], str]


class ExerciseFailed(AssertionError):
    """A student's function disagreed with the reference; the message says where, how, and what to try."""


@dataclass(frozen=True)
class Exercise:
    """One coding exercise: the function the student writes and the checker that grades it.

    Attributes:
        id: ``"<chapter>.<number>"``, e.g. ``"3.2"``; the notebook cells carry the same id.
        name: the name of the function the student defines, e.g. ``"layer_prune_mask"``.
        title: a few words for reports.
        reference: the library function the answer must agree with (shown in messages).
        checker: ``checker(student_fn) -> str``, raising :class:`ExerciseFailed`.
        hint: shown with every failure: a hint about the concept, never the solution's code.
        points: what the exercise is worth in a gradebook (the book gives one point per star: ★☆☆ is 1).
        library: dotted paths of the library callables the answer must not call or re-export
            (``"packnet.pruning.prune_mask"``): the grader reports a submission that uses one as
            ``"uses-library"``, with no credit.
    """

    id: str
    name: str
    title: str
    reference: str
    checker: Checker = field(repr=False)
    hint: str = ""
    points: int = 1
    library: tuple[str, ...] = ()

    @property
    def chapter(self) -> int:
        """The chapter number (the part of :attr:`id` before the dot)."""
        return int(self.id.split(".")[0])


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # packnet/


def _where_in_student_code(error: BaseException) -> str:
    """`` at line N (`code`)`` for the innermost frame of the traceback outside the ``packnet`` package (the
    student's own line, even when the error was raised inside a library call they made), or ``""``."""
    frames = traceback.extract_tb(error.__traceback__)
    theirs = [f for f in frames if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR + os.sep)]
    if not theirs:
        return ""
    line = (theirs[-1].line or "").strip()
    return f" at line {theirs[-1].lineno}" + (f" (`{line}`)" if line else "")


EXERCISES: dict[str, Exercise] = {}
"""Every registered exercise by id (``"3.2"``), in registration order."""


def exercise(id: str, name: str, *, title: str, reference: str, hint: str = "", points: int = 1,
             library: tuple[str, ...] = ()) -> Callable[[Checker], Checker]:
    """Register ``checker`` as the check of exercise ``id`` (a decorator); ``points`` and ``library`` are the
    :class:`Exercise` attributes of the same names.

    Examples:
        >>> @exercise("0.1", "double", title="doubling", reference="2 * x")
        ... def _check_double(fn):
        ...     for x in range(5):
        ...         expect_equal(fn(x), 2 * x, case=f"x = {x}")
        ...     return "5 cases agree with 2 * x"
        >>> check("0.1", lambda x: x + x)
        ✓ Exercise 0.1 (double) passed: 5 cases agree with 2 * x.
        >>> del EXERCISES["0.1"]
    """
    if id in EXERCISES:
        raise ValueError(f"exercise {id!r} is registered twice")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"exercise {id!r}: points must be a positive int, got {points!r}")
    if isinstance(library, str):
        raise TypeError(f"exercise {id!r}: library must be a tuple of dotted paths, got the string {library!r}: "
                        f"write library=({library!r},)")

    def register(checker: Checker) -> Checker:
        EXERCISES[id] = Exercise(id=id, name=name, title=title, reference=reference,
                                 checker=no_global_rng_change(checker), hint=hint, points=points,
                                 library=tuple(library))
        return checker
    return register


def exercises_of_chapter(chapter: int) -> list[Exercise]:
    """The exercises of one chapter, in order."""
    return [e for e in EXERCISES.values() if e.chapter == chapter]


@dataclass
class CheckResult:
    """The outcome of checking one exercise.

    Attributes:
        id: the exercise id.
        name: the function that was checked.
        status: ``"passed"``, ``"failed"``, ``"not implemented"`` (the stub still raises
            ``NotImplementedError``) or ``"missing"`` (no function of that name was defined).
        message: what agreed, or what went wrong.
    """

    id: str
    name: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "passed": self.passed,
                "message": self.message}


def _lookup(exercise_id: str) -> Exercise:
    # The chapter modules register on import; importing the package here makes check() work on its own.
    from . import CHAPTER_MODULES  # noqa: F401  (import side effect: registration)

    try:
        return EXERCISES[exercise_id]
    except KeyError:
        raise KeyError(f"there is no exercise {exercise_id!r}: the exercises are {sorted(EXERCISES)}") from None


def _not_implemented(ex: Exercise) -> str:
    return (f"Exercise {ex.id}: `{ex.name}` still raises NotImplementedError. Replace the "
            "`raise NotImplementedError(...)` line with your code, run that cell, then run this check again.")


def _evaluate(ex: Exercise, fn: Any) -> CheckResult:
    if not callable(fn):
        return CheckResult(ex.id, ex.name, "missing",
                           f"Exercise {ex.id}: expected a function `{ex.name}`, got {type(fn).__name__}.")
    try:
        summary = ex.checker(fn)
    except NotImplementedError:
        return CheckResult(ex.id, ex.name, "not implemented", _not_implemented(ex))
    except ExerciseFailed as error:
        hint = f"\nHint: {ex.hint}" if ex.hint and "Hint:" not in str(error) else ""
        return CheckResult(ex.id, ex.name, "failed", f"Exercise {ex.id} (`{ex.name}`) failed: {error}{hint}")
    except Exception as error:  # the student's code crashed: say where, in their code
        return CheckResult(ex.id, ex.name, "failed",
                           f"Exercise {ex.id} (`{ex.name}`) failed: your function raised "
                           f"{type(error).__name__}: {error}{_where_in_student_code(error)}"
                           + (f"\nHint: {ex.hint}" if ex.hint else ""))
    return CheckResult(ex.id, ex.name, "passed", f"Exercise {ex.id} ({ex.name}) passed: {summary}.")


def check(exercise_id: str, fn: Callable[..., Any]) -> None:
    """Check a student's answer to exercise ``exercise_id`` against the library's reference.

    Prints one line when every case agrees. Otherwise raises: ``NotImplementedError`` while the stub is
    untouched, :class:`ExerciseFailed` with what was expected, what came back and a hint when an answer is
    wrong (or crashes).

    Args:
        exercise_id: e.g. ``"3.2"``.
        fn: the student's function.

    Use :func:`run_check` to get a :class:`CheckResult` instead (nothing printed, nothing raised).
    """
    ex = _lookup(exercise_id)
    result = _evaluate(ex, fn)
    if result.status == "not implemented":
        raise NotImplementedError(result.message)
    if not result.passed:
        raise ExerciseFailed(result.message)
    print(f"\u2713 {result.message}")


def run_check(exercise_id: str, namespace: Mapping[str, Any]) -> CheckResult:
    """Check exercise ``exercise_id`` with the function of its name found in ``namespace``; never raises.

    This is what the grader calls inside a submitted notebook's kernel (``namespace`` is its ``globals()``).
    """
    ex = _lookup(exercise_id)
    if ex.name not in namespace:
        return CheckResult(ex.id, ex.name, "missing",
                           f"Exercise {ex.id}: no function `{ex.name}` is defined (was its cell deleted or renamed?).")
    return _evaluate(ex, namespace[ex.name])


# ---------------------------------------------------------------------------------------------- for checkers
def generator(seed: int, device: str = "cpu") -> torch.Generator:
    """A private, seeded torch generator (checkers never touch the global RNG)."""
    return torch.Generator(device=device).manual_seed(seed)


def py_random(seed: int) -> random.Random:
    """A private, seeded Python RNG."""
    return random.Random(seed)


def describe(value: Any, limit: int = 12) -> str:
    """A short, readable rendering of a value for a failure message (tensors: dtype, shape and the values
    when small)."""
    if isinstance(value, Tensor):
        head = f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
        if value.numel() <= limit:
            return f"{head}: {value.tolist()}"
        return head
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def fail(message: str, *, case: str = "", hint: str = "") -> None:
    """Raise :class:`ExerciseFailed` with ``message``, the case it happened on, and a hint."""
    parts = [f"on {case}: {message}" if case else message]
    if hint:
        parts.append(f"Hint: {hint}")
    raise ExerciseFailed("\n".join(parts))


def _first_difference(expected: Tensor, got: Tensor) -> str:
    differs = expected != got
    if expected.is_floating_point():
        differs &= ~(torch.isnan(expected) & torch.isnan(got))
        differs |= (expected == got) & (torch.signbit(expected) != torch.signbit(got))
    n = int(differs.sum())
    index = tuple(int(i) for i in differs.nonzero()[0]) if n else ()
    position = f"index {index if len(index) != 1 else index[0]}"
    return (f"{n} of {expected.numel()} entries differ; the first at {position}: expected "
            f"{expected[index].item()!r}, got {got[index].item()!r}")


def expect_equal(got: Any, expected: Any, *, case: str = "", what: str = "the result", hint: str = "") -> None:
    """Fail unless ``got`` equals ``expected`` exactly (tensors: same shape, dtype and bits, as ``torch.equal``;
    -0.0 and +0.0 count as different, NaN equals NaN)."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            fail(f"{what} should be a tensor ({describe(expected)}), got {type(got).__name__}: {describe(got)}",
                 case=case, hint=hint)
        if got.shape != expected.shape:
            fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}", case=case, hint=hint)
        if got.dtype != expected.dtype:
            fail(f"{what} has dtype {got.dtype}, expected {expected.dtype}", case=case, hint=hint)
        got_cpu, exp_cpu = got.detach().cpu(), expected.detach().cpu()
        same = torch.equal(got_cpu, exp_cpu)
        if same and exp_cpu.is_floating_point():
            same = torch.equal(torch.signbit(got_cpu), torch.signbit(exp_cpu))
        if not same and exp_cpu.is_floating_point():
            nan_e, nan_g = torch.isnan(exp_cpu), torch.isnan(got_cpu)
            same = (torch.equal(nan_e, nan_g) and torch.equal(got_cpu[~nan_g], exp_cpu[~nan_e])
                    and torch.equal(torch.signbit(got_cpu), torch.signbit(exp_cpu)))
        if not same:
            fail(f"{what} is wrong: {_first_difference(exp_cpu, got_cpu)}", case=case, hint=hint)
        return
    if isinstance(expected, float) and isinstance(got, (int, float)) and math.isnan(expected) and math.isnan(got):
        return
    if type(got) is not type(expected) and not (isinstance(expected, float) and isinstance(got, int)
                                                 and not isinstance(got, bool)):
        if not (isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple))):
            fail(f"{what} should be a {type(expected).__name__} ({describe(expected)}), got "
                 f"{type(got).__name__}: {describe(got)}", case=case, hint=hint)
    if isinstance(expected, (list, tuple)):
        if len(got) != len(expected):
            fail(f"{what} has {len(got)} entries, expected {len(expected)}: expected {describe(expected)}, got "
                 f"{describe(got)}", case=case, hint=hint)
        for i, (g, e) in enumerate(zip(got, expected)):
            expect_equal(g, e, case=case, what=f"entry {i} of {what}", hint=hint)
        return
    if got != expected:
        fail(f"{what} is wrong: expected {describe(expected)}, got {describe(got)}", case=case, hint=hint)


def expect_close(got: Any, expected: Any, *, case: str = "", what: str = "the result", rel: float = 1e-9,
                 abs_tol: float = 1e-12, hint: str = "") -> None:
    """Fail unless ``got`` is a number (or a list of numbers) within floating-point tolerance of ``expected``.

    Use it where two correct formulas may round differently (``r**t * (1 - r)`` vs repeated subtraction); use
    :func:`expect_equal` wherever the library promises exactness.
    """
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            fail(f"{what} should be a list of {len(expected)} numbers ({describe(expected)}), got {describe(got)}",
                 case=case, hint=hint)
        for i, (g, e) in enumerate(zip(got, expected)):
            expect_close(g, e, case=case, what=f"entry {i} of {what}", rel=rel, abs_tol=abs_tol, hint=hint)
        return
    if isinstance(got, Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        fail(f"{what} should be a number ({expected!r}), got {type(got).__name__}: {describe(got)}",
             case=case, hint=hint)
    if math.isnan(expected) and math.isnan(got):
        return
    if not math.isclose(got, expected, rel_tol=rel, abs_tol=abs_tol):
        fail(f"{what} is wrong: expected {expected!r}, got {got!r}", case=case, hint=hint)


def call(fn: Callable[..., Any], *args: Any, case: str = "", **kwargs: Any) -> Any:
    """Call the student's ``fn``; a crash becomes a failure that names the case (NotImplementedError passes)."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, ExerciseFailed):
        raise
    except Exception as error:
        fail(f"your function raised {type(error).__name__}: {error}{_where_in_student_code(error)}", case=case)


def no_global_rng_change(checker: Checker) -> Checker:
    """Decorator for checkers: restore torch's and Python's global RNG state afterwards, whatever the student's
    code drew from them."""
    import functools

    @functools.wraps(checker)
    def wrapped(fn: Callable[..., Any]) -> str:
        torch_state, py_state = torch.get_rng_state(), random.getstate()
        try:
            return checker(fn)
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
    return wrapped

