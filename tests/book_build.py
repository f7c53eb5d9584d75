"""Build the jupyter-book once per test session (tests/conftest.py's ``book_build`` fixture) for every test that
needs the HTML: the strict build test in test_book.py, the API-reference checks and the browser test.

The build runs exactly as CI's ``jupyter-book build . -W --keep-going``, but with ``--path-output`` pointing at a
temporary folder, so nothing is written into the repository. Set ``BOOK_BUILD_DIR`` to build into a folder of
your choice instead (outside the repository), e.g. to look at the pages and screenshots after the tests::

    BOOK_BUILD_DIR=/tmp/packnet-book pytest tests/test_book.py tests/test_browser.py
    # -> /tmp/packnet-book/_build/html/index.html, /tmp/packnet-book/_build/html/_screenshots/*.png

Importing this module does nothing (``--doctest-modules`` imports it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Names a jupyter-book/Sphinx/myst-nb build may create; none of them may appear inside the repository when the
# build is pointed elsewhere with --path-output.
BUILD_ARTIFACTS = {"_build", ".jupyter_cache", "jupyter_execute", ".doctrees", "_sources", "_static", "_images",
                   "objects.inv", "searchindex.js", ".buildinfo", "conf.py", "genindex.html"}

BUILD_TIMEOUT_S = 900


def artifacts_in_repo() -> set[Path]:
    """Build artifacts (by name) anywhere in the repository, as paths relative to its root."""
    found = set()
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".git", ".pytest_cache", ".hypothesis") or "__pycache__" in rel.parts:
            continue
        if path.name in BUILD_ARTIFACTS:
            found.add(rel)
    return found


@dataclass
class BookBuild:
    """The outcome of one ``jupyter-book build``: exit status, output, time, and where the HTML is."""

    output: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    new_artifacts: set[Path] = field(default_factory=set)

    @property
    def html(self) -> Path:
        """The HTML root (``index.html`` redirects to the landing page)."""
        return self.output / "_build" / "html"

    @property
    def log(self) -> str:
        return self.stdout + self.stderr


def build_book(output: Path) -> BookBuild:
    """Run ``jupyter-book build <repo> --path-output <output> -W --keep-going`` and collect what happened."""
    output.mkdir(parents=True, exist_ok=True)
    before = artifacts_in_repo()
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(ROOT), "--path-output", str(output), "-W", "--keep-going"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=output, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    seconds = time.perf_counter() - start
    return BookBuild(output=output, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                     seconds=seconds, new_artifacts=artifacts_in_repo() - before)
