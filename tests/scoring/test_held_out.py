"""Held-out detector predictions on disk per fold: a lossless round trip, refusal of foreign or
damaged files, and a killed out-of-fold run resuming at its first unfinished fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datapipe.models import build_detector
from datapipe.scoring.detection import Boxes, detection_out_of_fold
from datapipe.scoring.held_out import HeldOutStore
from datapipe.scoring.masks import RleMasks
from datapipe.scoring.oof import TrainSettings


def _found(n: int, seed: int, masks: bool) -> Boxes:
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 30, (n, 2)).astype(np.float32)
    boxes = np.concatenate([corner, corner + rng.uniform(2, 10, (n, 2))], axis=1)
    dense = rng.random((n, 40, 40)) > 0.7
    return Boxes(boxes.astype(np.float32), rng.integers(0, 3, n), rng.random(n).astype(np.float32),
                 RleMasks.encode(dense) if masks else None)  # fmt: skip


def _assert_same(a: Boxes, b: Boxes) -> None:
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.scores, b.scores)
    if a.masks is None:
        assert b.masks is None
    else:
        assert b.masks is not None and a.masks.shape == b.masks.shape
        np.testing.assert_array_equal(a.dense_masks(), b.dense_masks())


@pytest.mark.parametrize("masks", [False, True])
def test_a_fold_round_trips_boxes_scores_masks_and_images_without_predictions(
    tmp_path: Path, masks: bool
) -> None:
    store = HeldOutStore(tmp_path / "state", "abc")
    found = [_found(4, 0, masks), _found(0, 1, masks), _found(7, 2, masks)]
    store.save(2, np.array([5, 9, 11]), found)
    back = store.load(2)
    assert back is not None and sorted(back) == [5, 9, 11]
    for position, one in zip([5, 9, 11], found, strict=True):
        _assert_same(one, back[position])
    assert back[9].masks is None if not masks else back[9].masks.shape == (0, 40, 40)


def test_a_foreign_or_damaged_fold_file_is_not_used(tmp_path: Path) -> None:
    HeldOutStore(tmp_path, "old inputs").save(0, np.array([1]), [_found(2, 0, False)])
    assert HeldOutStore(tmp_path, "new inputs").load(0) is None
    assert HeldOutStore(tmp_path, "old inputs").load(1) is None  # never written
    HeldOutStore(tmp_path, "old inputs").path(0).write_bytes(b"PAR1 torn")
    assert HeldOutStore(tmp_path, "old inputs").load(0) is None
    HeldOutStore(tmp_path, "x").clear()
    assert not list(tmp_path.glob("held_out.*"))


def test_a_run_resumes_at_the_fold_whose_predictions_are_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.normal(0, 0.1, (1, 48, 48)).astype(np.float32) for _ in range(6)]
    for i, image in enumerate(images):
        image[0, 8 + 2 * i : 28 + 2 * i, 10:30] += 2.0
    targets = [Boxes(np.array([[10, 8 + 2 * i, 30, 28 + 2 * i]], np.float32), np.array([0]))
               for i in range(6)]  # fmt: skip
    folds = np.arange(6) % 3
    built: list[int] = []

    def make_model():  # every box scored, so the predictions are many and comparable
        built.append(1)
        return build_detector("fasterrcnn_small", in_channels=1, num_classes=1, min_size=48,
                              max_size=48, options={"box_score_thresh": 0.0})  # fmt: skip

    def run(store: HeldOutStore) -> list[Boxes]:
        return detection_out_of_fold(
            images, targets, folds, make_model=make_model, store=store,
            settings=TrainSettings.of(epochs=1, batch_size=2, lr=0.002, amp=False),
        )  # fmt: skip

    store = HeldOutStore(tmp_path, "inputs")
    first = run(store)
    assert len(built) == 3 and sum(len(p.boxes) for p in first) > 0
    store.path(1).unlink()  # as if killed while fold 1 trained
    built.clear()
    again = run(store)
    assert len(built) == 1  # folds 0 and 2 come from disk
    for a, b in zip(first, again, strict=True):
        _assert_same(a, b)  # fold 1 retrains with its own seed: the same predictions
