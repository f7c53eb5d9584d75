"""Coursework from the book: one source notebook → a student edition, and a grader for submissions.

The chapter notebooks in ``book/`` are the *source* (instructor) edition: every exercise is solved in place,
and the online book shows each solution collapsed behind a "Show the solution" toggle. Three kinds of cells
make up an exercise, each marked in its metadata under ``"packnet"`` (nbgrader-style markers in the code):

* a **solution** cell (``{"exercise": "3.2", "role": "solution"}``): the function the student writes, with the
  answer between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* a **check** cell (``{"exercise": "3.2", "role": "check"}``): ``check("3.2", layer_prune_mask)``, which runs
  the answer against the library's reference (:mod:`packnet.course.exercises`);
* optional **notes** (``{"role": "notes"}``): a markdown cell with points for discussing an open question.

``python -m packnet.coursework student OUT_DIR`` writes the student edition: each solution region becomes
``raise NotImplementedError(...)``, the outputs of solution and check cells are cleared, notes are removed, and
everything else (text, figures, the chapter's own outputs) is kept. ``python -m packnet.coursework grade
NOTEBOOK...`` executes submissions in a fresh kernel and re-runs the official check of every exercise of the
chapter, whatever the student did to the check cells; a score is the fraction passed.

Only the standard library is needed to write editions; grading needs ``nbclient`` and ``ipykernel`` (both come
with the ``book`` and ``test`` extras, or ``pip install nbclient ipykernel``).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "solution_cell",
    "check_cell",
    "notes_cell",
    "exercise_role",
    "stub_source",
    "student_notebook",
    "write_student_edition",
    "GradeReport",
    "grade_notebook",
    "main",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
"""The line that opens the answer in a solution cell (nbgrader's marker, so instructors' tools recognise it)."""
END_SOLUTION = "### END SOLUTION"
"""The line that closes the answer."""
META_KEY = "packnet"
SOLUTION_TAGS = ["hide-input", "exercise-solution"]
_PROMPTS = {"code_prompt_show": "Show the solution", "code_prompt_hide": "Hide the solution"}
_GRADE_MARKER = "PACKNET-GRADE-RESULT:"
_CHAPTER_FILE = re.compile(r"^(\d+)_")


# ------------------------------------------------------------------------------------------ building cells
def _source(text: str) -> list[str]:
    return text.strip("\n").splitlines(keepends=True)


def solution_cell(exercise_id: str, source: str) -> dict[str, Any]:
    """A solution cell for exercise ``exercise_id`` (nbformat v4 dict); ``source`` must contain the markers.

    Examples:
        >>> cell = solution_cell("3.1", "def f(n):\\n    ### BEGIN SOLUTION\\n    return n\\n    ### END SOLUTION")
        >>> cell["metadata"]["packnet"], cell["metadata"]["tags"]
        ({'exercise': '3.1', 'role': 'solution'}, ['hide-input', 'exercise-solution'])
    """
    if BEGIN_SOLUTION not in source or END_SOLUTION not in source:
        raise ValueError(f"a solution cell needs {BEGIN_SOLUTION!r} and {END_SOLUTION!r} lines around the answer")
    return {"cell_type": "code", "execution_count": None, "outputs": [], "source": _source(source),
            "metadata": {"tags": list(SOLUTION_TAGS), "mystnb": dict(_PROMPTS),
                         META_KEY: {"exercise": exercise_id, "role": "solution"}}}


def check_cell(exercise_id: str, function_name: str) -> dict[str, Any]:
    """The check cell of exercise ``exercise_id``: ``check("<id>", <function_name>)``."""
    return {"cell_type": "code", "execution_count": None, "outputs": [],
            "source": _source(f'check("{exercise_id}", {function_name})'),
            "metadata": {"tags": ["exercise-check"], META_KEY: {"exercise": exercise_id, "role": "check"}}}


def notes_cell(markdown: str) -> dict[str, Any]:
    """A markdown cell of discussion notes for instructors (shown in the book, removed from the student edition)."""
    return {"cell_type": "markdown", "source": _source(markdown), "metadata": {META_KEY: {"role": "notes"}}}


def exercise_role(cell: dict[str, Any]) -> tuple[Optional[str], Optional[str]]:
    """``(exercise id, role)`` of a cell, ``(None, None)`` for an ordinary one.

    A cell whose metadata was lost (some editors drop it) is still recognised as a solution by its markers and
    the ``# Exercise N.M`` comment that every solution cell starts with.
    """
    meta = (cell.get("metadata") or {}).get(META_KEY) or {}
    if meta.get("role"):
        return meta.get("exercise"), meta["role"]
    if cell.get("cell_type") == "code":
        text = "".join(cell.get("source") or "")
        match = re.match(r"\s*# Exercise (\d+\.\d+)", text)
        if match and (BEGIN_SOLUTION in text or "NotImplementedError" in text):
            return match.group(1), "solution"
    return None, None


# ------------------------------------------------------------------------------------------ student edition
def stub_source(source: str, exercise_id: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region of ``source`` by a
    ``raise NotImplementedError`` at the same indentation.

    Examples:
        >>> print(stub_source("def f(n):\\n    ### BEGIN SOLUTION\\n    return n\\n    ### END SOLUTION", "1.1"))
        def f(n):
            raise NotImplementedError("Exercise 1.1: replace this line with your code")
    """
    out, inside, found = [], False, False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"exercise {exercise_id}: {BEGIN_SOLUTION!r} inside another solution region")
            inside, found = True, True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f'{indent}raise NotImplementedError("Exercise {exercise_id}: replace this line with your code")')
        elif stripped == END_SOLUTION:
            if not inside:
                raise ValueError(f"exercise {exercise_id}: {END_SOLUTION!r} without {BEGIN_SOLUTION!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"exercise {exercise_id}: {BEGIN_SOLUTION!r} is never closed by {END_SOLUTION!r}")
    if not found:
        raise ValueError(f"exercise {exercise_id}: the solution cell has no {BEGIN_SOLUTION!r} region to hide")
    return "\n".join(out)


def student_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """The student edition of one source notebook (a new dict; ``notebook`` is not modified).

    Solution regions become stubs, solution and check cells lose their outputs (and the solution cells their
    "hide" toggle, so students see the stub), notes cells are dropped; every other cell is kept as it is.
    """
    nb = copy.deepcopy(notebook)
    cells = []
    for cell in nb["cells"]:
        exercise_id, role = exercise_role(cell)
        if role == "notes":
            continue
        if role == "solution":
            stub = stub_source("".join(cell["source"]), exercise_id or "?")
            cell["source"] = _source(stub)
            meta = cell.setdefault("metadata", {})
            meta["tags"] = [t for t in meta.get("tags", []) if t != "hide-input"]
            meta.pop("mystnb", None)
        if role in ("solution", "check"):
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    nb["cells"] = cells
    nb.setdefault("metadata", {})[META_KEY] = {"edition": "student"}
    return nb


def _chapter_notebooks(source: Path) -> list[Path]:
    return sorted(p for p in source.glob("*.ipynb") if _CHAPTER_FILE.match(p.name)
                  and any(exercise_role(c)[1] == "solution" for c in _read(p)["cells"]))


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(nb: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_student_edition(out_dir: "str | Path", source: "str | Path" = "book",
                          notebooks: Optional[Sequence[str]] = None) -> list[Path]:
    """Write the student edition of every chapter notebook with exercises in ``source`` to ``out_dir``.

    Args:
        out_dir: the folder to write (created if needed; existing notebooks of the same names are replaced).
        source: the folder of source notebooks (the book's ``book/``).
        notebooks: file names to convert (default: every ``NN_*.ipynb`` that has exercises).

    Returns:
        The paths written.
    """
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise FileNotFoundError(f"no folder {str(source)!r} of source notebooks: pass --source path/to/book")
    paths = [source / n for n in notebooks] if notebooks else _chapter_notebooks(source)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such notebooks: {missing}")
    if not paths:
        raise FileNotFoundError(f"{source} holds no chapter notebooks with exercises")
    editions = [(p, student_notebook(_read(p))) for p in paths]  # all converted before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, nb in editions:
        _write(nb, out_dir / path.name)
        written.append(out_dir / path.name)
    return written


# ------------------------------------------------------------------------------------------ grading
@dataclass
class GradeReport:
    """The grade of one submitted notebook.

    Attributes:
        notebook: the submission's path.
        results: one :class:`~packnet.course.exercises.CheckResult` dict per exercise (``id``, ``name``, ``status``,
            ``passed``, ``message``).
        errors: cells that raised while the notebook ran: ``{"cell", "exercise", "role", "expected", "ename",
            "evalue"}``; ``expected`` is true for a cell tagged ``raises-exception`` (a chapter that shows an
            error on purpose).
    """

    notebook: str
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r["passed"] for r in self.results)

    @property
    def score(self) -> float:
        """Fraction of the chapter's exercises passed (0.0 … 1.0)."""
        return self.passed / len(self.results) if self.results else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "score": self.score, "passed": self.passed,
                "total": len(self.results), "results": self.results, "errors": self.errors}

    def format(self) -> str:
        """A plain-text report: one line per exercise, then the score."""
        lines = [f"{self.notebook}"]
        for r in self.results:
            mark = "PASS" if r["passed"] else r["status"].upper()
            lines.append(f"  {r['id']:<6}{r['name']:<28}{mark}")
            if not r["passed"]:
                lines.extend("        " + line for line in r["message"].splitlines())
        lines.append(f"  score: {self.passed}/{len(self.results)} = {100 * self.score:.0f} %")
        return "\n".join(lines)


