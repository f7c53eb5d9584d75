"""Continual-learning metrics over an accuracy matrix.

``R[i][j]`` is the accuracy on task ``j`` after learning tasks ``0..i`` (``nan`` for ``j > i``, tasks not learned
yet). Average accuracy is the mean of the last row; *forgetting* of task ``j`` is how far its accuracy fell from
the best it ever had (Chaudhry et al., 2018); *backward transfer* is the mean change since each task was learned
(Lopez-Paz & Ranzato, 2017): negative means forgetting.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["average_accuracy", "forgetting", "backward_transfer"]

Matrix = Sequence[Sequence[float]]


def _check(R: Matrix) -> int:
    T = len(R)
    if T == 0 or any(len(row) != T for row in R):
        raise ValueError("an accuracy matrix must be square and non-empty: R[i][j] for tasks i, j")
    return T


def average_accuracy(R: Matrix) -> float:
    """Mean accuracy over all tasks after the last one is learned (the last row).

    Examples:
        >>> average_accuracy([[0.9, math.nan], [0.8, 1.0]])
        0.9
    """
    T = _check(R)
    return sum(R[-1]) / T


def forgetting(R: Matrix) -> list[float]:
    """Per task: best accuracy it had before the end minus its final accuracy (0 for the last task).

    Examples:
        >>> forgetting([[0.9, math.nan], [0.8, 1.0]])
        [0.09999999999999998, 0.0]
    """
    T = _check(R)
    return [max(R[i][j] for i in range(j, T - 1)) - R[-1][j] if j < T - 1 else 0.0 for j in range(T)]


def backward_transfer(R: Matrix) -> float:
    """Mean of ``R[T-1][j] - R[j][j]`` over the tasks before the last (0.0 for a single task).

    Examples:
        >>> round(backward_transfer([[0.9, math.nan], [0.8, 1.0]]), 6)
        -0.1
    """
    T = _check(R)
    if T == 1:
        return 0.0
    return sum(R[-1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def nan_matrix(T: int) -> list[list[float]]:
    """A ``T × T`` matrix of ``nan``, to fill row by row."""
    return [[math.nan] * T for _ in range(T)]
