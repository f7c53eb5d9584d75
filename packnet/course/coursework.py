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
    "grade_submissions",
    "student_id",
    "write_gradebook",
    "default_source",
    "main",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
"""The line that opens the answer in a solution cell (nbgrader's marker, so instructors' tools recognise it)."""
END_SOLUTION = "### END SOLUTION"
"""The line that closes the answer."""
META_KEY = "packnet"
SOLUTION_TAGS = ["hide-input", "exercise-solution"]
_PROMPTS = {"code_prompt_show": "Show the solution", "code_prompt_hide": "Hide the solution"}
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


# The sentence of the book's exercise introductions that points at the solutions shown in the online book.
_SOLUTIONS_ONLINE = re.compile(r"\s*\(in the online book, the solution is\s+collapsed under each exercise:"
                               r"\s+try first, then compare\)")
_HEADING = re.compile(r"^(### Exercise (\d+\.\d+) [★☆]+)", flags=re.M)


def _student_text(text: str) -> str:
    """An exercise text for students: no pointer to the published solutions, the points after the stars."""
    from .exercises import EXERCISES

    def points(match: "re.Match[str]") -> str:
        ex = EXERCISES.get(match.group(2))
        return match.group(1) + (f" ({ex.points} point{'s' if ex.points != 1 else ''})" if ex else "")
    return _HEADING.sub(points, _SOLUTIONS_ONLINE.sub("", text))


def student_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """The student edition of one source notebook (a new dict; ``notebook`` is not modified).

    Solution regions become stubs, solution and check cells lose their outputs (and the solution cells their
    "hide" toggle, so students see the stub), notes cells are dropped; exercise headings show their points and
    the text no longer points at the solutions in the online book; every other cell is kept as it is.
    """
    nb = copy.deepcopy(notebook)
    cells = []
    for cell in nb["cells"]:
        exercise_id, role = exercise_role(cell)
        if role == "notes":
            continue
        text = "".join(cell.get("source") or "")
        if cell.get("cell_type") == "markdown" and _student_text(text) != text:
            cell["source"] = _source(_student_text(text))
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


def default_source() -> Path:
    """The book's ``book/`` folder next to this package (a clone or an editable install), whatever the current
    folder; ``./book`` when the package was installed without the book."""
    here = Path(__file__).resolve().parents[2] / "book"
    return here if here.is_dir() else Path("book")


def write_student_edition(out_dir: "str | Path", source: "str | Path | None" = None,
                          notebooks: Optional[Sequence[str]] = None) -> list[Path]:
    """Write the student edition of every chapter notebook with exercises in ``source`` to ``out_dir``.

    Args:
        out_dir: the folder to write (created if needed; existing notebooks of the same names are replaced).
        source: the folder of source notebooks (default: :func:`default_source`, the book's ``book/``).
        notebooks: file names to convert (default: every ``NN_*.ipynb`` that has exercises).

    Returns:
        The paths written.
    """
    source, out_dir = Path(source) if source is not None else default_source(), Path(out_dir)
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
    status: str = "ok"
    reason: str = ""
    student: str = ""

    @property
    def passed(self) -> int:
        return sum(r["passed"] for r in self.results)

    @property
    def points(self) -> int:
        """The points earned, summed over the passed exercises (each worth its ``points`` in the registry)."""
        return sum(r.get("points", 1) for r in self.results if r["passed"])

    @property
    def max_points(self) -> int:
        """The points the graded exercises are worth together."""
        return sum(r.get("points", 1) for r in self.results)

    @property
    def score(self) -> float:
        """Fraction of the chapter's points earned (0.0 … 1.0)."""
        return self.points / self.max_points if self.max_points else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"student": self.student, "notebook": self.notebook, "status": self.status, "reason": self.reason,
                "score": self.score, "points": self.points, "max_points": self.max_points, "passed": self.passed,
                "total": len(self.results), "results": self.results, "errors": self.errors}

    def format(self) -> str:
        """A plain-text report: one line per exercise, then the score."""
        lines = [f"{self.notebook}" + (f" ({self.student})" if self.student else "")]
        if self.status != "ok":
            lines.append(f"  {self.status.upper()}: {self.reason}")
        for r in self.results:
            mark = "PASS" if r["passed"] else r["status"].upper()
            lines.append(f"  {r['id']:<6}{r['name']:<28}{mark:<14}{r['points'] if r['passed'] else 0}/{r['points']}")
            if not r["passed"]:
                lines.extend("        " + line for line in r["message"].splitlines())
        lines.append(f"  score: {self.points}/{self.max_points} points = {100 * self.score:.0f} % "
                     f"({self.passed} of {len(self.results)} exercises)")
        return "\n".join(lines)


