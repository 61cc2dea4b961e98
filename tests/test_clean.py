"""The clean stage on the sample sets and on real microscopy files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from datapipe.clean import ISSUE_COLUMNS, clean
from datapipe.config import CleanParams, DatasetParams
from datapipe.ingest import ingest
from tests.conftest import SAMPLE_DATA

#: planted problem -> the check that must report it
EXPECTED = {
    "truncated": "unreadable", "zero_byte": "unreadable", "exact_duplicate": "exact_duplicate",
    "cross_format_duplicate": "exact_duplicate", "near_duplicate": "near_duplicate",
    "bit_depth_twin": "near_duplicate", "conflicting_label_duplicate": "conflicting_labels",
    "wrong_size_mask": "size_mismatch", "bad_mask_value": "mask_values", "blank": "blank",
}  # fmt: skip


def _run(dataset: DatasetParams, name: str, params: CleanParams | None = None):
    ingested = ingest(dataset, name=name, workers=0)
    return clean(
        ingested.manifest, ingested.stats, dataset, params or CleanParams(), workers=0, name=name
    )


@pytest.fixture(scope="module", params=["shapes_cls", "shapes_seg"])
def sample_run(request: pytest.FixtureRequest):
    name = request.param
    task = "classification" if name == "shapes_cls" else "segmentation"
    root = SAMPLE_DATA / name
    digest = {p: hashlib.sha256(p.read_bytes()).digest() for p in root.rglob("*") if p.is_file()}
    result = _run(DatasetParams(root=root, task=task), name)
    after = {p: hashlib.sha256(p.read_bytes()).digest() for p in root.rglob("*") if p.is_file()}
    assert after == digest  # nothing under the data root changed
    return result, pd.read_csv(root / "planted.csv")


def test_every_planted_integrity_problem_is_reported(sample_run) -> None:
    result, planted = sample_run
    issues = result.issues
    rows = planted[planted["problem"].isin(EXPECTED)]
    assert len(rows) >= 8
    missed = [
        (r.image, r.problem)
        for r in rows.itertuples()
        if EXPECTED[r.problem] not in set(issues.loc[issues["image"] == r.image, "check"])
    ]
    assert missed == []


def test_no_error_on_a_clean_sample(sample_run) -> None:
    result, planted = sample_run
    errors = result.issues[result.issues["severity"] == "error"]
    assert set(errors["image"]) <= set(planted["image"])


def test_issue_table_contract(sample_run) -> None:
    result, _ = sample_run
    issues = result.issues
    assert list(issues.columns) == list(ISSUE_COLUMNS)
    assert issues["severity"].isin(["error", "warning", "info"]).all()
    assert issues["score"].between(0, 1).all()


def test_exclusions_keep_one_copy_and_drop_errors(sample_run) -> None:
    result, planted = sample_run
    m = result.manifest
    assert len(m) == result.metrics["samples"]  # nothing dropped from the table
    unreadable = planted.loc[planted["problem"].isin(["truncated", "zero_byte"]), "image"]
    assert m.set_index("image").loc[unreadable, "excluded"].all()
    copies = planted.loc[planted["problem"] == "exact_duplicate", "image"]
    assert m.set_index("image").loc[copies, "exclude_reason"].str.contains("exact_duplicate").all()
    groups = [g for _, g in m[m["pixel_hash"].notna()].groupby("pixel_hash") if len(g) > 1]
    assert groups
    for group in groups:  # every copy but one is excluded as a duplicate
        as_copy = group["exclude_reason"].fillna("").str.contains("exact_duplicate")
        assert as_copy.sum() == len(group) - 1


def test_no_duplicate_group_spans_two_splits_after_repair(sample_run) -> None:
    result, _ = sample_run
    m = result.manifest
    assert (m[m["group"].notna()].groupby("group")["split"].nunique() == 1).all()
    moved = m["split"] != m["original_split"]
    assert result.metrics["leakage_moves"] == int(moved.sum())


def test_exclude_list_is_validated() -> None:
    from datapipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"clean.exclude: unknown check\(s\) \['blurr'\]"):
        _run(
            DatasetParams(root=SAMPLE_DATA / "shapes_cls", task="classification"),
            "cls",
            CleanParams(exclude=["blurr"]),
        )


def test_realdata_no_false_errors_and_bit_depth_twins_found(realdata: Path, tmp_path: Path) -> None:
    """The same nuclei images at 16 and 8 bits, plus an 8-bit-in-16-bit file, as one dataset."""
    root = tmp_path / "nuclei"
    stems = sorted(p.stem for p in (realdata / "nucseg_20x" / "images_16bit").glob("*.tif"))
    for stem in stems:
        organ = stem.split("_")[0]
        (root / organ).mkdir(parents=True, exist_ok=True)
        shutil.copy(
            realdata / "nucseg_20x" / "images_16bit" / f"{stem}.tif",
            root / organ / f"{stem}_16.tif",
        )
        shutil.copy(
            realdata / "nucseg_20x" / "images_8bit" / f"{stem}.tif", root / organ / f"{stem}_8.tif"
        )
    shutil.copy(realdata / "dsb2018" / "img2d.tif", root / "bone" / "dsb2018.tif")
    result = _run(DatasetParams(root=root, task="classification"), "nuclei")
    issues = result.issues
    assert (issues["severity"] != "error").all(), issues[issues["severity"] == "error"]
    m = result.manifest.set_index("image")
    for stem in stems:
        organ = stem.split("_")[0]
        hi, lo = f"{organ}/{stem}_16.tif", f"{organ}/{stem}_8.tif"
        assert pd.notna(m.loc[hi, "group"]) and m.loc[hi, "group"] == m.loc[lo, "group"]
    assert result.metrics["duplicate_groups"] == len(stems)


def test_an_image_without_a_mask_is_a_mask_error_not_a_crash(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(6):
        cv2.imwrite(
            str(tmp_path / "images" / f"a{i}.png"), rng.integers(0, 255, (16, 16), np.uint8)
        )
        if i != 3:  # a3 has no mask
            mask = np.zeros((16, 16), np.uint8)
            mask[4:12, 4:12] = 1
            cv2.imwrite(str(tmp_path / "masks" / f"a{i}.png"), mask)
    result = _run(DatasetParams(root=tmp_path, task="segmentation"), "nomask")
    flagged = result.issues[result.issues["check"] == "mask_unreadable"]
    assert flagged["image"].tolist() == ["images/a3.png"]
    assert result.manifest.set_index("image").loc["images/a3.png", "excluded"]
