from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from datapipe.io import infer_bit_depth, to_unit_float


@pytest.mark.parametrize(
    ("max_value", "dtype", "bits"),
    [
        (255, np.uint8, 8),
        (3, np.uint8, 8),
        (235, np.uint16, 8),
        (256, np.uint16, 10),
        (1023, np.uint16, 10),
        (4095, np.uint16, 12),
        (4096, np.uint16, 14),
        (16383, np.uint16, 14),
        (16384, np.uint16, 16),
        (65535, np.uint16, 16),
    ],
    ids=lambda v: str(v),
)
def test_infer_bit_depth(max_value: int, dtype: type, bits: int) -> None:
    assert infer_bit_depth(max_value, dtype) == bits


@pytest.mark.parametrize(("bits", "top"), [(8, 255), (12, 4095), (14, 16383), (16, 65535)])
def test_full_scale_maps_to_one(bits: int, top: int) -> None:
    img = np.array([[0, top // 2, top]], dtype=np.uint16 if bits > 8 else np.uint8)
    out = to_unit_float(img, bit_depth=bits)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, (top // 2) / top, 1.0]], rtol=1e-6)


def test_twelve_bit_data_is_not_divided_by_65535() -> None:
    img = np.array([[4095]], np.uint16)
    assert to_unit_float(img, bit_depth="auto")[0, 0] == pytest.approx(1.0)
    assert to_unit_float(img, bit_depth=16)[0, 0] == pytest.approx(4095 / 65535)


def test_values_above_the_declared_depth_saturate() -> None:
    out = to_unit_float(np.array([[5000]], np.uint16), bit_depth=12)
    assert out[0, 0] == 1.0


def test_percentile_stretch_is_per_channel() -> None:
    rng = np.random.default_rng(0)
    img = np.stack(
        [rng.integers(100, 200, (50, 50)), rng.integers(1000, 4000, (50, 50))], -1
    ).astype(np.uint16)
    out = to_unit_float(img, bit_depth="percentile", percentiles=(0.0, 100.0))
    assert out[..., 0].min() == 0.0 and out[..., 0].max() == 1.0
    assert out[..., 1].min() == 0.0 and out[..., 1].max() == 1.0


def test_constant_channel_under_percentile_is_zero_not_nan() -> None:
    out = to_unit_float(np.full((4, 4, 1), 7, np.uint16), bit_depth="percentile")
    assert np.isfinite(out).all() and (out == 0).all()


def test_float_images_pass_through_clipped() -> None:
    img = np.array([[-0.5, 0.25, 2.0]], np.float32)
    np.testing.assert_array_equal(to_unit_float(img), [[0.0, 0.25, 1.0]])


@given(
    arrays(np.uint16, st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 4))),
    st.sampled_from([8, 10, 12, 14, 16, "auto", "percentile"]),
)
def test_output_always_in_unit_interval(img: np.ndarray, bits: int | str) -> None:
    out = to_unit_float(img, bit_depth=bits)  # type: ignore[arg-type]
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@given(arrays(np.uint16, (6, 6, 1), elements=st.integers(0, 4095)))
def test_bit_depth_scaling_preserves_order(img: np.ndarray) -> None:
    out = to_unit_float(img, bit_depth=12).ravel()
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out[order]) >= 0)
