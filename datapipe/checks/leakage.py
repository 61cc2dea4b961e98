"""Split leakage: duplicate groups spread over train / val / test, and its repair.

A test image whose twin is in train measures memory, not generalisation. Each leaking group is
moved whole into the split that holds most of its members (ties go to the earlier of train,
val, test), deterministically; the move is recorded, and ``original_split`` keeps the old value.

A repair that would move ``max_leakage_share`` (0.5) or more of any split's samples is not made:
that many duplicates across splits says more about the duplicate evidence (or the data) than
about leakage, and emptying a validation split to "repair" it would be worse than the leak. The
flags then say what would have moved and which checks to inspect.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from datapipe.checks.base import Check, DatasetFacts, flag_all
from datapipe.config import CleanParams

SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class LeakageRepair:
    """The repaired split of every row, and whether the repair is within bounds."""

    split: pd.Series  # the split each row would be in after the repair
    moved: pd.Series  # bool per row: the repair moves it
    applied: bool  # False: the repair would take more than the bound from some split
    worst_split: str | None  # the split losing the largest share
    worst_share: float  # that share of its samples


def plan_leakage_repair(samples: pd.DataFrame, *, max_share: float) -> LeakageRepair:
    """Move each leaking duplicate group into one split, unless that takes ``max_share`` or
    more of any split's samples (then :attr:`LeakageRepair.applied` is False)."""
    split = samples["split"].copy()
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    rows = samples[samples["group"].notna()]
    for _, members in rows.groupby("group"):
        counts = members["split"].value_counts()
        if len(counts) < 2:
            continue
        target = min(counts.index, key=lambda s: (-counts[s], rank.get(s, len(rank)), s))
        split[members.index] = target
    moved = split != samples["split"]
    sizes = samples["split"].value_counts()
    lost = samples.loc[moved, "split"].value_counts()
    shares = (lost / sizes.reindex(lost.index)).sort_values(ascending=False)
    worst = str(shares.index[0]) if len(shares) else None
    worst_share = float(shares.iloc[0]) if len(shares) else 0.0
    return LeakageRepair(split, moved, worst_share < max_share, worst, worst_share)


def _leakage(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[samples["group"].notna()]
    spans = rows.groupby("group")["split"].transform("nunique") > 1
    rows = rows[spans]
    repair = plan_leakage_repair(samples, max_share=t.max_leakage_share)
    target = repair.split.loc[rows.index]
    moved = repair.moved.loc[rows.index]
    if not t.repair_leakage:
        held = "not moved: clean.repair_leakage is false"
    else:
        held = (
            f"not moved: the repair would move {repair.worst_share:.0%} of {repair.worst_split} "
            f"(clean.max_leakage_share {t.max_leakage_share:g}); inspect the near_duplicate and "
            "exact_duplicate flags (clean.near_duplicate_similarity, near_duplicate_margin)"
        )
    applied = t.repair_leakage and repair.applied
    detail = [
        (f"moved {old} -> {new} with its duplicates" if applied else f"{held}; would move "
         f"{old} -> {new}") if m else f"duplicates were in other splits; group kept in {new}"
        for old, new, m in zip(rows["split"], target, moved, strict=True)
    ]  # fmt: skip
    return flag_all(rows.index, detail)


CHECKS = [
    Check(
        "split_leakage",
        "warning",
        "duplicate group spread over several splits; repaired by moving the group into one split",
        _leakage,
    ),
]