def _chapter_of(path: Path, nb: dict[str, Any]) -> Optional[int]:
    match = _CHAPTER_FILE.match(path.name)
    if match:
        return int(match.group(1))
    ids = [exercise_role(c)[0] for c in nb["cells"] if exercise_role(c)[1] == "solution"]
    return int(ids[0].split(".")[0]) if ids and ids[0] else None


def _serve_source(request: Path, response: Path) -> str:
    """The grader's cell in the student's kernel: run one request (:func:`packnet.course.remote.serve`)."""
    return f'__import__("packnet.course.remote", fromlist=["serve"]).serve({str(request)!r}, {str(response)!r}, globals())'


def _library_imports(nb: Any, ex: Any) -> list[str]:
    """What the solution cells of ``ex`` import that the answer must not use: one of ``ex.library`` (``from
    packnet import prune_mask as layer_prune_mask``) or the grader's own code (``packnet.course``)."""
    import ast

    leaves = {path.rsplit(".", 1)[-1] for path in ex.library}
    found = []
    for cell in nb.cells:
        if exercise_role(cell) != (ex.id, "solution"):
            continue
        try:
            tree = ast.parse("".join(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "packnet":
                if node.module.startswith("packnet.course"):
                    found.append(f"`{node.module}`, the grader's own code")
                found.extend(f"`{node.module}.{a.name}`" for a in node.names if a.name in leaves)
            elif isinstance(node, ast.Import):
                found.extend(f"`{a.name}`, the grader's own code" for a in node.names
                             if a.name.startswith("packnet.course"))
    return found


def _uses_library(ex: Any, what: str) -> dict[str, Any]:
    return {"id": ex.id, "name": ex.name, "status": "uses-library", "passed": False,
            "message": f"Exercise {ex.id} (`{ex.name}`): your answer {what}. This exercise asks you to write "
                       "that function yourself, so calling or re-exporting it earns no credit; the library's "
                       "other functions are yours to use."}


def _grade_exercise(ex: Any, probe: dict[str, Any], nb: Any, execute: Any) -> dict[str, Any]:
    """Check one exercise with the checker in this process and the student's function behind a proxy
    (:class:`packnet.course.remote.RemoteFunction`); raises :class:`~packnet.course.remote.KernelLost`."""
    from .exercises.checking import _evaluate
    from .remote import RemoteFunction

    info = probe.get(ex.name)
    if info is None:
        return {"id": ex.id, "name": ex.name, "status": "missing", "passed": False,
                "message": f"Exercise {ex.id}: no function `{ex.name}` is defined (was its cell deleted or renamed?)."}
    if not info["callable"]:
        return {"id": ex.id, "name": ex.name, "status": "missing", "passed": False,
                "message": f"Exercise {ex.id}: expected a function `{ex.name}`, got {info['type']}."}
    if info["module"].split(".")[0] == "packnet":
        return _uses_library(ex, f"is `{info['module']}.{info['qualname']}` itself, re-exported under the "
                                 f"name `{ex.name}`")
    imports = _library_imports(nb, ex)
    if imports:
        return _uses_library(ex, "imports " + " and ".join(imports))
    fn = RemoteFunction(ex.name, execute, list(ex.library))
    result = _evaluate(ex, fn).to_dict()
    if fn.library_calls:
        return _uses_library(ex, "calls " + ", ".join(f"`{name}`" for name in sorted(fn.library_calls)))
    return result


def _limited_client_class():
    from nbclient import NotebookClient

    class LimitedClient(NotebookClient):
        """A client that keeps at most ``output_limit`` bytes of a submission's outputs and drops the rest."""

        output_limit = 1_000_000
        limit_outputs = True
        output_bytes = 0
        exceeded_in: Optional[int] = None

        def output(self, outs, msg, display_id, cell_index):  # noqa: D401  (nbclient's hook)
            if self.limit_outputs:
                self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
                if self.output_bytes > self.output_limit:
                    if self.exceeded_in is None:
                        self.exceeded_in = cell_index
                    return None
            return super().output(outs, msg, display_id, cell_index)
    return LimitedClient


def grade_notebook(path: "str | Path", *, exercises_only: bool = False, timeout: float = 1800,
                   cell_timeout: float = 600, check_timeout: float = 120, output_limit: int = 1_000_000,
                   chapter: Optional[int] = None) -> GradeReport:
    """Run a submitted notebook and grade every exercise of its chapter; a bad submission never raises.

    The notebook runs top to bottom in a fresh ``python3`` kernel, in its own folder, continuing past errors.
    Then the official check of each exercise (:func:`packnet.course.exercises.run_check`) runs in its own cell, in
    that kernel, on the function the student defined (a submission that patches the library in its kernel can
    still fool a check: isolation is not done yet). Editing
    or deleting a check cell changes nothing; deleting a solution cell makes that exercise ``"missing"``.

    Limits: a cell that runs longer than ``cell_timeout`` (or past the submission's ``timeout``), or that kills
    its kernel (``os._exit``, out of memory), ends that kernel; the grader starts a fresh one, replays the setup
    cell and the solution cells that had run before, and goes on, so the exercises solved before still count.
    A check that loops or kills the kernel makes that exercise ``"timeout"`` / ``"crashed"``; the others are
    still checked. Outputs beyond ``output_limit`` bytes are dropped. The report's ``status`` says what
    happened (``"ok"``, ``"timeout"``, ``"crashed"``, ``"output limit"``) and ``reason`` why.

    Args:
        path: the ``.ipynb`` file.
        exercises_only: run only the first code cell (the setup cell) and the solution cells, not the chapter's
            experiments: seconds instead of minutes, for exercises whose solution cells are self-contained (the
            book's are).
        timeout: seconds allowed for running the submission's cells in all (the checks come on top).
        cell_timeout: seconds allowed per cell.
        check_timeout: seconds allowed per official check.
        output_limit: bytes of output kept from the submission's cells.
        chapter: the chapter whose exercises to grade (default: from the file name ``NN_*.ipynb``, else from
            the exercise ids in the notebook).

    Returns:
        A :class:`GradeReport`.

    Raises:
        FileNotFoundError, ValueError: the file is missing or is not a chapter's notebook (nothing to grade).
    """
    try:
        import nbformat
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
    except ImportError as error:  # pragma: no cover - the book/test extras install both
        raise ImportError("grading needs nbclient and ipykernel: pip install nbclient ipykernel") from error
    import pickle
    import shutil
    import tempfile
    import time

    import torch

    from .exercises import exercises_of_chapter
    from .remote import KernelLost, RemoteError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {str(path)!r}")
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    chapter = chapter if chapter is not None else _chapter_of(path, nb)
    exercises = exercises_of_chapter(chapter) if chapter is not None else []
    if not exercises:
        raise ValueError(f"{path.name}: no exercises are registered for chapter {chapter}: pass chapter=...")
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    replayable = {i for i, c in enumerate(nb.cells) if i == first_code or exercise_role(c)[1] == "solution"}
    plan = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (not exercises_only or i in replayable)]
    exchange = Path(tempfile.mkdtemp(prefix="packnet-grade-"))  # requests to the kernel, its responses
    request_file, response_file = exchange / "request.pickle", exchange / "response.pt"
    slot = len(nb.cells)  # the grader's own cells run at this index, after the submission's
    nb.cells.append(nbformat.v4.new_code_cell(""))
    report = GradeReport(notebook=str(path))
    problems: list[tuple[str, str]] = []
    results: dict[str, dict[str, Any]] = {}
    done: list[int] = []  # the cells that ran to the end, in order
    position, deadline = 0, time.monotonic() + timeout
    Client = _limited_client_class()

    def run(client, cell, index: int, seconds: float) -> str:
        nb.cells[index] = cell
        client.timeout = max(1, int(seconds))
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            return "timeout"
        except DeadKernelError:
            return "crashed"
        return "ok"

    try:
        for _ in range(2 + len(exercises)):  # at most one fresh kernel per failure that can happen
            client = Client(nb, timeout=int(cell_timeout), kernel_name="python3", allow_errors=True,
                            shutdown_kernel="immediate", resources={"metadata": {"path": str(path.parent.resolve())}})
            client.output_limit = output_limit
            restart = False
            with client.setup_kernel():
                for index in (i for i in done if i in replayable):  # what a fresh kernel needs
                    if run(client, nb.cells[index], index, cell_timeout) != "ok":
                        problems.append(("crashed", f"cell {index} failed when replayed in a fresh kernel"))
                        position = len(plan)
                        break
                while position < len(plan) and not restart:
                    index = plan[position]
                    position += 1
                    left = deadline - time.monotonic()
                    if left <= 0:
                        problems.append(("timeout", f"the submission's time limit ({timeout:g} s) ran out before "
                                                    f"cell {index}; the cells from there on were not run"))
                        position = len(plan)
                        break
                    outcome = run(client, nb.cells[index], index, min(cell_timeout, left))
                    if outcome == "ok":
                        done.append(index)
                        continue
                    restart = True
                    if outcome == "crashed":
                        problems.append(("crashed", f"cell {index} killed its kernel; a fresh kernel ran the rest"))
                    elif left < cell_timeout:
                        problems.append(("timeout", f"cell {index} was still running when the submission's time limit "
                                                    f"({timeout:g} s) ran out; the cells after it were not run"))
                        position = len(plan)
                    else:
                        problems.append(("timeout", f"cell {index} ran longer than the per-cell limit "
                                                    f"({cell_timeout:g} s); a fresh kernel ran the rest"))
                if client.exceeded_in is not None and not any(s == "output limit" for s, _ in problems):
                    problems.append(("output limit", f"cell {client.exceeded_in} printed more than the "
                                                     f"{output_limit} bytes of output kept; the rest was dropped"))
                if restart:
                    continue
                client.output_bytes = 0  # the checks' own output budget (the student's function may print)

                def execute(request: dict[str, Any], client: Any = client) -> dict[str, Any]:
                    left = check_deadline - time.monotonic()
                    if left <= 0:
                        raise KernelLost("timeout")
                    request_file.write_bytes(request["bytes"])
                    response_file.unlink(missing_ok=True)
                    cell = nbformat.v4.new_code_cell(_serve_source(request_file, response_file))
                    outcome = run(client, cell, slot, left)
                    if outcome != "ok":
                        raise KernelLost(outcome)
                    if not response_file.is_file():
                        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
                        why = f"{error.get('ename')}: {error.get('evalue')}" if error else "no response was written"
                        raise RemoteError(f"the grader's cell failed in the submission's kernel ({why})")
                    return torch.load(response_file, weights_only=True)  # data only: nothing in it can run code here

                check_deadline = time.monotonic() + check_timeout
                try:
                    names = [ex.name for ex in exercises]
                    probe = execute({"bytes": pickle.dumps({"op": "probe", "names": names}, protocol=4)})["names"]
                except (KernelLost, RemoteError) as error:
                    problems.append(("crashed", f"the grader could not reach the submission's kernel ({error})"))
                    break
                for ex in exercises:
                    if ex.id in results:
                        continue
                    check_deadline = time.monotonic() + check_timeout
                    try:
                        results[ex.id] = _grade_exercise(ex, probe, nb, execute)
                    except KernelLost as lost:
                        outcome = "timeout" if lost.outcome == "timeout" else "crashed"
                        why = ("ran longer than the check's limit" if outcome == "timeout" else "killed the kernel")
                        results[ex.id] = {"id": ex.id, "name": ex.name, "status": outcome, "passed": False,
                                          "message": f"Exercise {ex.id} (`{ex.name}`): checking your function {why}"
                                                     + (f" ({check_timeout:g} s)." if outcome == "timeout" else ".")}
                        problems.append((outcome, f"the check of exercise {ex.id} {why}"))
                        restart = True
                        break
                    except RemoteError as error:
                        results[ex.id] = {"id": ex.id, "name": ex.name, "status": "failed", "passed": False,
                                          "message": f"Exercise {ex.id} (`{ex.name}`): the grader could not run the "
                                                     f"check ({error})."}
            if not restart:
                break
    finally:
        shutil.rmtree(exchange, ignore_errors=True)
    for ex in exercises:
        results.setdefault(ex.id, {"id": ex.id, "name": ex.name, "status": "not graded", "passed": False,
                                   "message": f"Exercise {ex.id}: not graded (the submission hit its limits)."})
    report.results = [{**results[ex.id], "points": ex.points} for ex in exercises]
    for index in sorted(set(plan)):
        cell = nb.cells[index]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                exercise_id, role = exercise_role(cell)
                expected = "raises-exception" in (cell.get("metadata") or {}).get("tags", [])
                report.errors.append({"cell": index, "exercise": exercise_id, "role": role, "expected": expected,
                                      "ename": output.get("ename"), "evalue": output.get("evalue")})
    if problems:
        report.status = problems[0][0]
        report.reason = "; ".join(reason for _, reason in problems)
    return report


def _grade_one(submission: str, options: dict[str, Any]) -> GradeReport:
    """Grade one submission; anything that goes wrong becomes the report's ``status`` (never raises)."""
    try:
        return grade_notebook(submission, **options)
    except Exception as error:  # noqa: BLE001 - one bad submission must never stop the batch
        report = GradeReport(notebook=str(submission), status="error", reason=f"{type(error).__name__}: {error}")
        return report


def grade_submissions(submissions: Sequence["str | Path"], *, jobs: int = 1, progress: bool = True,
                      **options: Any) -> list[GradeReport]:
    """Grade many submissions, ``jobs`` at a time (each in its own process and kernel), with a progress bar on
    stderr; the reports come back in the order of ``submissions``. ``options`` go to :func:`grade_notebook`."""
    from tqdm import tqdm

    submissions = [str(s) for s in submissions]
    bar = tqdm(total=len(submissions), desc="grading", unit="notebook", file=sys.stderr, disable=not progress)
    reports: list[Optional[GradeReport]] = [None] * len(submissions)
    if jobs <= 1 or len(submissions) <= 1:
        for i, submission in enumerate(submissions):
            reports[i] = _grade_one(submission, options)
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_grade_one, s, options): i for i, s in enumerate(submissions)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    reports[i] = future.result()
                except Exception as error:  # noqa: BLE001 - a worker that died still leaves a report
                    reports[i] = GradeReport(notebook=submissions[i], status="error",
                                             reason=f"the grading process failed: {type(error).__name__}: {error}")
                bar.update()
    bar.close()
    return [r for r in reports if r is not None]


