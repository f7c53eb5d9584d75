"""The chapter notebooks are an nbgrader source: released without solutions or notes, autograded from the registry.

The metadata tests need only the standard library (nbgrader's own validator where it is installed); the end-to-end
test runs nbgrader itself on chapter 3 in a temporary course (``generate_assignment``, ``autograde`` of a solved
and an untouched submission, ``export``) and takes about 80 s on two cores. nbgrader is in requirements.txt and
the ``course`` extra; without it those tests skip.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from book_build import ROOT
from packnet.course.coursework import BEGIN_SOLUTION, END_SOLUTION, exercise_role, main
from packnet.course.exercises import exercises_of_chapter
from packnet.course.nbgrader_source import (apply_nbgrader_metadata, chapter_notebooks, grade_id,
                                            nbgrader_metadata, sync_notebooks)

BOOK = ROOT / "book"
CHAPTERS = chapter_notebooks(BOOK)


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def text(cell: dict) -> str:
    source = cell.get("source") or ""
    return source if isinstance(source, str) else "".join(source)


# ------------------------------------------------------------------------------------------ the metadata
def test_the_committed_notebooks_carry_up_to_date_nbgrader_metadata():
    assert [p.name[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06", "07", "10"]
    assert sync_notebooks(CHAPTERS, check=True) == [], (
        "run `python -m packnet.coursework nbgrader-metadata` (the exercise registry or cells changed)")
    assert main(["nbgrader-metadata", "--check"]) == 0


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_exercise_cell_has_the_nbgrader_role_of_its_packnet_role(path):
    nb = read(path)
    chapter = nb["metadata"]["packnet"]["chapter"]
    points = {e.id: e.points for e in exercises_of_chapter(chapter)}
    tests = {}
    for cell in nb["cells"]:
        exercise_id, role = exercise_role(cell)
        meta = cell["metadata"].get("nbgrader")
        if role == "solution":
            assert meta == {"grade": False, "grade_id": grade_id(exercise_id, "solution"), "locked": False,
                            "schema_version": 3, "solution": True}
        elif role == "check":
            assert meta["grade"] and meta["locked"] and not meta["solution"]
            tests[exercise_id] = meta["points"]
        elif role == "notes":  # nbgrader replaces a markdown answer cell whole: the notes are never released
            assert meta["grade"] and meta["solution"] and not meta["locked"] and meta["points"] == 0
            assert cell["cell_type"] == "markdown" and "BEGIN SOLUTION" not in text(cell)
        elif meta is not None:
            assert text(cell).strip() == "from packnet.course.exercises import check" and meta["locked"]
        if role != "solution":  # ClearSolutions would refuse a solution region outside a solution cell
            assert "BEGIN SOLUTION" not in text(cell) and "END SOLUTION" not in text(cell)
    assert tests == points, "each check cell is an autograder test worth the exercise's points in the registry"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_nbgrader_accepts_the_metadata(path):
    pytest.importorskip("nbgrader")
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    MetadataValidator().validate_nb(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))


def test_the_tool_is_idempotent_restores_lost_metadata_and_touches_nothing_else(tmp_path):
    source = BOOK / "03_pruning.ipynb"
    target = tmp_path / source.name
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    assert sync_notebooks([target]) == []
    nb = read(target)
    damaged = copy.deepcopy(nb)
    for cell in damaged["cells"]:
        cell["metadata"].pop("nbgrader", None)
    damaged["cells"][0]["metadata"]["nbgrader"] = {"grade": False, "locked": True, "solution": False,
                                                   "grade_id": "stray", "schema_version": 3}
    target.write_text(json.dumps(damaged, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["nbgrader-metadata", "--check", str(target)]) == 1
    assert main(["nbgrader-metadata", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == source.read_text(encoding="utf-8")  # byte for byte
    assert main(["nbgrader-metadata", "--check", str(target)]) == 0


def test_discussion_points_can_be_set_for_an_instructor_who_grades_the_answers():
    nb = read(BOOK / "03_pruning.ipynb")
    assert not apply_nbgrader_metadata(nb)
    assert apply_nbgrader_metadata(nb, discussion_points=2)
    (notes,) = [m for m in nbgrader_metadata(nb, discussion_points=2) if m and m["grade_id"].endswith("discussion")]
    assert notes["grade_id"] == "q3_4-discussion" and notes["points"] == 2


# ------------------------------------------------------------------------------------------ nbgrader itself
CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "packnet"
c.Execute.timeout = 600   # seconds per cell (nbgrader's default, 30 s, is short for a chapter's training)
"""


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", JUPYTER_CONFIG_DIR=str(course / ".jupyter"))
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_nbgrader_releases_chapter_3_without_solutions_or_notes_and_autogrades_it(tmp_path):
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    name, assignment = "03_pruning", "ch3"
    source = read(BOOK / f"{name}.ipynb")
    course = tmp_path / "course"
    (course / "source" / assignment).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(CONFIG, encoding="utf-8")
    (course / "source" / assignment / f"{name}.ipynb").write_text(json.dumps(source), encoding="utf-8")

    nbgrader(course, "generate_assignment", assignment)
    released_path = course / "release" / assignment / f"{name}.ipynb"
    released_text = released_path.read_text(encoding="utf-8")
    released = json.loads(released_text)
    assert BEGIN_SOLUTION not in released_text and END_SOLUTION not in released_text
    assert len(released["cells"]) == len(source["cells"])
    for original, cell in zip(source["cells"], released["cells"]):
        exercise_id, role = exercise_role(original)
        if role == "solution":  # signature and docstring kept, the answer gone
            answer = text(original).split(BEGIN_SOLUTION)[1].split(END_SOLUTION)[0]
            assert text(cell).startswith(text(original).split(BEGIN_SOLUTION)[0])
            assert "raise NotImplementedError()" in text(cell)
            for line in answer.splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    assert line not in text(cell), f"exercise {exercise_id}: {line.strip()!r} was released"
        elif role == "notes":
            assert text(cell) == "YOUR ANSWER HERE"
            for line in text(original).splitlines()[1:-1]:  # the notes, inside the dropdown's fences
                if line.strip():
                    assert line not in released_text, f"the instructor's notes were released: {line!r}"
        else:
            assert text(cell) == text(original)
    assert "Notes for the discussion" not in released_text

    # a solved copy (the book's notebook) and an untouched release, handed in by two students
    for student, notebook in (("solved", source), ("untouched", released)):
        (course / "submitted" / student / assignment).mkdir(parents=True)
        (course / "submitted" / student / assignment / f"{name}.ipynb").write_text(json.dumps(notebook),
                                                                                 encoding="utf-8")
    nbgrader(course, "autograde", assignment)
    nbgrader(course, "export", "--to", "grades.csv")

    points = {f"ex{e.id.replace('.', '_')}-check": float(e.points) for e in exercises_of_chapter(3)}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="packnet") as gb:
        for student, full in (("solved", True), ("untouched", False)):
            graded = gb.find_submission_notebook(name, assignment, student)
            scores = {g.name: (g.auto_score, g.max_score) for g in graded.grades if g.cell_type == "code"}
            assert scores == {gid: (p if full else 0.0, p) for gid, p in points.items()}, student
            (discussion,) = [g for g in graded.grades if g.cell_type == "markdown"]
            assert discussion.name == "q3_4-discussion" and discussion.max_score == 0
            assert discussion.needs_manual_grade == full  # only an answered discussion is left to the instructor
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    total = sum(points.values())
    assert float(rows["solved"]["score"]) == float(rows["solved"]["max_score"]) == total
    assert float(rows["untouched"]["score"]) == 0.0 and float(rows["untouched"]["max_score"]) == total
