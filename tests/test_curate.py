"""Curation: policy actions and thresholds, review overrides and their errors, the summary,
and the review sheet that keeps a reviewer's work."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datapipe.config import CurateParams
from datapipe.curate import curate, review_sheet, validate_review
from datapipe.errors import DatapipeError

CLASSES = ["cat", "dog", "fox"]


def _scores() -> pd.DataFrame:
    """Six samples: s0 clean; s1 flagged, confident 'dog'; s2 flagged, unsure 'fox';
    s3 flagged but in test; s4 excluded by clean; s5 flagged, confident 'cat'."""
    probs = np.array([
        [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.35, 0.05, 0.6],
        [0.05, 0.9, 0.05], [np.nan] * 3, [0.95, 0.03, 0.02],
    ])  # fmt: skip
    df = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(6)],
        "image": [f"img{i}.png" for i in range(6)],
        "split": ["train", "train", "val", "test", "train", "train"],
        "fold": [0, 1, 2, 0, 1, 2],
        "excluded": [False, False, False, False, True, False],
        "exclude_reason": ["", "", "", "", "unreadable", ""],
        "scored": [True, True, True, True, False, True],
        "given_label": ["cat", "cat", "dog", "cat", "dog", "fox"],
        "suggested_label": [None, "dog", "fox", "dog", None, "cat"],
        "is_label_issue": [False, True, True, True, False, True],
        "label_quality": [0.9, 0.05, 0.04, 0.05, np.nan, 0.02],
        "difficulty": [0.1, 0.95, 0.95, 0.95, np.nan, 0.98],
        "reasons": ["", "low_aum", "low_aum", "low_aum", "", "low_aum"],
    })  # fmt: skip
    for k, name in enumerate(CLASSES):
        df[f"prob_{name}"] = probs[:, k]
    return df


def _run(policy: CurateParams, review: pd.DataFrame | None = None) -> pd.DataFrame:
    return curate(
        _scores(), classes=CLASSES, task="classification", policy=policy, review=review
    ).curated.set_index("sample_id")


def test_relabel_only_confident_suggestions_and_otherwise_for_the_rest() -> None:
    out = _run(CurateParams(label_issues="relabel", relabel_min_prob=0.8, otherwise="drop"))
    assert out["action"].to_dict() == {
        "s0": "keep", "s1": "relabel", "s2": "drop", "s3": "keep", "s4": "exclude",
        "s5": "relabel",
    }  # fmt: skip
    assert out.loc["s1", "final_label"] == "dog" and out.loc["s1", "final_label_index"] == 1
    assert out.loc["s5", "final_label"] == "cat" and out.loc["s5", "weight"] == 1.0
    assert pd.isna(out.loc["s2", "final_label"]) and out.loc["s2", "weight"] == 0.0
    assert out.loc["s1", "difficulty"] == pytest.approx(0.1)  # 1 - p(dog): easy as a dog


def test_downweight_uses_label_quality_with_a_floor() -> None:
    out = _run(CurateParams(label_issues="downweight", min_weight=0.3))
    assert out.loc["s1", "action"] == "downweight"
    assert out.loc["s1", "weight"] == pytest.approx(0.3)  # quality 0.05 < floor
    assert out.loc["s0", "weight"] == 1.0 and out.loc["s4", "weight"] == 0.0
    out = _run(CurateParams(label_issues="downweight", min_weight=0.01))
    assert out.loc["s1", "weight"] == pytest.approx(0.05)


def test_policy_leaves_test_split_as_given_unless_asked() -> None:
    assert _run(CurateParams(label_issues="drop")).loc["s3", "action"] == "keep"
    everywhere = CurateParams(label_issues="drop", splits=["train", "val", "test"])
    assert _run(everywhere).loc["s3", "action"] == "drop"


def test_keep_policy_changes_nothing_but_clean_exclusions() -> None:
    out = _run(CurateParams(label_issues="keep"))
    assert (out.drop(index="s4")["action"] == "keep").all()
    assert (out.drop(index="s4")["final_label"] == out.drop(index="s4")["given_label"]).all()
    assert out.loc["s4", "action"] == "exclude" and out.loc["s4", "reason"] == "unreadable"


def test_review_overrides_policy_but_not_integrity_exclusions() -> None:
    review = pd.DataFrame({
        "sample_id": ["s1", "s2", "s0", "s4"],
        "decision": ["keep", "relabel", "drop", "keep"],
        "label": ["", "cat", "", ""],
        "note": ["really a cat", "", "blurry", "want it"],
    })  # fmt: skip
    out = _run(CurateParams(label_issues="relabel"), review)
    assert out.loc["s1", ["action", "final_label", "source"]].tolist() == ["keep", "cat", "review"]
    assert out.loc["s2", ["action", "final_label", "source"]].tolist() == [
        "relabel", "cat", "review",
    ]  # fmt: skip
    assert out.loc["s0", "action"] == "drop" and out.loc["s0", "note"] == "blurry"
    assert out.loc["s4", ["action", "source"]].tolist() == ["exclude", "clean"]
    assert out.loc["s5", "source"] == "auto"


def test_summary_counts_every_action_per_given_class() -> None:
    policy = CurateParams(label_issues="relabel", otherwise="downweight")
    result = curate(_scores(), classes=CLASSES, task="classification", policy=policy)
    summary = result.summary.set_index("class")
    assert summary.loc["cat", ["keep", "relabel", "total"]].tolist() == [2, 1, 3]
    assert summary.loc["dog", ["downweight", "exclude", "total"]].tolist() == [1, 1, 2]
    assert summary.loc["dog", "relabelled_in"] == 1 and summary.loc["cat", "relabelled_in"] == 1
    assert summary["total"].sum() == 6
    assert result.metrics["relabel"] == 2 and result.metrics["exclude"] == 1


def test_same_inputs_same_curation() -> None:
    a, b = _run(CurateParams()), _run(CurateParams())
    pd.testing.assert_frame_equal(a, b)


def test_segmentation_cannot_relabel_automatically() -> None:
    scores = _scores().drop(columns=[f"prob_{c}" for c in CLASSES])
    with pytest.raises(DatapipeError, match="relabel needs a suggested class"):
        curate(scores, classes=CLASSES, task="segmentation",
               policy=CurateParams(label_issues="relabel"))  # fmt: skip
    auto = curate(scores, classes=CLASSES, task="segmentation", policy=CurateParams()).curated
    assert auto.set_index("sample_id").loc["s1", "action"] == "downweight"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"sample_id": ["s1"], "decision": ["delete"]}, r"row 2: decision 'delete'"),
        ({"sample_id": ["s0", "zz"], "decision": ["keep", "drop"]}, r"row 3: unknown sample_id"),
        ({"sample_id": ["s1"], "decision": ["relabel"], "label": ["wolf"]},
         r"row 2: unknown class 'wolf'"),
        ({"sample_id": ["s1", "s1"], "decision": ["keep", "drop"]},
         r"row 3: sample_id 's1' already decided on row 2"),
        ({"sample_id": ["s1"]}, r"missing column\(s\) \['decision'\]"),
    ],
    ids=["decision", "sample", "class", "twice", "column"],
)  # fmt: skip
def test_bad_reviews_name_the_row(rows: dict[str, list[str]], message: str) -> None:
    with pytest.raises(DatapipeError, match=message):
        validate_review(pd.DataFrame(rows), sample_ids=[f"s{i}" for i in range(6)],
                        classes=CLASSES, task="classification", name="reviews/x.csv")  # fmt: skip


def test_empty_decisions_are_ignored_and_case_is_forgiven() -> None:
    review = pd.DataFrame({"sample_id": ["s1", "s2"], "decision": [" Drop ", np.nan]})
    out = validate_review(review, sample_ids=["s1", "s2"], classes=CLASSES, task="classification")
    assert out.to_dict("list") == {"sample_id": ["s1"], "decision": ["drop"], "label": [""],
                                   "note": [""]}  # fmt: skip


def test_review_sheet_is_worst_first_prefilled_and_keeps_decisions_made() -> None:
    issues = pd.DataFrame({"sample_id": ["s5", "s1"], "image": ["img5.png", "img1.png"],
                           "given_label": ["fox", "cat"], "suggested_label": ["cat", "dog"],
                           "label_quality": [0.02, 0.05], "reasons": ["low_aum"] * 2})  # fmt: skip
    curated = _run(CurateParams()).reset_index()
    sheet = review_sheet(issues, curated, None)
    assert sheet["sample_id"].tolist() == ["s5", "s1"]
    assert sheet["label"].tolist() == ["cat", "dog"] and (sheet["decision"] == "").all()
    assert sheet["auto_action"].tolist() == ["relabel", "relabel"]
    sheet.loc[1, ["decision", "note"]] = ["keep", "checked"]
    old = pd.concat([sheet, pd.DataFrame({"sample_id": ["s0"], "decision": ["drop"]})])
    again = review_sheet(issues, curated, old.astype(object).fillna(""))
    assert again.set_index("sample_id").loc["s1", ["decision", "note"]].tolist() == [
        "keep", "checked",
    ]  # fmt: skip
    assert again["sample_id"].tolist() == ["s5", "s1", "s0"]  # an older decision stays
