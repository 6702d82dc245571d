"""Class-incremental metrics of one run's accuracy matrix (pure functions of numbers, no files).

Notation (the README, "Evaluation and the report"): T tasks; ``R[i][j]`` is the accuracy on task j's test classes after
training task i (only j <= i exists; the cells above the diagonal are NaN). ``A_i`` is the accuracy on
the test data of all classes seen up to task i, after task i (a row's ``acc_seen``, sample-weighted:
``A_i = sum_{j<=i} n_j R[i][j] / sum_{j<=i} n_j`` with ``n_j`` test samples in task j).

- Average accuracy (iCaRL, Rebuffi et al. 2017):   ``AvgAcc = 1/T sum_{i=0}^{T-1} A_i``
- Last accuracy:                                    ``LastAcc = A_{T-1}``
- Average forgetting (Chaudhry et al. 2018):        ``f_j = max_{l in [j, T-2]} R[l][j] - R[T-1][j]`` for
  j < T-1, ``F = 1/(T-1) sum_j f_j``. Not clipped: a task that ends better than it ever was gets f_j < 0.
- Backward transfer (Lopez-Paz & Ranzato 2017):     ``BWT = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])``

T = 1: forgetting and BWT are ``None`` (JSON null): with no earlier task there is nothing that could be
forgotten, and 0 would read as "measured, no forgetting". AvgAcc = LastAcc = A_0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from pipeline.report.rows import EvalRow


def accuracy_matrix(rows: Sequence[EvalRow]) -> np.ndarray:
    """``R`` (T x T) from the rows of one run ordered by task; NaN above the diagonal."""
    n = len(rows)
    R = np.full((n, n), np.nan)
    for i, row in enumerate(rows):
        R[i, : i + 1] = row.acc_per_task
    return R


def _check_matrix(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got shape {R.shape}")
    if not np.all(np.isfinite(R[np.tril_indices(R.shape[0])])):
        raise ValueError("accuracy matrix has NaN/inf on or below the diagonal")
    return R


def average_accuracy(acc_seen: Sequence[float]) -> float:
    """iCaRL average incremental accuracy: ``1/T sum_i A_i``."""
    return float(np.mean(np.asarray(acc_seen, dtype=float)))


def last_accuracy(acc_seen: Sequence[float]) -> float:
    """``A_{T-1}``: accuracy on all classes after the last task."""
    return float(acc_seen[-1])


def forgetting_per_task(R: np.ndarray) -> np.ndarray:
    """Chaudhry et al. 2018: ``f_j = max_{l in [j, T-2]} R[l][j] - R[T-1][j]`` for j = 0..T-2 (shape (T-1,))."""
    R = _check_matrix(R)
    T = R.shape[0]
    return np.array([R[j : T - 1, j].max() - R[T - 1, j] for j in range(T - 1)])


def average_forgetting(R: np.ndarray) -> Optional[float]:
    """Mean of :func:`forgetting_per_task`; ``None`` when T = 1 (no earlier task to forget)."""
    f = forgetting_per_task(R)
    return float(f.mean()) if f.size else None


def bwt_per_task(R: np.ndarray) -> np.ndarray:
    """``R[T-1][j] - R[j][j]`` for j = 0..T-2 (shape (T-1,)): how much task j gained (>0) or lost (<0)."""
    R = _check_matrix(R)
    T = R.shape[0]
    return np.array([R[T - 1, j] - R[j, j] for j in range(T - 1)])


def backward_transfer(R: np.ndarray) -> Optional[float]:
    """Lopez-Paz & Ranzato 2017 BWT, the mean of :func:`bwt_per_task`; ``None`` when T = 1."""
    b = bwt_per_task(R)
    return float(b.mean()) if b.size else None


def final_task_accuracies(R: np.ndarray) -> np.ndarray:
    """``R[T-1][j]`` for every task j: the per-task accuracy of the final model (shape (T,))."""
    return _check_matrix(R)[-1].copy()
