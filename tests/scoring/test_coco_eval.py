"""COCO metrics through pycocotools: known answers, the maxDets cap, masks, crowds, and
pycocotools' own summary as an oracle."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datapipe.scoring.coco_eval import METRIC_KEYS, coco_metrics
from datapipe.scoring.detection import Boxes

CLASSES = ["cat", "dog"]
SIZE = (64, 96)  # (H, W)
A = [10.0, 10.0, 50.0, 50.0]  # a 40 x 40 box (medium)
B = [60.0, 20.0, 90.0, 60.0]


def _given(boxes: list[list[float]], labels: list[int], masks: np.ndarray | None = None) -> Boxes:
    return Boxes(
        np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), None, masks
    )


def _found(
    boxes: list[list[float]],
    labels: list[int],
    scores: list[float] | None = None,
    masks: np.ndarray | None = None,
) -> Boxes:
    scores = [0.9] * len(labels) if scores is None else scores
    return Boxes(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(scores, np.float32),
        masks,
    )


def _mask(box: list[float], size: tuple[int, int] = SIZE) -> np.ndarray:
    m = np.zeros(size, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = True
    return m


def _metrics(targets: list[Boxes], predictions: list[Boxes], **kw: object) -> dict:
    return coco_metrics(targets, predictions, CLASSES, sizes=[SIZE] * len(targets), **kw)  # type: ignore[arg-type]


def test_perfect_predictions_score_one() -> None:
    targets = [_given([A, B], [0, 1]), _given([B], [0])]
    out = _metrics(targets, [_found([A, B], [0, 1]), _found([B], [0])])
    picked = {k: out[k] for k in ("map", "map_50", "map_75", "map_medium", "mar_1", "mar_100")}
    assert picked == pytest.approx(dict.fromkeys(picked, 1.0))
    assert out["map_per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0})


def test_a_box_at_iou_0_63_counts_at_50_not_at_75() -> None:
    shifted = [A[0] + 9, A[1], A[2] + 9, A[3]]  # IoU 31/49 = 0.633: thresholds 0.5, 0.55, 0.6
    out = _metrics([_given([A], [0])], [_found([shifted], [0])])
    assert (out["map_50"], out["map_75"], out["map"]) == pytest.approx((1.0, 0.0, 0.3))


def test_a_wrong_class_prediction_gives_that_class_ap_zero() -> None:
    targets = [_given([A, B], [0, 1])]
    predictions = [_found([A, B], [0, 0], scores=[0.9, 0.5])]  # dog's box called a cat
    out = _metrics(targets, predictions)
    assert out["map_per_class"] == pytest.approx({"cat": 1.0, "dog": 0.0})
    assert out["map"] == pytest.approx(0.5)


def test_no_predictions_at_all_score_zero() -> None:
    targets = [_given([A], [0]), _given([B], [1])]
    out = _metrics(targets, [Boxes.empty(), Boxes.empty()])
    assert (out["map"], out["mar_100"], out["map_per_class"]) == (
        0.0,
        0.0,
        {"cat": 0.0, "dog": 0.0},
    )


def test_no_objects_and_no_predictions_give_none_not_minus_one() -> None:
    out = _metrics([Boxes.empty()], [Boxes.empty()])
    assert all(out[k] is None for k in METRIC_KEYS)
    assert out["map_per_class"] == {"cat": None, "dog": None}


def test_a_class_without_ground_truth_is_none_and_left_out_of_the_mean() -> None:
    predictions = [_found([A, B], [0, 1], scores=[0.9, 0.95])]  # a dog where none is
    out = _metrics([_given([A], [0])], predictions)
    assert out["map_per_class"] == {"cat": pytest.approx(1.0), "dog": None}
    assert out["map"] == pytest.approx(1.0)


def test_a_false_positive_on_an_image_without_objects_lowers_ap() -> None:
    targets = [_given([A], [0]), Boxes.empty()]
    predictions = [_found([A], [0], scores=[0.5]), _found([B], [0], scores=[0.9])]
    out = _metrics(targets, predictions)
    # ranked: FP then TP -> precision 1/2 at every recall threshold
    assert out["map"] == pytest.approx(0.5)
    assert out["mar_100"] == pytest.approx(1.0)


def _grid(n: int) -> list[list[float]]:
    """``n`` disjoint 6 x 6 boxes on a 10-pixel grid."""
    return [
        [10.0 * (k % 15), 10.0 * (k // 15), 10.0 * (k % 15) + 6, 10.0 * (k // 15) + 6]
        for k in range(n)
    ]


def test_mar_max_counts_detections_past_100() -> None:
    boxes = _grid(150)
    targets = [_given(boxes, [0] * 150)]
    predictions = [_found(boxes, [0] * 150, scores=list(np.linspace(0.99, 0.5, 150)))]
    kw = {"sizes": [(160, 160)], "max_detections": 200}
    out = coco_metrics(targets, predictions, CLASSES, **kw)  # type: ignore[arg-type]
    assert (out["mar_100"], out["mar_max"]) == pytest.approx((100 / 150, 1.0))
    assert out["map"] == pytest.approx(1.0)


def test_mar_max_is_mar_100_by_default() -> None:
    boxes = _grid(150)
    out = coco_metrics(
        [_given(boxes, [0] * 150)], [_found(boxes, [0] * 150)], CLASSES, sizes=[(160, 160)]
    )
    assert out["mar_max"] == pytest.approx(out["mar_100"]) == pytest.approx(100 / 150)


def test_a_perfect_mask_scores_one() -> None:
    targets = [_given([A], [0], masks=_mask(A)[None])]
    predictions = [_found([A], [0], masks=_mask(A)[None])]
    out = _metrics(targets, predictions, masks=True)
    assert (out["mask_map"], out["mask_mar_max"], out["map"]) == pytest.approx((1.0, 1.0, 1.0))


def test_a_mask_covering_about_half_the_object_scores_lower() -> None:
    half = [A[0], A[1], A[0] + 21, A[3]]  # mask IoU 21/40 = 0.525: only the 0.5 threshold
    targets = [_given([A], [0], masks=_mask(A)[None])]
    predictions = [_found([A], [0], masks=_mask(half)[None])]
    out = _metrics(targets, predictions, masks=True)
    assert (out["map"], out["mask_map_50"], out["mask_map_75"], out["mask_map"]) == (
        pytest.approx((1.0, 1.0, 0.0, 0.1))
    )


def test_mask_areas_decide_the_size_range() -> None:
    thin = np.zeros(SIZE, bool)
    thin[10:50, 10:12] = True  # an 80-pixel mask in a medium box: a small object
    out = _metrics(
        [_given([A], [0], masks=thin[None])], [_found([A], [0], masks=thin[None])], masks=True
    )
    assert (out["map_medium"], out["mask_map_small"], out["mask_map_medium"]) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
        None,
    )


def test_crowd_regions_are_neither_missed_nor_false_positives() -> None:
    crowd_box = [50.0, 5.0, 95.0, 60.0]
    inside = [55.0, 10.0, 70.0, 25.0]  # IoU with the region < 0.5, but wholly inside it
    targets = [_given([A, crowd_box], [0, 0])]
    predictions = [_found([A, inside], [0, 0], scores=[0.8, 0.95])]
    flagged = _metrics(targets, predictions, crowd=[np.array([False, True])])
    plain = _metrics(targets, predictions)
    assert (flagged["map"], flagged["mar_100"]) == pytest.approx((1.0, 1.0))
    # unflagged: the region is a missed object and the box inside it an FP ranked first, so
    # precision is 1/2 on COCO's 51 recall points up to 0.5 (of 101) and 0 beyond
    assert (plain["map"], plain["mar_100"]) == pytest.approx((51 * 0.5 / 101, 0.5))


def test_the_result_is_json_without_nan() -> None:
    out = _metrics(
        [_given([A], [0]), Boxes.empty()], [_found([B], [1]), Boxes.empty()], masks=False
    )
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert set(out) == {*METRIC_KEYS, "map_per_class"}


@pytest.mark.parametrize(
    ("targets", "predictions", "kw", "message"),
    [
        ([_given([A], [0])], [], {}, "one prediction and one size"),
        ([_given([A], [2])], [_found([A], [0])], {}, "labels in"),
        ([_given([A], [0])], [_given([A], [0])], {}, "scores"),
        ([_given([[50.0, 10.0, 10.0, 50.0]], [0])], [Boxes.empty()], {}, "x1 >= x0"),
        ([_given([A], [0])], [_found([A], [0])], {"masks": True}, "masks"),
        ([_given([A], [0])], [_found([A], [0])], {"crowd": [np.zeros(2, bool)]}, "crowd"),
        ([_given([A], [0])], [_found([A], [0])], {"max_detections": 0}, "max_detections"),
    ],
    ids=[
        "lengths",
        "label-range",
        "no-scores",
        "inverted-box",
        "no-masks",
        "crowd-shape",
        "max-detections",
    ],
)
def test_bad_inputs_are_refused(
    targets: list[Boxes], predictions: list[Boxes], kw: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=f"expected.*{message}"):
        _metrics(targets, predictions, **kw)


# --- oracle: pycocotools' own summary through a JSON file and loadRes -------------------------


def _scene(rng: np.random.Generator, n_images: int) -> tuple[list[Boxes], list[Boxes]]:
    targets, predictions = [], []
    for _ in range(n_images):
        xy = rng.uniform(0, 60, (rng.integers(0, 8), 2))
        boxes = np.column_stack([xy, xy + rng.uniform(4, 120, (len(xy), 2))])
        labels = rng.integers(0, 2, len(xy))
        targets.append(Boxes(boxes.astype(np.float32), labels.astype(np.int64)))
        jitter = boxes + rng.normal(0, 3, boxes.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        extra = rng.uniform(0, 60, (2, 2))
        found = np.concatenate([jitter, np.column_stack([extra, extra + 10])])
        flips = np.where(rng.random(len(xy)) < 0.2, 1 - labels, labels)
        found_labels = np.concatenate([flips, rng.integers(0, 2, 2)])
        predictions.append(
            Boxes(
                found.astype(np.float32),
                found_labels.astype(np.int64),
                rng.random(len(found)).astype(np.float32),
            )
        )
    return targets, predictions


def _summarize(path: Path, targets: list[Boxes], predictions: list[Boxes]) -> list[float]:
    images = [{"id": i + 7, "height": 100, "width": 100} for i in range(len(targets))]
    anns, results = [], []
    for i, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        for box, label in zip(t.boxes.tolist(), t.labels.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 7,
                    "category_id": label + 3,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, label, score in zip(
            p.boxes.tolist(),
            p.labels.tolist(),
            p.scores.tolist(),  # type: ignore[union-attr]
            strict=True,
        ):
            results.append(
                {
                    "image_id": i + 7,
                    "category_id": label + 3,
                    "score": score,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                }
            )
    cats = [{"id": 3, "name": "cat"}, {"id": 4, "name": "dog"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools_summarize(tmp_path: Path, seed: int) -> None:
    targets, predictions = _scene(np.random.default_rng(seed), 6)
    out = coco_metrics(targets, predictions, CLASSES, sizes=[(100, 100)] * 6)
    stats = _summarize(tmp_path / "gt.json", targets, predictions)
    keys = [
        "map",
        "map_50",
        "map_75",
        "map_small",
        "map_medium",
        "map_large",
        "mar_1",
        "mar_10",
        "mar_100",
        "mar_small",
        "mar_medium",
        "mar_large",
    ]
    ours = [-1.0 if out[k] is None else out[k] for k in keys]
    assert ours == pytest.approx(stats)


def test_importing_does_not_load_torch() -> None:
    probe = "import sys, datapipe.scoring.coco_eval; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
