"""Real third-party files (../shared/realdata): the layouts and bit depths synthetic files miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from datapipe.io import infer_bit_depth, read_image, read_mask, to_unit_float

NUCSEG = ["bone_20x_2", "heart_20x_1", "kidney_20x_2", "liver_20x_1", "muscle_20x_2"]


def test_bbbc022_imagej_channel_first_reads_as_hwc_12_bit(realdata: Path) -> None:
    path = realdata / "bbbc022" / "IXMtest_A02_s9.tif"
    img = read_image(path)
    assert img.shape == (395, 695, 3)
    assert img.dtype == np.uint16
    assert img.max() == 4095
    assert infer_bit_depth(float(img.max()), img.dtype) == 12
    raw = tifffile.imread(path)  # (3, 395, 695): channel-first on disk
    np.testing.assert_array_equal(img, np.moveaxis(raw, 0, -1))


@pytest.mark.parametrize("stem", NUCSEG)
def test_nucseg_packbits_16_bit_is_kept_whole(realdata: Path, stem: str) -> None:
    img = read_image(realdata / "nucseg_20x" / "images_16bit" / f"{stem}.tif")
    raw = tifffile.imread(realdata / "nucseg_20x" / "images_16bit" / f"{stem}.tif")
    assert img.shape == (512, 512, 1) and img.dtype == np.uint16
    assert img.max() > 255  # not squashed to 8 bits
    np.testing.assert_array_equal(img[:, :, 0], raw)


@pytest.mark.parametrize("stem", NUCSEG)
def test_nucseg_bit_depth_twins_agree_after_scaling(realdata: Path, stem: str) -> None:
    """The 8-bit and 16-bit copies of one picture describe the same scene."""
    hi = read_image(realdata / "nucseg_20x" / "images_16bit" / f"{stem}.tif")
    lo = read_image(realdata / "nucseg_20x" / "images_8bit" / f"{stem}.tif")
    assert lo.dtype == np.uint8 and hi.shape == lo.shape
    a = to_unit_float(hi, bit_depth="percentile").ravel()
    b = to_unit_float(lo, bit_depth="percentile").ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_dsb2018_eight_bit_values_in_a_16_bit_container(realdata: Path) -> None:
    img = read_image(realdata / "dsb2018" / "img2d.tif")
    assert img.dtype == np.uint16 and img.max() == 235
    assert infer_bit_depth(float(img.max()), img.dtype) == 8
    unit = to_unit_float(img, bit_depth="auto")
    assert unit.max() == pytest.approx(235 / 255)


def test_instance_masks_with_gaps_keep_their_ids(realdata: Path) -> None:
    mask = read_mask(realdata / "dsb2018" / "mask2d.tif")
    raw = tifffile.imread(realdata / "dsb2018" / "mask2d.tif")
    assert mask.shape == (512, 512) and mask.dtype == np.uint16
    np.testing.assert_array_equal(mask, raw)


def test_binary_png_mask(realdata: Path) -> None:
    mask = read_mask(realdata / "nucseg_20x" / "mask_binary" / "bone_20x_2.png")
    assert mask.shape == (512, 512) and set(np.unique(mask).tolist()) == {0, 255}
