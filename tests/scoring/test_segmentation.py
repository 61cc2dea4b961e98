"""Streaming segmentation label quality: known answers on constructed probabilities, and the
one-pass scorer against a plain two-pass reference on random shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.metrics import segmentation_metrics
from datapipe.scoring.segmentation import (
    AUTO_FLOOR,
    EPS,
    SOFTMIN_TEMPERATURE,
    SegmentationScores,
    ShardWriter,
    _argmax_bits,
    class_thresholds,
    issue_threshold,
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


def test_oof_miou_leaves_out_a_class_that_never_occurs() -> None:
    """The score stage's OOF mIoU comes from metrics.segmentation_metrics (one mIoU)."""
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])  # class 2 never occurs
    m = segmentation_metrics(confusion, ["a", "b", "c"])
    assert m["iou"] == {"a": pytest.approx(8 / 11), "b": pytest.approx(3 / 6), "c": None}
    assert m["miou"] == pytest.approx((8 / 11 + 3 / 6) / 2)


# --- the one-pass scorer against a two-pass reference -------------------------------------------


def _reference(
    directory: Path, k: int, issue_fraction: float | str, hard_fraction: float
) -> SegmentationScores:
    """The plain computation, image by image on float32 copies read with ``np.load``: pass 1
    thresholds and confusion, pass 2 everything else once the thresholds are known."""
    shards = []
    for path in sorted(directory.glob("r*_*.npz")):
        with np.load(path) as shard:
            shards.append((shard["index"], shard["probs"], shard["targets"]))
    conf_sum, counts = np.zeros(k), np.zeros(k)
    confusion = np.zeros((k, k), np.int64)
    for _, probs, targets in shards:
        for p16, y in zip(probs, targets, strict=True):
            p, valid = p16.astype(np.float32), y != IGNORE
            given, pred = y[valid].astype(np.int64), p.argmax(0)[valid]
            conf_sum += np.bincount(given, p[:, valid][given, np.arange(len(given))], k)
            counts += np.bincount(given, minlength=k)
            np.add.at(confusion, (given, pred), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(counts > 0, conf_sum / counts, 1.0)
    rows, hard, maps = [], [], {}
    for index, probs, targets in shards:
        for i, p16, y in zip(index, probs, targets, strict=True):
            row, per_class, issues = _reference_image(p16.astype(np.float32), y, t, hard_fraction)
            rows.append({**row, "index": int(i)})
            hard.extend({**r, "index": int(i)} for r in per_class)
            maps[int(i)] = np.where(y == IGNORE, 128, 0).astype(np.uint8)
            maps[int(i)][issues] = 255
    per_image = pd.DataFrame(rows).set_index("index").sort_index()
    shares = per_image["issue_fraction"].to_numpy()
    cut = issue_threshold(shares) if issue_fraction == "auto" else float(issue_fraction)
    per_image["is_label_issue"] = per_image["issue_fraction"] >= cut
    flagged = per_image.index[per_image["is_label_issue"]]
    columns = ["index", "class", "role", "difficulty", "loss", "prob", "pixel_fraction"]
    return SegmentationScores(
        per_image, pd.DataFrame(hard, columns=columns), confusion, t, cut,
        {int(i): maps[int(i)] for i in flagged},
    )  # fmt: skip


def _reference_image(
    p: np.ndarray, y: np.ndarray, t: np.ndarray, hard_fraction: float
) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray]:
    valid = y != IGNORE
    given = np.where(valid, y, 0).astype(np.int64)
    pred, p_pred = p.argmax(0), p.max(0)
    issues = valid & (pred != given) & (p_pred >= t[pred])
    n = int(valid.sum())
    s = np.clip(np.take_along_axis(p, given[None], 0)[0][valid], EPS, 1.0)
    nan = float("nan")
    if n:
        w = np.exp(-(s - s.min()) / SOFTMIN_TEMPERATURE)
        softmin = float((s * w).sum() / w.sum())
    share = issues.sum() / n if n else 0.0
    row = {
        "valid_pixels": n, "issue_pixels": int(issues.sum()), "issue_fraction": float(share),
        "label_quality": float(1.0 - share), "softmin_quality": softmin if n else nan,
        "self_confidence": float(s.mean()) if n else nan,
        "oof_loss": float(-np.log(s).mean()) if n else nan,
        "pixel_accuracy": float((pred == given)[valid].mean()) if n else nan,
        "difficulty": float(1.0 - s.mean()) if n else nan,
    }  # fmt: skip
    per_class = []
    for c in range(p.shape[0]):
        positive, called = valid & (given == c), valid & (pred == c)
        alarm = called & (given != c)
        if positive.any():
            missed = float((positive & (pred != c)).sum() / positive.sum())
            pc = np.clip(p[c][positive], EPS, 1.0)
            per_class.append({
                "class": c, "role": "positive",
                "difficulty": "hard" if missed >= hard_fraction else "easy",
                "loss": float(-np.log(pc).mean()), "prob": float(pc.mean()),
                "pixel_fraction": missed,
            })  # fmt: skip
        if alarm.any():
            share_c = float(alarm.sum() / called.sum())
            pc = np.clip(p[c][alarm], 0.0, 1.0 - 1e-7)
            per_class.append({
                "class": c, "role": "negative",
                "difficulty": "hard" if share_c >= hard_fraction else "easy",
                "loss": float(-np.log1p(-pc).mean()), "prob": float(pc.mean()),
                "pixel_fraction": share_c,
            })  # fmt: skip
    return row, per_class, issues


