"""The exercises of chapters 1 (continual-learning metrics) and 7 (evaluation and the whole PackNet loop).

For every exercise: the library's reference passes its check, so does the solution exactly as the notebook
writes it, typical wrong answers fail with a message that names the mistake, the student stub raises
``NotImplementedError``, and checking leaves the global RNG alone. Then each notebook is graded as a submission:
1.0 as written, 0.0 ("not implemented" everywhere) as the student edition.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import packnet
from packnet.bench import metrics
from packnet.course.coursework import exercise_role, grade_notebook, student_notebook, stub_source
from packnet.course.exercises import ExerciseFailed, check, exercises_of_chapter, run_check
from packnet.bench.experiment import run_packnet

BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = {1: BOOK / "01_forgetting.ipynb", 7: BOOK / "07_pipeline.ipynb"}


def _notebook(chapter: int) -> dict[str, Any]:
    return json.loads(NOTEBOOKS[chapter].read_text(encoding="utf-8"))


def _solution_cells(chapter: int) -> list[tuple[str, str]]:
    """``(exercise id, source)`` of every solution cell of the chapter's notebook, in order."""
    cells = []
    for cell in _notebook(chapter)["cells"]:
        exercise_id, role = exercise_role(cell)
        if role == "solution":
            cells.append((exercise_id, "".join(cell["source"])))
    return cells


def _solutions(chapter: int) -> dict[str, Any]:
    """The namespace the notebook's solution cells define, executed in order as the grader runs them."""
    namespace: dict[str, Any] = {}
    for _, source in _solution_cells(chapter):
        exec(compile(source, f"<solution {chapter}>", "exec"), namespace)
    return namespace


def _reference_evaluate_task(pn, task_id, loader):
    return pn.evaluate(task_id, loader)


def _reference_learn_tasks(model, tasks, **kwargs):
    return run_packnet(model, tasks, progress=False, **kwargs).accuracy_matrix


REFERENCES: dict[str, Callable[..., Any]] = {
    "1.1": metrics.average_accuracy,
    "1.2": metrics.forgetting,
    "1.3": metrics.backward_transfer,
    "7.1": _reference_evaluate_task,
    "7.2": _reference_learn_tasks,
}
IDS = list(REFERENCES)