# ------------------------------------------------------------------------------------------ gradebook
def student_id(path: "str | Path", pattern: Optional[str] = None) -> str:
    """The student id of a submission's ``path``.

    With ``pattern`` (a regular expression searched in the path, with ``/`` separators): its group ``id``, else
    its first group, else the whole match. Without: the file name without ``.ipynb``, or the name of the folder
    it is in when the file is named like a chapter (``alice/03_pruning.ipynb`` → ``alice``, the layout of
    nbgrader's ``submitted/`` and of GitHub Classroom).

    Examples:
        >>> student_id("hw3/alice_03_pruning.ipynb", r"(?P<id>[a-z]+)_\\d+")
        'alice'
        >>> student_id("submitted/bob/ch3/03_pruning.ipynb"), student_id("carol.ipynb")
        ('ch3', 'carol')

    Raises:
        ValueError: ``pattern`` is not a regular expression, or does not match ``path``.
    """
    path = Path(path)
    if pattern is None:
        return path.parent.name if _CHAPTER_FILE.match(path.name) and path.parent.name else path.stem
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"--id-pattern {pattern!r} is not a regular expression ({error})") from None
    match = regex.search(path.as_posix())
    if match is None:
        raise ValueError(f"--id-pattern {pattern!r} does not match the submission {path.as_posix()!r}: change the "
                         "pattern (it is searched in the whole path) or rename the file")
    if "id" in regex.groupindex:
        return match.group("id")
    return match.group(1) if regex.groups else match.group(0)


