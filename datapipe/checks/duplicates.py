"""Duplicates: the same picture twice, exactly (pixels) or nearly (hash, then pixels).

Near-duplicates are found in two looks. The 64-bit perceptual hash proposes candidate pairs
(within ``near_duplicate_bits``, by multi-index hashing, never all pairs); each candidate is then
verified on the pixels (:mod:`datapipe.checks.verify`): the grey thumbnails must correlate at
``near_duplicate_similarity`` or better *and* far better than images of this dataset typically
correlate with a neighbour that is not their copy. That second bar is what calibrates the test to
the data. Measured on scikit-learn's real 8 px digits (1,797 images): 1,273 hash candidates, the
typical second-nearest neighbour correlates at r = 0.96, and different handwritten digits reach
r = 0.990, while JPEG re-encodes, brightness changes and 16-bit twins stay at r >= 0.999; on 792
photo crops the typical neighbour correlates at r ~ 0.3 and a 1-px shifted copy at r >= 0.88.
So ``1 - r`` must be at most ``near_duplicate_margin`` (0.1) of the dataset's typical ``1 - r``.

Groups are complete-linkage: an image joins a group only if it is a verified duplicate of every
member (exact copies count as one member), so a group never grows through a chain of pairs
whose ends differ. A group whose members carry different labels (or masks) is a strong sign
that one of them is mislabelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from datapipe.checks.base import Check, DatasetFacts, flag_all, score_below
from datapipe.checks.hashing import hamming
from datapipe.checks.integrity import readable
from datapipe.checks.near_duplicates import near_duplicate_pairs
from datapipe.checks.verify import neighbour_similarity, pair_similarity
from datapipe.config import CleanParams
from datapipe.errors import DatapipeError
from datapipe.io import read_mask


def _hashable(samples: pd.DataFrame) -> np.ndarray:
    """Rows whose perceptual hash can be compared: readable and not constant (boolean mask);
    constant images all hash to 0 and can only be exact duplicates."""
    ok = readable(samples) & samples["phash"].notna() & (samples["value_range"] > 0)
    return ok.to_numpy(bool)


def perceptual_pairs(samples: pd.DataFrame, *, max_distance: int) -> np.ndarray:
    """Row positions ``(i, j)``, ``i < j``, of every pair within ``max_distance`` pHash bits:
    the candidates, before any pixel is compared.

    Shapes:
        returns ``(P, 2)`` int64 positions into ``samples``.
    """
    positions = np.flatnonzero(_hashable(samples))
    if len(positions) < 2:
        return np.empty((0, 2), np.int64)
    hashes = samples["phash"].to_numpy(np.uint64, na_value=0)[positions]
    unique, inverse = np.unique(hashes, return_inverse=True)
    near = near_duplicate_pairs(unique, max_distance=max_distance)[:, :2]
    by_hash = positions[np.argsort(inverse, kind="stable")]
    counts = np.bincount(inverse, minlength=len(unique))
    ends = np.cumsum(counts)
    rows_of = np.split(by_hash, ends[:-1])  # the rows of each hash
    first = by_hash[ends - counts]
    alone = (counts[near[:, 0]] == 1) & (counts[near[:, 1]] == 1)  # most: one row a hash
    found = [np.stack([first[near[alone, 0]], first[near[alone, 1]]], axis=1)]
    found += [_rows_pairs(rows, rows) for rows in rows_of if len(rows) > 1]  # equal hashes
    found += [_rows_pairs(rows_of[u], rows_of[v]) for u, v in near[~alone]]
    pairs = np.concatenate(found)
    return np.unique(np.sort(pairs, axis=1), axis=0)


_ALL_PAIRS = 4096  # beyond this many, rows sharing a hash pair with its first row only


def _rows_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs between the rows of two hashes (or within one, when ``a is b``): every pair, unless
    there are more than ``_ALL_PAIRS`` (a thousand copies of one picture must not make a million
    pairs; exact copies are one node of the groups anyway), then each row with the first."""
    a_, b_ = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if len(a_) * len(b_) > _ALL_PAIRS:
        star = [np.stack(np.broadcast_arrays(a_[0], b_), axis=1)]
        if a is not b:
            star.append(np.stack(np.broadcast_arrays(a_, b_[0]), axis=1))
        grid = np.concatenate(star)
    else:
        grid = np.stack(np.meshgrid(a_, b_, indexing="ij"), -1).reshape(-1, 2)
    return grid[grid[:, 0] != grid[:, 1]]


