"""The exercises of chapters 5 (inference) and 6 (capacity): references and the book's solutions pass, typical
mistakes fail with their diagnosis, stubs are "not implemented", and the notebooks grade 1.0 / 0.0."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import packnet
from packnet.course.coursework import exercise_role, grade_notebook, stub_source, student_notebook
from packnet.course.exercises import ExerciseFailed, check, run_check
from packnet.course.exercises.ch05_inference import _reference_task_view

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = {5: BOOK / "05_inference.ipynb", 6: BOOK / "06_capacity.ipynb"}
NAMES = {"5.1": "visible_mask", "5.2": "task_view", "6.1": "capacity_schedule", "6.2": "equal_share_schedule",
         "6.3": "tasks_that_fit"}


REFERENCES: dict[str, Callable[..., Any]] = {
    "5.1": packnet.visible_mask, "5.2": _reference_task_view, "6.1": packnet.capacity_schedule,
    "6.2": packnet.equal_share_schedule, "6.3": packnet.tasks_that_fit,
}


def solution_cells(chapter: int) -> list[tuple[str, str]]:
    nb = json.loads(NOTEBOOKS[chapter].read_text(encoding="utf-8"))
    return [(exercise_role(c)[0], "".join(c["source"])) for c in nb["cells"] if exercise_role(c)[1] == "solution"]


def book_solutions(chapter: int) -> dict[str, Any]:
    """The chapter's solution cells exactly as written in the notebook, run in order in one namespace."""
    namespace: dict[str, Any] = {}
    for _, source in solution_cells(chapter):
        exec(compile(source, f"<solution of chapter {chapter}>", "exec"), namespace)
    return namespace


