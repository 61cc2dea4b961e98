from __future__ import annotations

import numpy as np
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
