"""Out-of-fold detectors and box label issues (cleanlab.object_detection)."""

from __future__ import annotations

import numpy as np
import pytest

from datapipe.models import build_detector
from datapipe.scoring.detection import (
    Boxes,
    cleanlab_inputs,
    count_fair_quality,
    detection_label_issues,
    detection_out_of_fold,
)
from datapipe.scoring.masks import RleMasks
from datapipe.scoring.oof import TrainSettings

A = np.array([[10, 10, 40, 40]], np.float32)  # class 0's place
B = np.array([[60, 50, 90, 85]], np.float32)  # class 1's place


def _given(boxes: np.ndarray, labels: list[int]) -> Boxes:
    return Boxes(boxes.astype(np.float32), np.array(labels, np.int64))


def _predicted(boxes: np.ndarray, labels: list[int], score: float = 0.99) -> Boxes:
    return Boxes(
        boxes.astype(np.float32),
        np.array(labels, np.int64),
        np.full(len(labels), score, np.float32),
    )


def _planted() -> tuple[list[Boxes], list[Boxes]]:
    both = np.concatenate([A, B])
    targets = [_given(both, [0, 1]) for _ in range(8)]
    predictions = [_predicted(both, [0, 1]) for _ in range(8)]
    targets[2] = _given(both, [1, 1])  # box 0 swapped: the model says class 0
    targets[3] = _given(np.concatenate([A, B + 25]), [0, 1])  # box 1 shifted
    targets[4] = _given(A, [0])  # class 1's box missing
    return targets, predictions


def test_cleanlab_inputs_split_predictions_by_class() -> None:
    labels, preds = cleanlab_inputs(
        [_given(A, [1])], [_predicted(np.concatenate([A, B]), [1, 0])], 3
    )
    assert labels[0]["bboxes"].shape == (1, 4) and labels[0]["labels"].tolist() == [1]
    assert [p.shape for p in preds[0]] == [(1, 5), (1, 5), (0, 5)]
    np.testing.assert_allclose(preds[0][1], [[10, 10, 40, 40, 0.99]])


def test_planted_box_problems_are_found_on_the_right_box() -> None:
    targets, predictions = _planted()
    found = detection_label_issues(targets, predictions, num_classes=2)
    flagged = found.boxes[found.boxes["issue"] != ""]
    assert set(zip(flagged["image"], flagged["box"], flagged["issue"], strict=True)) == {
        (2, 0, "wrong_class"),
        (3, 1, "mislocated"),
    }
    swap = flagged[flagged["issue"] == "wrong_class"].iloc[0]
    assert swap["suggested_class"] == 0  # the confident prediction's class
    moved = flagged[flagged["issue"] == "mislocated"].iloc[0]
    assert moved["suggested_box"] == pytest.approx(B[0].tolist())
    assert found.missing["image"].tolist() == [4] and found.missing["class"].tolist() == [1]
    quality = found.images["label_quality"].to_numpy()
    clean = np.delete(quality, [2, 3, 4])
    assert quality[[2, 3, 4]].max() < clean.min()
    assert set(np.flatnonzero(found.images["is_label_issue"])) == {2, 3, 4}


def test_image_quality_does_not_fall_with_the_object_count_alone() -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(2, 50, 300)
    clean = [rng.uniform(0.3, 1.0, n) for n in counts]  # one distribution for every box
    quality = count_fair_quality([clean])
    worst_box = np.array([v.min() for v in clean])
    assert np.corrcoef(worst_box, counts)[0, 1] < -0.4  # min / softmin pooling: the bias
    assert abs(np.corrcoef(quality, counts)[0, 1]) < 0.15
    crowded = clean[int(np.argmax(counts))].copy()
    crowded[0] = 0.05  # a box below every clean one, in the most crowded image
    dirty = count_fair_quality([[*clean, crowded]])
    # the lowest box of 7,700 in an image of 49 is 1 - (1 - 1/7700)^49 = 0.006 plausible:
    # among the worst 3% of 301 images, not beyond what chance gives the luckiest clean one
    pooled = counts.sum() + len(crowded)  # the crowded copy adds its boxes
    assert dirty[-1] == pytest.approx(1 - (1 - 1 / pooled) ** len(crowded))
    assert (dirty < dirty[-1]).sum() < 9 and 0.9 < dirty.max() <= 1.0


