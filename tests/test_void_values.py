"""A mask value that looks like void (on most borders, or in few masks) is taken as a class with
a warning that suggests ignore_index; ordinary classes raise none."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from datapipe.config import DatasetParams
from datapipe.ingest import MaskBorder, ingest
from datapipe.init import detect_dataset
from tests.conftest import SAMPLE_DATA


def _mask_set(root: Path, *, n: int, framed: int, holding: int) -> Path:
    """``n`` 32 px masks with classes 0-10 in vertical stripes; value 11 is a 2-px frame
    around the first ``framed`` masks and a 2x2 speck in the next ``holding``."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.repeat(np.arange(11, dtype=np.uint8), 3)[None, :32].repeat(32, 0)
        mask[:, 31] = 10
        if i < framed:
            mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 11, 11, 11, 11
        elif i < framed + holding:
            mask[10:12, 10:12] = 11
        image = (rng.random((32, 32)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"f{i:03d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"f{i:03d}.png"), mask)
    return root


def _void_warnings(caplog: pytest.LogCaptureFixture, root: Path) -> list[str]:
    with caplog.at_level(logging.WARNING, logger="datapipe.ingest"):
        result = ingest(DatasetParams(root=root, task="segmentation"), name="v", workers=0)
    assert "11" in result.stats["classes"]  # still a class: the warning only suggests
    return [r.getMessage() for r in caplog.records if "looks like void" in r.getMessage()]


def test_a_value_framing_most_masks_is_called_void(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    found = _void_warnings(caplog, _mask_set(tmp_path, n=30, framed=20, holding=0))
    assert len(found) == 1
    assert found[0].startswith("mask value 11 is taken as a class")
    assert "border of 20 of 30 masks" in found[0] and "ignore_index: 11" in found[0]


def test_a_value_in_few_masks_is_called_void(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    found = _void_warnings(caplog, _mask_set(tmp_path, n=50, framed=0, holding=2))
    assert len(found) == 1 and "in only 2 of 50 masks" in found[0]


def test_ordinary_classes_raise_no_void_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="datapipe.ingest"):
        ingest(
            DatasetParams(root=SAMPLE_DATA / "shapes_seg", task="segmentation"),
            name="s", workers=0,
        )  # fmt: skip
    assert not [r for r in caplog.records if "looks like void" in r.getMessage()]


def test_mask_border_counts_the_ring_and_the_inside() -> None:
    mask = np.zeros((4, 5), np.uint8)
    mask[0] = 7  # 5 of the 14 ring pixels: 0 covers most of the ring
    mask[1, 1] = 7  # one of the 6 inside pixels
    assert MaskBorder.of(mask) == MaskBorder(value=0, inside=5, inside_total=6)
    mask[-1] = 3  # 5 of 7, 5 of 3, 4 of 0: no value covers half the ring
    assert MaskBorder.of(mask).value is None
    mask[-1], mask[:, 0] = 7, 7
    assert MaskBorder.of(mask) == MaskBorder(value=7, inside=1, inside_total=6)


def test_init_says_which_value_looks_like_void(tmp_path: Path) -> None:
    found = detect_dataset(_mask_set(tmp_path, n=30, framed=20, holding=0))
    assert found.void_values == (
        "mask value 11 looks like void (it covers most of the border of 20 of 30 masks but only "
        "0.0% of the pixels inside them): set ignore_index: 11 if it marks pixels without a label",
    )
    assert found.void_values[0] in found.summary()
    assert detect_dataset(SAMPLE_DATA / "shapes_seg").void_values == ()
