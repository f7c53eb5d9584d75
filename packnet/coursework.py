"""``python -m packnet.coursework``: a thin hand-off to the coursework tool, :mod:`packnet.course.coursework`.

Kept under its first name so the commands in the book keep working: ``python -m packnet.coursework student
OUT_DIR`` and ``python -m packnet.coursework grade NOTEBOOK...``.
"""

import sys

from packnet.course.coursework import main

if __name__ == "__main__":
    sys.exit(main())
