"""The exercises of chapter 10 (limits and beyond): the references and the book's solutions pass, typical mistakes
fail with their diagnosis, stubs are "not implemented", and the notebook grades 1.0 / 0.0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from packnet.bench.capacity_sequence import visible_shares
from packnet.capacity import capacity_schedule
from packnet.course.coursework import exercise_role, grade_notebook, stub_source, student_notebook
from packnet.course.exercises import ExerciseFailed, check, exercises_of_chapter, run_check
from packnet.course.exercises.ch10_limits import _reference_confidence_task

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "10_limits_and_beyond.ipynb"
NAMES = {"10.1": "visible_shares", "10.2": "confidence_task"}
REFERENCES: dict[str, Callable[..., Any]] = {"10.1": visible_shares, "10.2": _reference_confidence_task}


def solution_cells() -> list[tuple[str, str]]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return [(exercise_role(c)[0], "".join(c["source"])) for c in nb["cells"] if exercise_role(c)[1] == "solution"]


def book_solutions() -> dict[str, Any]:
    """The chapter's solution cells exactly as written, run in order in one namespace (each imports what it
    uses, as the grader runs them without the rest of the chapter)."""
    namespace: dict[str, Any] = {}
    for _, source in solution_cells():
        exec(compile(source, "<solution of chapter 10>", "exec"), namespace)
    return namespace


def failure(exercise_id: str, fn: Callable[..., Any]) -> str:
    with pytest.raises(ExerciseFailed) as error:
        check(exercise_id, fn)
    return str(error.value)


def test_chapter_10_registers_its_two_exercises_in_order():
    assert [e.id for e in exercises_of_chapter(10)] == ["10.1", "10.2"]
    assert [e.name for e in exercises_of_chapter(10)] == ["visible_shares", "confidence_task"]


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_the_reference_passes(exercise_id, capsys):
    check(exercise_id, REFERENCES[exercise_id])
    assert f"Exercise {exercise_id} ({NAMES[exercise_id]}) passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_the_book_solution_passes(exercise_id, capsys):
    check(exercise_id, book_solutions()[NAMES[exercise_id]])
    assert f"Exercise {exercise_id} ({NAMES[exercise_id]}) passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_the_stub_is_not_implemented(exercise_id):
    namespace: dict[str, Any] = {}
    for cell_id, source in solution_cells():
        code = stub_source(source, cell_id) if cell_id == exercise_id else source
        exec(compile(code, f"<cell {cell_id}>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=f"Exercise {exercise_id}: `{NAMES[exercise_id]}` still raises"):
        check(exercise_id, namespace[NAMES[exercise_id]])


@pytest.mark.parametrize("exercise_id", sorted(NAMES))
def test_run_check_leaves_the_global_rng_alone(exercise_id):
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    assert run_check(exercise_id, book_solutions()).passed
    assert torch.equal(torch.random.get_rng_state(), state)


# ---------------------------------------------------------------------------------------- 10.1 visible_shares
def _used(prune_ratio, n_tasks):
    return [row["used"] for row in capacity_schedule(prune_ratio, n_tasks)]


def _available(prune_ratio, n_tasks):
    return [row["available"] for row in capacity_schedule(prune_ratio, n_tasks)]


def _earlier_only(prune_ratio, n_tasks):
    seen, total = [], 0.0
    for used in _used(prune_ratio, n_tasks):
        seen.append(total)
        total += used
    return seen


@pytest.mark.parametrize("wrong, diagnosis", [
    (_used, "the shares each task *owns*"),
    (_available, "the fractions *free* when each task starts"),
    (_earlier_only, "each task's own share is missing"),
])
def test_visible_shares_mistakes_are_diagnosed(wrong, diagnosis):
    assert diagnosis in failure("10.1", wrong)


def test_visible_shares_with_the_closed_form_fails_on_a_per_task_list():
    def closed_form(prune_ratio, n_tasks):
        return [1 - prune_ratio ** (t + 1) for t in range(n_tasks)]
    message = failure("10.1", closed_form)
    assert "one ratio per task" in message and "TypeError" in message


def test_visible_shares_of_the_wrong_length_fails():
    assert "expected a list of 4 fractions" in failure("10.1", lambda r, n: visible_shares(r, n)[:-1])


def test_visible_shares_that_are_close_but_not_right_fail():
    assert "the visible shares" in failure("10.1", lambda r, n: [v * 1.01 for v in visible_shares(r, n)])


# ---------------------------------------------------------------------------------------- 10.2 confidence_task
@pytest.mark.parametrize("wrong, diagnosis", [
    (lambda logits: logits.amax(dim=-1).argmax(dim=0), "the head with the largest raw logit"),
    (lambda logits: logits.softmax(dim=-1).argmax(dim=-1)[0], "this is a class"),
    (lambda logits: logits.softmax(dim=-1).amax(dim=-1).argmin(dim=0), "the *least* confident head"),
    (lambda logits: logits.softmax(dim=-1).amax(dim=-1).argmax(dim=1), "expected one task index per sample"),
    (lambda logits: logits.softmax(dim=-1).amax(dim=-1).argmax(dim=0).float(), "dtype torch.float32"),
])
def test_confidence_task_mistakes_are_diagnosed(wrong, diagnosis):
    assert diagnosis in failure("10.2", wrong)


def test_confidence_task_that_breaks_ties_towards_the_last_head_fails():
    def last_of_ties(logits):
        confidence = logits.softmax(dim=-1).amax(dim=-1)
        flipped = confidence.flip(0).argmax(dim=0)
        return confidence.shape[0] - 1 - flipped
    assert "ties go to the lowest task index" in failure("10.2", last_of_ties)


def test_confidence_task_that_writes_into_the_logits_fails():
    assert "changed the logits" in failure("10.2", lambda logits: logits.sub_(1).softmax(-1).amax(-1).argmax(0))


def test_confidence_task_by_hand_passes(capsys):
    def by_hand(logits):
        e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
        return (e / e.sum(dim=-1, keepdim=True)).max(dim=-1).values.argmax(dim=0).to(torch.int32)
    check("10.2", by_hand)  # any integer dtype will do
    assert "passed" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- the notebook
def test_the_notebook_grades_full_marks():
    report = grade_notebook(NOTEBOOK, exercises_only=True)
    assert report.score == 1.0, report.format()
    assert [r["id"] for r in report.results] == ["10.1", "10.2"]


def test_the_student_edition_grades_zero_as_not_implemented(tmp_path):
    path = tmp_path / NOTEBOOK.name
    path.write_text(json.dumps(student_notebook(json.loads(NOTEBOOK.read_text(encoding="utf-8")))), encoding="utf-8")
    report = grade_notebook(path, exercises_only=True)
    assert report.score == 0.0
    assert {r["status"] for r in report.results} == {"not implemented"}, report.format()