def _random_shards(
    directory: Path, rng: np.random.Generator, *, k: int, size: tuple[int, int], odd: bool
) -> None:
    """Shards of 1-4 images: softmax probabilities (some rounded to produce ties, some so sharp
    that float16 underflows to 0), masks with a per-image share of wrong pixels (2-60%) and of
    ``IGNORE`` (0-30%; the first image has no labelled pixel). ``odd``: one shard also holds
    NaN, -0.0 and inf, which the bit-pattern argmax leaves to ``np.argmax``."""
    writer, position = ShardWriter(directory), 0
    for shard in range(5):
        b = int(rng.integers(1, 5))
        logits = rng.normal(0, rng.choice([1.0, 3.0, 12.0]), (b, k, *size))
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        if rng.random() < 0.3:
            probs = np.round(probs * 8) / 8
        y = probs.argmax(1)
        wrong = rng.random(y.shape) < rng.choice([0.02, 0.05, 0.6], (b, 1, 1))
        y[wrong] = rng.integers(0, k, int(wrong.sum()))
        y[rng.random(y.shape) < rng.choice([0.0, 0.0, 0.3], (b, 1, 1))] = IGNORE
        if shard == 0:
            y[0] = IGNORE
        probs = probs.astype(np.float16)
        if odd and shard == 1:
            probs[0, 0, 0, :3] = np.nan
            probs[0, 1, 1, :2] = -0.0
            probs[0, min(2, k - 1), -1, -1] = np.inf
        writer.add(position + rng.permutation(10)[:b], probs, y)
        position += 10


def _assert_same(ours: SegmentationScores, ref: SegmentationScores) -> None:
    pd.testing.assert_frame_equal(ours.per_image, ref.per_image, check_exact=True)
    pd.testing.assert_frame_equal(ours.hard_examples, ref.hard_examples, check_exact=True)
    np.testing.assert_array_equal(ours.confusion, ref.confusion)
    assert ours.thresholds.tobytes() == ref.thresholds.tobytes()  # bit for bit
    assert ours.issue_threshold == ref.issue_threshold
    assert set(ours.issue_maps) == set(ref.issue_maps)
    for i, issue_map in ref.issue_maps.items():
        np.testing.assert_array_equal(ours.issue_maps[i], issue_map)


