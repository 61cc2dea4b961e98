from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.stats import Moments


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=8),
    st.integers(0, 2**32 - 1),
)
def test_merged_moments_equal_numpy_over_all_pixels(
    sizes: list[tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 65535, (h, w, 3)).astype(np.uint16) for h, w in sizes]
    total = Moments.empty(3)
    for img in images:
        total = total.merge(Moments.of_image(img))
    pixels = np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64)
    assert total.count == len(pixels)
    np.testing.assert_allclose(total.mean, pixels.mean(0), rtol=1e-10)
    np.testing.assert_allclose(total.std, pixels.std(0), rtol=1e-8)


def test_no_cancellation_on_large_offsets() -> None:
    """E[x^2] - E[x]^2 in float64 loses the std of values near 65535; Chan's merge does not."""
    rng = np.random.default_rng(0)
    images = [(65000 + rng.integers(0, 3, (64, 64, 1))).astype(np.uint16) for _ in range(50)]
    total = Moments.empty(1)
    for img in images:
        total = total.merge(Moments.of_image(img))
    expected = np.concatenate([i.ravel() for i in images]).astype(np.float64).std()
    assert abs(total.std[0] - expected) < 1e-9


def test_scaled_moments() -> None:
    m = Moments.of_image(np.array([[[0.0], [10.0]]])).scaled(0.1)
    assert m.mean[0] == 0.5 and m.std[0] == 0.5


def _numpy_moments(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = img.reshape(-1, img.shape[-1]).astype(np.float64)
    return flat.mean(axis=0), flat.std(axis=0)


_RNG = np.random.default_rng(7)
KNOWN = {
    # several blocks of BLOCK_VALUES, and rows that do not divide into them
    "uint8_2000x700x3": _RNG.integers(0, 256, (2000, 700, 3), dtype=np.uint8),
    "uint16_12bit_1500x900x1": _RNG.integers(0, 4096, (1500, 900, 1), dtype=np.uint16),
    "uint16_near_65535": (65500 + _RNG.integers(0, 3, (700, 800, 1))).astype(np.uint16),
    "int16_signed": _RNG.integers(-32768, 32767, (300, 200, 2), dtype=np.int16),
    "uint16_6_channels": _RNG.integers(0, 65536, (300, 500, 6), dtype=np.uint16),
    "float32_unit": _RNG.random((900, 1300, 3), dtype=np.float32),
    "float32_offset": (0.9 + 1e-3 * _RNG.random((500, 500, 1))).astype(np.float32),
    "float64": _RNG.normal(5.0, 2.0, (200, 300, 4)),
    "float16": _RNG.random((64, 64, 2)).astype(np.float16),
    "uint32": _RNG.integers(0, 2**32, (64, 64, 1), dtype=np.uint32),
    "bool": _RNG.random((50, 70, 1)) > 0.3,
    "one_pixel": np.array([[[3, 5, 7]]], np.uint8),
}


@pytest.mark.parametrize("name", list(KNOWN), ids=list(KNOWN))
def test_moments_equal_numpy_float64_to_float32_precision(name: str) -> None:
    img = KNOWN[name]
    m = Moments.of_image(img)
    mean, std = _numpy_moments(img)
    assert (m.count, m.nonfinite) == (img.shape[0] * img.shape[1], 0)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(m.std, std, rtol=1e-6, atol=1e-12)


def test_integer_moments_are_exact() -> None:
    img = KNOWN["uint16_near_65535"]
    m = Moments.of_image(img)
    mean, std = _numpy_moments(img)
    assert abs(m.mean[0] - mean[0]) < 1e-9 and abs(m.std[0] - std[0]) < 1e-12


def test_moments_of_non_finite_blocks_merge_their_counts() -> None:
    img = np.ones((3000, 400, 1), np.float32)  # three blocks
    img[0, 0] = np.nan
    img[2999, 399] = -np.inf
    img[1500] = 3.0
    m = Moments.of_image(img)
    finite = img[np.isfinite(img)].astype(np.float64)
    assert (m.count, m.nonfinite) == (finite.size, 2)
    np.testing.assert_allclose([m.mean[0], m.std[0]], [finite.mean(), finite.std()], rtol=1e-7)


def test_an_all_nan_image_has_no_moments_but_counts() -> None:
    m = Moments.of_image(np.full((4, 5, 2), np.nan, np.float32))
    assert (m.count, m.nonfinite) == (0, 20)
    assert m.merge(Moments.of_image(np.ones((1, 2, 2)))).nonfinite == 20