def test_image_quality_is_the_worst_family_and_reads_no_evidence_as_clean() -> None:
    badloc = [np.array([0.9, 0.8]), np.array([0.9, np.nan]), np.array([])]
    swap = [np.array([1.0, 1.0]), np.array([0.2, 1.0]), np.array([])]
    quality = count_fair_quality([badloc, swap])
    # swap: image 1 holds the lowest of 4 scores, so u = 1/4 and 1 - (3/4)^2
    assert quality[1] == pytest.approx(1 - 0.75**2)
    # badloc: image 0's 0.8 is the lowest of 4 (NaN reads 1.0), the same tail
    assert quality[0] == pytest.approx(1 - 0.75**2)
    assert quality[2] == 1.0  # no boxes, no evidence


def test_each_image_is_predicted_by_a_model_that_never_trained_on_it() -> None:
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(8):
        image = rng.normal(0, 0.1, (1, 64, 64)).astype(np.float32)
        x0, y0 = 8 + 4 * (i % 4), 10 + 3 * (i % 3)
        image[0, y0 : y0 + 20, x0 : x0 + 20] += 2.0
        images.append(image)
        targets.append(_given(np.array([[x0, y0, x0 + 20, y0 + 20]], np.float32), [i % 2]))
    folds = np.arange(8) % 2
    seen: list[tuple[int, set[int], set[int]]] = []
    predictions = detection_out_of_fold(
        images, targets, folds,
        make_model=lambda: build_detector(
            "retinanet_resnet18_fpn", in_channels=1, num_classes=2, min_size=64, max_size=64
        ),
        settings=TrainSettings.of(epochs=1, batch_size=4, lr=0.005, amp=False),
        on_fold=lambda f, train, held: seen.append((f, set(train.tolist()), set(held.tolist()))),
    )  # fmt: skip
    assert [f for f, _, _ in seen] == [0, 1]
    for fold, train, held in seen:
        assert not train & held and held == set(np.flatnonzero(folds == fold).tolist())
    assert len(predictions) == 8
    for p in predictions:
        assert p.boxes.shape[1:] == (4,) and len(p.boxes) == len(p.labels) == len(p.scores)
        assert ((p.labels >= 0) & (p.labels < 2)).all()


def test_instance_masks_train_mask_rcnn_out_of_fold_and_come_back_per_box() -> None:
    rng = np.random.default_rng(1)
    images, targets = [], []
    for i in range(5):
        image = rng.normal(0, 0.1, (1, 48, 48)).astype(np.float32)
        x0 = 6 + 4 * i
        image[0, 10:30, x0 : x0 + 16] += 2.0
        mask = np.zeros((1, 48, 48), bool)
        mask[0, 10:30, x0 : x0 + 16] = True
        box = np.array([[x0, 10, x0 + 16, 30]], np.float32)
        images.append(image)
        targets.append(Boxes(box, np.array([0]), masks=mask))
    images[4] = rng.normal(0, 0.1, (1, 48, 48)).astype(np.float32)
    targets[4] = Boxes.empty((48, 48))  # an image without objects trains Mask R-CNN too
    predictions = detection_out_of_fold(
        images, targets, np.arange(5) % 2,
        make_model=lambda: build_detector(
            "maskrcnn_resnet18_fpn", in_channels=1, num_classes=1, min_size=48, max_size=48
        ),
        settings=TrainSettings.of(epochs=1, batch_size=2, lr=0.002, amp=False),
    )  # fmt: skip
    for p in predictions:  # kept as RLE, decoding to one (48, 48) bool mask per box
        assert isinstance(p.masks, RleMasks)
        assert p.masks.shape == (len(p.boxes), 48, 48)
        assert p.masks.dense().shape == (len(p.boxes), 48, 48)


