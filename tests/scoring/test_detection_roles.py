"""Hard / easy positives and hard negatives for detection: one known answer per role, the
one-to-one matching (against COCOeval's), image difficulty, and range properties."""

from __future__ import annotations

import contextlib
import io
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datapipe.objects import box_iou
from datapipe.scoring.detection import Boxes
from datapipe.scoring.detection_roles import (
    NEGATIVE_KINDS,
    ROLE_COLUMNS,
    ROLES,
    match_greedy,
    object_roles,
)

A = [10.0, 10.0, 50.0, 50.0]  # a 40 x 40 object
B = [60.0, 20.0, 90.0, 60.0]
FAR = [100.0, 100.0, 120.0, 120.0]  # background


def _given(boxes: list[list[float]], labels: list[int]) -> Boxes:
    return Boxes(np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64))


def _found(boxes: list[list[float]], labels: list[int], scores: list[float]) -> Boxes:
    return Boxes(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(scores, np.float32),
    )


def _shift(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def _rows(target: Boxes, prediction: Boxes, **kw: float) -> list[dict]:
    rows = object_roles([target], [prediction], **kw).rows
    return [
        {
            k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v)
            for k, v in row.items()
        }
        for row in rows.drop(columns="image").to_dict("records")
    ]


def _row(
    box: int, pred: int, cls: int, role: str, kind: str, diff: float, iou: float, score: float
) -> dict:
    return {
        "box": box,
        "prediction": pred,
        "class": cls,
        "role": role,
        "kind": kind,
        "difficulty": diff,
        "iou": iou,
        "score": score,
    }


def test_a_missed_object_is_a_hard_positive_of_difficulty_one() -> None:
    rows = _rows(_given([A], [0]), _found([], [], []))
    assert len(rows) == 1 and math.isnan(rows[0].pop("score"))
    assert rows == [
        {k: v for k, v in _row(0, -1, 0, "hard_positive", "", 1.0, 0.0, 0).items() if k != "score"}
    ]


def test_a_poorly_placed_box_is_a_hard_positive_and_a_background_negative() -> None:
    low = _shift(A, 24)  # IoU 16/64 = 0.25
    rows = _rows(_given([A], [0]), _found([low], [0], [0.8]))
    assert rows == [
        _row(0, 0, 0, "hard_positive", "", 0.8, 0.25, 0.8),  # 1 - 0.8 * 0.25
        _row(-1, 0, 0, "hard_negative", "background", 0.8, 0.25, 0.8),
    ]


def test_a_confident_tight_box_is_an_easy_positive() -> None:
    rows = _rows(_given([A], [0]), _found([A], [0], [0.9]))
    assert rows == [_row(0, 0, 0, "easy_positive", "", 0.1, 1.0, 0.9)]


@pytest.mark.parametrize(
    ("box", "score"),
    [(_shift(A, 9), 0.9), (A, 0.3)],
    ids=["iou-0.63-between-thresholds", "tight-but-unsure"],
)
def test_a_match_neither_poor_nor_easy_has_no_row(box: list[float], score: float) -> None:
    assert _rows(_given([A], [0]), _found([box], [0], [score])) == []


def test_a_confident_box_on_background_is_a_hard_negative() -> None:
    rows = _rows(_given([A], [0]), _found([A, FAR], [0, 1], [0.9, 0.7]))
    assert rows[1] == _row(-1, 1, 1, "hard_negative", "background", 0.7, 0.0, 0.7)


def test_an_unsure_box_on_background_is_not_a_hard_negative() -> None:
    assert _rows(Boxes.empty(), _found([FAR], [0], [0.4])) == []


def test_a_confident_wrong_class_misses_the_object_and_is_a_wrong_class_negative() -> None:
    rows = _rows(_given([A], [0]), _found([A], [1], [0.9]))
    assert [r["role"] for r in rows] == ["hard_positive", "hard_negative"]
    assert rows[1] == _row(-1, 0, 1, "hard_negative", "wrong_class", 0.9, 1.0, 0.9)


