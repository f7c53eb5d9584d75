"""README.md stays in step with the book: the chapter table and its Colab links, the screenshot, the citation."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import yaml

from book_build import ROOT
from test_book import NOTEBOOK_PAGES

README = ROOT / "README.md"
SCREENSHOT = ROOT / "book" / "figures" / "screenshot_landing.png"
MAX_SCREENSHOT_BYTES = 300_000


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_chapter_table_links_every_notebook_to_colab_in_the_configured_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repo = config["repository"]
    org_repo = urlsplit(repo["url"]).path.strip("/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    prefix = f"{colab}/github/{org_repo}/blob/{repo['branch']}/{repo.get('path_to_book') or ''}".rstrip("/") + "/"
    links = re.findall(r"\((https://colab\.research\.google\.com/github/[^)\s]+)\)", readme())
    expected = [f"{prefix}{page}.ipynb" for page in NOTEBOOK_PAGES]
    assert links == expected, ("README's Colab links must list every chapter of _toc.yml, in order, in the "
                               f"repository of _config.yml:\n got {links}\nwant {expected}")


def test_the_screenshot_is_committed_small_and_shown():
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size < MAX_SCREENSHOT_BYTES, "shrink README's screenshot (< 300 KB)"
    assert "](book/figures/screenshot_landing.png)" in readme()


def test_the_readme_keeps_its_sections_and_the_test_command():
    text = readme()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    for needed in ("Quick start", "Chapters", "Set-up", "Use it", "Tests", "Layout", "Publishing the book",
                   "How to cite"):
        assert needed in headings, f"README lost its section {needed!r}"
    tests = text.split("## Tests", 1)[1]
    assert re.search(r"```bash\npytest\n```", tests), "the documented test command is exactly `pytest`"
    assert "@inproceedings{mallya2018packnet," in text
    assert "`repository:` block of `_config.yml`" in text and "python tools/setup_cell.py" in text
