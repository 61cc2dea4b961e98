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

from datapipe.checks.base import Check, DatasetFacts, flag_all, score_below
from datapipe.checks.hashing import hamming
from datapipe.checks.integrity import readable
from datapipe.checks.near_duplicates import near_duplicate_pairs
from datapipe.config import CleanParams


def perceptual_pairs(samples: pd.DataFrame, *, max_distance: int) -> np.ndarray:
    """Row positions ``(i, j)`` of every pair of images within ``max_distance`` pHash bits.

    Constant images (all hash to 0) are left out: they can only be exact duplicates.

    Shapes:
        returns ``(P, 2)`` int64 positions into ``samples``.
    """
    positions = np.flatnonzero(
        (readable(samples) & samples["phash"].notna() & (samples["value_range"] > 0)).to_numpy()
    )
    if len(positions) < 2:
        return np.empty((0, 2), np.int64)
    hashes = samples["phash"].to_numpy(np.uint64, na_value=0)[positions]
    unique, inverse = np.unique(hashes, return_inverse=True)
    first = np.empty(len(unique), np.int64)
    first[inverse[::-1]] = positions[::-1]  # the first row holding each hash
    near = near_duplicate_pairs(unique, max_distance=max_distance)
    same = np.stack([positions, first[inverse]], axis=1)
    pairs = np.concatenate([same[same[:, 0] != same[:, 1]], first[near[:, :2]]])
    return pairs.astype(np.int64)


def exact_candidates(samples: pd.DataFrame, pairs: np.ndarray) -> np.ndarray:
    """Rows that may have an exact twin: identical pixels imply identical pHashes, so only
    rows in a perceptual pair, and constant images, need a pixel hash (a boolean mask)."""
    candidate = (readable(samples) & (samples["value_range"] == 0)).to_numpy().copy()
    candidate[pairs.ravel()] = True
    return candidate


def add_duplicate_groups(
    samples: pd.DataFrame, *, max_distance: int, pairs: np.ndarray | None = None
) -> pd.DataFrame:
    """``samples`` with ``group`` (duplicate group id, <NA> alone), ``nearest`` (the image of the
    perceptually closest other member) and ``nearest_distance`` (bits of 64).

    Groups join exact duplicates (equal ``pixel_hash``) and perceptual pairs (``pairs``, found
    with ``max_distance`` when not given).
    """
    if pairs is None:
        pairs = perceptual_pairs(samples, max_distance=max_distance)
    out = samples.copy()
    out["group"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["nearest"] = pd.array([None] * len(out), dtype=object)
    out["nearest_distance"] = pd.array([pd.NA] * len(out), dtype="Int64")
    n = len(out)
    hashed = np.flatnonzero(out["pixel_hash"].notna().to_numpy())
    codes = pd.factorize(out["pixel_hash"].to_numpy()[hashed])[0]
    first_of_code = pd.Series(hashed).groupby(codes).transform("min").to_numpy()
    edges = np.concatenate([np.stack([hashed, first_of_code], axis=1), pairs])
    graph = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (n, n))
    component = connected_components(graph, directed=False)[1]
    in_group = np.bincount(component)[component] > 1
    if not in_group.any():
        return out
    _, first = np.unique(component[in_group], return_index=True)
    order = {c: rank for rank, c in enumerate(component[in_group][np.sort(first)])}
    group_ids = np.array([order.get(c, -1) for c in component])
    out.loc[out.index[in_group], "group"] = group_ids[in_group]
    phash = out["phash"].fillna(0).to_numpy(np.uint64)
    images = out["image"].to_numpy()
    for _, members in pd.Series(np.flatnonzero(in_group)).groupby(group_ids[in_group]):
        idx = members.to_numpy()
        dist = hamming(phash[idx][:, None], phash[idx][None, :]).astype(np.int64)
        np.fill_diagonal(dist, np.iinfo(np.int64).max)
        nearest = dist.argmin(axis=1)
        out.loc[out.index[idx], "nearest"] = images[idx[nearest]]
        out.loc[out.index[idx], "nearest_distance"] = dist[np.arange(len(idx)), nearest]
    return out


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
    out = flag_all(rows.index, detail, score=kept.astype(float))
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
    return flag_all(rows.index, detail, score=score)


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
    return flag_all(rows.index, detail)


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
