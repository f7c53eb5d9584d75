"""Self-checking exercises for the book's chapters: ``check("3.2", layer_prune_mask)``.

Each chapter notebook ends with exercises. A coding exercise asks for one function the library already has
(the per-layer pruning mask, gradient masking that survives AdamW, the capacity formula, a task-switch
context, ...); :func:`check` runs the student's function and the library's reference on random cases and
prints a precise, friendly message at the first disagreement: what was expected, what came back, a hint.

>>> from packnet.course.exercises import check
>>> import packnet
>>> check("3.1", packnet.num_to_prune)
✓ Exercise 3.1 (num_to_prune) passed: 72 cases agree with packnet.num_to_prune.

The exercises of chapter ``N`` live in ``packnet/course/exercises/chNN_*.py`` (importing this package registers them
all); :mod:`packnet.course.coursework` turns the book's notebooks into a student edition and grades submissions with
:func:`run_check`.
"""

from __future__ import annotations

from . import checking  # noqa: F401  (packnet.course.exercises.checking: the helpers for writing checkers)
from .checking import EXERCISES  # noqa: F401  (the registry, documented in packnet.course.exercises.checking)
from .checking import CheckResult, Exercise, ExerciseFailed, check, exercises_of_chapter, run_check

CHAPTER_MODULES = ("ch01_forgetting", "ch02_free_weights", "ch03_pruning", "ch04_retrain_freeze",
                   "ch05_inference", "ch06_capacity", "ch07_pipeline", "ch10_limits")
"""The modules that register each chapter's exercises, in chapter order."""

import importlib as _importlib

for _name in CHAPTER_MODULES:
    _importlib.import_module(f"{__name__}.{_name}")

__all__ = ["check", "run_check", "exercises_of_chapter", "Exercise", "ExerciseFailed", "CheckResult",
           "CHAPTER_MODULES"]
