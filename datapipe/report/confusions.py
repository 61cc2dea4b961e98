"""What the out-of-fold confusion says in words: the class pairs the model confuses most, and
(segmentation) per class, the pixels it labels otherwise and which class it suggests instead.

Both read ``plots/oof_confusion.csv`` (``actual, predicted`` rows: one per sample for
classification; for segmentation a pixel sample, each row a fixed share of the labelled pixels)
and, for the per-class images, ``reports/hard_examples.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _counts(rows: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Given (rows) x predicted (columns) counts over the known classes, then any others."""
    actual, predicted = rows["actual"].astype(str), rows["predicted"].astype(str)
    seen = set(actual) | set(predicted)
    labels = [c for c in classes if c in seen] + sorted(seen - set(classes))
    return pd.crosstab(actual, predicted).reindex(index=labels, columns=labels, fill_value=0)


def confused_pairs(
    rows: pd.DataFrame, *, classes: Sequence[str] = (), pixels: bool = False, top: int = 10
) -> pd.DataFrame:
    """The ``top`` (given, predicted) pairs with ``given != predicted``, most often first.

    Columns: ``given``, ``model says``, then ``samples`` and ``% of given`` (classification),
    or ``% of labelled pixels`` and ``% of given`` (``pixels``: rows are a pixel sample).
    """
    counts = _counts(rows, classes)
    n = counts.to_numpy(np.int64)
    total = max(1, int(n.sum()))
    per_given = np.maximum(n.sum(axis=1), 1)
    found = [
        (counts.index[i], counts.columns[j], int(n[i, j]), 100 * n[i, j] / per_given[i])
        for i in range(len(n))
        for j in range(len(n))
        if i != j and n[i, j] > 0
    ]
    found.sort(key=lambda r: (-r[2], r[0], r[1]))
    frame = pd.DataFrame(found[:top], columns=["given", "model says", "samples", "% of given"])
    if pixels:
        share = (100 * frame["samples"] / total).round(2)
        frame = frame.drop(columns="samples").assign(**{"% of labelled pixels": share})
        frame = frame[["given", "model says", "% of labelled pixels", "% of given"]]
    return frame.assign(**{"% of given": frame["% of given"].round(1)})


def segmentation_breakdown(
    rows: pd.DataFrame, hard: pd.DataFrame | None, *, classes: Sequence[str] = ()
) -> pd.DataFrame:
    """Per class: its share of the labelled pixels; the share of its pixels the model labels
    otherwise (missed) and the class it suggests for most of them; the share of the pixels the
    model calls this class that are labelled otherwise (false alarms) and their commonest given
    class; and the images where the class is a hard positive / hard negative."""
    counts = _counts(rows, classes)
    n = counts.to_numpy(np.int64).astype(np.float64)
    labels = list(counts.index)
    off = n.copy()
    np.fill_diagonal(off, 0)
    given, called = n.sum(axis=1), n.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        missed = np.where(given > 0, off.sum(axis=1) / given, np.nan)
        false_alarm = np.where(called > 0, off.sum(axis=0) / called, np.nan)
    frame = pd.DataFrame(
        {
            "class": labels,
            "% of labelled pixels": (100 * given / max(1.0, n.sum())).round(2),
            "% missed": (100 * missed).round(1),
            "model suggests": [_top(off[i], labels) for i in range(len(labels))],
            "% false alarm": (100 * false_alarm).round(1),
            "labelled as": [_top(off[:, j], labels) for j in range(len(labels))],
        }
    )
    if hard is not None and {"class", "role", "difficulty"} <= set(hard.columns):
        hard_rows = hard[hard["difficulty"].astype(str) == "hard"]
        for role, column in (("positive", "hard positive images"),
                             ("negative", "hard negative images")):  # fmt: skip
            per = hard_rows[hard_rows["role"] == role].groupby(hard_rows["class"].astype(str))
            frame[column] = frame["class"].map(per.size()).fillna(0).astype(int)
    return frame


def _top(values: np.ndarray, labels: Sequence[str]) -> str:
    """The label of the largest positive value ('' when none)."""
    return str(labels[int(values.argmax())]) if len(values) and values.max() > 0 else ""
