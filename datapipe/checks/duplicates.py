"""Duplicates: the same picture twice, exactly (pixels) or nearly (perceptual hash).

Groups join both relations, so an exact copy, its re-saved TIFF and its 8-bit twin form one
group. A group whose members carry different labels (or masks) is a strong sign that one of
them is mislabelled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.sparse.csgraph import connected_components

from datapipe.checks.base import Check, DatasetFacts, result, score_below
from datapipe.checks.hashing import hamming
from datapipe.checks.integrity import readable
from datapipe.checks.near_duplicates import near_duplicate_pairs
from datapipe.config import CleanParams

GROUP_COLUMNS = ("group", "nearest", "nearest_distance")


def add_duplicate_groups(samples: pd.DataFrame, *, max_distance: int) -> pd.DataFrame:
    """``samples`` with ``group`` (duplicate group id, <NA> alone), ``nearest`` (the image of the
    perceptually closest other member) and ``nearest_distance`` (bits of 64)."""
    out = samples.copy()
    out["group"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["nearest"] = pd.array([None] * len(out), dtype=object)
    out["nearest_distance"] = pd.array([pd.NA] * len(out), dtype="Int64")
    rows = out[readable(out) & out["pixel_hash"].notna()]
    if len(rows) < 2:
        return out
    component = _components(rows, max_distance)
    sizes = np.bincount(component)
    in_group = sizes[component] > 1
    _, first = np.unique(component[in_group], return_index=True)
    order = {c: rank for rank, c in enumerate(component[in_group][np.sort(first)])}
    group_ids = np.array([order.get(c, -1) for c in component])
    out.loc[rows.index[in_group], "group"] = group_ids[in_group]
    phash = rows["phash"].to_numpy(np.uint64)
    images = rows["image"].to_numpy()
    for members in pd.Series(np.arange(len(rows))[in_group]).groupby(group_ids[in_group]):
        idx = members[1].to_numpy()
        dist = hamming(phash[idx][:, None], phash[idx][None, :]).astype(np.int64)
        np.fill_diagonal(dist, np.iinfo(np.int64).max)
        nearest = dist.argmin(axis=1)
        out.loc[rows.index[idx], "nearest"] = images[idx[nearest]]
        out.loc[rows.index[idx], "nearest_distance"] = dist[np.arange(len(idx)), nearest]
    return out


def _components(rows: pd.DataFrame, max_distance: int) -> np.ndarray:
    """Connected components of "same pixels" or "perceptual hashes within max_distance"."""
    n = len(rows)
    positions = np.arange(n)
    codes = pd.factorize(rows["pixel_hash"])[0]
    first_of_code = pd.Series(positions).groupby(codes).transform("min").to_numpy()
    edges = [np.stack([positions, first_of_code], axis=1)]
    # Constant images all hash to 0; they can only be exact duplicates.
    varied = positions[(rows["value_range"] > 0).to_numpy()]
    if len(varied) > 1:
        unique, inverse = np.unique(rows["phash"].to_numpy(np.uint64)[varied], return_inverse=True)
        representative = np.empty(len(unique), np.int64)
        representative[inverse[::-1]] = varied[::-1]  # first row holding each hash
        pairs = near_duplicate_pairs(unique, max_distance=max_distance)
        edges.append(np.stack([varied, representative[inverse]], axis=1))
        edges.append(np.stack([representative[pairs[:, 0]], representative[pairs[:, 1]]], axis=1))
    e = np.concatenate(edges)
    graph = scipy.sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _exact(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[samples["group"].notna()].sort_values("image")
    copies = rows.groupby("pixel_hash")["image"].transform("size")
    keeper = rows.groupby("pixel_hash")["image"].transform("first")
    rows, copies, keeper = rows[copies > 1], copies[copies > 1], keeper[copies > 1]
    kept = rows["image"] == keeper
    detail = [
        f"kept: first of {n} images with identical pixels" if k else f"same pixels as {first}"
        for k, n, first in zip(kept, copies, keeper, strict=True)
    ]
    out = result(rows.index, kept.astype(float), np.ones(len(rows), bool), detail)
    out["severity"] = np.where(kept, "info", "warning")
    return out


def _near(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[samples["group"].notna()]
    distinct = rows.groupby("group")["pixel_hash"].transform("nunique")
    rows = rows[distinct > 1]
    dtype_of = samples.set_index("image")["dtype"]
    detail = []
    for nearest, dist, dtype in zip(
        rows["nearest"], rows["nearest_distance"], rows["dtype"], strict=True
    ):
        other = dtype_of.get(nearest)
        twin = f"; same picture at another bit depth ({dtype} vs {other})" if other != dtype else ""
        detail.append(f"looks like {nearest} ({dist} of 64 bits differ){twin}")
    score = score_below(rows["nearest_distance"].astype(float), max(t.near_duplicate_bits, 1))
    return result(rows.index, score, np.ones(len(rows), bool), detail)


def _conflicting(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    key = "label" if facts.task == "classification" else "mask_hash"
    rows = samples[samples["group"].notna() & samples[key].notna()]
    conflict = rows.groupby("group")[key].transform("nunique") > 1
    rows = rows[conflict]
    if facts.task == "classification":
        summary = rows.groupby("group")["label"].agg(
            lambda s: ", ".join(f"{k} x{v}" for k, v in s.value_counts().sort_index().items())
        )
        detail = [f"duplicates labelled {summary[g]}" for g in rows["group"]]
    else:
        detail = ["duplicates of this image have different masks"] * len(rows)
    return result(rows.index, np.zeros(len(rows)), np.ones(len(rows), bool), detail)


CHECKS = [
    Check(
        "exact_duplicate",
        "warning",
        "identical pixels to another image (any format or container); the first by path is kept",
        _exact,
    ),
    Check(
        "near_duplicate",
        "warning",
        "perceptually the same picture as another image "
        "(re-encoded, shifted, rescaled, another bit depth)",
        _near,
    ),
    Check(
        "conflicting_labels",
        "warning",
        "duplicates that carry different labels or masks: one of them is likely mislabelled",
        _conflicting,
    ),
]
