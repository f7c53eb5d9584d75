"""The canonical first code cell of every notebook in book/, rendered from _config.yml's repository URL.

The book's repository URL lives in exactly one place, ``_config.yml`` (``repository: url:``). Each chapter
notebook starts with a setup cell that, on Colab, installs the ``packnet`` package from that repository; this
script keeps those cells in sync with the config::

    python tools/setup_cell.py            # rewrite the first code cell of every book/*.ipynb where it differs
    python tools/setup_cell.py --check    # only report; exit 1 if any notebook is out of date

A notebook whose first code cell is *not* a setup cell is reported and left alone (the script never overwrites
chapter code); ``--insert`` puts a setup cell in front of its code instead (then re-execute the notebook, since
its execution counts shift). ``tests/test_book.py`` checks that every notebook agrees with
:func:`render_setup_cell`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "_config.yml"
BOOK = ROOT / "book"

SETUP_MARKER = "# Setup:"
"""First line prefix that identifies a setup cell (so a stale one can be recognised and replaced)."""

_TEMPLATE = """\
# Setup: runs as-is locally, in CI and on Colab (where it first installs the book's `packnet` package).
try:
    import packnet
except ImportError:  # e.g. on Colab
    %pip install --quiet "packnet[book] @ git+{url}"
    import packnet"""


def render_setup_cell(repo_url: str) -> str:
    """The exact source of the setup cell for a book whose repository is ``repo_url`` (no trailing newline).

    Examples:
        >>> print(render_setup_cell("https://github.com/o/r").splitlines()[4])
            %pip install --quiet "packnet[book] @ git+https://github.com/o/r"
    """
    repo_url = repo_url.strip()
    if not repo_url or any(c in repo_url for c in "\"' \n"):
        raise ValueError(f"not a usable repository URL: {repo_url!r}")
    return _TEMPLATE.format(url=repo_url)


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

    canonical = render_setup_cell(configured_repository_url())
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
