"""Re-run the book's notebooks under nbval as other machines would run them, one setting after another.

    python tools/nbval_machines.py                         # every notebook, every setting below
    python tools/nbval_machines.py book/09_*.ipynb --settings default omp1 avx2
    python tools/nbval_machines.py --list                  # the settings and what each one sets

A trained number depends on more than the seed: torch and oneDNN choose their SIMD kernels from the CPU
(AVX-512, AVX2, SSE4.1, ...) and split reductions by the number of threads, so the same notebook can compute a
slightly different network on another machine; at a tiny training budget "slightly" can be ten points. CI runs
the plain ``pytest`` on one machine. This script simulates the others on this one:

* ``OMP_NUM_THREADS`` changes how many threads torch uses (reductions are split differently);
* ``ONEDNN_MAX_CPU_ISA`` caps the instruction set oneDNN (convolutions, matrix products) may use;
* ``ATEN_CPU_CAPABILITY`` caps the instruction set of torch's own vectorised kernels (``default`` = no SIMD
  beyond the compiler's baseline).

Each setting runs ``pytest --nbval`` (with the project's own configuration from pyproject.toml) on the given
notebooks in a fresh process, and the script prints one line per setting and a summary; the exit code is 0 only
if every setting passed. Nothing is written into the repository (pytest's cache is off). Expect about as long
per setting as the notebooks take under the plain ``pytest``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "omp1": {"OMP_NUM_THREADS": "1"},
    "omp3": {"OMP_NUM_THREADS": "3"},
    "omp4": {"OMP_NUM_THREADS": "4"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
}
"""Name -> environment variables set for that run (on top of the current environment)."""

DEFAULT_SETTINGS = ("default", "omp1", "omp3", "avx2", "sse41")


def run_setting(name: str, notebooks: list[str], extra: list[str]) -> tuple[bool, float, str]:
    """Run nbval on ``notebooks`` under setting ``name``; return (passed, seconds, pytest's last line)."""
    env = {**os.environ, **SETTINGS[name]}
    command = [sys.executable, "-m", "pytest", *notebooks, "-q", "-p", "no:cacheprovider", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failures = [line for line in lines if line.startswith("FAILED")]
    summary = "; ".join(failures + lines[-1:]) if lines else done.stderr.strip()[-300:]
    return done.returncode == 0, seconds, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to check (default: every book/*.ipynb)")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(DEFAULT_SETTINGS),
                        help=f"which settings to run (default: {' '.join(DEFAULT_SETTINGS)})")
    parser.add_argument("--list", action="store_true", help="print the settings and exit")
    parser.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[],
                        help="further arguments for pytest (everything after this flag)")
    args = parser.parse_args(argv)
    if args.list:
        for name, env in SETTINGS.items():
            print(f"{name:<14}{' '.join(f'{k}={v}' for k, v in env.items()) or '(the environment as it is)'}")
        return 0
    notebooks = args.notebooks or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "book").glob("*.ipynb"))
    results = []
    for name in args.settings:
        passed, seconds, summary = run_setting(name, notebooks, args.pytest_args)
        results.append(passed)
        env = " ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "as is"
        print(f"{'PASS' if passed else 'FAIL'}  {name:<13} ({env}, {seconds:.0f} s): {summary}", flush=True)
    print(f"{sum(results)} of {len(results)} settings passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
