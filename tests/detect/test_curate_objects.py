"""Per-object curation: the precedence of clean, review and policy, and the review checks."""

from __future__ import annotations

import pandas as pd
import pytest

from datapipe.config import CurateParams
from datapipe.detect.curate import curate_objects, parse_box, validate_object_review
from datapipe.errors import DatapipeError

CLASSES = ["disk", "square"]


def _objects() -> pd.DataFrame:
    rows = [  # sample, object, class, box
        ("a", "1", "disk", (0, 0, 10, 10)),
        ("a", "2", "square", (20, 20, 30, 30)),
        ("b", "3", "disk", (5, 5, 15, 15)),
        ("t", "4", "disk", (1, 1, 9, 9)),  # a test image
        ("d", "5", "square", (2, 2, 8, 8)),  # an image curation dropped
    ]
    return pd.DataFrame([
        {"sample_id": s, "image": f"{s}.png", "object_id": o, "class": c,
         "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]} for s, o, c, b in rows
    ])  # fmt: skip


def _images() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": ["a", "b", "t", "d"],
                         "split": ["train", "train", "test", "train"],
                         "action": ["keep", "keep", "keep", "drop"]})  # fmt: skip


def _issues(*rows: tuple[str, str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sample_id", "object_id", "issue", "suggested_class",
                                       "suggested_box"])  # fmt: skip


def _clean(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sample_id", "object_id", "check"])


def _curate(issues: pd.DataFrame, clean: pd.DataFrame | None = None, review=None,
            **policy) -> pd.DataFrame:  # fmt: skip
    out = curate_objects(
        _objects(), _images(), box_issues=issues, data_issues=clean if clean is not None
        else _clean(), classes=CLASSES, policy=CurateParams(**policy), review=review,
    )  # fmt: skip
    return out.set_index("object_id")


def test_fix_relabels_a_wrong_class_and_reboxes_a_mislocated_box() -> None:
    out = _curate(_issues(("a", "1", "wrong_class", "square", ""),
                          ("b", "3", "mislocated", "", "[6.0, 6.0, 16.0, 16.0]")))  # fmt: skip
    assert (out.loc["1", "action"], out.loc["1", "final_class"]) == ("relabel", "square")
    assert out.loc["3", "action"] == "rebox"
    assert out.loc["3", ["x0", "y0", "x1", "y1"]].tolist() == [6.0, 6.0, 16.0, 16.0]
    assert out.loc["2", "action"] == "keep" and out.loc["2", "final_class"] == "square"


def test_empty_suggestions_read_back_from_csv_are_no_suggestions(tmp_path) -> None:
    path = tmp_path / "label_issues.csv"
    _issues(("a", "1", "wrong_class", "", ""), ("b", "3", "mislocated", "", "")).to_csv(path)
    out = _curate(pd.read_csv(path, dtype={"sample_id": str, "object_id": str}))
    assert out.loc["1", ["action", "final_class"]].tolist() == ["keep", "disk"]
    assert out.loc["3", "action"] == "keep"


def test_a_flag_without_a_suggestion_keeps_the_box_and_says_why() -> None:
    out = _curate(_issues(("a", "1", "mislocated", "", "")))
    assert (out.loc["1", "action"], out.loc["1", "reason"]) == ("keep", "mislocated")


def test_the_policy_leaves_the_test_split_as_given() -> None:
    out = _curate(_issues(("t", "4", "wrong_class", "square", "")))
    assert (out.loc["4", "action"], out.loc["4", "final_class"]) == ("keep", "disk")


@pytest.mark.parametrize(("boxes", "expected"), [("drop", "drop"), ("keep", "keep")])
def test_drop_and_keep_policies(boxes: str, expected: str) -> None:
    out = _curate(_issues(("a", "1", "wrong_class", "square", "")), boxes=boxes)
    assert out.loc["1", "action"] == expected


def test_clean_errors_beat_a_review_and_a_dropped_image_drops_its_boxes() -> None:
    review = pd.DataFrame([{"sample_id": "a", "object_id": "2", "decision": "keep", "label": "",
                            "box": "", "note": "looks fine", "row": 2}])  # fmt: skip
    out = _curate(_issues(), _clean(("a", "2", "box_degenerate")), review=review)
    assert (out.loc["2", "action"], out.loc["2", "source"]) == ("exclude", "clean")
    assert out.loc["2", "final_class"] == ""
    assert (out.loc["5", "action"], out.loc["5", "source"]) == ("drop", "image")


def test_a_review_overrides_the_policy_and_adds_a_missing_box() -> None:
    review = pd.DataFrame([
        {"sample_id": "a", "object_id": "1", "decision": "keep", "label": "", "box": "",
         "note": "", "row": 2},
        {"sample_id": "b", "object_id": "", "decision": "add", "label": "square",
         "box": "[30, 30, 40, 44]", "note": "missed", "row": 3},
    ])  # fmt: skip
    out = _curate(_issues(("a", "1", "wrong_class", "square", "")), review=review)
    assert (out.loc["1", "action"], out.loc["1", "final_class"]) == ("keep", "disk")
    added = out.loc["review:3"]
    assert (added["action"], added["final_class"], added["sample_id"]) == ("add", "square", "b")
    assert added[["x0", "y0", "x1", "y1"]].tolist() == [30.0, 30.0, 40.0, 44.0]
    assert added["split"] == "train"


def _sheet(**row: str) -> pd.DataFrame:
    base = {"sample_id": "a", "object_id": "1", "decision": "keep", "label": "", "box": "",
            "note": ""}  # fmt: skip
    return pd.DataFrame([base | row])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"decision": "move"}, "decision 'move'"),
        ({"sample_id": "zz"}, "unknown sample_id 'zz'"),
        ({"object_id": "9"}, "no object '9' in a"),
        ({"decision": "relabel", "label": "star"}, "unknown class 'star'"),
        ({"decision": "rebox", "box": "[5, 5, 1, 9]"}, "box: expected x1 > x0"),
        ({"decision": "add", "label": "disk", "box": "[1, 1, 2, 2]"}, "leave object_id empty"),
    ],
    ids=["decision", "sample", "object", "class", "box", "add-with-id"],
)
def test_bad_review_rows_name_the_row(row: dict[str, str], message: str) -> None:
    with pytest.raises(DatapipeError, match=f"sheet.csv row 2: .*{message}"):
        validate_object_review(_sheet(**row), objects=_objects(), sample_ids=list("abtd"),
                               classes=CLASSES, name="sheet.csv")  # fmt: skip


def test_a_valid_sheet_keeps_its_decided_rows_only() -> None:
    sheet = pd.concat([_sheet(), _sheet(object_id="2", decision="")])
    decided = validate_object_review(sheet, objects=_objects(), sample_ids=list("abtd"),
                                     classes=CLASSES)  # fmt: skip
    assert decided["object_id"].tolist() == ["1"] and decided["row"].tolist() == [2]


def test_parse_box_reads_text_and_refuses_a_flat_box() -> None:
    assert parse_box("[1, 2, 3.5, 4]") == (1.0, 2.0, 3.5, 4.0)
    with pytest.raises(ValueError, match="x1 > x0"):
        parse_box([1, 2, 1, 4])