def write_gradebook(reports: Sequence[GradeReport], path: "str | Path") -> Path:
    """Write a CSV gradebook: one row per report (``student``, ``notebook``, ``status``, the points earned in each
    exercise, ``points``, ``max_points``, ``percent``); exercises in id order, empty where a row's notebook does
    not have that exercise."""
    import csv

    def key(exercise_id: str) -> tuple[int, ...]:
        return tuple(int(part) for part in exercise_id.split("."))

    ids = sorted({r["id"] for report in reports for r in report.results}, key=key)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "status", *ids, "points", "max_points", "percent"])
        for report in reports:
            earned = {r["id"]: r["points"] if r["passed"] else 0 for r in report.results}
            writer.writerow([report.student, report.notebook, report.status, *(earned.get(i, "") for i in ids),
                             report.points, report.max_points, f"{100 * report.score:.1f}"])
    return path


# ------------------------------------------------------------------------------------------ command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m packnet.coursework",
        description="Write the student edition of the book's notebooks, or grade submitted notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write the student edition (stubs, no solutions) to OUT_DIR")
    student.add_argument("out_dir", help="folder to write the student notebooks to")
    student.add_argument("--source", default=None,
                         help="folder of the source notebooks (default: the book/ folder of this repository)")
    student.add_argument("notebooks", nargs="*", help="only these notebook file names (default: all chapters)")
    from . import nbgrader_source

    nbgrader = sub.add_parser("nbgrader-metadata",
                              help="write the nbgrader metadata of the exercise cells (book/ is an nbgrader source)")
    nbgrader_source.add_arguments(nbgrader)
    grade = sub.add_parser("grade", help="run submitted notebooks and score their exercises")
    grade.add_argument("submissions", nargs="+", help="the .ipynb files to grade")
    grade.add_argument("--exercises-only", action="store_true",
                       help="run only the setup and solution cells, not the chapter's experiments (fast)")
    grade.add_argument("--timeout", type=float, default=1800,
                       help="seconds allowed to run one submission's cells (default: 1800)")
    grade.add_argument("--cell-timeout", type=float, default=600, help="seconds allowed per cell (default: 600)")
    grade.add_argument("--check-timeout", type=float, default=120,
                       help="seconds allowed per official check (default: 120)")
    grade.add_argument("--output-limit", type=int, default=1_000_000,
                       help="bytes of a submission's output kept; the rest is dropped (default: 1000000)")
    grade.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded in parallel (default: 1)")
    grade.add_argument("--fail-under", type=float, default=None, metavar="PCT",
                       help="exit with status 1 if any submission scores below PCT %% (default: exit 0 whatever "
                            "the scores, as long as every submission could be graded)")
    grade.add_argument("--json", action="store_true", help="print one JSON object per line instead of a report")
    grade.add_argument("--csv", metavar="FILE", default=None,
                       help="write a gradebook: one row per submission, one column of points per exercise, total")
    grade.add_argument("--id-pattern", metavar="REGEX", default=None,
                       help="regular expression searched in each submission's path for the student id: its group "
                            "'id', else its first group, else the whole match (default: the file name without "
                            ".ipynb, or the folder's name when the file is named like a chapter, NN_*.ipynb)")
    return parser


def main(argv: Optional[Iterable[str]] = None) -> int:
    """The command line: ``student OUT_DIR`` or ``grade NOTEBOOK...`` (see ``--help``)."""
    args = _parser().parse_args(None if argv is None else list(argv))
    if args.command == "nbgrader-metadata":
        from . import nbgrader_source

        return nbgrader_source.run(args)
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
    try:
        ids = [student_id(submission, args.id_pattern) for submission in args.submissions]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = {"exercises_only": args.exercises_only, "timeout": args.timeout, "cell_timeout": args.cell_timeout,
               "check_timeout": args.check_timeout, "output_limit": args.output_limit}
    reports = grade_submissions(args.submissions, jobs=args.jobs, **options)
    for report, student in zip(reports, ids):
        report.student = student
    if args.csv:
        write_gradebook(reports, args.csv)
    for report in reports:
        print(json.dumps(report.to_dict()) if args.json else report.format(), flush=True)
    if any(r.status == "error" for r in reports):
        return 2
    if args.fail_under is not None and any(100 * r.score < args.fail_under for r in reports):
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
