"""Streaming segmentation label quality: known answers on constructed probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datapipe.scoring.segmentation import (
    ShardWriter,
    class_thresholds,
    mean_iou,
    read_shards,
    score_segmentation,
)

IGNORE = 255


def _onehot(pred: np.ndarray, k: int, p: float) -> np.ndarray:
    """(K, H, W) probabilities: ``p`` on ``pred``, the rest spread evenly."""
    out = np.full((k, *pred.shape), (1 - p) / (k - 1), np.float32)
    np.put_along_axis(out, pred[None], p, 0)
    return out


def _write(directory: Path, images: list[tuple[np.ndarray, np.ndarray]]) -> None:
    writer = ShardWriter(directory)
    for i, (probs, target) in enumerate(images):  # one image per shard, indices 10, 11, ...
        writer.add(np.array([10 + i]), probs[None], target[None])


def test_shards_round_trip_as_float16(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(3), (2, 4, 5)).transpose(0, 3, 1, 2)
    target = np.zeros((2, 4, 5), np.int64)
    ShardWriter(tmp_path, rank=1).add(np.array([7, 3]), probs, target)
    [(index, back, t)] = list(read_shards(tmp_path))
    assert back.dtype == np.float16 and t.dtype == np.int16
    assert index.tolist() == [7, 3]
    np.testing.assert_allclose(back, probs, atol=1e-3)


def test_wrong_region_is_flagged_and_ignored_pixels_never_count(tmp_path: Path) -> None:
    k = 3
    given = np.zeros((8, 8), np.int64)
    given[2:6, 2:6] = 1  # a 16-pixel object of class 1
    clean = (_onehot(given, k, 0.9), given)
    # image 2: the mask says class 2 where the model is sure of class 1 (16 pixels), and a
    # band of ignored pixels where the model disagrees: those must not count
    wrong = given.copy()
    wrong[2:6, 2:6] = 2
    pred = given.copy()
    pred[0, :] = 2
    wrong[0, :] = IGNORE
    bad = (_onehot(pred, k, 0.9), wrong)
    _write(tmp_path, [clean, bad, clean])

    thresholds, confusion = class_thresholds(tmp_path, k, IGNORE)
    # class 0 and 1 pixels carry p=0.9 everywhere; the 16 class-2 pixels have p(2)=0.05
    np.testing.assert_allclose(thresholds, [0.9, 0.9, 0.05], rtol=1e-3)
    assert confusion[2, 1] == 16 and confusion.sum() == 3 * 64 - 8

    out = score_segmentation(
        tmp_path, num_classes=k, ignore_index=IGNORE, issue_fraction=0.1, hard_pixel_fraction=0.5
    )
    rows = out.per_image
    assert rows.index.tolist() == [10, 11, 12]
    assert rows.loc[11, "issue_pixels"] == 16 and rows.loc[11, "valid_pixels"] == 56
    assert rows.loc[11, "label_quality"] == pytest.approx(1 - 16 / 56)
    assert rows.loc[10, "issue_pixels"] == 0 and rows.loc[10, "label_quality"] == 1.0
    assert rows["is_label_issue"].tolist() == [False, True, False]
    issue_map = out.issue_maps[11]
    assert set(out.issue_maps) == {11}
    assert (issue_map[2:6, 2:6] == 255).all() and (issue_map[0] == 128).all()
    assert (issue_map == 255).sum() == 16
    # class 2 in image 11: every labelled pixel missed (hard positive); class 1 there: every
    # pixel the model calls 1 is labelled otherwise (hard negative / false alarm)
    hard = out.hard_examples.set_index(["index", "class", "role"])
    assert hard.loc[(11, 2, "positive"), "pixel_fraction"] == 1.0
    assert hard.loc[(11, 2, "positive"), "difficulty"] == "hard"
    assert hard.loc[(11, 1, "negative"), "pixel_fraction"] == 1.0
    assert hard.loc[(10, 1, "positive"), "difficulty"] == "easy"
    assert (10, 1, "negative") not in hard.index


def test_an_image_with_every_pixel_ignored_scores_without_nan_flags(tmp_path: Path) -> None:
    target = np.full((4, 4), IGNORE, np.int64)
    _write(tmp_path, [(_onehot(np.zeros((4, 4), np.int64), 2, 0.8), target)])
    out = score_segmentation(
        tmp_path, num_classes=2, ignore_index=IGNORE, issue_fraction=0.1, hard_pixel_fraction=0.5
    )
    row = out.per_image.iloc[0]
    assert row["valid_pixels"] == 0 and not row["is_label_issue"]
    assert np.isnan(row["self_confidence"])


def test_mean_iou_known_answer() -> None:
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])  # class 2 never occurs
    miou, iou = mean_iou(confusion)
    np.testing.assert_allclose(iou[:2], [8 / 11, 3 / 6])
    assert np.isnan(iou[2])
    assert miou == pytest.approx((8 / 11 + 3 / 6) / 2)
