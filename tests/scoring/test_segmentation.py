"""Streaming segmentation label quality: known answers on constructed probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datapipe.scoring.segmentation import (
    AUTO_FLOOR,
    ShardWriter,
    class_thresholds,
    issue_threshold,
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


def test_issue_threshold_known_answer() -> None:
    # median 0.02, absolute deviations [0.02, 0.01, 0, 0.01, 0.48] -> MAD 0.01
    shares = np.array([0.0, 0.01, 0.02, 0.03, 0.5, np.nan])  # NaN: no labelled pixel, left out
    assert issue_threshold(shares) == pytest.approx(0.02 + 3 * 1.4826 * 0.01)
    assert issue_threshold(shares, k=1.0) == pytest.approx(0.02 + 1.4826 * 0.01)


def test_issue_threshold_picks_exactly_the_planted_outliers() -> None:
    # 90 clean images at 0.2-1.0% issue pixels, 10 corrupted at 2-4.5%: all under the old
    # fixed 0.05, every one above the data's own spread
    clean = np.linspace(0.002, 0.010, 90)
    planted = np.linspace(0.020, 0.045, 10)
    shares = np.random.default_rng(0).permutation(np.concatenate([clean, planted]))
    flags = shares >= issue_threshold(shares)
    np.testing.assert_array_equal(np.sort(shares[flags]), planted)
    assert not (shares >= 0.05).any()


@pytest.mark.parametrize(
    ("shares", "expected"),
    [(np.zeros(20), AUTO_FLOOR), (np.full(20, 0.004), AUTO_FLOOR), (np.array([]), AUTO_FLOOR),
     (np.full(20, 0.3), 0.3), (np.array([0.9, 1.0, 1.0]), 1.0)],
    ids=["all-clean", "no-spread-under-floor", "empty", "no-spread-above-floor", "capped-at-1"],
)  # fmt: skip
def test_issue_threshold_floor_and_cap(shares: np.ndarray, expected: float) -> None:
    assert issue_threshold(shares) == pytest.approx(expected)


def test_issue_threshold_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="k >= 0 and 0 < floor <= 1; got k=-1"):
        issue_threshold(np.zeros(3), k=-1)


def test_auto_flags_the_outliers_a_fixed_share_misses_and_maps_only_them(
    tmp_path: Path,
) -> None:
    k = 2
    given = np.zeros((10, 20), np.int64)  # 200 pixels
    given[2:8, 5:15] = 1
    images = []
    for i in range(22):  # 16 images without issues, 4 with 1 pixel, 2 corrupted with 8 (4%)
        probs = _onehot(given, k, 0.9)
        issues = 0 if i < 16 else 1 if i < 20 else 8
        probs[:, 0, :issues] = np.array([0.05, 0.95])[:, None]  # labelled 0, surely 1
        images.append((probs, given))
    _write(tmp_path, images)
    kwargs = {"num_classes": k, "ignore_index": IGNORE, "hard_pixel_fraction": 0.5}
    auto = score_segmentation(tmp_path, issue_fraction="auto", **kwargs)
    shares = auto.per_image["issue_fraction"]
    assert shares.loc[[26, 31]].tolist() == [0.005, 0.04] and shares.loc[10] == 0.0
    assert auto.issue_threshold == AUTO_FLOOR  # median and MAD are 0
    assert auto.per_image.index[auto.per_image["is_label_issue"]].tolist() == [30, 31]
    assert set(auto.issue_maps) == {30, 31}
    assert (auto.issue_maps[31] == 255).sum() == 8
    fixed = score_segmentation(tmp_path, issue_fraction=0.05, **kwargs)
    assert not fixed.per_image["is_label_issue"].any() and fixed.issue_maps == {}
    assert fixed.issue_threshold == 0.05


def test_mean_iou_known_answer() -> None:
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])  # class 2 never occurs
    miou, iou = mean_iou(confusion)
    np.testing.assert_allclose(iou[:2], [8 / 11, 3 / 6])
    assert np.isnan(iou[2])
    assert miou == pytest.approx((8 / 11 + 3 / 6) / 2)
