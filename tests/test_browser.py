"""The built book, opened in a real (headless) Chromium: what a reader's browser shows.

The HTML comes from the session's book build (tests/conftest.py; the same build test_book.py checks for
warnings); it is served from 127.0.0.1 on an ephemeral port by ``http.server`` in a thread and driven with
Selenium through Debian's ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them; without them these
tests skip, or fail when ``CI`` is set: CI must really run them). For every page of the table of contents:

* it loads without errors in the browser console (uncaught exceptions, ``console.error``, failed loads of the
  book's own files). The browser reaches nothing but the local server — every other host fails to resolve —
  so failed loads of *external* resources (fonts, the thebe/widget CDNs) are expected and ignored;
* every ``<img>`` of the book's own is decoded (``naturalWidth > 0``): the chapters' figures and the logo;
* all math is typeset by MathJax, which the book ships in ``_static/mathjax`` (no CDN needed);
* a chapter's Colab and Binder launch buttons point at that chapter's notebook in the configured repository.

Screenshots of the landing page, of one chapter and of chapters 6, 8 and 10 (and of chapter 8 scrolled to Figures 8.1
and 8.4 and to its results table, chapter 6 to its capacity table) are saved in ``<build>/_build/html/_screenshots/``
(``BOOK_BUILD_DIR=/some/dir`` keeps them; README's screenshot is the landing one). A line of 88 characters fits a
code cell and an output box without a sideways scrollbar, and text outputs wrap at the page width.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from book_build import ROOT, BookBuild
from test_book import is_notebook_page, toc_files

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DRIVER_NAMES = ("chromedriver", "chromium-driver")
# The flags this environment needs (no sandbox for root, no GPU, no network services, a throw-away profile);
# --host-resolver-rules sends every host but the local server nowhere, so runs are the same with or without
# internet access and no request ever leaves the machine.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,860", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
PAGE_LOAD_TIMEOUT_S = 60
SCRIPT_TIMEOUT_S = 60
SCREENSHOT_CHAPTER = "book/01_forgetting"

PAGES = toc_files()
CHAPTERS = [page for page in PAGES if is_notebook_page(page)]


def find_browser() -> tuple[str, str]:
    """Paths of a Chromium binary and its chromedriver, or skip the test with the reason."""
    browser = os.environ.get("CHROMIUM_BINARY") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = os.environ.get("CHROMEDRIVER") or next(filter(None, map(shutil.which, DRIVER_NAMES)), None)
    if not browser or not driver:
        reason = ("no Chromium + chromedriver installed (Debian: apt-get install chromium chromium-driver; "
                  ".ci/run installs them)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)
    return browser, driver


def repository() -> dict:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return {**config["repository"], "colab_url": config["launch_buttons"]["colab_url"].rstrip("/"),
            "binderhub_url": config["launch_buttons"].get("binderhub_url", "").rstrip("/")}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """A headless Chromium driven by Selenium, with the browser console log enabled."""
    browser, driver_path = find_browser()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    drv.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    drv.set_script_timeout(SCRIPT_TIMEOUT_S)
    try:
        yield drv
    finally:
        drv.quit()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@dataclass(frozen=True)
class Site:
    """The book's HTML folder and the URL it is served at."""

    html: Path
    base: str  # "http://127.0.0.1:PORT/"

    def url(self, page: str) -> str:
        """URL of a toc page; fails the test, pointing at the build test, if the build did not make it."""
        if not (self.html / f"{page}.html").is_file():
            pytest.fail(f"{page}.html was not built: {page} is in _toc.yml, see test_book_builds_without_warnings")
        return f"{self.base}{page}.html"