@dataclass(frozen=True)
class DuplicateEvidence:
    """The verified near-duplicate pairs of a dataset and how the bar was set."""

    pairs: np.ndarray  # (P, 2) row positions, i < j
    distance: np.ndarray  # (P,) pHash bits
    similarity: np.ndarray  # (P,) best thumbnail correlation
    candidates: int  # pairs the hash proposed
    typical_similarity: float  # the dataset's typical neighbour correlation (NaN: too few)
    min_similarity: float  # the bar a pair had to reach here


def verify_pairs(
    samples: pd.DataFrame, thumbs: np.ndarray, candidates: np.ndarray, params: CleanParams
) -> DuplicateEvidence:
    """Keep the ``candidates`` whose pixels agree (see the module docstring).

    Shapes:
        ``thumbs`` ``(N, S, S)`` aligned with ``samples``' rows; ``candidates`` ``(P, 2)``.
    """
    hashes = samples["phash"].to_numpy(np.uint64, na_value=0)
    typical = typical_neighbour_similarity(hashes, thumbs, _hashable(samples))
    bar = params.near_duplicate_similarity
    if np.isfinite(typical):
        bar = max(bar, 1.0 - params.near_duplicate_margin * (1.0 - typical))
    similarity = pair_similarity(thumbs, candidates)
    keep = similarity >= bar
    pairs = candidates[keep]
    return DuplicateEvidence(
        pairs=pairs,
        distance=hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]).astype(np.int64),
        similarity=similarity[keep],
        candidates=len(candidates),
        typical_similarity=typical,
        min_similarity=float(bar),
    )


def typical_neighbour_similarity(
    hashes: np.ndarray,
    thumbs: np.ndarray,
    usable: np.ndarray,
    *,
    sample: int = 512,
    neighbours: int = 5,
    seed: int = 0,
) -> float:
    """Median, over up to ``sample`` images, of the thumbnail correlation with their
    *second*-best match among their ``neighbours`` nearest hashes: how alike two images of this
    dataset that are not copies of each other typically are (the second-best, so one planted
    copy per image, e.g. a set of 8/16-bit twins, does not pass for the typical neighbour).

    NaN when fewer than 3 images are usable.

    Shapes:
        ``hashes`` ``(N,)`` uint64, ``thumbs`` ``(N, S, S)``, ``usable`` ``(N,)`` bool.
    """
    rows = np.flatnonzero(usable)
    if len(rows) < 3:
        return float("nan")
    rng = np.random.default_rng(seed)
    queries = rng.choice(rows, min(sample, len(rows)), replace=False)
    k = min(neighbours, len(rows) - 1)
    nearest = np.concatenate(
        [_nearest_hashes(hashes, rows, queries[i : i + 64], k) for i in range(0, len(queries), 64)]
    )
    similarity = neighbour_similarity(thumbs, queries, nearest)
    second = np.sort(similarity, axis=1)[:, -2] if k >= 2 else similarity[:, 0]
    return float(np.median(second))


def _nearest_hashes(
    hashes: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int
) -> np.ndarray:
    """The ``k`` rows (of ``rows``) with the nearest hashes to each query, itself excluded:
    ``(Q, k)``, computed for a few queries at a time (``Q x N`` distances)."""
    dist = hamming(hashes[queries][:, None], hashes[rows][None, :]).astype(np.int16)
    dist[rows[None, :] == queries[:, None]] = np.iinfo(np.int16).max
    return rows[np.argpartition(dist, k - 1, axis=1)[:, :k]]


def exact_candidates(samples: pd.DataFrame, pairs: np.ndarray) -> np.ndarray:
    """Rows that may have an exact twin: identical pixels give identical pHashes and a perfect
    correlation, so only rows of a verified pair, and constant images, need a pixel hash."""
    candidate = (readable(samples) & (samples["value_range"] == 0)).to_numpy().copy()
    candidate[pairs.ravel()] = True
    return candidate


