"""Hints that teach: no hint, failure message or chapter text before an exercise gives the exercise's solution
code, and the student edition neither points at the published solutions nor hides the points."""

from __future__ import annotations

import json
import re

import pytest
import torch

from book_build import ROOT
from packnet.course.coursework import BEGIN_SOLUTION, END_SOLUTION, exercise_role, student_notebook
from packnet.course.exercises import EXERCISES, run_check

BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("0[1-7]_*.ipynb"))


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _solutions() -> dict[str, list[str]]:
    """Each exercise's solution lines, whitespace removed, comments and short lines dropped."""
    out = {}
    for path in CHAPTERS:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            exercise_id, role = exercise_role(cell)
            if role == "solution":
                body = "".join(cell["source"]).split(BEGIN_SOLUTION)[1].split(END_SOLUTION)[0]
                lines = [_squeeze(line.split("#")[0]) for line in body.splitlines()]
                out[exercise_id] = [line for line in lines if len(line) >= 12]
    return out


SOLUTIONS = _solutions()


@pytest.mark.parametrize("exercise_id", sorted(SOLUTIONS))
def test_no_hint_contains_a_line_of_the_solution(exercise_id):
    hint = _squeeze(EXERCISES[exercise_id].hint)
    assert [line for line in SOLUTIONS[exercise_id] if line in hint] == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_chapter_code_before_an_exercise_contains_a_line_of_its_solution(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for i, cell in enumerate(cells):
        exercise_id, role = exercise_role(cell)
        if role != "solution":
            continue
        long_lines = [line for line in SOLUTIONS[exercise_id] if len(line) >= 24]  # not `with torch.no_grad():`
        for j, before in enumerate(cells[:i]):
            text = "".join(before["source"])
            if exercise_role(before)[1] or before["cell_type"] != "code":
                continue
            assert not [line for line in long_lines if line in _squeeze(text)], (
                f"cell {j} gives exercise {exercise_id}'s answer before the exercise")


def _message(exercise_id: str, fn) -> str:
    result = run_check(exercise_id, {EXERCISES[exercise_id].name: fn})
    assert result.status == "failed"
    return result.message


def _leaks(exercise_id: str, message: str) -> list[str]:
    return [line for line in SOLUTIONS[exercise_id] if line in _squeeze(message)]


def test_a_truncating_num_to_prune_hears_the_case_expected_got_and_the_concept_not_the_code():
    message = _message("3.1", lambda n, r: int(n * r))
    assert "prune_ratio = 0.29" in message and "expected 29, got 28" in message and "nearest" in message
    assert "round(" not in message and _leaks("3.1", message) == []


def test_a_visible_mask_that_shows_free_weights_gets_a_hint_without_the_answer():
    message = _message("5.1", lambda owner, k: owner <= k)
    assert "free weights (owner 0) are visible" in message
    assert "1 <= owner" not in message and "owner >= 1" not in message and _leaks("5.1", message) == []


def test_a_task_view_that_forgets_to_restore_gets_a_hint_without_the_recipe():
    import contextlib

    @contextlib.contextmanager
    def task_view(weights, owners, k):
        with torch.no_grad():
            for w, owner in zip(weights, owners):
                w.masked_fill_(~((owner >= 1) & (owner <= k)), 0.0)
        yield

    message = _message("5.2", task_view)
    assert "after the block" in message and "differs from before" in message
    assert "w.copy_(backup)" not in message and _leaks("5.2", message) == []


def test_the_student_edition_does_not_point_at_the_published_solutions_and_shows_the_points():
    for path in CHAPTERS:
        nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert "online book" not in text and "the solution is" not in text, path.name
        for exercise_id, points in re.findall(r"^### Exercise (\d+\.\d+) [★☆]+ \((\d+) points?\)", text, re.M):
            assert EXERCISES[exercise_id].points == int(points)
        assert len(re.findall(r"^### Exercise ", text, re.M)) == len(
            re.findall(r"^### Exercise \d+\.\d+ [★☆]+ \(\d+ points?\)", text, re.M))


def test_points_are_the_stars_of_the_exercise_heading():
    for path in CHAPTERS:
        text = path.read_text(encoding="utf-8")
        for exercise_id, stars in re.findall(r"### Exercise (\d+\.\d+) ([★☆]+)", text):
            assert EXERCISES[exercise_id].points == stars.count("★"), exercise_id