@pytest.fixture(scope="module")
def site(driver, request):
    """The built HTML, served on 127.0.0.1 at an ephemeral port for as long as the module's tests run.

    The (session-scoped) build is requested only once a browser is there: without one, nothing is built."""
    book_build: BookBuild = request.getfixturevalue("book_build")
    html = book_build.html
    if not (html / "index.html").is_file():
        pytest.fail(f"the book did not build (exit {book_build.returncode}):\n{book_build.log[-4000:]}")
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield Site(html=html, base=f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def screenshots(site) -> Path:
    folder = site.html / "_screenshots"
    folder.mkdir(exist_ok=True)
    return folder


# --------------------------------------------------------------------------- helpers
def console_errors(driver, base: str) -> list[str]:
    """The console's errors since the last call, except failed loads of resources outside the book's server."""
    errors = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        message = entry["message"]
        url = message.split(" ", 1)[0]
        if entry.get("source") == "network" and url.startswith(("http://", "https://")) and not url.startswith(base):
            continue  # an external resource (font, CDN script) that this offline browser cannot reach
        errors.append(message)
    return errors


_WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
const elements = document.querySelectorAll('.math');
if (!elements.length) { done({math: 0, typeset: 0}); return; }
const count = () => ({math: elements.length,
                      typeset: Array.from(elements).filter(e => e.querySelector('mjx-container')).length,
                      mathjax: typeof window.MathJax === 'object' && !!window.MathJax.startup});
const started = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done(count()), e => done({...count(), error: String(e)}));
  } else if (Date.now() - started > 30000) {
    done(count());
  } else {
    setTimeout(poll, 100);
  }
})();
"""

_DECODE_IMAGES = """
const done = arguments[arguments.length - 1];
const base = arguments[0];
const images = Array.from(document.images);
Promise.all(images.map(img => {
  img.loading = 'eager';
  return img.decode().then(() => null, () => null).then(() => ({
    src: img.currentSrc || img.src, width: img.naturalWidth, local: (img.currentSrc || img.src).startsWith(base)}));
})).then(done);
"""


def open_page(driver, site: Site, page: str) -> dict:
    """Load a toc page (driver.get returns after the load event), let MathJax finish typesetting and return
    ``{"math": number of math elements, "typeset": how many of them hold MathJax output}``."""
    driver.get(site.url(page))
    return driver.execute_async_script(_WAIT_FOR_MATH)


def _notebook_outputs(page: str) -> list[tuple[list[str], dict]]:
    """(cell tags, output) for every output stored in the page's notebook; [] for a Markdown page."""
    path = ROOT / f"{page}.ipynb"
    if not path.is_file():
        return []
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(cell.get("metadata", {}).get("tags", []), out)
            for cell in nb.get("cells", []) for out in cell.get("outputs", [])]


def stored_figures(page: str) -> int:
    """How many PNG figures the page's notebook stores in outputs that the book renders."""
    removed = {"remove-output", "remove-cell"}
    return sum("image/png" in out.get("data", {}) for tags, out in _notebook_outputs(page) if not removed & set(tags))


