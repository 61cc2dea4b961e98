"""datapipe.review: a sheet reviewed elsewhere, keyed by sample id or image path, merged into
the review file (later decisions win)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from datapipe.errors import DatapipeError
from datapipe.review import ImportResult, import_review, read_sheet

CLASSES = ["cat", "dog"]
MANIFEST = pd.DataFrame({
    "sample_id": ["id0", "id1", "id2"],
    "image": ["cat/a.png", "cat/b.png", "dog/c.png"],
})  # fmt: skip
SCORES = MANIFEST.assign(
    given_label=["cat", "cat", "dog"],
    suggested_label=[None, "dog", None],
    label_quality=[0.9, 0.1, 0.8],
    reasons=["", "low_aum", ""],
)


def _sheet(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows).fillna("").astype(str)


def _import(
    sheet: pd.DataFrame, *, existing: pd.DataFrame | None = None, root: Path | None = None
) -> ImportResult:
    return import_review(
        sheet, manifest=MANIFEST, scores=SCORES, classes=CLASSES, task="classification",
        existing=existing, root=root, name="done.csv",
    )  # fmt: skip


def test_image_paths_map_to_sample_ids(tmp_path: Path) -> None:
    root = tmp_path / "data"
    sheet = _sheet([
        {"image": "cat/b.png", "decision": "relabel", "label": "dog"},
        {"image": str(root / "dog" / "c.png"), "decision": "drop", "label": ""},  # absolute
        {"image": "cat/a.png", "decision": "", "label": ""},  # no decision: skipped
    ])  # fmt: skip
    result = _import(sheet, root=root)
    rows = result.sheet.set_index("sample_id")
    assert rows["decision"].to_dict() == {"id1": "relabel", "id2": "drop"}
    assert rows.loc["id1", "label"] == "dog"
    assert rows.loc["id1", "image"] == "cat/b.png" and rows.loc["id1", "given_label"] == "cat"
    assert (result.added, result.ignored) == (2, 1)


def test_later_decisions_win_and_are_counted() -> None:
    existing = _sheet([
        {"sample_id": "id1", "decision": "keep", "label": "dog", "note": "first pass"},
        {"sample_id": "id2", "decision": "drop", "label": "", "note": ""},
        {"sample_id": "id0", "decision": "", "label": "", "note": ""},
    ])  # fmt: skip
    sheet = _sheet([
        {"sample_id": "id1", "decision": "relabel", "label": "dog"},
        {"sample_id": "id2", "decision": "drop", "label": ""},
    ])  # fmt: skip
    result = _import(sheet, existing=existing)
    rows = result.sheet.set_index("sample_id")
    assert rows["decision"].to_dict() == {"id1": "relabel", "id2": "drop", "id0": ""}
    assert rows.loc["id1", "note"] == "first pass"  # the import has no note column
    counts = (result.added, result.changed, result.unchanged)
    assert counts == (0, 1, 1)
    assert result.decided == 2


def test_unknown_image_names_file_and_row() -> None:
    sheet = _sheet([
        {"image": "cat/a.png", "decision": "keep"},
        {"image": "cat/zzz.png", "decision": "drop"},
    ])  # fmt: skip
    with pytest.raises(DatapipeError, match=r"done.csv row 3: image 'cat/zzz.png' is not a sample"):
        _import(sheet)


def test_id_and_image_that_disagree_are_refused() -> None:
    sheet = _sheet([{"sample_id": "id0", "image": "cat/b.png", "decision": "keep"}])
    with pytest.raises(DatapipeError, match=r"row 2: sample_id 'id0' and image 'cat/b\.png'"):
        _import(sheet)


def test_unknown_class_is_reported_by_validate_review() -> None:
    sheet = _sheet([{"sample_id": "id0", "decision": "relabel", "label": "fox"}])
    with pytest.raises(DatapipeError, match=r"done\.csv row 2: unknown class 'fox'"):
        _import(sheet)


def test_sheet_without_id_or_image_column_is_refused() -> None:
    with pytest.raises(DatapipeError, match="needs a sample_id or an image column"):
        _import(_sheet([{"decision": "keep"}]))


def test_read_sheet_keeps_ids_as_text_and_rows_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbfSample_ID,Decision\n0123456789012345,keep\n\n1e10,drop\n")
    sheet = read_sheet(path)
    assert list(sheet.columns) == ["sample_id", "decision"]
    assert sheet["sample_id"].tolist() == ["0123456789012345", "", "1e10"]
