from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.checks.features import FeatureSettings, _sharpness, _thumbnail, image_features
from datapipe.checks.hashing import hamming, perceptual_hash, pixel_hash
from datapipe.checks.near_duplicates import near_duplicate_pairs

RNG = np.random.default_rng(9)


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((8, 8))
    return cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def test_pixel_hash_ignores_the_integer_container() -> None:
    values = RNG.integers(0, 256, (20, 30, 3))
    assert pixel_hash(values.astype(np.uint8)) == pixel_hash(values.astype(np.uint16))
    other = values.copy()
    other[0, 0, 0] = (other[0, 0, 0] + 1) % 256
    assert pixel_hash(other.astype(np.uint8)) != pixel_hash(values.astype(np.uint8))
    assert pixel_hash(values.astype(np.uint8).reshape(30, 20, 3)) != pixel_hash(
        values.astype(np.uint8)
    )


def test_perceptual_hash_sees_through_bit_depth_and_brightness() -> None:
    pic = _picture(1)
    twelve_bit = np.round(pic * 4095) / 4095
    eight_bit = np.round(pic * 255) / 255
    assert hamming(perceptual_hash(twelve_bit), perceptual_hash(eight_bit)) <= 2
    assert hamming(perceptual_hash(pic), perceptual_hash(0.5 * pic + 0.1)) == 0
    distinct = [
        hamming(perceptual_hash(_picture(1)), perceptual_hash(_picture(s))) for s in range(2, 12)
    ]
    assert min(distinct) > 12


def test_sharpness_estimate_equals_full_laplacian_and_falls_with_blur() -> None:
    img = (np.clip(_picture(3) + RNG.normal(0, 0.05, (96, 96)), 0, 1) * 4095).astype(np.uint16)
    big = cv2.resize(img, (600, 600), interpolation=cv2.INTER_NEAREST)
    thumb = _thumbnail(big)
    full = cv2.Laplacian(big, cv2.CV_64F)[1:-1, 1:-1].var() / thumb.astype(np.float64).var()
    assert _sharpness(big, thumb) == pytest.approx(full, rel=0.05)
    blurred = cv2.GaussianBlur(big, (0, 0), 2.0)
    assert _sharpness(blurred, _thumbnail(blurred)) < 0.2 * _sharpness(big, thumb)


def test_features_of_the_same_scene_agree_across_bit_depths() -> None:
    pic = np.clip(_picture(4) + RNG.normal(0, 0.05, (96, 96)), 0, 1)[:, :, None]
    settings = FeatureSettings(
        root=Path("/"),
        scaling={"uint8": 8, "uint16": 12},
        percentiles=(0.5, 99.5),
        max_pixels=1 << 28,
        class_values=[0, 1],
        ignore_index=255,
    )
    hi = image_features(np.round(pic * 4095).astype(np.uint16), settings)
    lo = image_features(np.round(pic * 255).astype(np.uint8), settings)
    assert hi["brightness"] == pytest.approx(lo["brightness"], abs=2e-3)
    assert hi["sharpness"] == pytest.approx(lo["sharpness"], rel=0.05)
    assert hamming(int(hi["phash"]), int(lo["phash"])) <= 2  # type: ignore[call-overload]


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 2000), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_near_duplicate_pairs_equal_brute_force(n: int, max_distance: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, n, dtype=np.uint64) << np.uint64(1)
    twins = base[: n // 5].copy()
    for i in range(len(twins)):
        for b in rng.choice(64, int(rng.integers(1, max_distance + 3)), replace=False):
            twins[i] ^= np.uint64(1) << np.uint64(int(b))
    hashes = np.unique(np.concatenate([base, twins]))
    got = {(int(i), int(j)) for i, j, _ in near_duplicate_pairs(hashes, max_distance=max_distance)}
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    i, j = np.nonzero(np.triu(dist <= max_distance, 1))
    assert got == set(zip(i.tolist(), j.tolist(), strict=True))
