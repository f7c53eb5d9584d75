"""Fixtures shared by the book's tests (test_book.py, test_api_reference.py, test_browser.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from book_build import ROOT, BookBuild, build_book

# `--doctest-modules` (pyproject.toml) would also collect this file, importing it under the module name
# "conftest" -- the name book/conftest.py has too (neither folder is a package), so one of the two would fail
# with "import file mismatch". This file has no doctests: leave it out of collection (it is still loaded as the
# conftest of tests/).
collect_ignore = ["conftest.py"]


@pytest.fixture(scope="session")
def book_build(tmp_path_factory) -> BookBuild:
    """The book built once per session (strict: ``-W --keep-going``), into a temporary folder or $BOOK_BUILD_DIR.

    The fixture only builds; the tests decide what a failed build means (test_book.py asserts a clean build).
    """
    chosen = os.environ.get("BOOK_BUILD_DIR")
    if chosen:
        output = Path(chosen).resolve()
        if output == ROOT or ROOT in output.parents:
            pytest.fail(f"BOOK_BUILD_DIR={chosen} is inside the repository; choose a folder outside it")
        # A fresh build every time: Sphinx's incremental rebuild would not repeat an unchanged page's warnings.
        shutil.rmtree(output / "_build", ignore_errors=True)
    else:
        output = tmp_path_factory.mktemp("book")
    return build_book(output)