def add_duplicate_groups(samples: pd.DataFrame, pairs: np.ndarray) -> pd.DataFrame:
    """``samples`` with ``group`` (duplicate group id, <NA> alone), ``nearest`` (the image of the
    perceptually closest other member) and ``nearest_distance`` (bits of 64).

    Exact duplicates (equal ``pixel_hash``) form one node; verified pairs (``pairs``, row
    positions) are the edges. Groups are complete-linkage cliques grown greedily from the node
    with the most edges, so every two nodes of a group are a verified pair.
    """
    out = samples.copy()
    n = len(out)
    out["group"] = pd.array([pd.NA] * n, dtype="Int64")
    out["nearest"] = pd.array([None] * n, dtype=object)
    out["nearest_distance"] = pd.array([pd.NA] * n, dtype="Int64")
    node = _exact_nodes(out["pixel_hash"].to_numpy())
    group = _cliques(node, np.asarray(pairs, np.int64).reshape(-1, 2))
    in_group = group >= 0
    if not in_group.any():
        return out
    out.loc[out.index[in_group], "group"] = group[in_group]
    phash = out["phash"].fillna(0).to_numpy(np.uint64)
    images = out["image"].to_numpy()
    for _, members in pd.Series(np.flatnonzero(in_group)).groupby(group[in_group]):
        idx = members.to_numpy()
        dist = hamming(phash[idx][:, None], phash[idx][None, :]).astype(np.int64)
        np.fill_diagonal(dist, np.iinfo(np.int64).max)
        nearest = dist.argmin(axis=1)
        out.loc[out.index[idx], "nearest"] = images[idx[nearest]]
        out.loc[out.index[idx], "nearest_distance"] = dist[np.arange(len(idx)), nearest]
    return out


def _exact_nodes(pixel_hash: np.ndarray) -> np.ndarray:
    """Node id per row: rows with equal (known) pixel hashes share one; others are alone."""
    known = pd.notna(pixel_hash)
    node = np.arange(len(pixel_hash))
    if known.any():
        rows = np.flatnonzero(known)
        codes = pd.factorize(pixel_hash[rows])[0]
        first = pd.Series(rows).groupby(codes).transform("min").to_numpy()
        node[rows] = first
    return node


