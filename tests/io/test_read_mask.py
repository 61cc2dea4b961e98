from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from datapipe.errors import ImageReadError
from datapipe.io import read_mask

RNG = np.random.default_rng(11)
IDS = RNG.integers(0, 4, (21, 34), dtype=np.uint8)
IDS[0, :5] = 255  # ignore


def test_palette_png_gives_indices_not_colours(tmp_path: Path) -> None:
    im = Image.fromarray(IDS)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [9, 9, 9] * 252)
    im.save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, IDS)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["u8", "u16"])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_index_masks_round_trip(tmp_path: Path, dtype: type, suffix: str) -> None:
    ids = IDS.astype(dtype)
    if dtype == np.uint16:
        ids[1, 1] = 1000
    if suffix == ".png":
        cv2.imwrite(str(tmp_path / f"m{suffix}"), ids)
    else:
        tifffile.imwrite(tmp_path / f"m{suffix}", ids)
    mask = read_mask(tmp_path / f"m{suffix}")
    assert mask.dtype == dtype and mask.shape == IDS.shape
    np.testing.assert_array_equal(mask, ids)


def test_rgb_colour_mask_through_the_colour_table(tmp_path: Path) -> None:
    colours = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 128, 0), 3: (10, 20, 30), 255: (255, 255, 255)}
    rgb = np.array([colours[i] for i in range(4)] + [(0, 0, 0)] * 251 + [colours[255]], np.uint8)[
        IDS
    ]
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png", colors=colours), IDS)


def test_unknown_colour_is_named(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    with pytest.raises(
        ImageReadError, match=r"1 pixels have colours not in mask_colors.*\(1, 2, 3\)"
    ):
        read_mask(tmp_path / "c.png", colors={0: (0, 0, 0)})


def test_grey_saved_as_rgb_reads_as_one_channel(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "g.png"), np.repeat(IDS[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), IDS)
