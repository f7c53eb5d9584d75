"""The book's chapter notebooks as an nbgrader source: the ``metadata.nbgrader`` of their exercise cells.

nbgrader (https://nbgrader.readthedocs.io) only treats a cell as part of an assignment when its metadata says so.
:func:`nbgrader_metadata` derives that metadata from the cells' own ``packnet`` markers and the exercise registry
(:mod:`packnet.course.exercises`), so the notebooks in ``book/`` can be copied into a course's
``source/<assignment>/`` folder as they are:

* a **solution** cell is an *autograded answer* (``solution: true``): ``nbgrader generate_assignment`` replaces its
  ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region by ``raise NotImplementedError()``;
* a **check** cell (``check("3.2", layer_prune_mask)``) is an *autograder test* (``grade: true, locked: true``)
  worth the exercise's ``points`` in the registry: full points if it runs without an error, none otherwise;
* the **notes** of a discussion question (instructors' notes) are a *manually graded answer* (``solution: true,
  grade: true``) worth ``discussion_points`` (0 by default, so nbgrader's total equals the registry's): a markdown
  solution cell without a solution region is replaced *whole* by "YOUR ANSWER HERE" in the release, so the notes
  never reach students — with nbgrader's default configuration, nothing to set up — and students get a cell to
  answer in;
* the cell ``from packnet.course.exercises import check`` is *read-only* (``locked: true``): autograding restores
  it, so an edited import cannot break or replace the checks.

``python -m packnet.coursework nbgrader-metadata`` (re)writes that metadata into the book's chapters (or the
notebooks named), idempotently and touching nothing else; ``--check`` only reports notebooks that are out of date
(exit status 1), which the tests run on the committed book. Nothing here imports nbgrader.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

__all__ = ["SCHEMA_VERSION", "grade_id", "nbgrader_metadata", "apply_nbgrader_metadata", "sync_notebooks", "main"]

SCHEMA_VERSION = 3
"""nbgrader's cell-metadata schema version (nbgrader 0.6 and later)."""
CHECK_IMPORT = "from packnet.course.exercises import check"
"""The source of the cell that imports the checker, made read-only."""
_QUESTION = re.compile(r"^#+\s*Question\s+(\d+\.\d+)", flags=re.M)


def grade_id(exercise_id: str, role: str) -> str:
    """The nbgrader ``grade_id`` of an exercise's cell (letters, digits, ``_`` and ``-`` only, as nbgrader requires).

    Examples:
        >>> grade_id("3.2", "solution"), grade_id("3.2", "check"), grade_id("3.4", "discussion")
        ('ex3_2-solution', 'ex3_2-check', 'q3_4-discussion')
    """
    prefix = "q" if role == "discussion" else "ex"
    return f"{prefix}{exercise_id.replace('.', '_')}-{role}"


def _text(cell: dict[str, Any]) -> str:
    source = cell.get("source") or ""
    return source if isinstance(source, str) else "".join(source)


