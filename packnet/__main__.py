"""``python -m packnet``: a thin hand-off to the experiment runner's command line, :mod:`packnet.bench.cli`.

The algorithm (this package's top-level modules) never imports the benchmarks; only this entry point does.
"""

import sys

from packnet.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