def _cliques(node: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Group id per row (-1 alone), numbered by each group's first row.

    Greedy complete linkage over nodes: the unassigned node with the most verified neighbours
    (ties: the first row) leads; its neighbours join in order of their own edge count, each only
    if it is adjacent to every member already in.
    """
    edges = {(int(a), int(b)) for a, b in node[pairs] if a != b}
    adjacent: dict[int, set[int]] = {}
    for a, b in edges:
        adjacent.setdefault(a, set()).add(b)
        adjacent.setdefault(b, set()).add(a)
    assigned: dict[int, int] = {}  # node -> leader node
    order = sorted(set(node.tolist()), key=lambda v: (-len(adjacent.get(v, ())), v))
    for leader in order:
        if leader in assigned:
            continue
        members = [leader]
        assigned[leader] = leader
        free = [v for v in adjacent.get(leader, ()) if v not in assigned]
        for v in sorted(free, key=lambda v: (-len(adjacent[v]), v)):
            if all(m in adjacent[v] for m in members[1:]):
                members.append(v)
                assigned[v] = leader
    leader_of = np.array([assigned[v] for v in node.tolist()], np.int64)
    grouped = (np.bincount(leader_of, minlength=len(node)) > 1)[leader_of]
    group = np.full(len(node), -1, np.int64)
    if grouped.any():
        firsts = pd.Series(np.flatnonzero(grouped)).groupby(leader_of[grouped]).transform("min")
        rank = pd.factorize(firsts.to_numpy(), sort=True)[0]
        group[grouped] = rank
    return group


def _exact(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    """Every copy in a group of identical pixels but one is flagged. The one kept is the first by
    path among the copies that no other check excludes (column ``excluded_for``, filled by the
    clean stage; the first by path when every copy is excluded anyway), so a copy with a broken
    mask never costs the group its good one."""
    rows = samples[samples["group"].notna()].sort_values("image")
    copies = rows.groupby("pixel_hash")["image"].transform("size")
    rows, copies = rows[copies > 1], copies[copies > 1]
    own = rows["excluded_for"] if "excluded_for" in rows else pd.Series(pd.NA, index=rows.index)
    by_path = rows["pixel_hash"].map(rows.groupby("pixel_hash")["image"].first())
    usable_first = rows.assign(bad=own.notna()).sort_values("bad", kind="stable")
    keeper = rows["pixel_hash"].map(usable_first.groupby("pixel_hash")["image"].first())
    kept = rows["image"] == keeper
    reason_of = dict(zip(rows["image"], own, strict=True))
    detail = [
        f"same pixels as {keep}"
        if not k
        else f"kept: first of {n} images with identical pixels"
        if keep == first
        else f"kept: first usable of {n} images with identical pixels "
        f"({first} is excluded: {reason_of[first]})"
        for k, n, keep, first in zip(kept, copies, keeper, by_path, strict=True)
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


#: Mask agreement is measured at most this many pixels on the longer side ...
AGREEMENT_SIDE = 256
#: ... forgiving class boundaries that moved by up to this share of the longer side (objects
#: moving between consecutive video frames), at least one pixel ...
AGREEMENT_TOLERANCE = 0.03
#: ... over the classes that cover at least this share of the labelled pixels of either mask.
AGREEMENT_MIN_SHARE = 0.001


def mask_pair_agreement(a: np.ndarray, b: np.ndarray, *, ignore_index: int) -> float:
    """How well mask ``b`` agrees with mask ``a``, in [0, 1] (1: the same labelling).

    ``b`` is resized (nearest) to ``a``'s size, both to at most :data:`AGREEMENT_SIDE` on the
    longer side. Per class ``c`` present in either (at least :data:`AGREEMENT_MIN_SHARE` of the
    labelled pixels), the share of the pixels labelled ``c`` in one mask that have a ``c`` within
    ``r`` pixels in the other (``r`` = :data:`AGREEMENT_TOLERANCE` of the longer side, >= 1):
    a Dice coefficient that forgives borders which moved by up to ``r``. The agreement is the
    mean over those classes, so a swapped class scores 0 for both classes involved however
    small the object. Pixels that are ``ignore_index`` in either mask count for neither.

    Shapes:
        ``a`` ``(H, W)``, ``b`` ``(h, w)`` integer class values -> a float (NaN: nothing
        labelled in either).
    """
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected two (H, W) masks; got {a.shape} and {b.shape}")
    scale = min(1.0, AGREEMENT_SIDE / max(a.shape))
    shape = (max(1, round(a.shape[0] * scale)), max(1, round(a.shape[1] * scale)))
    a, b = _nearest(a, shape), _nearest(b, shape)
    valid = (a != ignore_index) & (b != ignore_index)
    if not valid.any():
        return float("nan")
    radius = max(1, round(AGREEMENT_TOLERANCE * max(shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    labelled = int(valid.sum())
    found = []
    for c in np.union1d(np.unique(a[valid]), np.unique(b[valid])):
        in_a, in_b = valid & (a == c), valid & (b == c)
        n_a, n_b = int(in_a.sum()), int(in_b.sum())
        if max(n_a, n_b) < AGREEMENT_MIN_SHARE * labelled:
            continue
        near_a = cv2.dilate(in_a.astype(np.uint8), kernel).astype(bool)
        near_b = cv2.dilate(in_b.astype(np.uint8), kernel).astype(bool)
        matched = int((in_a & near_b).sum()) + int((in_b & near_a).sum())
        found.append(matched / (n_a + n_b))
    return float(np.mean(found)) if found else 1.0


def _nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize for any integer dtype."""
    if mask.shape == shape:
        return mask
    rows = (np.arange(shape[0]) * mask.shape[0] // shape[0]).clip(0, mask.shape[0] - 1)
    cols = (np.arange(shape[1]) * mask.shape[1] // shape[1]).clip(0, mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def mask_agreement(
    samples: pd.DataFrame,
    root: Path,
    *,
    ignore_index: int,
    colors: Mapping[int, tuple[int, int, int]] | None = None,
) -> pd.Series:
    """Per sample of a duplicate group (segmentation), :func:`mask_pair_agreement` of its mask
    with the mask of the group's first member by path (the reference, 1.0 itself); NaN outside
    groups, without a mask, or where a mask cannot be read (another check reports that).

    Near-duplicate frames of a video are true duplicates whose masks differ where objects
    moved; this is what :func:`_conflicting` compares with ``clean.mask_agreement``.
    """
    out = pd.Series(np.nan, index=samples.index, dtype="float64", name="mask_agreement")
    if "mask" not in samples:
        return out
    rows = samples[samples["group"].notna() & samples["mask"].notna()].sort_values("image")
    for _, members in rows.groupby("group", sort=False):
        if len(members) < 2:
            continue
        masks = [_read(root / str(m), colors) for m in members["mask"]]
        reference = masks[0]
        if reference is None:
            continue
        for index, mask in zip(members.index, masks, strict=True):
            if mask is not None:
                out[index] = mask_pair_agreement(reference, mask, ignore_index=ignore_index)
    return out


def _read(path: Path, colors: Mapping[int, tuple[int, int, int]] | None) -> np.ndarray | None:
    try:
        return read_mask(path, colors=colors)
    except (DatapipeError, OSError, ValueError):
        return None


def _conflicting(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    if not facts.kind.image_labels:
        if "mask_agreement" in samples:
            return _disagreeing_masks(samples, t)
        return _different_masks(samples)
    rows = samples[samples["group"].notna() & samples["label"].notna()]
    rows = rows[rows.groupby("group")["label"].transform("nunique") > 1]
    summary = rows.groupby("group")["label"].agg(
        lambda s: ", ".join(f"{k} x{v}" for k, v in s.value_counts().sort_index().items())
    )
    detail = [f"duplicates labelled {summary[g]}" for g in rows["group"]]
    return flag_all(rows.index, detail)


def _different_masks(samples: pd.DataFrame) -> pd.DataFrame:
    """Without measured agreement (a table not made by the clean stage): any two masks that
    differ in a pixel."""
    rows = samples[samples["group"].notna() & samples["mask_hash"].notna()]
    rows = rows[rows.groupby("group")["mask_hash"].transform("nunique") > 1]
    return flag_all(rows.index, ["duplicates of this image have different masks"] * len(rows))


def _disagreeing_masks(samples: pd.DataFrame, t: CleanParams) -> pd.DataFrame:
    """Members whose mask agrees less than ``mask_agreement`` with their group's reference
    (the first by path, see :func:`mask_agreement`), and that reference."""
    rows = samples[samples["group"].notna() & samples["mask_agreement"].notna()]
    rows = rows.sort_values("image", kind="stable")
    reference = rows.groupby("group")["image"].first()
    low = rows[rows["mask_agreement"] < t.mask_agreement]
    detail = {
        i: f"mask agrees {a:.2f} with that of its duplicate {reference[g]} "
        f"(clean.mask_agreement {t.mask_agreement:g})"
        for i, a, g in zip(low.index, low["mask_agreement"], low["group"], strict=True)
    }
    score = dict(zip(low.index, low["mask_agreement"], strict=True))
    for g, members in low.groupby("group"):
        ref = rows.index[(rows["group"] == g) & (rows["image"] == reference[g])][0]
        at = int(np.argmin(members["mask_agreement"].to_numpy(np.float64)))
        lowest, image = float(members["mask_agreement"].iloc[at]), str(members["image"].iloc[at])
        detail[ref] = (
            f"{len(members)} duplicate(s) have masks that disagree with this one "
            f"(lowest agreement {lowest:.2f}: {image})"
        )
        score[ref] = float(members["mask_agreement"].min())
    index = pd.Index([i for i in rows.index if i in detail])
    return flag_all(index, [detail[i] for i in index], score=np.array([score[i] for i in index]))


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