def nbgrader_metadata(notebook: dict[str, Any], discussion_points: float = 0) -> list[Optional[dict[str, Any]]]:
    """The ``metadata.nbgrader`` each cell of ``notebook`` should have (``None``: no nbgrader metadata).

    Raises:
        ValueError: a check cell whose exercise is not registered, or a solution cell without its exercise id.
    """
    from .coursework import exercise_role
    from .exercises import EXERCISES

    def meta(gid: str, *, solution: bool = False, grade: bool = False, locked: bool = False,
             points: Optional[float] = None) -> dict[str, Any]:
        out: dict[str, Any] = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": SCHEMA_VERSION,
                               "solution": solution}
        if grade:
            out["points"] = points
        return out

    wanted: list[Optional[dict[str, Any]]] = []
    question: Optional[str] = None
    chapter = (notebook.get("metadata") or {}).get("packnet", {}).get("chapter")
    discussions = 0
    for index, cell in enumerate(notebook["cells"]):
        exercise_id, role = exercise_role(cell)
        if cell.get("cell_type") == "markdown":
            found = _QUESTION.search(_text(cell))
            if found:
                question = found.group(1)
        if role == "solution":
            if not exercise_id:
                raise ValueError(f"cell {index}: a solution cell without an exercise id")
            wanted.append(meta(grade_id(exercise_id, "solution"), solution=True))
        elif role == "check":
            if exercise_id not in EXERCISES:
                raise ValueError(f"cell {index}: the check of exercise {exercise_id!r}, which is not registered")
            wanted.append(meta(grade_id(exercise_id, "check"), grade=True, locked=True,
                               points=EXERCISES[exercise_id].points))
        elif role == "notes":
            discussions += 1
            number = question or f"{chapter or 0}_{discussions}"
            wanted.append(meta(grade_id(number, "discussion"), solution=True, grade=True, points=discussion_points))
            question = None
        elif cell.get("cell_type") == "code" and _text(cell).strip() == CHECK_IMPORT:
            wanted.append(meta("check-import", locked=True))
        else:
            wanted.append(None)
    ids = [m["grade_id"] for m in wanted if m]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate nbgrader grade ids {duplicates}")
    return wanted


def apply_nbgrader_metadata(notebook: dict[str, Any], discussion_points: float = 0) -> bool:
    """Set every cell's ``metadata.nbgrader`` to :func:`nbgrader_metadata` in place (removing it from the other
    cells); ``True`` if anything changed. Nothing else in the notebook is touched."""
    changed = False
    for cell, wanted in zip(notebook["cells"], nbgrader_metadata(notebook, discussion_points)):
        meta = cell.setdefault("metadata", {})
        if wanted is None:
            if "nbgrader" in meta:
                del meta["nbgrader"]
                changed = True
        elif meta.get("nbgrader") != wanted:
            meta["nbgrader"] = wanted
            changed = True
    return changed


def _dump(nb: dict[str, Any]) -> str:
    # The book's notebooks are stored as Jupyter writes them: sorted keys, one space of indent, UTF-8.
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def sync_notebooks(paths: Sequence["str | Path"], *, check: bool = False,
                   discussion_points: float = 0) -> list[Path]:
    """Bring the nbgrader metadata of ``paths`` up to date (or, with ``check``, only find those out of date).

    Returns:
        The notebooks that changed (with ``check``: that would change). A notebook in sync is not rewritten.
    """
    stale = []
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        if apply_nbgrader_metadata(nb, discussion_points):
            stale.append(path)
            if not check:
                path.write_text(_dump(nb), encoding="utf-8")
    return stale


def chapter_notebooks(source: "str | Path | None" = None) -> list[Path]:
    """The chapter notebooks with exercises in ``source`` (default: the book's ``book/``)."""
    from .coursework import _chapter_notebooks, default_source

    return _chapter_notebooks(Path(source) if source is not None else default_source())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*",
                        help="the notebooks to update (default: every chapter with exercises in the book's book/)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit with status 1 if a notebook's nbgrader metadata is out of date")
    parser.add_argument("--discussion-points", type=float, default=0, metavar="N",
                        help="points of each discussion answer, graded by hand in nbgrader (default: 0)")


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.notebooks] or chapter_notebooks()
    try:
        changed = sync_notebooks(paths, check=args.check, discussion_points=args.discussion_points)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in changed:
        print(path)
    verb = "out of date" if args.check else "updated"
    print(f"nbgrader metadata: {len(changed)} of {len(paths)} notebooks {verb}", file=sys.stderr)
    return 1 if args.check and changed else 0


def main(argv: Optional[Iterable[str]] = None) -> int:
    """``python -m packnet.course.nbgrader_source [--check] [NOTEBOOK...]`` (also ``python -m packnet.coursework
    nbgrader-metadata``)."""
    parser = argparse.ArgumentParser(prog="python -m packnet.coursework nbgrader-metadata",
                                     description="Write the nbgrader metadata of the exercise cells.")
    add_arguments(parser)
    return run(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":
    sys.exit(main())
