"""What only the book uses: its figures, its interactive widget and the seed's sketch.

* :mod:`packnet.book.plotting` — the chapters' figures (matplotlib, imported when a figure is drawn).
* :mod:`packnet.book.widgets` — the capacity planner (ipywidgets).
* :mod:`packnet.book.seed_sketch` — the seed's buggy PackNet, kept verbatim to show what goes wrong.

Nothing in the algorithm (:mod:`packnet`) or the benchmarks (:mod:`packnet.bench`) depends on this package.
"""
