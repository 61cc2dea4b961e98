"""Thumbnails: the percentile stretch makes dim 16-bit data visible, 8-bit stays as stored,
channel picks, encodings, overlays and shrinking."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datapipe.config import ReportParams
from datapipe.report.thumbnails import (
    IGNORED_PIXEL,
    ISSUE_PIXEL,
    data_uri,
    display_rgb,
    issue_overlay,
    shrink,
    thumbnailer,
)
from tests.report.conftest import decode_uri


def _dim_uint16(rng: np.random.Generator) -> np.ndarray:
    """A 12-bit-ish micrograph that uses 100..400 of uint16's 0..65535."""
    ramp = np.linspace(100, 400, 64, dtype=np.float32)[None, :].repeat(64, axis=0)
    noisy = ramp + rng.normal(0, 5, (64, 64)).astype(np.float32)
    return np.clip(noisy, 0, None).astype(np.uint16)[..., None]


def test_dim_uint16_thumbnail_is_not_black(tmp_path: Path) -> None:
    image = _dim_uint16(np.random.default_rng(0))
    assert (image.astype(np.float64) / 257).max() < 2  # shown by bit depth it is black
    cv2.imwrite(str(tmp_path / "dim.png"), image)
    thumbs = thumbnailer(tmp_path, ReportParams(thumb_size=64))
    uri = thumbs.thumb("dim.png")
    assert uri is not None
    rgb = decode_uri(uri)
    assert rgb.shape == (64, 64, 3)
    assert rgb.max() >= 240 and rgb.min() <= 15  # stretched over the full display range
    assert rgb[:, :8].mean() < rgb[:, -8:].mean() - 150  # and the ramp survives


@pytest.mark.parametrize(
    ("stretch", "max_at_least", "max_at_most"),
    [("auto", 0, 40), ("always", 250, 255)],
    ids=["auto-keeps-8-bit-dark", "always-stretches"],
)
def test_8_bit_is_shown_as_stored_unless_stretch_always(
    stretch: str, max_at_least: int, max_at_most: int
) -> None:
    dark = np.random.default_rng(1).integers(0, 41, (32, 32, 3), dtype=np.uint8)
    rgb = display_rgb(dark, channels=None, percentiles=(1.0, 99.0), stretch=stretch)
    assert max_at_least <= rgb.max() <= max_at_most


def test_channel_pick_shows_the_chosen_channel_as_grey() -> None:
    image = np.zeros((16, 16, 5), np.float32)
    image[4:12, 4:12, 3] = 7.5  # only channel 3 has content
    rgb = display_rgb(image, channels=[3], percentiles=(1.0, 99.0), stretch="auto")
    assert rgb[8, 8].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [0, 0, 0]
    default = display_rgb(image, channels=None, percentiles=(1.0, 99.0), stretch="auto")
    assert default.max() == 0  # channels 0-2 are empty


def test_a_channel_pick_the_image_lacks_falls_back_to_the_default() -> None:
    grey = np.arange(256, dtype=np.uint16).reshape(16, 16)
    picked = display_rgb(grey, channels=[2, 1, 0], percentiles=(0.0, 100.0), stretch="auto")
    default = display_rgb(grey, channels=None, percentiles=(0.0, 100.0), stretch="auto")
    np.testing.assert_array_equal(picked, default)


@pytest.mark.parametrize(
    ("kind", "mime"), [("flat", "image/png"), ("noise", "image/jpeg")], ids=["flat", "noise"]
)
def test_data_uri_keeps_the_smaller_encoding(kind: str, mime: str) -> None:
    rng = np.random.default_rng(2)
    rgb = (
        np.full((96, 96, 3), 77, np.uint8)
        if kind == "flat"
        else rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    )
    uri = data_uri(rgb)
    assert uri.startswith(f"data:{mime};base64,")
    assert decode_uri(uri).shape == (96, 96, 3)


def test_issue_overlay_paints_issues_red_and_ignored_grey() -> None:
    rgb = np.full((4, 4, 3), 200, np.uint8)
    issue_map = np.zeros((2, 2), np.uint8)  # half resolution: resized nearest
    issue_map[0, 0], issue_map[1, 1] = ISSUE_PIXEL, IGNORED_PIXEL
    out = issue_overlay(rgb, issue_map)
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 80  # red
    assert out[3, 3].tolist() == [128, 128, 128]  # ignored
    assert out[0, 3].tolist() == [110, 110, 110]  # fine pixels dimmed (200 * 0.55)


def test_shrink_keeps_dtype_and_channels_past_four() -> None:
    image = np.ones((1000, 500, 6), np.uint16)
    small = shrink(image, 96)
    assert small.shape == (192, 96, 6) and small.dtype == np.uint16
    assert shrink(np.ones((50, 40, 1), np.uint8), 96).shape == (50, 40, 1)  # never enlarges


def test_mask_overlay_colours_the_labelled_class(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "img.png"), np.full((32, 32), 128, np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 7  # stored value 7 is class index 1
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    thumbs = thumbnailer(tmp_path, ReportParams(thumb_size=32), class_values=[0, 7])
    plain = decode_uri(thumbs.thumb("img.png") or "")
    overlay = decode_uri(thumbs.thumb("img.png", mask="mask.png", view="mask") or "")
    assert np.abs(plain[16, 16].astype(int) - 128).max() <= 3
    assert overlay[16, 16, 1] > overlay[16, 16, 0] + 40  # class 1 is green in the palette
    assert np.abs(overlay[2, 2].astype(int) - 128).max() <= 3  # background left clear
    assert len(thumbs) == 2