def _chapter_of(path: Path, nb: dict[str, Any]) -> Optional[int]:
    match = _CHAPTER_FILE.match(path.name)
    if match:
        return int(match.group(1))
    ids = [exercise_role(c)[0] for c in nb["cells"] if exercise_role(c)[1] == "solution"]
    return int(ids[0].split(".")[0]) if ids and ids[0] else None


def grade_notebook(path: "str | Path", *, exercises_only: bool = False, timeout: int = 600,
                   chapter: Optional[int] = None) -> GradeReport:
    """Run a submitted notebook and grade every exercise of its chapter.

    The notebook runs top to bottom in a fresh ``python3`` kernel, in its own folder, continuing past errors;
    then the official check of each exercise (:func:`packnet.course.exercises.run_check`) runs in that kernel on the
    function the student defined. Editing or deleting a check cell changes nothing; deleting a solution cell
    makes that exercise ``"missing"``.

    Args:
        path: the ``.ipynb`` file.
        exercises_only: run only the first code cell (the setup cell) and the solution cells, not the chapter's
            experiments: seconds instead of minutes, for exercises whose solution cells are self-contained (the
            book's are).
        timeout: seconds allowed per cell.
        chapter: the chapter whose exercises to grade (default: from the file name ``NN_*.ipynb``, else from
            the exercise ids in the notebook).

    Returns:
        A :class:`GradeReport`.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as error:  # pragma: no cover - the book/test extras install both
        raise ImportError("grading needs nbclient and ipykernel: pip install nbclient ipykernel") from error
    from .exercises import exercises_of_chapter

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {str(path)!r}")
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    chapter = chapter if chapter is not None else _chapter_of(path, nb)
    expected = [e.id for e in exercises_of_chapter(chapter)] if chapter is not None else []
    if not expected:
        raise ValueError(f"{path.name}: no exercises are registered for chapter {chapter}: pass chapter=...")
    cells = nb.cells
    if exercises_only:
        first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), None)
        cells = [c for i, c in enumerate(cells)
                 if i == first_code or exercise_role(c)[1] == "solution"]
    runnable = [c for c in cells if c.cell_type == "code"]
    grading = nbformat.v4.new_code_cell(
        "import json as _json\nfrom packnet.course.exercises import run_check as _run_check\n"
        f"print({_GRADE_MARKER!r} + _json.dumps([_run_check(i, globals()).to_dict() for i in {expected!r}]))")
    nb.cells = runnable + [grading]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    report = GradeReport(notebook=str(path))
    for index, cell in enumerate(nb.cells[:-1]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                exercise_id, role = exercise_role(cell)
                expected = "raises-exception" in (cell.get("metadata") or {}).get("tags", [])
                report.errors.append({"cell": index, "exercise": exercise_id, "role": role, "expected": expected,
                                      "ename": output.get("ename"), "evalue": output.get("evalue")})
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("output_type") == "stream")
    line = next((ln for ln in text.splitlines() if ln.startswith(_GRADE_MARKER)), None)
    if line is None:
        error = next((o for o in nb.cells[-1].get("outputs", []) if o.get("output_type") == "error"), None)
        why = f"{error.get('ename')}: {error.get('evalue')}" if error else "no result was printed"
        report.results = [{"id": i, "name": "?", "status": "failed", "passed": False,
                           "message": f"the grader could not run the checks ({why})"} for i in expected]
    else:
        report.results = json.loads(line[len(_GRADE_MARKER):])
    return report


# ------------------------------------------------------------------------------------------ command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m packnet.coursework",
        description="Write the student edition of the book's notebooks, or grade submitted notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write the student edition (stubs, no solutions) to OUT_DIR")
    student.add_argument("out_dir", help="folder to write the student notebooks to")
    student.add_argument("--source", default="book", help="folder of the source notebooks (default: book)")
    student.add_argument("notebooks", nargs="*", help="only these notebook file names (default: all chapters)")
    grade = sub.add_parser("grade", help="run submitted notebooks and score their exercises")
    grade.add_argument("submissions", nargs="+", help="the .ipynb files to grade")
    grade.add_argument("--exercises-only", action="store_true",
                       help="run only the setup and solution cells, not the chapter's experiments (fast)")
    grade.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default: 600)")
    grade.add_argument("--json", action="store_true", help="print one JSON object per line instead of a report")
    return parser


def main(argv: Optional[Iterable[str]] = None) -> int:
    """The command line: ``student OUT_DIR`` or ``grade NOTEBOOK...`` (see ``--help``)."""
    args = _parser().parse_args(None if argv is None else list(argv))
    if args.command == "student":
        try:
            written = write_student_edition(args.out_dir, args.source, args.notebooks or None)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for path in written:
            print(path)
        print(f"wrote the student edition of {len(written)} notebooks to {args.out_dir}", file=sys.stderr)
        return 0
    for submission in args.submissions:
        try:
            report = grade_notebook(submission, exercises_only=args.exercises_only, timeout=args.timeout)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(report.to_dict()) if args.json else report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
