"""Coursework: the student edition written from the book's notebooks, and the grader that scores submissions.

The expensive promises are checked for real: every chapter's student edition is *executed* top to bottom (the only
errors are the stubs' NotImplementedError, in exercise cells) and graded 0 %, and every source notebook with its
solutions in place is graded 100 %.
"""

from __future__ import annotations

import copy
import re
import json
import subprocess
import sys
from pathlib import Path

import pytest

from book_build import ROOT
from packnet.course.coursework import (BEGIN_SOLUTION, END_SOLUTION, check_cell, exercise_role, grade_notebook, main,
                                _source, _student_text, notes_cell, solution_cell, stub_source,
                                student_notebook)
from packnet.course.exercises import EXERCISES, exercises_of_chapter

BOOK = ROOT / "book"
SOURCES = sorted(p for p in BOOK.glob("[0-9][0-9]_*.ipynb")
                 if any(exercise_role(c)[1] == "solution" for c in json.loads(p.read_text())["cells"]))
SOURCE_IDS = [p.stem for p in SOURCES]


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def roles(nb: dict) -> list:
    return [exercise_role(c) for c in nb["cells"]]


# ------------------------------------------------------------------------------------------ the book's exercises
CHAPTERS_WITH_EXERCISES = (1, 2, 3, 4, 5, 6, 7, 10)


def test_chapters_with_exercises_each_end_with_two_to_four_exercises_and_a_discussion_question():
    assert sorted({e.chapter for e in EXERCISES.values()}) == list(CHAPTERS_WITH_EXERCISES)
    for chapter in CHAPTERS_WITH_EXERCISES:
        paths = list(BOOK.glob(f"{chapter:02d}_*.ipynb"))
        assert len(paths) == 1, paths
        nb = read(paths[0])
        ids = [i for i, role in roles(nb) if role == "solution"]
        registered = [e.id for e in exercises_of_chapter(chapter)]
        assert 2 <= len(ids) <= 4, f"chapter {chapter} has {len(ids)} coding exercises"
        assert ids == registered, f"chapter {chapter}: notebook exercises {ids} != registered checks {registered}"
        checks = [i for i, role in roles(nb) if role == "check"]
        assert checks == ids, f"chapter {chapter}: every exercise needs exactly one check cell, in order"
        text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert "## Exercises" in text and "— discussion" in text, f"chapter {chapter} lacks a discussion question"
        assert nb["metadata"].get("packnet", {}).get("chapter") == chapter


@pytest.mark.parametrize("path", SOURCES, ids=SOURCE_IDS)
def test_solution_cells_are_collapsed_in_the_book_and_start_with_their_exercise_comment(path):
    for cell in read(path)["cells"]:
        exercise_id, role = exercise_role(cell)
        if role == "solution":
            assert "hide-input" in cell["metadata"]["tags"]
            assert cell["metadata"]["mystnb"]["code_prompt_show"] == "Show the solution"
            assert "".join(cell["source"]).startswith(f"# Exercise {exercise_id}:")
        if role == "check":
            assert "".join(cell["source"]).strip() == f'check("{exercise_id}", {EXERCISES[exercise_id].name})'


# ------------------------------------------------------------------------------------------ stubs
def test_a_stub_keeps_the_signature_and_docstring_and_raises_at_the_solution_indentation():
    source = 'def f(x):\n    """Doc."""\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n'
    stub = stub_source(source, "9.9")
    assert stub.splitlines() == ['def f(x):', '    """Doc."""', "    y = 1",
                                 '    raise NotImplementedError("Exercise 9.9: replace this line with your code")']
    namespace: dict = {}
    exec(stub, namespace)
    with pytest.raises(NotImplementedError, match="Exercise 9.9"):
        namespace["f"](1)


