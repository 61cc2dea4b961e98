"""Near-duplicates that are duplicates: pixel verification, calibration, groups, leakage bound."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from datapipe.checks import CHECKS
from datapipe.checks.duplicates import (
    add_duplicate_groups,
    perceptual_pairs,
    typical_neighbour_similarity,
    verify_pairs,
)
from datapipe.checks.features import FeatureSettings, image_features
from datapipe.checks.leakage import plan_leakage_repair
from datapipe.checks.verify import pair_similarity
from datapipe.config import CleanParams
from tests.checks.test_known_answers import facts

SETTINGS = FeatureSettings(
    root=Path(),
    scaling={"uint8": 8, "uint16": 16},
    percentiles=(0.5, 99.5),
    max_pixels=1 << 28,
    class_values=[],
    ignore_index=255,
)
RNG = np.random.default_rng(3)


def _smooth(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    return cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)


@pytest.mark.parametrize(
    ("make_b", "expected"),
    [
        (lambda a: a.copy(), 1.0),
        (lambda a: 0.3 * a + 0.2, 1.0),  # gain and offset: bit depth, brightness, contrast
        (lambda a: np.roll(a, 1, axis=1), 1.0),  # one pixel over: the central window matches
        (lambda a: np.full_like(a, 0.4), 0.0),  # flat against textured correlates with nothing
    ],
    ids=["same", "affine", "shift-1px", "flat"],
)
def test_pair_similarity_known_answers(make_b, expected: float) -> None:
    a = _smooth(RNG)
    sim = pair_similarity(np.stack([a, make_b(a)]), np.array([[0, 1]]))
    assert sim[0] == pytest.approx(expected, abs=1e-3)  # the blur meets the edge differently


def test_pair_similarity_of_independent_pictures_is_low_and_shift_two_is_not_searched() -> None:
    a, b = _smooth(RNG), _smooth(RNG)
    far = np.roll(np.roll(a, 3, axis=0), 3, axis=1)
    sim = pair_similarity(np.stack([a, b, far]), np.array([[0, 1], [0, 2]]))
    assert abs(sim[0]) < 0.5
    assert sim[1] < 0.9


def _pearson_reference(a: np.ndarray, b: np.ndarray, shift: int) -> float:
    """The definition, one pair and one shift at a time: Pearson's r of blurred windows."""
    a, b = (cv2.GaussianBlur(x.astype(np.float32), (0, 0), 0.7) for x in (a, b))
    win = a.shape[0] - 2 * shift
    centre = a[shift : shift + win, shift : shift + win].ravel()
    best = -np.inf
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            moved = b[dy : dy + win, dx : dx + win].ravel()
            flat = centre.std() < 1e-6, moved.std() < 1e-6
            r = float(all(flat)) if any(flat) else np.corrcoef(centre, moved)[0, 1]
            best = max(best, r)
    return float(best)