def test_the_chapters_register_exactly_these_exercises():
    assert [e.id for e in exercises_of_chapter(1)] == ["1.1", "1.2", "1.3"]
    assert [e.id for e in exercises_of_chapter(7)] == ["7.1", "7.2"]
    for chapter in NOTEBOOKS:
        assert [i for i, _ in _solution_cells(chapter)] == [e.id for e in exercises_of_chapter(chapter)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_library_reference_passes(exercise_id, capsys):
    check(exercise_id, REFERENCES[exercise_id])
    assert capsys.readouterr().out.startswith(f"\u2713 Exercise {exercise_id} (")


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_notebook_solution_passes(exercise_id):
    chapter = int(exercise_id.split(".")[0])
    result = run_check(exercise_id, _solutions(chapter))
    assert result.passed, result.message


# ------------------------------------------------------------------------------------------ wrong answers
def _learned(R):
    return [a for i, row in enumerate(R) for a in row[: i + 1]]


WRONG_1 = {
    "mean of the diagonal": ("1.1", lambda R: sum(R[j][j] for j in range(len(R))) / len(R),
                             "is the mean of the diagonal"),
    "mean of the first row": ("1.1", lambda R: sum(R[0]) / len(R), "averages entries above the diagonal"),
    "mean of every learned entry": ("1.1", lambda R: sum(_learned(R)) / len(_learned(R)),
                                    "is the mean of every learned entry"),
    "forgetting from the diagonal": ("1.2", lambda R: [R[j][j] - R[-1][j] for j in range(len(R))],
                                     "not from the diagonal"),
    "forgetting without the last task": (
        "1.2", lambda R: [max(R[i][j] for i in range(j, len(R) - 1)) - R[-1][j] for j in range(len(R) - 1)],
        "the last task gets a forgetting too, 0.0"),
    "forgetting nan for the last task": (
        "1.2", lambda R: [max(R[i][j] for i in range(j, len(R) - 1)) - R[-1][j] if j < len(R) - 1 else math.nan
                          for j in range(len(R))],
        "the last task's forgetting is nan, expected 0.0"),
    "forgetting with the final row in the max": (
        "1.2", lambda R: [max(R[i][j] for i in range(j, len(R))) - R[-1][j] for j in range(len(R))],
        "the max runs over rows"),
    "backward transfer over T tasks": (
        "1.3", lambda R: sum(R[-1][j] - R[j][j] for j in range(len(R))) / len(R),
        "average over the 2 tasks before the last"),
    "backward transfer with the sign flipped": (
        "1.3", lambda R: sum(R[j][j] - R[-1][j] for j in range(len(R) - 1)) / (len(R) - 1) if len(R) > 1 else 0.0,
        "the sign is flipped"),
    "backward transfer dividing by zero": (
        "1.3", lambda R: sum(R[-1][j] - R[j][j] for j in range(len(R) - 1)) / (len(R) - 1),
        "backward transfer is 0.0 by definition, but your function raised ZeroDivisionError"),
    "backward transfer nan for one task": (
        "1.3", lambda R: sum(R[-1][j] - R[j][j] for j in range(len(R) - 1)) / (len(R) - 1) if len(R) > 1 else math.nan,
        "got nan, expected 0.0"),
    "backward transfer from the best accuracy": (
        "1.3", lambda R: -sum(metrics.forgetting(R)[:-1]) / (len(R) - 1) if len(R) > 1 else 0.0,
        "compares with each task's best accuracy"),
}


def _accuracy(pn, task_id, loader, *, use_task=True, as_tensor=False, float32=False, per_batch=False,
              train_mode=False, set_mode=None):
    """A configurable (and mostly wrong) evaluate_task."""
    model = pn.module
    if set_mode is not None:
        model.train(set_mode)
    correct, total, batch_accuracies = torch.zeros((), dtype=torch.int64), 0, []
    context = pn.task(task_id) if use_task else torch.no_grad()
    with torch.no_grad(), context:
        if train_mode:
            model.train()
        if not use_task:
            model.eval()
        for x, y in loader:
            hits = (model(x).argmax(1) == y)
            correct += hits.sum()
            total += len(y)
            batch_accuracies.append(hits.float().mean().item())
    if per_batch:
        return sum(batch_accuracies) / len(batch_accuracies)
    if as_tensor:
        return correct / total
    if float32:
        return (correct / total).item()
    return int(correct) / total


WRONG_7_1 = {
    "without pn.task": (dict(use_task=False), "Run the forward pass inside `with pn.task(0):`"),
    "a tensor": (dict(as_tensor=True), "it returns a tensor"),
    "float32": (dict(float32=True), "rounded to float32"),
    "mean of per-batch accuracies": (dict(per_batch=True), "the mean of the per-batch accuracies"),
    "in train mode": (dict(train_mode=True), "it ran the model in train mode"),
    "leaving eval mode": (dict(set_mode=False), "left the model in eval mode; it was in train mode"),
    "leaving train mode": (dict(set_mode=True), "left the model in train mode; it was in eval mode"),
}


def _learn(model, tasks, *, prune_ratio, epochs, retrain_epochs, optimizer=None, batch_size=128, seed=0,
           fill=math.nan, ragged=False, future=False, position_ids=False, skip_last_prune=False,
           crash_last_prune=False, fresh_retrain_loader=False, same_seed=False):
    """A configurable (and mostly wrong) learn_tasks."""
    pn = packnet.PackNet(model, prune_ratio)
    T = len(tasks)
    R = [[] for _ in range(T)] if ragged else [[fill] * T for _ in range(T)]
    for i, task in enumerate(tasks):
        t = i if position_ids else task.task_id
        loader = task.loaders(batch_size, seed=seed if same_seed else seed + i)[0]
        pn.train_task(t, loader, epochs, optimizer=optimizer, progress=False)
        last = i == T - 1
        if not (last and skip_last_prune):
            if not (last and crash_last_prune):
                pn.prune(t)
            if fresh_retrain_loader:
                loader = task.loaders(batch_size, seed=seed + i)[0]
            pn.retrain(t, loader, retrain_epochs, optimizer=optimizer, progress=False)
            pn.freeze(t)
        for j, seen in enumerate(tasks if future else tasks[: i + 1]):
            accuracy = pn.evaluate(j if position_ids else seen.task_id, seen.loaders(1000, shuffle=False)[1])
            if ragged:
                R[i].append(accuracy)
            else:
                R[i][j] = accuracy
    return R


WRONG_7_2 = {
    "rows of learned tasks only": (dict(ragged=True), "row 0 has 1 entry, expected 3"),
    "zeros above the diagonal": (dict(fill=0.0), "R[0][1] is 0.0, expected nan"),
    "evaluating future tasks": (dict(future=True), "it evaluates a task that is not learned yet"),
    "positions as task ids": (dict(position_ids=True), "the id of a task is task.task_id"),
    "last task not pruned": (dict(skip_last_prune=True), "the last task was not pruned"),
    "last task re-trained unpruned": (dict(crash_last_prune=True), "it skips pruning some task"),
    "a new loader for re-training": (dict(fresh_retrain_loader=True), "re-trains on that same loader object"),
    "one seed for every task": (dict(same_seed=True), "seed=seed + i"),
}


def _wrong_answers():
    for name, (exercise_id, fn, message) in WRONG_1.items():
        yield pytest.param(exercise_id, fn, message, id=name)
    for name, (options, message) in WRONG_7_1.items():
        yield pytest.param("7.1", lambda pn, t, loader, o=options: _accuracy(pn, t, loader, **o), message, id=name)
    for name, (options, message) in WRONG_7_2.items():
        yield pytest.param("7.2", lambda model, tasks, o=options, **kw: _learn(model, tasks, **kw, **o), message,
                           id=name)


@pytest.mark.parametrize("exercise_id, fn, message", list(_wrong_answers()))
def test_a_typical_mistake_fails_with_its_diagnosis(exercise_id, fn, message):
    with pytest.raises(ExerciseFailed) as failure:
        check(exercise_id, fn)
    assert message in str(failure.value), str(failure.value)


def test_a_tasks_heads_model_outside_pn_task_points_at_it():
    """With per-task heads the forward pass outside pn.task crashes; the message still says what to do."""
    def no_context(pn, task_id, loader):
        return sum(int((pn.module(x).argmax(1) == y).sum()) for x, y in loader) / sum(len(y) for _, y in loader)

    with pytest.raises(ExerciseFailed) as failure:
        check("7.1", no_context)
    assert "pn.task" in str(failure.value)


# ------------------------------------------------------------------------------------------ stubs and RNG
@pytest.mark.parametrize("exercise_id", IDS)
def test_the_student_stub_is_not_implemented(exercise_id):
    chapter = int(exercise_id.split(".")[0])
    namespace: dict[str, Any] = {}
    for cell_id, source in _solution_cells(chapter):
        exec(stub_source(source, cell_id) if cell_id == exercise_id else source, namespace)
    name = next(e.name for e in exercises_of_chapter(chapter) if e.id == exercise_id)
    with pytest.raises(NotImplementedError, match=f"Exercise {exercise_id}"):
        check(exercise_id, namespace[name])


@pytest.mark.parametrize("exercise_id", IDS)
def test_checking_leaves_the_global_rng_alone(exercise_id):
    chapter = int(exercise_id.split(".")[0])
    namespace = _solutions(chapter)
    torch.manual_seed(1234)
    random.seed(1234)
    torch_state, py_state = torch.random.get_rng_state(), random.getstate()
    assert run_check(exercise_id, namespace).passed
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert random.getstate() == py_state


# ------------------------------------------------------------------------------------------ grading
@pytest.mark.parametrize("chapter", sorted(NOTEBOOKS))
def test_the_notebook_grades_full_marks(chapter):
    report = grade_notebook(NOTEBOOKS[chapter], exercises_only=True)
    assert report.score == 1.0, report.format()
    assert not report.errors, report.errors


@pytest.mark.parametrize("chapter", sorted(NOTEBOOKS))
def test_the_student_edition_grades_zero(chapter, tmp_path):
    path = tmp_path / NOTEBOOKS[chapter].name
    path.write_text(json.dumps(student_notebook(_notebook(chapter)), indent=1), encoding="utf-8")
    report = grade_notebook(path, exercises_only=True)
    assert report.score == 0.0
    assert [r["status"] for r in report.results] == ["not implemented"] * len(exercises_of_chapter(chapter))
