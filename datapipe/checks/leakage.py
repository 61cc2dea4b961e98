"""Split leakage: duplicate groups spread over train / val / test, and its repair.

A test image whose twin is in train measures memory, not generalisation. Each leaking group is
moved whole into the split that holds most of its members (ties go to the earlier of train,
val, test), deterministically; the move is recorded, and ``original_split`` keeps the old value.
"""

from __future__ import annotations

import pandas as pd

from datapipe.checks.base import Check, DatasetFacts, flag_all
from datapipe.config import CleanParams

SPLIT_ORDER = ("train", "val", "test")


def repaired_splits(samples: pd.DataFrame) -> pd.Series:
    """The split of every row after moving each leaking duplicate group into one split."""
    split = samples["split"].copy()
    rows = samples[samples["group"].notna()]
    for _, members in rows.groupby("group"):
        counts = members["split"].value_counts()
        if len(counts) < 2:
            continue
        rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
        target = min(counts.index, key=lambda s: (-counts[s], rank.get(s, len(rank)), s))
        split[members.index] = target
    return split


def _leakage(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[samples["group"].notna()]
    spans = rows.groupby("group")["split"].transform("nunique") > 1
    rows = rows[spans]
    target = repaired_splits(samples).loc[rows.index]
    moved = target != rows["split"]
    detail = [
        f"moved {old} -> {new} with its duplicates"
        if m
        else f"duplicates were in other splits; group kept in {new}"
        for old, new, m in zip(rows["split"], target, moved, strict=True)
    ]
    return flag_all(rows.index, detail)


CHECKS = [
    Check(
        "split_leakage",
        "warning",
        "duplicate group spread over several splits; repaired by moving the group into one split",
        _leakage,
    ),
]
