"""Predicted instance masks as COCO RLEs: lossless, smaller, and read like the dense stack."""

from __future__ import annotations

import numpy as np

from datapipe.detect.targets import resize_masks
from datapipe.scoring.detection import Boxes
from datapipe.scoring.masks import RleMasks


def _masks(n: int = 5, h: int = 37, w: int = 53, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((n, h, w), bool)
    for k in range(n):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        out[k, y : y + rng.integers(3, 8), x : x + rng.integers(3, 8)] = True
    out[0, 0, :] = True  # a run touching the border
    return out


def test_rle_masks_round_trip_exactly_and_index_like_the_stack() -> None:
    dense = _masks()
    rle = RleMasks.encode(dense)
    assert rle.shape == dense.shape and len(rle) == 5
    np.testing.assert_array_equal(rle.dense(), dense)
    for j in range(5):
        np.testing.assert_array_equal(rle[j], dense[j])
    empty = RleMasks.encode(np.zeros((0, 9, 4), bool))
    assert empty.shape == (0, 9, 4) and empty.dense().shape == (0, 9, 4)


def test_rle_masks_are_much_smaller_than_the_dense_stack() -> None:
    dense = np.zeros((100, 256, 256), bool)
    for k in range(100):
        dense[k, k : k + 20, 2 * k % 200 : 2 * k % 200 + 30] = True
    rle = RleMasks.encode(dense)
    size = sum(len(r["counts"]) for r in rle.rles)
    assert size * 50 < dense.nbytes


def test_resizing_rle_predictions_keeps_them_encoded_and_equal_to_the_dense_resize() -> None:
    dense = _masks()
    boxes = np.zeros((5, 4), np.float32)
    as_rle = resize_masks(Boxes(boxes, np.zeros(5, np.int64), np.ones(5), RleMasks.encode(dense)),
                          74, 106)  # fmt: skip
    as_dense = resize_masks(Boxes(boxes, np.zeros(5, np.int64), np.ones(5), dense), 74, 106)
    assert isinstance(as_rle.masks, RleMasks)
    np.testing.assert_array_equal(as_rle.masks.dense(), as_dense.masks)
    assert isinstance(as_dense.masks, np.ndarray)
    assert as_dense.masks.shape == (5, 74, 106) and as_dense.masks.sum() > dense.sum() * 3
