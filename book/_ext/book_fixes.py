"""Local Sphinx extension of the book (``_config.yml``: ``sphinx: local_extensions``): fixes for bugs of the pinned
toolchain that show up in a reader's browser. Each is a no-op once the upstream fix is installed.

* **Inline scripts included twice** (Sphinx < 8.2.3, and jupyter-book 1.x pins Sphinx 7): an inline script that an
  extension adds with ``app.add_js_file(None, body=...)`` after the HTML builder started is registered once as
  ``None`` and again as ``''``, so it lands twice in every page's ``<head>``. sphinx-thebe's
  ``const THEBE_JS_URL = ...`` then throws ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared`` on
  every page. Upstream fix: sphinx-doc/sphinx#13402 (pass ``filename or ''`` to the builder), applied here.

``tests/test_browser.py`` checks that no page logs a console error.
"""

from __future__ import annotations


def _dedupe_inline_scripts() -> None:
    from sphinx.builders.html import StandaloneHTMLBuilder

    original = StandaloneHTMLBuilder.add_js_file
    if getattr(original, "_book_none_is_empty", False):
        return

    def add_js_file(self, filename, **kwargs):
        return original(self, filename or "", **kwargs)

    add_js_file._book_none_is_empty = True
    add_js_file.__doc__ = original.__doc__
    StandaloneHTMLBuilder.add_js_file = add_js_file


def setup(app):
    _dedupe_inline_scripts()
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