@pytest.mark.parametrize(
    ("second_score", "negatives"),
    [(0.8, [_row(-1, 1, 0, "hard_negative", "duplicate", 0.8, 1.0, 0.8)]), (0.3, [])],
    ids=["confident-duplicate", "unsure-duplicate"],
)
def test_two_boxes_on_one_object_match_once(second_score: float, negatives: list[dict]) -> None:
    rows = _rows(_given([A], [0]), _found([A, A], [0, 0], [0.9, second_score]))
    assert rows == [_row(0, 0, 0, "easy_positive", "", 0.1, 1.0, 0.9), *negatives]


def test_the_higher_score_matches_first_even_when_it_overlaps_less() -> None:
    loose = _shift(A, 9)  # IoU 0.633, score 0.9; the tight box (0.8) comes second
    roles = object_roles([_given([A], [0])], [_found([loose, A], [0, 0], [0.9, 0.8])])
    assert roles.rows[["prediction", "role", "kind"]].values.tolist() == [
        [1, "hard_negative", "duplicate"]
    ]
    assert roles.image_difficulty == pytest.approx([((1 - 0.9 * 31 / 49) + 0.8) / 2])


def test_one_box_over_two_objects_matches_the_better_one_only() -> None:
    twin = _shift(A, 4)  # two overlapping objects of one class
    between = _shift(A, 1)  # IoU 39/41 with A, 37/43 with the twin
    roles = object_roles([_given([A, twin], [0, 0])], [_found([between], [0], [0.9])])
    assert roles.rows[["box", "prediction", "role", "iou"]].values.tolist() == [
        [0, 0, "easy_positive", pytest.approx(39 / 41)],
        [1, -1, "hard_positive", 0.0],
    ]


def test_image_difficulty_is_the_mean_over_objects_and_hard_negatives() -> None:
    targets = [_given([A, B], [0, 1]), Boxes.empty(), Boxes.empty()]
    predictions = [
        _found([A], [0], [0.9]),  # A easy (0.1), B missed (1.0)
        _found([FAR], [0], [0.8]),  # a confident false positive only
        _found([FAR], [0], [0.2]),  # an unsure one: nothing hard here
    ]
    roles = object_roles(targets, predictions)
    assert roles.image_difficulty == pytest.approx([0.55, 0.8, 0.0])


def test_counts_are_per_role_and_class() -> None:
    targets = [_given([A, B], [0, 1]), _given([A], [1])]
    predictions = [_found([A, FAR], [0, 1], [0.9, 0.9]), _found([], [], [])]
    counts = object_roles(targets, predictions).counts
    assert counts == {
        "hard_positive": {0: 0, 1: 2},
        "easy_positive": {0: 1, 1: 0},
        "hard_negative": {0: 0, 1: 1},
    }


def test_no_images_give_empty_typed_rows() -> None:
    roles = object_roles([], [])
    assert list(roles.rows.columns) == list(ROLE_COLUMNS) and roles.rows.empty
    assert roles.rows["difficulty"].dtype == np.float64
    assert roles.image_difficulty.shape == (0,)


@pytest.mark.parametrize(
    ("targets", "predictions", "kw", "message"),
    [
        ([_given([A], [0])], [], {}, "one prediction per target"),
        ([_given([A], [0])], [_given([A], [0])], {}, "scores"),
        ([_given([A], [0])], [_found([A], [0], [1.5])], {}, r"scores in \[0, 1\]"),
        ([_given([A], [0])], [_found([A], [0], [0.5])], {"iou_threshold": 0.0}, "iou"),
        ([_given([A], [0])], [_found([A], [0], [0.5])], {"easy_score": 2.0}, "easy_score"),
    ],
    ids=["lengths", "no-scores", "score-range", "zero-iou", "threshold-range"],
)
def test_bad_inputs_are_refused(
    targets: list[Boxes], predictions: list[Boxes], kw: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=f"expected.*{message}"):
        object_roles(targets, predictions, **kw)


# --- the matching is COCO's -------------------------------------------------------------------


