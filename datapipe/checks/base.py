"""What a check is: a named function from the measured samples to scores and flags.

A check receives the table of samples (manifest columns + the measurements of
:mod:`datapipe.checks.features` + duplicate groups) and returns, for the rows it judges, a
``score`` in ``[0, 1]`` (lower = worse), a ``flagged`` boolean and a human ``detail``; it may
also give a per-row ``severity`` (otherwise the check's own) and a ``group``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from datapipe import tasks
from datapipe.config import CleanParams
from datapipe.tasks import Task, TaskModule

Severity = Literal["error", "warning", "info"]
RESULT_COLUMNS = ("score", "flagged", "detail")


@dataclass(frozen=True)
class DatasetFacts:
    """What "normal" means for this dataset, decided once before the checks run."""

    task: Task
    channels: int | None  # the majority channel count
    dtype: str | None  # the majority dtype
    dtype_share: Mapping[str, float]  # share of readable images per dtype
    class_values: Sequence[int]
    ignore_index: int

    @property
    def kind(self) -> TaskModule:
        """The task's module: what a sample's target is."""
        return tasks.get(self.task)


CheckFn = Callable[[pd.DataFrame, DatasetFacts, CleanParams], pd.DataFrame]


@dataclass(frozen=True)
class Check:
    name: str
    severity: Severity
    description: str
    run: CheckFn


#: a check's explanation of its flags: one string per row, or a function of the flagged mask
#: that gives the flagged rows' strings (the others are never read, so they need no text)
Detail = Sequence[str] | pd.Series | np.ndarray | Callable[[np.ndarray], Sequence[str]]


def result(
    index: pd.Index,
    score: np.ndarray | pd.Series,
    flagged: np.ndarray | pd.Series,
    detail: Detail,
) -> pd.DataFrame:
    """A check's answer for the rows in ``index``; with ``detail`` a function, only the flagged
    rows are explained ("" elsewhere)."""
    flagged = np.asarray(flagged, dtype=bool)
    if callable(detail):
        text = np.full(len(index), "", dtype=object)
        text[flagged] = list(detail(flagged))
        detail = text
    return pd.DataFrame(
        {
            "score": np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0),
            "flagged": flagged,
            "detail": list(detail),
        },
        index=index,
    )


def flag_all(
    index: pd.Index,
    detail: Sequence[str] | pd.Series,
    score: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """A check's answer when every row it returns is flagged (duplicates, leakage)."""
    return result(
        index, np.zeros(len(index)) if score is None else score, np.ones(len(index), bool), detail
    )


def no_result() -> pd.DataFrame:
    """The answer of a check that does not apply to this dataset (e.g. mask checks)."""
    return result(pd.Index([]), np.empty(0), np.empty(0, bool), [])


def score_above(value: np.ndarray | pd.Series, threshold: float) -> np.ndarray:
    """Score for "more is worse": 1 at 0, 0.5 at ``threshold``, towards 0 beyond."""
    return np.power(0.5, np.asarray(value, np.float64) / threshold)


def score_below(value: np.ndarray | pd.Series, threshold: float) -> np.ndarray:
    """Score for "less is worse": 0 at 0, 0.5 at ``threshold``, towards 1 beyond."""
    return 1.0 - np.power(0.5, np.asarray(value, np.float64) / threshold)


def robust_z(values: ArrayLike) -> np.ndarray:
    """``(x - median) / (1.4826 * MAD)``: a z-score that a few outliers cannot drag along.

    NaNs are left out of the median and MAD (and stay NaN). A dataset whose values barely vary
    (MAD 0) gets z = 0 everywhere, not infinities.
    """
    x = np.asarray(values, np.float64)
    known = x[~np.isnan(x)]
    if not known.size:
        return np.zeros_like(x)
    median = np.median(known)
    mad = 1.4826 * np.median(np.abs(known - median))
    if not np.isfinite(mad) or mad <= 1e-12:
        return np.zeros_like(x)
    return (x - median) / mad
