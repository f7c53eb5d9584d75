"""Execute book notebooks top to bottom in place, with the installed (committed) ``packnet``, and save their outputs.

    python tools/execute_notebooks.py book/03_pruning.ipynb [more.ipynb ...] [--timeout 900]

Each notebook runs in a fresh ``python3`` kernel in its own folder (as nbval and jupyter-book run it); the first
error stops that notebook and nothing is written, unless the failing cell is tagged ``raises-exception``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
    for cell in nb.cells:  # timings of this run are not part of the book (and would churn every diff)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args()
    for path in args.notebooks:
        print(f"{path}: {execute(path, args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