def _coco_matched(targets: list[Boxes], predictions: list[Boxes]) -> list[list[bool]]:
    """Which objects COCOeval matches at IoU 0.5 (one class, every area)."""
    images = [{"id": i + 1, "height": 200, "width": 200} for i in range(len(targets))]
    cats = [{"id": 1, "name": "x"}]

    def anns(boxes: list[Boxes], scored: bool) -> list[dict]:
        out = []
        for i, b in enumerate(boxes):
            for j, (x0, y0, x1, y1) in enumerate(b.boxes.tolist()):
                ann = {
                    "id": len(out) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                }
                if scored:
                    ann["score"] = float(b.scores[j])  # type: ignore[index]
                out.append(ann)
        return out

    with contextlib.redirect_stdout(io.StringIO()):
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "categories": cats, "annotations": anns(targets, False)}
        dt.dataset = {"images": images, "categories": cats, "annotations": anns(predictions, True)}
        gt.createIndex()
        dt.createIndex()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
    matched = []
    for i, t in enumerate(targets):  # evalImgs: category-major, then area range, then image
        e = evaluator.evalImgs[i]
        by_id = dict(zip(e["gtIds"], e["gtMatches"][0] > 0, strict=True)) if e else {}
        first = min(by_id, default=0)
        matched.append([bool(by_id.get(first + j, False)) for j in range(len(t.labels))])
    return matched


def _random_scene(rng: np.random.Generator, n_images: int) -> tuple[list[Boxes], list[Boxes]]:
    targets, predictions = [], []
    for _ in range(n_images):
        xy = rng.uniform(0, 150, (rng.integers(0, 8), 2))
        boxes = np.column_stack([xy, xy + rng.uniform(5, 50, xy.shape)])
        targets.append(Boxes(boxes.astype(np.float32), np.zeros(len(xy), np.int64)))
        near = boxes[rng.integers(0, len(xy), 10)] if len(xy) else np.zeros((0, 4))
        near = near + rng.normal(0, 6, near.shape)
        near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
        predictions.append(
            Boxes(
                near.astype(np.float32),
                np.zeros(len(near), np.int64),
                rng.random(len(near)).astype(np.float32),
            )
        )
    return targets, predictions


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_matching_agrees_with_cocoeval(seed: int) -> None:
    targets, predictions = _random_scene(np.random.default_rng(seed), 8)
    ours = []
    for t, p in zip(targets, predictions, strict=True):
        gt_match, _ = match_greedy(box_iou(t.boxes, p.boxes), p.scores, 0.5)  # type: ignore[arg-type]
        ours.append((gt_match >= 0).tolist())
    assert sum(map(sum, ours)) > 5  # the scenes do match things
    assert ours == _coco_matched(targets, predictions)


# --- properties ---------------------------------------------------------------------------------

_box = st.tuples(*[st.floats(0, 100, allow_nan=False)] * 2, *[st.floats(1, 60)] * 2).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
)
_image = st.tuples(
    st.lists(st.tuples(_box, st.integers(0, 2)), max_size=6),
    st.lists(st.tuples(_box, st.integers(0, 2), st.floats(0, 1)), max_size=8),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(_image, max_size=4))
def test_difficulty_in_unit_range_and_each_box_used_once(images: list) -> None:
    targets = [_given([b for b, _ in t], [c for _, c in t]) for t, _ in images]
    predictions = [
        _found([b for b, _, _ in p], [c for _, c, _ in p], [s for _, _, s in p]) for _, p in images
    ]
    roles = object_roles(targets, predictions)
    rows = roles.rows
    assert rows["difficulty"].between(0, 1).all()
    assert ((roles.image_difficulty >= 0) & (roles.image_difficulty <= 1)).all()
    assert set(rows["role"]) <= set(ROLES)
    assert set(rows.loc[rows["role"] == "hard_negative", "kind"]) <= set(NEGATIVE_KINDS)
    positives = rows[rows["role"] != "hard_negative"]
    assert not positives.duplicated(["image", "box"]).any()
    matched = positives[positives["role"] == "easy_positive"]
    negatives = rows[rows["role"] == "hard_negative"]
    assert not matched.duplicated(["image", "prediction"]).any()  # one-to-one
    assert not negatives.duplicated(["image", "prediction"]).any()
    # a prediction that matched an object is never a hard negative too
    assert matched.merge(negatives, on=["image", "prediction"]).empty


def test_importing_does_not_load_torch() -> None:
    probe = "import sys, datapipe.scoring.detection_roles; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
