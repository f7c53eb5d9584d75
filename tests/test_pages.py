"""The book's Markdown pages that readers act on: the Quick tour's code runs, the landing page leads everywhere.

* ``book/quick_tour.md``: its ```` ```python ```` blocks run in order in one namespace (as a reader pasting them
  into one session would), in a temporary folder; where a ```` ```text ```` block follows a Python block, it is
  exactly what that block prints. Its shell lines ``python -m packnet ...`` parse with the command line's own
  parser. So the page cannot drift from the library.
* ``book/intro.md``: it links every page of ``_toc.yml``, gives every chapter its running time (the same as
  ``book/instructors.md`` where that lists it), and describes what nbval checks correctly.
* ``book/glossary.md``: the library's facts it states (owner values, the task limit, the policies).
* The new pages' code lines fit the page (88 characters, the width the book's code cells show without a
  scrollbar).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from test_book import is_notebook_page, toc_files

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
QUICK_TOUR = BOOK / "quick_tour.md"
GLOSSARY = BOOK / "glossary.md"
INTRO = BOOK / "intro.md"
INSTRUCTORS = BOOK / "instructors.md"
MAX_CODE_LINE = 88

_FENCE = re.compile(r"^```([\w{}-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    """One fenced code block of a Markdown page: its language, code, first code line (1-based) and, for a
    Python block, the ``text`` block right after it (its expected output), if there is one."""

    lang: str
    code: str
    line: int
    expected: Optional[str] = None


def code_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, in order; a ``text`` block directly after a ``python`` one is attached to it."""
    text = path.read_text(encoding="utf-8")
    blocks: list[Block] = []
    previous_end = None
    for match in _FENCE.finditer(text):
        lang, code = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start(2)) + 1
        follows = previous_end is not None and not text[previous_end:match.start()].strip()
        if lang == "text" and follows and blocks and blocks[-1].lang == "python" and blocks[-1].expected is None:
            blocks[-1].expected = code
        else:
            blocks.append(Block(lang, code, line))
        previous_end = match.end()
    return blocks


def test_code_blocks_parser():
    page = "x\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n```bash\nls\n```\n"
    path = Path(__file__)  # any file; patch its text in through a temporary copy
    del path
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / "page.md"
        md.write_text(page, encoding="utf-8")
        blocks = code_blocks(md)
    assert [(b.lang, b.code, b.line, b.expected) for b in blocks] == [
        ("python", "print(1)\n", 4, "1\n"), ("bash", "ls\n", 12, None)]


# --------------------------------------------------------------------------- the Quick tour
def test_quick_tour_code_runs_in_order_and_prints_what_the_page_shows(tmp_path, monkeypatch):
    """Every Python block of the Quick tour, in order, in one namespace, with a single thread (the tiny models
    run fastest so, and the result does not depend on the machine's core count); printed output compared
    exactly where the page shows it."""
    torch = pytest.importorskip("torch")
    blocks = [b for b in code_blocks(QUICK_TOUR) if b.lang == "python"]
    assert len(blocks) >= 8, f"the Quick tour lost its code: {len(blocks)} Python blocks"
    assert sum(b.expected is not None for b in blocks) >= 5, "the Quick tour shows too few outputs"
    monkeypatch.chdir(tmp_path)  # the checkpoint it saves lands here
    namespace: dict = {"__name__": "quick_tour"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for block in blocks:
            where = f"{QUICK_TOUR.relative_to(ROOT)}, the block at line {block.line}"
            # Leading newlines make a traceback's line numbers the page's own.
            code = compile("\n" * (block.line - 1) + block.code, str(QUICK_TOUR), "exec")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(code, namespace)  # noqa: S102 - the page's own code, which is the point
            if block.expected is not None:
                assert out.getvalue() == block.expected, (
                    f"{where} prints\n{out.getvalue()}\nbut the page shows\n{block.expected}")
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "packnet.pt").is_file()


def _command_line_parser():
    try:
        from packnet.bench.cli import build_parser
    except ImportError:  # before the benchmarks moved into packnet.bench
        from packnet.__main__ import build_parser
    return build_parser()


def test_quick_tour_command_lines_are_valid():
    """Each ``python -m packnet ...`` line parses with the real command-line parser (``--help`` exits 0)."""
    parser = _command_line_parser()
    commands = []
    for block in code_blocks(QUICK_TOUR):
        if block.lang != "bash":
            continue
        for line in block.code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:3] == ["python", "-m", "packnet"]:
                commands.append(words[3:])
    assert len(commands) >= 3, "the Quick tour shows no `python -m packnet` commands"
    for args in commands:
        if "--help" in args:
            with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(args)
            assert exit_info.value.code == 0
        else:
            parser.parse_args(args)  # argparse exits with status 2 on an unknown option or value


def test_quick_tour_shows_the_api_it_promises():
    text = QUICK_TOUR.read_text(encoding="utf-8")
    for needed in ("with pn.task(", "pn.train_task(", "pn.prune(", "pn.retrain(", "pn.freeze(", "pn.evaluate(",
                   "pn.capacity()", "state_dict()", "load_state_dict(", "weights_only=True", "python -m packnet --json",
                   "prune_ratio=[", 'pruning="global"', 'shared_policy="per_task"', "exclude=", "optimizer=",
                   "amp=True"):
        assert needed in text, f"the Quick tour no longer shows {needed!r}"


