"""Objects as per-image targets, the object confusion, and the object stages' data paths on
the sample detection set (ingest's objects table and strata, clean's annotation rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datapipe.config import CleanParams, DatasetParams
from datapipe.detect.score import object_confusion
from datapipe.detect.targets import image_objects, scale_boxes
from datapipe.ingest import ingest
from datapipe.io import read_table
from datapipe.scoring.detection import Boxes
from tests.conftest import SAMPLE_DATA


def _row(sid: str, oid: str, cls: str, box: tuple[float, ...], **extra: object) -> dict:
    return {"sample_id": sid, "object_id": oid, "class": cls, "x0": box[0], "y0": box[1],
            "x1": box[2], "y1": box[3], "problem": "", "relative": False, "iscrowd": False,
            **extra}  # fmt: skip


def test_image_objects_clip_and_skip_what_cannot_train() -> None:
    objects = pd.DataFrame([
        _row("a", "1", "disk", (-5, 2, 12, 8)),  # overhangs: clipped to the image
        _row("a", "2", "disk", (4, 4, 4, 9)),  # zero width: not a target
        _row("a", "3", "square", (1, 1, 5, 5), problem="unknown category_id 42"),
        _row("a", "4", "square", (0, 0, 10, 10), iscrowd=True),
        _row("b", "5", "square", (2, 2, 6, 7)),
    ])  # fmt: skip
    got = image_objects(objects, ["a", "b", "c"], [(10, 10), (20, 20), (5, 5)],
                        classes=["disk", "square"])  # fmt: skip
    assert got.object_ids == [["1"], ["5"], []]
    np.testing.assert_array_equal(got.targets[0].boxes, [[0, 2, 10, 8]])
    np.testing.assert_array_equal(got.targets[1].labels, [1])
    assert got.targets[2].boxes.shape == (0, 4)


def test_an_image_without_objects_gets_an_empty_mask_stack_of_its_size() -> None:
    objects = pd.DataFrame([_row("a", "1", "disk", (1, 1, 5, 5), instance_mask="")])
    got = image_objects(objects, ["a", "empty"], [(10, 12), (7, 9)], classes=["disk"], masks=True)
    assert got.targets[1].masks is not None and got.targets[1].masks.shape == (0, 7, 9)
    plain = image_objects(objects, ["empty"], [(7, 9)], classes=["disk"])
    assert plain.targets[0].masks is None and len(plain.targets[0].boxes) == 0


def test_a_single_class_detection_set_is_scored_with_background_as_the_other(det_ingest) -> None:
    import torch

    from datapipe.config import DetectionFitParams, ScoreParams
    from datapipe.score import score

    dataset, result = det_ingest
    keep = result.manifest[result.manifest["split"] != "test"].head(9).copy()
    keep["excluded"] = False
    objects = result.objects[result.objects["sample_id"].isin(keep["sample_id"])]
    objects = objects.assign(**{"class": "shape"})
    stats = {**result.stats, "classes": ["shape"]}
    fit = DetectionFitParams(image_size=64, epochs=1, batch_size=4)
    out = score(keep, stats, pd.DataFrame({"sample_id": [], "check": []}),
                dataset.model_copy(update={"classes": ["shape"]}), ScoreParams(detection=fit),
                workers=0, device=torch.device("cpu"), objects=objects)  # fmt: skip
    assert out is not None and out.scores["scored"].sum() == 9
    assert out.scores["label_quality"].between(0, 1).all()
    with pytest.raises(ValueError, match="at least 2 classes"):
        DatasetParams(root=SAMPLE_DATA / "shapes_det", task="classification", classes=["a"])
    assert DatasetParams(root=SAMPLE_DATA / "shapes_det", task="detection",
                         classes=["a"]).classes == ["a"]  # fmt: skip


def test_scale_boxes_scales_x_and_y_apart() -> None:
    found = scale_boxes(Boxes(np.array([[10, 20, 30, 40]], np.float32), np.array([0])), 0.5, 2.0)
    np.testing.assert_array_equal(found.boxes, [[5, 40, 15, 80]])


def test_object_confusion_counts_matches_misses_and_false_alarms() -> None:
    truth = [Boxes(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0, 1]))]
    found = [Boxes(np.array([[0, 0, 10, 11], [50, 50, 60, 60], [20, 20, 30, 30]], np.float32),
                   np.array([1, 0, 1]), np.array([0.9, 0.8, 0.3], np.float32))]  # fmt: skip
    cm = object_confusion(truth, found, 2)
    # object 0 (class 0) matched by a class-1 prediction; object 1's only match is not
    # confident (a miss); the prediction on nothing is a false alarm of class 0
    expected = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(cm, expected)


@pytest.fixture(scope="module")
def det_ingest():
    dataset = DatasetParams(root=SAMPLE_DATA / "shapes_det", task="detection", folds=3)
    return dataset, ingest(dataset, name="shapes_det", workers=0)


def test_ingest_writes_every_object_and_every_class_reaches_every_split(det_ingest) -> None:
    _, result = det_ingest
    import json

    coco = json.loads((SAMPLE_DATA / "shapes_det" / "annotations.json").read_text())
    assert len(result.objects) == len(coco["annotations"])
    assert set(result.objects["object_id"]) == {str(a["id"]) for a in coco["annotations"]}
    per_split = result.stats["object_counts_by_split"]
    assert set(per_split) == {"train", "val", "test"}
    for split, counts in per_split.items():
        assert all(n > 0 for n in counts.values()), (split, counts)
    usable = result.objects[result.objects["problem"] == ""]
    assert result.manifest["n_objects"].sum() == len(usable)


def test_clean_names_the_object_of_each_annotation_finding(det_ingest, tmp_path) -> None:
    from datapipe.clean import clean

    dataset, result = det_ingest
    out = clean(result.manifest, result.stats, dataset, CleanParams(), workers=0,
                name="shapes_det", objects=result.objects, detector_size=128)  # fmt: skip
    planted = read_table(SAMPLE_DATA / "shapes_det" / "planted.csv")
    issues = out.issues
    for check in ("box_degenerate", "box_outside", "duplicate_box", "annotation_problem"):
        rows = issues[issues["check"] == check]
        assert len(rows) >= 1 and (rows["object_id"] != "").all(), check
    assert (issues["check"] == "image_missing").sum() == 1
    image_rows = issues[~issues["check"].isin(out.metrics["by_object_check"])]
    assert (image_rows["object_id"] == "").all()
    assert out.metrics["by_object_check"]["box_outside"] >= 1
    kinds = {"box_outside": "box_outside", "degenerate_box": "box_degenerate",
             "duplicate_box": "duplicate_box", "unknown_category": "annotation_problem",
             "mask_box_mismatch": "mask_box_mismatch"}  # fmt: skip
    found = set(zip(issues["object_id"], issues["check"], strict=True))
    for object_id, problem in zip(planted["object_id"], planted["problem"], strict=True):
        if problem in kinds:
            assert (str(object_id), kinds[problem]) in found, (object_id, problem)


def test_object_task_models_are_detectors_the_factory_builds() -> None:
    from datapipe import tasks
    from datapipe.models import DETECTORS

    for module in tasks.TASKS.values():
        if module.objects:
            assert module.models[0] == "auto" and set(module.models[1:]) <= set(DETECTORS)


def test_judge_writes_the_false_alarm_box_and_one_issue_row_per_flagged_object() -> None:
    from datapipe.detect.score import judge
    from datapipe.detect.targets import ImageObjects

    truth = Boxes(np.array([[10, 10, 30, 30], [50, 50, 70, 70]], np.float32), np.array([0, 1]))
    found = Boxes(
        np.array([[10, 10, 30, 30], [50, 50, 70, 70], [90, 90, 110, 110]], np.float32),
        np.array([0, 0, 1]), np.array([0.99, 0.99, 0.99], np.float32),
    )  # fmt: skip
    judged = judge(ImageObjects([truth], [["a", "b"]]), [found], ["disk", "square"],
                   sizes=[(128, 128)], max_detections=100)  # fmt: skip
    alarm = judged.hard[(judged.hard["role"] == "hard_negative") & (judged.hard["box"] < 0)]
    assert "[90.0, 90.0, 110.0, 110.0]" in set(alarm["predicted_box"])
    wrong = judged.issues[judged.issues["object_id"] == "b"]
    assert wrong["issue"].tolist() == ["wrong_class"]
    assert wrong["suggested_class"].tolist() == ["disk"]
    assert judged.images["is_label_issue"].tolist() == [True]