@pytest.mark.parametrize("bad, problem", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without"),
    ("def f():\n    return 1\n", "no '### BEGIN SOLUTION' region"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_malformed_solution_markers_are_refused_with_the_problem_named(bad, problem):
    with pytest.raises(ValueError, match=problem):
        stub_source(bad, "1.1")


def test_cell_builders_refuse_a_solution_without_markers():
    with pytest.raises(ValueError, match="BEGIN SOLUTION"):
        solution_cell("1.1", "def f():\n    return 1")


def test_a_solution_cell_that_lost_its_metadata_is_still_recognised_by_its_comment():
    cell = solution_cell("2.1", f"# Exercise 2.1: x\ndef f():\n    {BEGIN_SOLUTION}\n    return 1\n    {END_SOLUTION}")
    cell["metadata"] = {}
    assert exercise_role(cell) == ("2.1", "solution")
    assert exercise_role({"cell_type": "code", "source": "# Exercise 2.1: but no stub\nx = 1", "metadata": {}}) \
        == (None, None)


# ------------------------------------------------------------------------------------------ student edition
@pytest.mark.parametrize("path", SOURCES, ids=SOURCE_IDS)
def test_the_student_edition_hides_solutions_and_keeps_everything_else(path):
    source = read(path)
    before = copy.deepcopy(source)
    student = student_notebook(source)
    assert source == before, "student_notebook must not modify its input"
    kept = [c for c in source["cells"] if exercise_role(c)[1] != "notes"]
    assert len(student["cells"]) == len(kept)
    assert not any(exercise_role(c)[1] == "notes" for c in student["cells"])
    for original, cell in zip(kept, student["cells"]):
        exercise_id, role = exercise_role(original)
        text = "".join(cell["source"])
        if role == "solution":
            assert BEGIN_SOLUTION not in text and END_SOLUTION not in text
            assert f'raise NotImplementedError("Exercise {exercise_id}:' in text
            assert cell["outputs"] == [] and "hide-input" not in cell["metadata"]["tags"]
            # everything outside the solution region survives: the signature, docstring and imports
            outside = "".join(original["source"]).split(BEGIN_SOLUTION)[0]
            assert text.startswith(outside.rstrip(" "))
        elif role == "check":
            assert cell["outputs"] == [] and text == "".join(original["source"])
        elif cell["cell_type"] == "markdown" and cell["source"] != original["source"]:
            # the only edits to text: points after an exercise's stars, no pointer to published solutions
            assert cell["source"] == _source(_student_text("".join(original["source"])))
            assert {k: v for k, v in cell.items() if k != "source"} == {
                k: v for k, v in original.items() if k != "source"}
        else:
            assert cell == original


def test_the_student_edition_shows_points_and_no_pointer_to_published_solutions():
    text = "".join("".join(c["source"]) for c in student_notebook(read(BOOK / "03_pruning.ipynb"))["cells"])
    assert "### Exercise 3.1 ★☆☆ (1 point) — how many weights a ratio prunes" in text
    assert "collapsed" not in text and "online book" not in text


def test_the_student_command_writes_every_chapter_with_exercises(tmp_path):
    assert main(["student", str(tmp_path / "student"), "--source", str(BOOK)]) == 0
    written = sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert written == [p.name for p in SOURCES]
    for name in written:
        assert "BEGIN SOLUTION" not in (tmp_path / "student" / name).read_text(encoding="utf-8")


def test_the_student_command_refuses_a_missing_source_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["student", str(out), "--source", str(tmp_path / "nowhere")]) == 2
    assert "no folder" in capsys.readouterr().err and not out.exists()
    assert main(["student", str(out), "99_nothing.ipynb", "--source", str(BOOK)]) == 2
    assert not out.exists()


# ------------------------------------------------------------------------------------------ grading
@pytest.mark.parametrize("path", SOURCES, ids=SOURCE_IDS)
def test_the_solved_source_notebook_scores_100_percent(path):
    report = grade_notebook(path, exercises_only=True)
    assert [r["id"] for r in report.results] == [e.id for e in exercises_of_chapter(int(path.name[:2]))]
    assert report.score == 1.0, report.format()
    assert report.errors == []


@pytest.mark.slow
@pytest.mark.parametrize("path", SOURCES, ids=SOURCE_IDS)
def test_the_student_edition_runs_top_to_bottom_raising_only_the_stubs_and_scores_0(path, tmp_path):
    student = tmp_path / path.name
    student.write_text(json.dumps(student_notebook(read(path))), encoding="utf-8")
    for figure in (BOOK / "figures").glob("*"):  # chapters may show the book's figures by relative path
        (tmp_path / "figures").mkdir(exist_ok=True)
        (tmp_path / "figures" / figure.name).write_bytes(figure.read_bytes())
    report = grade_notebook(student)  # the whole chapter, as a student would run it
    assert report.score == 0.0
    assert {r["status"] for r in report.results} == {"not implemented"}
    unexpected = [e for e in report.errors if not e["expected"]]  # raises-exception cells raise in the book too
    assert unexpected, "the stubs must raise"
    for error in unexpected:
        assert error["ename"] == "NotImplementedError", error
        assert error["role"] in ("solution", "check"), error


def _submission(tmp_path: Path, edit) -> Path:
    nb = read(BOOK / "03_pruning.ipynb")
    edit(nb)
    path = tmp_path / "03_pruning.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _cell(nb: dict, exercise_id: str, role: str) -> dict:
    return next(c for c in nb["cells"] if exercise_role(c) == (exercise_id, role))


def test_the_grader_uses_the_official_check_not_the_students_check_cell(tmp_path):
    def cheat(nb):  # per-layer masks where one global threshold was asked for, and a check cell that lies
        _cell(nb, "3.3", "solution")["source"] = [
            "# Exercise 3.3: x\n", "def global_prune_masks(weights, candidates, prune_ratio):\n",
            "    return [layer_prune_mask(w, c, prune_ratio) for w, c in zip(weights, candidates)]\n"]
        _cell(nb, "3.3", "check")["source"] = ["print('\u2713 passed, honest')"]
    report = grade_notebook(_submission(tmp_path, cheat), exercises_only=True)
    by_id = {r["id"]: r for r in report.results}
    assert by_id["3.3"]["status"] == "failed" and "Exercise 3.3" in by_id["3.3"]["message"]
    assert by_id["3.1"]["passed"] and by_id["3.2"]["passed"]
    assert report.score == pytest.approx(3 / 6)  # 3.1 (1 point) and 3.2 (2) of 1 + 2 + 3
    assert "FAILED" in report.format() and "score: 3/6 points = 50 % (2 of 3 exercises)" in report.format()


def test_a_deleted_solution_is_missing_and_a_crashing_one_is_reported_with_its_line(tmp_path):
    def edit(nb):
        nb["cells"].remove(_cell(nb, "3.3", "solution"))
        _cell(nb, "3.2", "solution")["source"] = ["# Exercise 3.2: x\n", "def layer_prune_mask(w, c, r):\n",
                                                  "    return w.sort(stable=True).nonexistent\n"]
    report = grade_notebook(_submission(tmp_path, edit), exercises_only=True)
    by_id = {r["id"]: r for r in report.results}
    assert by_id["3.3"]["status"] == "missing"
    assert by_id["3.2"]["status"] == "failed" and "AttributeError" in by_id["3.2"]["message"]
    assert "line 3" in by_id["3.2"]["message"]


def test_grading_the_full_solved_chapter_scores_100_percent_and_the_cli_prints_json(tmp_path):
    result = subprocess.run([sys.executable, "-m", "packnet.coursework", "grade", "--json",
                             str(BOOK / "03_pruning.ipynb")], capture_output=True, text=True, cwd=ROOT,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["score"] == 1.0 and report["total"] == 3 and report["errors"] == []


def test_grading_refuses_what_it_cannot_grade(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook"):
        grade_notebook(tmp_path / "nothing.ipynb")
    other = tmp_path / "notes.ipynb"
    other.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ValueError, match="no exercises are registered"):
        grade_notebook(other)


def test_check_and_notes_cells_carry_their_roles():
    assert exercise_role(check_cell("4.2", "learn_task")) == ("4.2", "check")
    assert exercise_role(notes_cell("**Notes.**")) == (None, "notes")


def test_the_instructors_page_lists_every_exercise_in_order_and_is_in_the_toc():
    page = (BOOK / "instructors.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+\.\d+) ★[★☆]{2} \[[^\]]+\]\((\d\d_\w+)\.ipynb\) \| `(\w+)` \|", page, flags=re.M)
    assert [(i, name) for i, _, name in rows] == [(e.id, e.name) for e in EXERCISES.values()]
    assert all(int(notebook[:2]) == int(i.split(".")[0]) for i, notebook, _ in rows)
    assert "python -m packnet.coursework student" in page and "python -m packnet.coursework grade" in page
    assert "file: book/instructors\n" in (ROOT / "_toc.yml").read_text(encoding="utf-8")


def test_the_student_edition_is_written_from_any_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "packnet.coursework", "student", str(tmp_path / "out"),
                             "03_pruning.ipynb"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "03_pruning.ipynb").is_file()