def failure(exercise_id: str, fn: Callable[..., Any]) -> str:
    with pytest.raises(ExerciseFailed) as error:
        check(exercise_id, fn)
    return str(error.value)


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_the_reference_passes(exercise_id, capsys):
    check(exercise_id, REFERENCES[exercise_id])
    assert f"Exercise {exercise_id} ({NAMES[exercise_id]}) passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_the_book_solution_passes(exercise_id, capsys):
    namespace = book_solutions(int(exercise_id[0]))
    check(exercise_id, namespace[NAMES[exercise_id]])
    assert f"Exercise {exercise_id} ({NAMES[exercise_id]}) passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_the_stub_is_not_implemented(exercise_id):
    chapter = int(exercise_id[0])
    namespace: dict[str, Any] = {}
    for cell_id, source in solution_cells(chapter):  # earlier answers solved, this one stubbed
        code = stub_source(source, cell_id) if cell_id == exercise_id else source
        exec(compile(code, f"<cell {cell_id}>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=f"Exercise {exercise_id}: `{NAMES[exercise_id]}` still raises"):
        check(exercise_id, namespace[NAMES[exercise_id]])


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_run_check_leaves_the_global_rng_alone(exercise_id):
    namespace = book_solutions(int(exercise_id[0]))
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    assert run_check(exercise_id, namespace).passed
    assert torch.equal(torch.random.get_rng_state(), state)


# ---------------------------------------------------------------------------------------- 5.1 visible_mask
@pytest.mark.parametrize("wrong, diagnosis", [
    (lambda owner, k: owner <= k, "free weights (owner 0) are visible"),
    (lambda owner, k: (owner >= 1) & (owner < k), "own weights (owner == 255) are hidden"),
    (lambda owner, k: owner == k, "weights of earlier tasks (owners 1..254) are hidden"),
    (lambda owner, k: ((owner >= 1) & (owner <= k)).to(torch.uint8), "dtype torch.uint8, expected torch.bool"),
])
def test_visible_mask_mistakes_are_diagnosed(wrong, diagnosis):
    assert diagnosis in failure("5.1", wrong)


def test_visible_mask_that_writes_into_the_owner_map_fails():
    def clamping(owner, k):
        return (owner.clamp_(max=k) >= 1) & (owner <= k)
    assert "changed the owner map" in failure("5.1", clamping)


# ---------------------------------------------------------------------------------------- 5.2 task_view
def _visible(owner, k):
    return (owner >= 1) & (owner <= k)


def make_view(zero=None, restore=None, *, use_finally=True, swallow=False, no_grad=True, clone=True):
    """A task_view with one part done the wrong way."""
    zero = zero or (lambda w, visible: w.masked_fill_(~visible, 0.0))
    restore = restore or (lambda w, backup, visible: w.copy_(backup))

    @contextlib.contextmanager
    def view(weights, owners, k):
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            backups = [w.detach().clone() if clone else w.detach() for w in weights]
            for w, owner in zip(weights, owners):
                zero(w, _visible(owner, k))

        def undo():
            with torch.no_grad():
                for w, backup, owner in zip(weights, backups, owners):
                    restore(w, backup, _visible(owner, k))
        if not use_finally:
            yield
            undo()
            return
        try:
            yield
        except Exception:
            if not swallow:
                raise
        finally:
            undo()
    return view


def test_task_view_multiplying_by_the_mask_keeps_hidden_nans():
    assert "NaN * 0 = NaN" in failure("5.2", make_view(zero=lambda w, visible: w.mul_(visible)))


def test_task_view_multiplying_by_the_mask_leaves_negative_zeros():
    def multiply_then_clean(w, visible):
        w.mul_(visible)
        w.masked_fill_(w.isnan() & ~visible, 0.0)
    assert "are -0.0, not +0.0" in failure("5.2", make_view(zero=multiply_then_clean))


def test_task_view_adding_back_the_hidden_part_loses_negative_zeros():
    def add_back(w, backup, visible):
        w.add_(torch.where(visible, torch.zeros_like(backup), backup))
    message = failure("5.2", make_view(restore=add_back))
    assert "after the block" in message and "-0.0 or NaN did not come back" in message


def test_task_view_adding_back_a_cleaned_hidden_part_loses_nans():
    def add_back_cleaned(w, backup, visible):
        w.add_(torch.where(visible, torch.zeros_like(backup), backup).nan_to_num(0.0))
    message = failure("5.2", make_view(restore=add_back_cleaned))
    assert "-0.0 or NaN did not come back" in message and " NaN)" in message


def test_task_view_without_finally_is_not_restored_after_an_exception():
    message = failure("5.2", make_view(use_finally=False))
    assert "after an exception left the block" in message and "finally:" in message


def test_task_view_that_swallows_the_exception_fails():
    assert "did not come out of it" in failure("5.2", make_view(swallow=True))


def test_task_view_outside_no_grad_is_told_to_use_it():
    assert "change them under `with torch.no_grad():`" in failure("5.2", make_view(no_grad=False))


def test_task_view_whose_backup_is_a_view_fails():
    assert "a view of the same storage (`w.detach()`, `w.data`) is zeroed" in failure("5.2", make_view(clone=False))


def test_task_view_that_keeps_free_weights_visible_fails():
    @contextlib.contextmanager
    def view(weights, owners, k):
        with torch.no_grad():
            backups = [w.detach().clone() for w in weights]
            for w, owner in zip(weights, owners):
                w.masked_fill_(~(owner <= k), 0.0)  # the mistake: owner <= k includes the free weights
        try:
            yield
        finally:
            with torch.no_grad():
                for w, backup in zip(weights, backups):
                    w.copy_(backup)
    assert "free ones must be hidden too" in failure("5.2", view)


def test_task_view_that_rebinds_instead_of_changing_in_place_fails():
    @contextlib.contextmanager
    def view(weights, owners, k):
        for w, owner in zip(weights, owners):
            w = torch.where(_visible(owner, k), w, 0.0)  # noqa: F841 -- the mistake: a new tensor
        yield
    assert "is unchanged: its hidden entries must be zeroed *in place*" in failure("5.2", view)


def test_task_view_that_swaps_the_storage_fails():
    @contextlib.contextmanager
    def view(weights, owners, k):
        old = [w.data for w in weights]
        for w, owner in zip(weights, owners):
            w.data = torch.where(_visible(owner, k), w.data, 0.0)
        try:
            yield
        finally:
            for w, data in zip(weights, old):
                w.data = data
    assert "is a new tensor (its storage moved)" in failure("5.2", view)


def test_task_view_without_contextmanager_is_told_to_decorate_it():
    def view(weights, owners, k):
        yield
    assert "returned a generator, not a context manager" in failure("5.2", view)


# ---------------------------------------------------------------------------------------- 6.1 capacity_schedule
def test_capacity_schedule_with_used_and_freed_swapped_fails():
    def swapped(prune_ratio, n_tasks):
        ratios = prune_ratio if isinstance(prune_ratio, list) else [prune_ratio] * n_tasks
        rows, available = [], 1.0
        for t, r in enumerate(ratios):
            rows.append({"task": t, "available": available, "used": available * r})
            available -= available * r
        return rows
    assert "that is what task 0 frees for the next task" in failure("6.1", swapped)


def test_capacity_schedule_numbered_from_one_fails():
    def from_one(prune_ratio, n_tasks):
        return [dict(row, task=row["task"] + 1) for row in packnet.capacity_schedule(prune_ratio, n_tasks)]
    assert "row 0's 'task' is wrong: expected 0, got 1" in failure("6.1", from_one)


def test_capacity_schedule_without_per_task_lists_fails_on_one():
    def scalar_only(r, n_tasks):
        return [{"task": t, "available": r**t, "used": r**t * (1 - r)} for t in range(n_tasks)]
    assert "(one ratio per task)" in failure("6.1", scalar_only)


def test_capacity_schedule_with_the_closed_form_is_within_tolerance():
    def closed_form(prune_ratio, n_tasks):
        ratios = prune_ratio if isinstance(prune_ratio, list) else [prune_ratio] * n_tasks
        return [{"task": t, "available": math.prod(ratios[:t]), "used": math.prod(ratios[:t]) * (1 - ratios[t])}
                for t in range(n_tasks)]
    assert run_check("6.1", {"capacity_schedule": closed_form}).passed


# ---------------------------------------------------------------------------------------- 6.2 equal_share_schedule
@pytest.mark.parametrize("wrong, diagnosis", [
    (lambda n: [1 - 1 / n] * n, "a constant ratio gives geometric shares"),
    (lambda n: [(n - t - 1) / n for t in range(n)], "fractions of the whole network"),
    (lambda n: [1 - 1 / (n - t + 1) for t in range(n)], "it should prune 0"),
])
def test_equal_share_schedule_mistakes_are_diagnosed(wrong, diagnosis):
    assert diagnosis in failure("6.2", wrong)


# ---------------------------------------------------------------------------------------- 6.3 tasks_that_fit
def closed_form(r, min_share):
    """The chapter's formula in floating point (r = 0: the first task keeps everything, then nothing is left)."""
    if 1 - r < min_share:
        return 0
    return math.floor(math.log(min_share / (1 - r)) / math.log(r)) + 1 if r > 0 else 1


def pow_count(r, min_share):
    count = 0
    while (1 - r) * r**count >= min_share:
        count += 1
    return count


def strict_count(r, min_share):
    count, available = 0, 1.0
    while available * (1 - r) > min_share:
        available -= available * (1 - r)
        count += 1
    return count


@pytest.mark.parametrize("wrong, diagnosis", [
    (closed_form, "is the closed form floor(ln(s / (1 - r)) / ln r) + 1, off by one here"),
    (pow_count, "counts the shares written (1 - r) * r**t"),
    (strict_count, "(>=, not >)"),
    (lambda r, s: closed_form(r, s) - 1, "one less than the count"),
    (lambda r, s: math.floor(math.log(s / (1 - r)) / math.log(r)) + 1, "a negative count"),
])
def test_tasks_that_fit_mistakes_are_diagnosed(wrong, diagnosis):
    assert diagnosis in failure("6.3", wrong)


# ---------------------------------------------------------------------------------------- the notebooks
@pytest.mark.parametrize("chapter", sorted(NOTEBOOKS))
def test_the_notebook_grades_full_marks(chapter):
    report = grade_notebook(NOTEBOOKS[chapter], exercises_only=True)
    assert report.score == 1.0, report.format()
    assert [r["id"] for r in report.results] == [i for i in sorted(NAMES) if i.startswith(f"{chapter}.")]


@pytest.mark.parametrize("chapter", sorted(NOTEBOOKS))
def test_the_student_edition_grades_zero_as_not_implemented(chapter, tmp_path):
    source = json.loads(NOTEBOOKS[chapter].read_text(encoding="utf-8"))
    path = tmp_path / NOTEBOOKS[chapter].name
    path.write_text(json.dumps(student_notebook(source)), encoding="utf-8")
    report = grade_notebook(path, exercises_only=True)
    assert report.score == 0.0
    assert {r["status"] for r in report.results} == {"not implemented"}, report.format()