def widget_outputs(page: str) -> int:
    """How many ipywidgets views the page's notebook stores (0 for Markdown pages)."""
    return sum("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for _, out in _notebook_outputs(page))


def launch_links(driver) -> dict[str, list[str]]:
    hrefs = [a.get_attribute("href") or "" for a in driver.find_elements("css selector", "a[href]")]
    return {"colab": [h for h in hrefs if "colab.research.google.com" in h],
            "binder": [h for h in hrefs if "mybinder.org" in h]}


# --------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_console_errors_and_shows_its_images(driver, site, page):
    console_errors(driver, site.base)  # drop whatever an earlier page left in the log
    math = open_page(driver, site, page)
    assert urlsplit(driver.current_url).path.endswith(f"/{page}.html"), driver.current_url
    assert driver.title, f"{page}: no title"
    assert math["typeset"] == math["math"], f"{page}: math left untypeset: {math}"

    images = driver.execute_async_script(_DECODE_IMAGES, site.base)
    broken = [img["src"] for img in images if img["local"] and not img["width"]]
    assert not broken, f"{page}: images that did not load or decode: {broken}"
    assert any("logo" in img["src"] for img in images), f"{page}: no logo in the sidebar"
    stored = stored_figures(page)
    figures = [img for img in images if img["local"] and "/_images/" in img["src"]]
    assert len(figures) >= stored, f"{page}: the notebook stores {stored} figures, the page shows {len(figures)}"

    errors = console_errors(driver, site.base)
    assert not errors, f"{page}: console errors:\n" + "\n".join(errors)


def test_math_is_typeset_by_the_bundled_mathjax(driver, site):
    """The landing page's formulas become MathJax output (``mjx-container``), with MathJax loaded locally."""
    driver.get(site.url("book/intro"))
    result = driver.execute_async_script(_WAIT_FOR_MATH)
    assert result["math"] >= 2, f"expected inline and display math on the landing page, found {result}"
    assert result["typeset"] == result["math"], f"math left untypeset: {result}"
    scripts = [s.get_attribute("src") for s in driver.find_elements("css selector", "script[src*='mathjax']")]
    assert scripts and all(src.startswith(site.base) for src in scripts), f"MathJax not from the book: {scripts}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_launch_buttons_open_this_chapter(driver, site, page):
    repo = repository()
    org_repo = urlsplit(repo["url"]).path.strip("/")
    notebook = f"{repo.get('path_to_book') or ''}{page}.ipynb".lstrip("/")
    open_page(driver, site, page)
    links = launch_links(driver)
    expected = f"{repo['colab_url']}/github/{org_repo}/blob/{repo['branch']}/{notebook}"
    assert expected in links["colab"], f"{page}: Colab link {links['colab']}, expected {expected}"
    if repo["binderhub_url"]:
        binder = [h for h in links["binder"] if h.startswith(f"{repo['binderhub_url']}/v2/gh/{org_repo}/")]
        assert binder and all(h.endswith(notebook) for h in binder), f"{page}: Binder link {links['binder']}"


def test_widget_pages_show_a_static_figure_in_place_of_each_widget(driver, site):
    """Chapters with ipywidgets (the capacity planner) load cleanly and, having no kernel, show each widget's
    static fallback instead of the widget (``nb_mime_priority_overrides`` in _config.yml): the line saying how
    to make it live (Colab, Binder, a local Jupyter) and a PNG of its initial view, decoded by the browser."""
    pages = {page: n for page in CHAPTERS if (n := widget_outputs(page))}
    if not pages:
        pytest.skip("no chapter stores ipywidgets output yet")
    for page, n in pages.items():
        console_errors(driver, site.base)
        open_page(driver, site, page)
        errors = console_errors(driver, site.base)
        assert not errors, f"{page} ({n} widget views): console errors:\n" + "\n".join(errors)
        views = driver.find_elements("css selector", 'script[type="application/vnd.jupyter.widget-view+json"]')
        assert not views, f"{page}: {len(views)} widget views rendered (an empty box without a kernel)"
        static = driver.find_elements("css selector", ".capacity-planner-static")
        assert len(static) == n, f"{page}: {n} widgets in the notebook, {len(static)} static fallbacks on the page"
        for block in static:
            text = block.text
            assert "Colab" in text and "Binder" in text and "local Jupyter" in text, text
            img = block.find_element("css selector", "img")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100


_MEASURE_CODE = """
function measure(selector) {
  const pres = Array.from(document.querySelectorAll(selector));
  if (!pres.length) return null;
  // the width of 88 characters in each box's own font, and the room inside each box (folded boxes: skipped)
  const shown = pres.filter(p => p.clientWidth > 0);
  if (!shown.length) return null;
  const fits = shown.map(p => {
    const style = getComputedStyle(p);
    const probe = document.createElement('span');
    probe.style.whiteSpace = 'pre';
    probe.textContent = 'M'.repeat(88);
    p.appendChild(probe);
    const width88 = probe.getBoundingClientRect().width;
    probe.remove();
    return {width88: width88, fontSize: style.fontSize,
            inner: p.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)};
  });
  const tightest = fits.reduce((a, b) => (b.inner - b.width88 < a.inner - a.width88 ? b : a));
  return {boxes: pres.length, shown: shown.length, fontSize: tightest.fontSize, width88: tightest.width88,
          inner: tightest.inner,
          whiteSpace: Array.from(new Set(pres.map(p => getComputedStyle(p).whiteSpace))),
          scrolling: pres.filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.textContent.slice(0, 80))};
}
return {inputs: measure('div.cell_input div.highlight pre'), outputs: measure('div.cell_output div.output pre')};
"""


@pytest.mark.parametrize("page", CHAPTERS)
def test_code_cells_and_outputs_fit_the_page_and_outputs_wrap(driver, site, page):
    """book/_static/book.css: a line of 88 characters (the book's longest code line and widest printed table)
    fits a code box and an output box at the test's window width, no code cell or output scrolls sideways,
    and printed outputs wrap (``pre-wrap``) instead."""
    open_page(driver, site, page)
    found = driver.execute_script(_MEASURE_CODE)
    for kind in ("inputs", "outputs"):
        boxes = found[kind]
        assert boxes, f"{page}: no code {kind} found (did myst-nb change its markup?)"
        assert boxes["width88"] <= boxes["inner"], f"{page}: 88 characters do not fit a code {kind} box: {boxes}"
        assert not boxes["scrolling"], f"{page}: code {kind} that scroll sideways: {boxes['scrolling']}"
    not_wrapping = [p for p in found["outputs"]["whiteSpace"] if p != "pre-wrap"]
    assert not not_wrapping, f"{page}: outputs that do not wrap: {found['outputs']}"


_SCROLL_TO_FIGURE = """
const caption = Array.from(document.querySelectorAll('strong'))
    .find(s => s.textContent.trim() === arguments[0]);
if (!caption) return false;
let cell = caption.closest('p').previousElementSibling;
while (cell && !cell.matches('div.cell')) cell = cell.previousElementSibling;
(cell?.querySelector('div.cell_output') || cell || caption).scrollIntoView();  // the figure at the top
return true;
"""

_SCROLL_TO_OUTPUT = """
const pre = Array.from(document.querySelectorAll('div.cell_output pre'))
    .find(p => p.textContent.includes(arguments[0]));
if (!pre) return false;
pre.scrollIntoView();
return true;
"""


def test_screenshots_of_the_landing_page_and_a_chapter(driver, site, screenshots):
    """Landing page (index.html redirects to it) and one chapter, as PNGs in the build folder; and the parts of
    chapters 6 and 8 that issue 12 fixed, scrolled into view: Figures 8.1 and 8.4, and the wide tables."""
    shots = {"landing.png": PAGES[0], "chapter.png": SCREENSHOT_CHAPTER,
             # the pages issue 12 fixed for readers: the capacity planner's static figure, Figures 8.1 / 8.2
             "chapter_06.png": "book/06_capacity", "chapter_08.png": "book/08_experiments",
             "chapter_10.png": "book/10_limits_and_beyond"}  # issue 14: the chapter on PackNet's limits
    for name, page in shots.items():
        if page == PAGES[0]:
            driver.get(site.base)
            assert urlsplit(driver.current_url).path.endswith(f"/{page}.html"), driver.current_url
            driver.execute_async_script(_WAIT_FOR_MATH)
        else:
            open_page(driver, site, page)
        driver.execute_async_script(_DECODE_IMAGES, site.base)
        if name == "chapter_06.png":  # scroll to the capacity planner
            driver.execute_script("document.querySelector('.capacity-planner-static')?.scrollIntoView()")
        save_screenshot(driver, screenshots / name)
    scrolled = {"chapter_08_figure_8_1.png": ("book/08_experiments", _SCROLL_TO_FIGURE, "Figure 8.1"),
                "chapter_08_figure_8_4.png": ("book/08_experiments", _SCROLL_TO_FIGURE, "Figure 8.4"),
                "chapter_08_table.png": ("book/08_experiments", _SCROLL_TO_OUTPUT, "mean forget."),
                "chapter_06_table.png": ("book/06_capacity", _SCROLL_TO_OUTPUT, "weights    free")}
    for name, (page, script, target) in scrolled.items():
        open_page(driver, site, page)
        driver.execute_async_script(_DECODE_IMAGES, site.base)
        assert driver.execute_script(script, target), f"{page}: {target!r} not found on the page"
        save_screenshot(driver, screenshots / name)
    print(f"screenshots in {screenshots}")


def save_screenshot(driver, path: Path) -> None:
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"{path}: not a real screenshot"
