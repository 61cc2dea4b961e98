"""Box and instance-mask checks: each planted problem is found on the right object, and
clean boxes raise nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from datapipe.checks.boxes import BOX_ISSUE_COLUMNS, BoxCheckSettings, box_issues
from datapipe.manifest import sample_id
from datapipe.objects import OBJECT_COLUMNS, ImageEntry

IMAGE = "images/a.png"
SID = sample_id(IMAGE)
SIZE = {SID: (100, 200)}  # height, width
SETTINGS = BoxCheckSettings(min_size=100, smallest_anchor=32.0)  # no resizing: 8 px is tiny


def _objects(*rows: dict) -> pd.DataFrame:
    base = {"sample_id": SID, "image": IMAGE, "class": "cat", "class_id": 0, "area": 0.0,
            "iscrowd": False, "difficult": False, "instance_mask": "", "relative": False,
            "problem": ""}  # fmt: skip
    return pd.DataFrame([{**base, **r} for r in rows], columns=list(OBJECT_COLUMNS))


def _box(object_id: str, x0: float, y0: float, x1: float, y1: float, **kw: object) -> dict:
    return {"object_id": object_id, "x0": x0, "y0": y0, "x1": x1, "y1": y1, **kw}


def _found(objects: pd.DataFrame, images: list[ImageEntry] | None = None) -> set[tuple[str, str]]:
    issues = box_issues(objects, images or [ImageEntry(IMAGE)], SIZE, SETTINGS)
    assert list(issues.columns) == list(BOX_ISSUE_COLUMNS)
    assert issues["score"].between(0, 1).all()
    return set(zip(issues["object_id"], issues["check"], strict=True))


def test_clean_boxes_raise_nothing() -> None:
    objects = _objects(_box("a", 10, 10, 60, 50), _box("b", 100, 20, 160, 90, **{"class": "dog"}))
    assert _found(objects) == set()


@pytest.mark.parametrize(
    ("box", "check"),
    [
        (_box("z", 10, 10, 10, 40), "box_degenerate"),
        (_box("z", 30, 10, 20, 40), "box_degenerate"),
        (_box("z", 210, 10, 250, 40), "box_outside"),
        (_box("z", -20, 10, 30, 40), "box_clipped"),
        (_box("z", 190, 80, 230, 120), "box_clipped"),
        (_box("z", 10, 10, 16, 16), "box_tiny"),
        (_box("z", 10, 10, 190, 20), "box_aspect"),
    ],
)
def test_one_bad_box_is_flagged_with_its_check(box: dict, check: str) -> None:
    objects = _objects(_box("ok", 50, 40, 100, 90), box)
    assert _found(objects) == {("z", check)}


def test_a_box_overhanging_by_less_than_the_tolerance_is_fine() -> None:
    assert _found(_objects(_box("a", -0.5, 0, 200.5, 100))) == set()


def test_duplicates_flag_the_later_box_and_class_overlaps_flag_both() -> None:
    objects = _objects(
        _box("first", 10, 10, 60, 60),
        _box("again", 11, 10, 60, 61),  # IoU 0.96, same class
        _box("cat2", 100, 10, 150, 60),
        _box("dog", 100, 10, 150, 61, **{"class": "dog", "class_id": 1}),  # same place
    )
    assert _found(objects) == {
        ("again", "duplicate_box"),
        ("cat2", "class_overlap"),
        ("dog", "class_overlap"),
    }


def test_masks_that_disagree_with_their_box_or_do_not_decode() -> None:
    square = json.dumps([[10, 10, 50, 10, 50, 50, 10, 50]])
    objects = _objects(
        _box("match", 10, 10, 50, 50, instance_mask=square),
        _box("elsewhere", 120, 40, 180, 90, instance_mask=square),
        _box("broken", 60, 60, 90, 90, instance_mask=json.dumps([[1, 2, 3]])),
    )
    assert _found(objects) == {("elsewhere", "mask_box_mismatch"), ("broken", "mask_invalid")}


def test_image_level_findings_and_entry_problems() -> None:
    objects = _objects(_box("bad", 1, 1, 5, 5, problem="x.json annotations[3]: unknown id"))
    images = [ImageEntry(IMAGE), ImageEntry("images/none.png"),
              ImageEntry("images/gone.png", problem="listed in x.json but not found")]  # fmt: skip
    issues = box_issues(objects, images, SIZE, SETTINGS)
    rows = {(r.image, r.object_id, r.check, r.severity) for r in issues.itertuples()}
    assert rows == {
        (IMAGE, "bad", "annotation_problem", "error"),
        ("images/none.png", "", "no_objects", "info"),
        ("images/gone.png", "", "image_missing", "error"),
    }


def test_tiny_is_relative_to_the_detectors_input_size() -> None:
    objects = _objects(_box("small", 10, 10, 16, 16))  # 6 px on a 100 px short side
    upscaled = box_issues(objects, [ImageEntry(IMAGE)], SIZE, BoxCheckSettings(min_size=800))
    assert upscaled.empty  # 48 px at 800: above a quarter of the 32 px anchor
    assert _found(objects) == {("small", "box_tiny")}