@pytest.mark.parametrize(("horizontal", "vertical"), [(True, False), (False, True), (True, True)])
def test_a_flipped_image_keeps_its_boxes_and_masks_on_its_objects(
    horizontal: bool, vertical: bool
) -> None:
    from datapipe.scoring.detection import flip_objects

    image = np.zeros((2, 6, 10), np.float32)
    image[:, 1:3, 2:5] = 1.0  # the object: rows 1-2, columns 2-4
    mask = image[0].astype(bool)[None]
    t = Boxes(np.array([[2, 1, 5, 3]], np.float32), np.array([0]), masks=mask)
    out, moved = flip_objects(image, t, horizontal, vertical)
    x0, y0, x1, y1 = moved.boxes[0].astype(int)
    expected = [[5, 1, 8, 3], [2, 3, 5, 5], [5, 3, 8, 5]][[(1, 0), (0, 1), (1, 1)].index(
        (horizontal, vertical))]  # fmt: skip
    assert [x0, y0, x1, y1] == expected
    assert out[:, y0:y1, x0:x1].min() == 1.0 and out.sum() == image.sum()
    assert moved.masks is not None and moved.masks[0, y0:y1, x0:x1].all()
    assert moved.masks.sum() == mask.sum()
    np.testing.assert_array_equal(t.boxes, [[2, 1, 5, 3]])  # the target itself is untouched


def test_scoring_batches_flip_only_when_the_recipe_asks() -> None:
    from datapipe.config import DetectionFitParams
    from datapipe.scoring.detection import _batches

    assert DetectionFitParams().flip is False  # measured: no gain, fewer wrong-class flags
    image = np.zeros((1, 8, 8), np.float32)
    image[0, 1:3, 1:4] = 1.0
    targets = [Boxes(np.array([[1, 1, 4, 3]], np.float32), np.array([0]))] * 16

    def boxes(flip: bool) -> np.ndarray:
        settings = TrainSettings(DetectionFitParams(batch_size=16, flip=flip))
        _, y, _ = next(_batches([image] * 16, targets, np.arange(16), settings, seed=0,
                                offset=1)(0))  # fmt: skip
        return np.stack([t["boxes"].numpy()[0] for t in y])

    assert (boxes(False) == [1, 1, 4, 3]).all()
    flipped = boxes(True)
    assert 0 < (flipped != [1, 1, 4, 3]).any(axis=1).sum() < 16  # about 3 in 4 flipped
    assert {tuple(b) for b in flipped.tolist()} <= {(1, 1, 4, 3), (4, 1, 7, 3), (1, 5, 4, 7),
                                                    (4, 5, 7, 7)}  # fmt: skip


def test_a_confident_prediction_touching_a_neighbour_is_a_missing_box() -> None:
    from cleanlab.object_detection import rank

    given = _given(np.array([[10, 10, 30, 30], [40, 10, 60, 30]], np.float32), [0, 0])
    found = _predicted(np.array([[10, 10, 30, 30], [40, 10, 60, 30],
                                 [26, 26, 46, 46],    # a third object, overlapping both boxes
                                 [12, 12, 28, 29]],   # inside the first box: not a new object
                                np.float32), [0, 0, 0, 0], score=0.99)  # fmt: skip
    labels, preds = cleanlab_inputs([given], [found], 1)
    assert np.isnan(rank.compute_overlooked_box_scores(labels=labels, predictions=preds)[0][2])
    missing = detection_label_issues([given], [found], 1).missing
    assert missing["box"].tolist() == [[26.0, 26.0, 46.0, 46.0]]
    assert missing["overlooked"].iloc[0] < 0.1
    unsure = _predicted(found.boxes, [0, 0, 0, 0], score=0.9)  # below the 0.95 it asks
    assert detection_label_issues([given], [unsure], 1).missing.empty