# --------------------------------------------------------------------------- the landing page
def _linked_pages(page: Path) -> set[str]:
    """Toc-style paths (``book/name``) of the pages a Markdown page links with {doc} or a relative link."""
    text = page.read_text(encoding="utf-8")
    targets = re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text)
    targets += re.findall(r"\]\(([\w./-]+?)\.(?:md|ipynb)(?:#[^)]*)?\)", text)
    return {f"book/{Path(t).as_posix()}" for t in targets}


def test_the_landing_page_leads_to_every_page():
    root, *pages = toc_files()
    assert root == "book/intro"
    missing = [page for page in pages if page not in _linked_pages(INTRO)]
    assert not missing, f"book/intro.md does not link {missing}"


def _running_times_in_instructors() -> dict[str, str]:
    """``{"book/01_forgetting": "about 1 min", ...}`` from the instructors' table (its "(runs in ...)" column)."""
    times = {}
    for line in INSTRUCTORS.read_text(encoding="utf-8").splitlines():
        link = re.search(r"\]\((\d\d_\w+)\.ipynb\)", line)
        run = re.search(r"\((?:runs in )?((?:about|under) [\d.]+ min)\)", line)
        if line.startswith("|") and link and run:
            times[f"book/{link.group(1)}"] = run.group(1)
    return times


def test_the_landing_page_gives_every_chapter_its_running_time():
    rows = {}
    for line in INTRO.read_text(encoding="utf-8").splitlines():
        link = re.search(r"\{doc\}`[^`<]*<(\d\d_\w+)>`", line)
        if line.startswith("|") and link:
            rows[f"book/{link.group(1)}"] = line
    chapters = [page for page in toc_files() if is_notebook_page(page)]
    assert sorted(rows) == sorted(chapters), "the landing page's chapter table must list every chapter once"
    instructors = _running_times_in_instructors()
    assert len(instructors) >= 7, f"could not read the running times in book/instructors.md: {instructors}"
    for page in chapters:
        time = re.search(r"\|\s*((?:about|under) [\d.]+ min)\s*\|\s*$", rows[page])
        assert time, f"the landing page gives no running time for {page}: {rows[page]!r}"
        if page in instructors:
            assert time.group(1) == instructors[page], (
                f"{page}: {time.group(1)!r} on the landing page, {instructors[page]!r} in book/instructors.md")
    assert "2-core" in INTRO.read_text(encoding="utf-8"), "say which machine the times are for"


def test_the_landing_page_says_what_nbval_compares():
    text = " ".join(INTRO.read_text(encoding="utf-8").split())
    assert "nbval-ignore-output" in text
    assert "compares each cell's output" not in text  # the old, wrong claim
    notebooks = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
    import json

    tagged = sum("nbval-ignore-output" in cell.get("metadata", {}).get("tags", [])
                 for path in notebooks for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])
    assert tagged, "no cell is tagged nbval-ignore-output any more: update the landing page"


# --------------------------------------------------------------------------- the glossary
def test_the_glossary_states_the_library_facts():
    import packnet
    from packnet import masks
    from packnet.packnet import SHARED_POLICIES

    text = " ".join(GLOSSARY.read_text(encoding="utf-8").split())
    assert masks.FREE == 0 and "`packnet.masks.FREE`" in text
    assert masks.MAX_TASKS == 255 and "at most 255 tasks" in text
    for policy in SHARED_POLICIES:
        assert f'`"{policy}"`' in text, f"the glossary does not explain shared_policy={policy!r}"
    for cls in packnet.DEFAULT_PRUNABLE:
        assert cls.__name__.rstrip("123d") in text
    for term in ("owner value", "free weight", "candidate weight", "owned weight", "visible weight",
                 "trainable weight", "prunable parameter", "shared parameter", "head", "buffer", "prune ratio",
                 "accuracy matrix", "average accuracy", "forgetting", "backward transfer", "shared_policy",
                 "task view", "the seed's sketch"):
        assert re.search(rf"^{re.escape(term)}$", GLOSSARY.read_text(encoding="utf-8"), re.MULTILINE), (
            f"the glossary has no entry {term!r}")


# --------------------------------------------------------------------------- code that fits the page
@pytest.mark.parametrize("page", [QUICK_TOUR, GLOSSARY, INTRO], ids=lambda p: p.name)
def test_code_lines_fit_the_page(page):
    """Code and output blocks only: a ```{directive} block (figure, glossary) is prose, and wraps."""
    blocks = [block for block in code_blocks(page) if not block.lang.startswith("{")]
    long = [(block.line + i, line) for block in blocks for i, line in enumerate(block.code.splitlines())
            if len(line) > MAX_CODE_LINE]
    long += [(None, line) for block in blocks if block.expected
             for line in block.expected.splitlines() if len(line) > MAX_CODE_LINE]
    assert not long, f"{page.name}: code lines longer than {MAX_CODE_LINE} characters: {long}"
