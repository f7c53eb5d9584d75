"""pytest configuration for the book's notebooks, checked by nbval (``pytest`` runs it; see pyproject.toml).

nbval re-executes every code cell and compares the new outputs with the stored ones, output key by output key:
each MIME type of a ``display_data``/``execute_result`` and, for a stream, the *stream name* (nbval rewrites a
stream output as ``{"output_type": "stream", "<name>": text}`` before comparing, after merging all outputs of the
same stream and resolving ``\\r``/``\\b``). Keys listed in the collector's ``skip_compare`` are dropped on both
sides. nbval's own defaults skip ``metadata``, ``traceback``, ``execution_count``, ``output_type``, ``name``,
``application/vnd.jupyter.widget-view+json`` and the images ``image/png`` / ``image/jpeg``; ``stderr`` *is*
compared by default. We add:

* ``stderr`` -- tqdm draws its bars on stderr, with elapsed times, rates and a redraw schedule that depends on
  the clock, and libraries print version-dependent warnings there. None of it is the book's content, so it is
  not compared (``stdout``, ``text/plain`` and errors still are). Note that because the key is dropped on both
  sides, a cell may gain or lose stderr output without failing.
* ``text/html`` -- rich reprs (widgets, tqdm.notebook, some DataFrame styling) embed random ids; the
  ``text/plain`` twin of the same output is still compared.
* ``application/javascript``, ``application/vnd.jupyter.widget-state+json`` -- widget/JS payloads with random ids.
* ``image/svg+xml`` -- matplotlib's SVGs carry random clip-path ids; like PNGs they are not compared.
* ``application/vnd.jupyter.widget-view+json`` -- already nbval's default; listed so the intent survives an
  nbval change.

One nbval bug is worked around here: nbval 0.10+ sends each cell with ``store_history=False``, and IPython only
honours a trailing ``;`` (``plt.plot(x);``) for inputs stored in its history (nbval issue #194, IPython issue
#14162), so under nbval such a cell suddenly shows its ``execute_result`` and fails against the notebook saved
from Jupyter. :func:`_execute_cells_like_jupyter` makes nbval send cells the way Jupyter does
(``store_history=True``); the execution count nbval then sees is not compared anyway. The patch is applied only
when a notebook is collected, and only while nbval still has the bug.

The other rule of thumb (checked by tests/test_book.py): notebooks use plain ``tqdm`` (stderr text), never
``tqdm.notebook``/``tqdm.auto`` (widgets). Run-to-run noise that lands in compared outputs (timings, addresses,
temp paths) is handled by the regexes in book/sanitize.cfg.

This file is also imported by ``--doctest-modules`` collection: keep it free of side effects and heavy imports.
"""

from __future__ import annotations

UNSTABLE_OUTPUT_KEYS = (
    "stderr",
    "text/html",
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
    "image/svg+xml",
)
"""Output keys (MIME types, or a stream's name) that nbval must not compare in the book's notebooks."""


def _execute_cells_like_jupyter() -> None:
    """Make nbval execute cells with ``store_history=True``, as Jupyter does, so a trailing ``;`` hides output."""
    import inspect

    from nbval.kernel import RunningKernel

    original = RunningKernel.execute_cell_input
    if getattr(original, "_book_store_history", False):
        return
    try:
        buggy = "store_history=False" in inspect.getsource(original)
    except (OSError, TypeError):
        buggy = False
    if not buggy:  # fixed upstream, or changed beyond recognition: leave nbval alone
        return

    def execute_cell_input(self, cell_input, allow_stdin=None):
        return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)

    execute_cell_input._book_store_history = True
    execute_cell_input.__doc__ = original.__doc__
    RunningKernel.execute_cell_input = execute_cell_input


def pytest_collectstart(collector):
    """For every notebook nbval collects: extend its ``skip_compare``, and fix the trailing-``;`` handling."""
    path = getattr(collector, "path", None)
    skip = getattr(collector, "skip_compare", None)
    if path is None or path.suffix != ".ipynb" or skip is None:
        return
    collector.skip_compare = tuple(skip) + tuple(k for k in UNSTABLE_OUTPUT_KEYS if k not in skip)
    _execute_cells_like_jupyter()
