"""Tests for the jupyter-book: it builds cleanly, its notebooks are committed executed and share one setup cell.

The notebooks' *outputs* are checked by nbval (``pytest`` collects book/*.ipynb, see pyproject.toml); these tests
check the book around them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from book_build import BookBuild

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CONFIG = ROOT / "_config.yml"
TOC = ROOT / "_toc.yml"


# --------------------------------------------------------------------------- helpers
def toc_files() -> list[str]:
    """Every page of _toc.yml (root first, then chapters/sections in order), as paths without extension."""
    toc = yaml.safe_load(TOC.read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def source_of(page: str) -> Path:
    """The one source file (.md or .ipynb) of a toc page; fails if there is none or more than one."""
    found = [ROOT / f"{page}{ext}" for ext in (".md", ".ipynb") if (ROOT / f"{page}{ext}").is_file()]
    assert len(found) == 1, f"toc page {page!r}: expected exactly one of {page}.md / {page}.ipynb, found {found}"
    return found[0]


def is_notebook_page(page: str) -> bool:
    """Chapters (book/NN_*) are notebooks; the landing and references pages are Markdown."""
    return re.fullmatch(r"book/\d\d_\w+", page) is not None or (ROOT / f"{page}.ipynb").is_file()


NOTEBOOK_PAGES = [p for p in toc_files() if is_notebook_page(p)]


def book_notebooks() -> list[Path]:
    return sorted(p for p in BOOK.glob("*.ipynb"))


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def setup_cell_tool():
    spec = importlib.util.spec_from_file_location("book_setup_cell", ROOT / "tools" / "setup_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the build
@pytest.mark.slow
def test_book_builds_without_warnings(book_build: BookBuild):
    """`jupyter-book build` with warnings as errors, into a temporary folder, renders every toc page.

    Notebooks are not executed (_config.yml: execute_notebooks: off), so this takes about a minute at most. The
    build itself is tests/conftest.py's session fixture, shared with the API-reference and browser tests.
    """
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "off", "the book must render stored outputs, not execute"
    proc, seconds, log = book_build, book_build.seconds, book_build.log
    assert proc.returncode == 0, f"jupyter-book build failed (exit {proc.returncode}) in {seconds:.0f} s:\n{log[-6000:]}"
    assert not re.search(r"\bWARNING\b", proc.stderr), f"the build printed warnings:\n{proc.stderr[-6000:]}"
    # jupyter-book reports _config.yml schema problems with print(), which -W does not catch.
    assert "Validation errors in config" not in log, f"_config.yml does not match jupyter-book's schema:\n{log}"

    html = book_build.html
    missing = [page for page in toc_files() if not (html / f"{page}.html").is_file()]
    assert not missing, f"toc pages without HTML: {missing}"
    assert (html / "index.html").is_file()
    new = book_build.new_artifacts
    assert not new, f"the build wrote into the repository: {sorted(map(str, new))}"


# --------------------------------------------------------------------------- the notebooks
@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_every_toc_notebook_exists_and_is_executed(page):
    """Each chapter is committed executed top to bottom: counts 1..n on the non-empty code cells, outputs kept."""
    path = ROOT / f"{page}.ipynb"
    assert path.is_file(), f"{page}.ipynb is listed in _toc.yml but does not exist"
    source_of(page)  # and there is no competing .md of the same name
    nb = load_notebook(path)
    assert nb.get("nbformat") == 4, f"{path.name}: nbformat {nb.get('nbformat')}, expected 4"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    counts = [c.get("execution_count") for c in code if source(c).strip()]
    assert None not in counts, (f"{path.name}: code cells {[i for i, n in enumerate(counts) if n is None]} "
                                "were never executed; run the notebook top to bottom (Restart & Run All)")
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(counts)}: run it top to bottom in a fresh kernel")
    for i, c in enumerate(code):
        if not source(c).strip():
            assert not c.get("outputs"), f"{path.name}: empty code cell {i} has outputs"
    assert any(c.get("outputs") for c in code), f"{path.name}: no stored outputs; save the executed notebook"
    for i, c in enumerate(code):
        raises = "raises-exception" in c.get("metadata", {}).get("tags", []) or "NBVAL_RAISES_EXCEPTION" in source(c)
        errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert raises or not errors, (f"{path.name}: code cell {i} stored an error "
                                      f"({errors[0].get('ename')}); tag the cell raises-exception if intended")


def test_every_toc_page_exists():
    for page in toc_files():
        if not is_notebook_page(page):
            source_of(page)


def test_setup_cells_use_the_configured_repository():
    """Every notebook's first code cell is the canonical setup cell for _config.yml's repository URL."""
    tool = setup_cell_tool()
    url = tool.configured_repository_url(CONFIG)
    canonical = tool.render_setup_cell(url)
    assert url in canonical
    notebooks = book_notebooks()
    if not notebooks:
        pytest.skip("no notebooks in book/ yet")
    wrong = []
    for path in notebooks:
        code = [c for c in load_notebook(path)["cells"] if c["cell_type"] == "code"]
        if not code or source(code[0]).rstrip("\n") != canonical:
            wrong.append(path.name)
    assert not wrong, (f"first code cell is not the canonical setup cell in {wrong}: run `python tools/setup_cell.py`"
                       " (it renders the cell from _config.yml's repository url)")


def test_the_repository_url_lives_only_in_config_and_setup_cells():
    """The publisher changes the URL in _config.yml only; no other book file may hard-code it."""
    url = setup_cell_tool().configured_repository_url(CONFIG)
    offenders = []
    for path in list(BOOK.rglob("*.md")) + list(BOOK.rglob("*.ipynb")) + [ROOT / "_toc.yml"]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            cells = [c for c in load_notebook(path)["cells"]]
            first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), None)
            text = "\n".join(source(c) for i, c in enumerate(cells) if i != first_code)
        if url in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"{url} is hard-coded in {offenders}; keep it in _config.yml only"


_WIDGET_TQDM = re.compile(
    r"^\s*(?:from\s+tqdm\.(?:notebook|auto|autonotebook)\s+import"
    r"|import\s+tqdm\.(?:notebook|auto|autonotebook)"
    r"|from\s+tqdm\s+import\s+.*\b(?:tqdm_notebook|notebook|auto|autonotebook)\b)"
    r"|\btqdm\.(?:notebook|auto|autonotebook)\b|\btqdm_notebook\b",
    re.MULTILINE,
)


def test_notebooks_use_plain_tqdm():
    """tqdm.notebook / tqdm.auto draw ipywidgets (random model ids, HTML) that nbval cannot compare; plain tqdm
    writes text to stderr, which book/conftest.py excludes from the comparison."""
    offenders = []
    for path in book_notebooks():
        for i, cell in enumerate(c for c in load_notebook(path)["cells"] if c["cell_type"] == "code"):
            if _WIDGET_TQDM.search(source(cell)):
                offenders.append(f"{path.name} code cell {i}")
    for path in sorted((ROOT / "packnet").rglob("*.py")):  # the library's bars show up in the notebooks too
        if _WIDGET_TQDM.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"use `from tqdm import tqdm`, not tqdm.notebook/tqdm.auto, in: {offenders}"


def test_plain_tqdm_pattern():
    assert _WIDGET_TQDM.search("from tqdm.auto import tqdm")
    assert _WIDGET_TQDM.search("from tqdm.notebook import trange")
    assert _WIDGET_TQDM.search("import tqdm.notebook as tq")
    assert _WIDGET_TQDM.search("from tqdm import tqdm_notebook")
    assert _WIDGET_TQDM.search("bar = tqdm.auto.tqdm(range(3))")
    assert not _WIDGET_TQDM.search("from tqdm import tqdm, trange")
    assert not _WIDGET_TQDM.search("import tqdm\nfor _ in tqdm.tqdm(range(3)): pass")


def test_setup_cell_tool_renders_the_documented_cell():
    tool = setup_cell_tool()
    cell = tool.render_setup_cell("https://example.org/o/r")
    assert cell.splitlines() == [
        "# Setup: runs as-is locally and in CI. On Colab it first installs the `packnet` library",
        f"# of the book's release {tool.release_tag()}, with the packages the chapters use (packnet[colab]).",
        "try:",
        "    import packnet",
        "except ImportError:  # e.g. on Colab",
        '    repository = "https://example.org/o/r"',
        f'    %pip install --quiet "packnet[colab] @ git+{{repository}}@{tool.release_tag()}"',
        "    import packnet",
    ]
    with pytest.raises(ValueError):
        tool.render_setup_cell('https://x"; rm -rf /')


def test_overview_figure_is_committed():
    assert (BOOK / "figures" / "packnet_overview.png").stat().st_size > 10_000
    assert "figures/packnet_overview.png" in (BOOK / "intro.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_sidebar_numbers_the_chapters_as_their_figures_do(book_build: BookBuild):
    """_toc.yml's numbered part: chapter N (book/0N_*.ipynb) is "N." in the sidebar, the number its figures and
    exercises carry ("Figure N.1", "Exercise N.1"); the landing page and the reference pages have no number."""
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup((book_build.html / "book" / "intro.html").read_text(encoding="utf-8"), "html.parser")
    nav = soup.select_one("nav.bd-docs-nav")
    assert nav is not None, "no sidebar navigation on the landing page"
    entries = {}
    for link in nav.select("a.reference.internal"):
        href = link.get("href", "").split("#")[0]
        if href.endswith(".html"):
            entries[f"book/{Path(href).stem}"] = " ".join(link.get_text(" ").split())
    for page in toc_files()[1:]:
        assert page in entries, f"{page} is not in the sidebar: {sorted(entries)}"
        chapter = re.fullmatch(r"book/(\d\d)_\w+", page)
        number = re.match(r"(\d+(?:\.\d+)*)\.\s", entries[page])
        if chapter:
            assert number and number.group(1) == str(int(chapter.group(1))), (
                f"{page} shows as {entries[page]!r} in the sidebar, expected chapter number {int(chapter.group(1))}")
        else:
            assert not number, f"{page} is a reference page but is numbered in the sidebar: {entries[page]!r}"


NOTES_FOLD = ":::{dropdown} Show the notes"
"""How a notes cell starts: its Markdown inside a closed sphinx-design dropdown (a <details> in the page)."""


@pytest.mark.slow
def test_exercise_solutions_and_notes_render_collapsed_behind_show_toggles(book_build: BookBuild):
    """Each solution cell is in the page, folded: a closed <details> whose summary reads "Show the solution";
    each instructors' notes cell likewise behind "Show the notes"."""
    bs4 = pytest.importorskip("bs4")
    from packnet.course.coursework import exercise_role

    checked = notes_checked = 0
    for page in NOTEBOOK_PAGES:
        nb = load_notebook(ROOT / f"{page}.ipynb")
        solutions = [c for c in nb["cells"] if exercise_role(c)[1] == "solution"]
        notes = [c for c in nb["cells"] if exercise_role(c)[1] == "notes"]
        if not solutions and not notes:
            continue
        soup = bs4.BeautifulSoup((book_build.html / f"{page}.html").read_text(encoding="utf-8"), "html.parser")
        folds = [d for d in soup.find_all("details") if "Show the solution" in d.get_text(" ")]
        assert len(folds) == len(solutions), f"{page}: {len(folds)} solution toggles for {len(solutions)} solutions"
        for fold, cell in zip(folds, solutions):
            assert not fold.has_attr("open"), f"{page}: a solution is shown unfolded"
            first_code_line = source(cell).splitlines()[0]
            assert first_code_line in fold.get_text(), f"{page}: {first_code_line!r} is not inside its toggle"
        checked += bool(solutions)

        note_folds = [d for d in soup.find_all("details")
                      if d.find("summary") is not None and "Show the notes" in d.find("summary").get_text(" ")]
        assert len(note_folds) == len(notes), f"{page}: {len(note_folds)} notes toggles for {len(notes)} notes cells"
        for fold, cell in zip(note_folds, notes):
            text = source(cell)
            assert text.startswith(NOTES_FOLD + "\n"), f"{page}: a notes cell does not start with {NOTES_FOLD!r}"
            assert not fold.has_attr("open"), f"{page}: discussion notes are shown unfolded"
            first_words = " ".join(text.splitlines()[1].replace("*", "").split()[:6])
            assert first_words in " ".join(fold.get_text(" ").split()), (
                f"{page}: the notes starting {first_words!r} are not inside their toggle")
        notes_checked += len(notes)
    assert checked == 8, f"expected exercises in chapters 1-7 and 10, found them in {checked} chapters"
    assert notes_checked == 8, f"expected one notes cell in each of chapters 1-7 and 10, found {notes_checked}"
