"""The book as a course: self-checking exercises and the tool that hands them out and grades them.

* :mod:`packnet.course.exercises` — ``check("3.2", fn)``: one module of checks per chapter
  (``chNN_*.py``); an exercise for chapter ``N`` goes in its ``chNN`` module.
* :mod:`packnet.course.coursework` — the student edition and the grader (``python -m packnet.coursework``).

Nothing in the algorithm (:mod:`packnet`) depends on this package.
"""