@pytest.mark.parametrize(
    ("seed", "k", "size", "odd"),
    [(0, 4, (13, 17), False), (1, 4, (13, 17), False), (2, 2, (40, 37), False),
     (3, 5, (8, 8), True), (4, 3, (21, 9), True), (5, 6, (16, 16), False)],
    ids=["k4-a", "k4-b", "binary", "odd-values-k5", "odd-values-k3", "k6"],
)  # fmt: skip
@pytest.mark.parametrize("issue_fraction", ["auto", 0.05, 0.3])
def test_one_pass_equals_the_two_pass_reference(
    tmp_path: Path, seed: int, k: int, size: tuple[int, int], odd: bool, issue_fraction: Any
) -> None:
    _random_shards(tmp_path, np.random.default_rng(seed), k=k, size=size, odd=odd)
    kwargs = {"num_classes": k, "ignore_index": IGNORE, "hard_pixel_fraction": 0.3}
    with np.errstate(invalid="ignore"):  # the reference's float32 NaN arithmetic
        ref = _reference(tmp_path, k, issue_fraction, 0.3)
    ours = score_segmentation(tmp_path, issue_fraction=issue_fraction, **kwargs)
    assert ref.per_image["is_label_issue"].any() or issue_fraction == 0.3
    _assert_same(ours, ref)
    thresholds, confusion = class_thresholds(tmp_path, k, IGNORE)
    np.testing.assert_array_equal(thresholds, ref.thresholds)
    np.testing.assert_array_equal(confusion, ref.confusion)


def test_read_shards_reads_compressed_shards_too(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((2, 3, 4, 5)).astype(np.float16)
    targets = rng.integers(0, 3, (2, 4, 5)).astype(np.int16)
    np.savez_compressed(tmp_path / "r000_000000.npz", index=[4, 2], probs=probs, targets=targets)
    [(index, back, t)] = list(read_shards(tmp_path))
    assert index.tolist() == [4, 2] and back.dtype == np.float16
    np.testing.assert_array_equal(back, probs)
    np.testing.assert_array_equal(t, targets)


def test_targets_outside_the_classes_are_refused(tmp_path: Path) -> None:
    target = np.array([[0, 1], [3, IGNORE]])
    _write(tmp_path, [(_onehot(np.zeros((2, 2), np.int64), 3, 0.8), target)])
    with pytest.raises(ValueError, match=r"expected targets in \[0, 3\) or ignore_index=255; got"):
        score_segmentation(
            tmp_path, num_classes=3, ignore_index=IGNORE, issue_fraction=0.1,
            hard_pixel_fraction=0.5,
        )  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 7),
    st.lists(st.sampled_from([0.0, 6e-8, 0.125, 0.3, 0.5, 0.5004, 1.0, 3.0, 65504.0]), min_size=7,
             max_size=7 * 12),
)  # fmt: skip
def test_argmax_on_float16_bits_is_numpys_argmax(k: int, values: list[float]) -> None:
    # finite probabilities >= +0 (ties included): the bit patterns order like the values
    p = np.array(values[: len(values) // k * k], np.float16).reshape(1, k, -1)
    pred, best = _argmax_bits(p.view(np.uint16), np.uint8)
    np.testing.assert_array_equal(pred[0], p[0].astype(np.float32).argmax(0))
    np.testing.assert_array_equal(best.view(np.float16)[0], p[0].max(0))


def test_a_threshold_just_above_a_float16_value_is_compared_in_float64(tmp_path: Path) -> None:
    # 20,000 pixels labelled 1 at p(1) = 0.5 and one a float16 step above: t_1 = 0.5 + 2.4e-8,
    # which float32 would round to 0.5. A pixel labelled 0 but called 1 at p(1) = 0.5 is then
    # below t_1: no issue (as in the two-pass float32-vs-float64 comparison)
    k, step = 3, 2.0**-11
    sure = np.zeros((k, 100, 201), np.float32)
    sure[1], sure[0] = 0.5, 0.5 - 1e-3  # argmax 1 everywhere, p(1) = 0.5 in float16
    sure[1, 0, 0] = 0.5 + step
    given = np.ones((100, 201), np.int64)
    given[:, 200] = IGNORE
    close = np.zeros((k, 1, 2), np.float32)
    close[:, 0, 0] = [0.3, 0.5, 0.2]  # labelled 0, called 1 at p(1) = 0.5
    close[:, 0, 1] = [0.3, 0.5 + step, 0.2]  # labelled 0, called 1 above t_1: an issue
    _write(tmp_path, [(sure, given), (close, np.zeros((1, 2), np.int64))])
    out = score_segmentation(
        tmp_path, num_classes=k, ignore_index=IGNORE, issue_fraction=0.1,
        hard_pixel_fraction=0.5,
    )  # fmt: skip
    assert 0.5 < out.thresholds[1] < 0.5 + step / 1000 and np.float32(out.thresholds[1]) == 0.5
    assert out.per_image.loc[11, "issue_pixels"] == 1