def test_pair_similarity_equals_pearson_per_pair_and_shift_over_many_chunks() -> None:
    """Windows are summarised per image and chunk; every pair still gets its own Pearson r
    (flat windows included), also across chunk borders and for repeated images."""
    rng = np.random.default_rng(11)
    thumbs = np.stack([_smooth(rng, 16) for _ in range(30)])
    thumbs[3] = 0.25  # flat
    thumbs[4] = 0.75  # flat, another constant
    thumbs[5] = 0.5 * thumbs[6] + 0.1  # an affine twin
    pairs = np.concatenate([[[3, 4], [3, 7], [7, 3], [5, 6], [6, 6]],
                            rng.integers(0, 30, (60, 2))])  # fmt: skip
    import datapipe.checks.verify as verify

    chunk = verify._CHUNK
    verify._CHUNK = 7  # pairs split over ten chunks
    try:
        sim = pair_similarity(thumbs, pairs, max_shift=2)
    finally:
        verify._CHUNK = chunk
    expected = [_pearson_reference(thumbs[i], thumbs[j], 2) for i, j in pairs]
    np.testing.assert_allclose(sim, expected, atol=2e-5)
    assert list(sim[:5].round(4)) == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_neighbour_similarity_equals_pair_similarity_across_blocks_and_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The matrix-product path gives each (query, neighbour) pair's Pearson r, flat windows
    and repeated images included, whatever the blocks and chunks."""
    import datapipe.checks.verify as verify

    rng = np.random.default_rng(5)
    thumbs = np.stack([_smooth(rng, 16) for _ in range(40)])
    thumbs[3], thumbs[4] = 0.25, 0.75  # flat
    thumbs[5] = 0.5 * thumbs[6] + 0.1  # an affine twin
    queries = np.array([3, 5, 6, 7, *rng.integers(0, 40, 20)])
    neighbours = np.concatenate([[[4, 7, 3], [6, 6, 3], [5, 4, 6], [3, 7, 7]],
                                 rng.integers(0, 40, (20, 3))])  # fmt: skip
    monkeypatch.setattr(verify, "_QUERY_BLOCK", 5)
    monkeypatch.setattr(verify, "_CHUNK", 20)  # 6 queries a chunk
    found = verify.neighbour_similarity(thumbs, queries, neighbours, max_shift=2)
    pairs = np.stack([np.repeat(queries, 3), neighbours.ravel()], axis=1)
    expected = [_pearson_reference(thumbs[i], thumbs[j], 2) for i, j in pairs]
    assert found.shape == (24, 3)
    np.testing.assert_allclose(found.ravel(), expected, atol=2e-5)
    assert list(found[0].round(4)) == [1.0, 0.0, 1.0]  # flat-flat, flat-textured, itself
    assert found[1, 0] == pytest.approx(1.0, abs=1e-5)  # the affine twin


def test_pair_similarity_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"thumbs must be \(M, S, S\); got \(2, 4, 5\)"):
        pair_similarity(np.zeros((2, 4, 5)), np.array([[0, 1]]))


def _digit_images(scale: int) -> list[np.ndarray]:
    images = (load_digits().images * 15).astype(np.uint8)
    size = 8 * scale
    return [cv2.resize(d, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, None] for d in images]


def _table(images: list[np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    found = [image_features(img, SETTINGS) for img in images]
    df = pd.DataFrame(
        {
            "image": [f"img{i:04d}.png" for i in range(len(images))],
            "read_error": None,
            "decode_error": None,
            "phash": pd.array([f["phash"] for f in found], dtype="UInt64"),
            "value_range": [f["value_range"] for f in found],
            "pixel_hash": None,
        }
    )
    return df, np.stack([f["thumb"] for f in found])


@pytest.mark.parametrize("scale", [1, 4], ids=["8px", "32px"])
def test_real_digits_hash_twins_are_not_duplicates_but_planted_copies_are(scale: int) -> None:
    """scikit-learn's 1,797 real digits: the hash proposes over a thousand pairs (different
    handwritten digits look alike at 64 bits); the pixels confirm only the planted copies."""
    images = _digit_images(scale)
    n = len(images)
    planted = RNG.choice(n, 30, replace=False)
    copies = []
    for k, i in enumerate(planted):
        a = images[i]
        if k % 3 == 0:  # JPEG re-encode
            jpeg = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            copies.append(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED).reshape(a.shape))
        elif k % 3 == 1:  # brighter
            copies.append(np.clip(a.astype(np.int16) + 20, 0, 255).astype(np.uint8))
        else:  # 16-bit twin
            copies.append(a.astype(np.uint16) * 257)
    df, thumbs = _table(images + copies)
    params = CleanParams()
    candidates = perceptual_pairs(df, max_distance=params.near_duplicate_bits)
    evidence = verify_pairs(df, thumbs, candidates, params)
    truth = {(int(i), n + k) for k, i in enumerate(planted)}
    found = {(int(a), int(b)) for a, b in evidence.pairs}
    assert len(candidates) > 1000  # the flood the hash alone makes
    assert truth <= found
    assert len(found - truth) <= 0.005 * n
    assert evidence.typical_similarity > 0.9  # digits resemble each other
    groups = add_duplicate_groups(df, evidence.pairs)["group"].value_counts()
    assert groups.max() <= 3


def test_typical_neighbour_similarity_ignores_one_twin_per_image() -> None:
    """A set made only of 8/16-bit twins: the nearest neighbour of every image is its twin, the
    second-nearest is another picture, so the twins stay far above the typical neighbour."""
    pictures = [(_smooth(RNG, 48) * 255).astype(np.uint8)[:, :, None] for _ in range(12)]
    twins = [p.astype(np.uint16) * 257 for p in pictures]
    df, thumbs = _table(pictures + twins)
    usable = np.ones(len(df), bool)
    hashes = df["phash"].to_numpy(np.uint64)
    typical = typical_neighbour_similarity(hashes, thumbs, usable)
    assert typical < 0.8
    evidence = verify_pairs(df, thumbs, perceptual_pairs(df, max_distance=8), CleanParams())
    assert {(int(a), int(b)) for a, b in evidence.pairs} == {(i, i + 12) for i in range(12)}


def _groups_of(pairs: list[tuple[int, int]], n: int, pixel_hash: list[str | None]) -> list[int]:
    df = pd.DataFrame(
        {
            "image": [f"img{i}.png" for i in range(n)],
            "phash": pd.array([i for i in range(n)], dtype="UInt64"),
            "pixel_hash": pixel_hash,
        }
    )
    out = add_duplicate_groups(df, np.array(pairs, np.int64).reshape(-1, 2))
    return [-1 if pd.isna(g) else int(g) for g in out["group"]]


def test_groups_never_grow_through_a_chain() -> None:
    # 0-1-2-3-4 a chain of pairs whose ends are not pairs: no group of three
    groups = _groups_of([(0, 1), (1, 2), (2, 3), (3, 4)], 5, [None] * 5)
    sizes = pd.Series([g for g in groups if g >= 0]).value_counts()
    assert sizes.max() == 2
    assert sum(g >= 0 for g in groups) == 4  # two pairs; one image left alone


def test_groups_are_cliques_and_exact_copies_join_as_one_member() -> None:
    # 0, 1, 2 all pairwise verified; 3 and 4 identical pixels (one node), 4 verified with 5
    groups = _groups_of(
        [(0, 1), (0, 2), (1, 2), (4, 5)], 6, [None, None, None, "same", "same", None]
    )
    assert groups[:3] == [0, 0, 0]
    assert groups[3:] == [1, 1, 1]


def _leaky(n_val: int) -> pd.DataFrame:
    n = 40 + n_val
    split = ["train"] * 40 + ["val"] * n_val
    group = [pd.NA] * n
    for k in range(min(5, n_val)):  # five val images each with a twin in train
        group[40 + k] = k
        group[k] = k
    return pd.DataFrame(
        {
            "image": [f"img{i:03d}.png" for i in range(n)],
            "split": split,
            "group": pd.array(group, dtype="Int64"),
        }
    )


@pytest.mark.parametrize(
    ("n_val", "applied"), [(50, True), (20, False)], ids=["10pct-moves", "25pct-held"]
)
def test_leakage_repair_never_takes_more_than_the_bound(n_val: int, applied: bool) -> None:
    params = CleanParams(max_leakage_share=0.2)
    samples = _leaky(n_val)
    repair = plan_leakage_repair(samples, max_share=params.max_leakage_share)
    assert int(repair.moved.sum()) == 5
    assert repair.worst_split == "val"
    assert repair.worst_share == pytest.approx(5 / n_val)
    assert repair.applied is applied
    found = CHECKS["split_leakage"].run(samples, facts(), params)
    detail = " ".join(found["detail"])
    if applied:
        assert "moved val -> train" in detail
    else:
        assert "not moved: the repair would move 25% of val" in detail
        assert "inspect the near_duplicate" in detail
