"""Ingest on the committed sample sets: planted unreadable files recorded, statistics exact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datapipe.config import DatasetParams
from datapipe.ingest import MANIFEST_COLUMNS, SEGMENTATION_COLUMNS, ingest
from datapipe.io import read_image, to_unit_float
from tests.conftest import SAMPLE_DATA

UNREADABLE = {"truncated", "zero_byte"}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cls_run() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    root = SAMPLE_DATA / "shapes_cls"
    before = _tree_digest(root)
    result = ingest(DatasetParams(root=root, task="classification"), name="cls", workers=0)
    assert _tree_digest(root) == before  # nothing under the data root changed
    return result.manifest, result.stats, pd.read_csv(root / "planted.csv")


@pytest.fixture(scope="module")
def seg_run() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    root = SAMPLE_DATA / "shapes_seg"
    result = ingest(DatasetParams(root=root, task="segmentation"), name="seg", workers=0)
    return result.manifest, result.stats, pd.read_csv(root / "planted.csv")


def test_cls_manifest_columns_and_one_row_per_image(cls_run) -> None:
    manifest, stats, _ = cls_run
    files = [
        p for p in (SAMPLE_DATA / "shapes_cls").rglob("*") if p.suffix in {".png", ".jpg", ".tif"}
    ]
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert len(manifest) == len(files) == stats["samples"]
    assert manifest["sample_id"].is_unique


@pytest.mark.parametrize("run", ["cls_run", "seg_run"])
def test_exactly_the_planted_unreadable_files_have_read_errors(run: str, request) -> None:
    manifest, stats, planted = request.getfixturevalue(run)
    bad = set(planted.loc[planted["problem"].isin(UNREADABLE), "image"])
    assert set(manifest.loc[manifest["read_error"].notna(), "image"]) == bad
    assert stats["read_errors"] == len(bad)
    zero = planted.loc[planted["problem"] == "zero_byte", "image"].iloc[0]
    assert manifest.set_index("image").loc[zero, "read_error"] == "empty file (0 bytes)"


def test_cls_classes_labels_and_bit_depths(cls_run) -> None:
    manifest, stats, _ = cls_run
    assert stats["classes"] == ["cross", "disk", "ring", "square", "triangle"]
    assert (manifest["label"] == manifest["image"].str.split("/").str[0]).all()
    assert (manifest["label_index"] == manifest["label"].map(stats["classes"].index)).all()
    assert stats["bit_depth"] == {"uint8": 8, "uint16": 12}  # 12-bit values in 16-bit files
    assert stats["channels"] == 1


@pytest.mark.parametrize("run", ["cls_run", "seg_run"])
def test_mean_and_std_equal_a_direct_computation(run: str, request) -> None:
    manifest, stats, _ = request.getfixturevalue(run)
    root = SAMPLE_DATA / ("shapes_cls" if run == "cls_run" else "shapes_seg")
    pixels = []
    for row in manifest[manifest["read_error"].isna()].itertuples():
        img = read_image(root / row.image)
        pixels.append(
            to_unit_float(img, bit_depth=stats["bit_depth"][str(img.dtype)])
            .reshape(-1, img.shape[2])
            .astype(np.float64)
        )
    allpix = np.concatenate(pixels)
    np.testing.assert_allclose(stats["mean"], allpix.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], allpix.std(0), rtol=1e-6)


def test_every_class_in_every_split_and_fold(cls_run) -> None:
    manifest, stats, _ = cls_run
    table = pd.crosstab(manifest["label"], manifest["split"])
    assert set(table.columns) == {"train", "val", "test"} and (table > 0).all().all()
    assert (pd.crosstab(manifest["label"], manifest["fold"]) > 0).all().all()
    assert sum(stats["splits"].values()) == len(manifest)


def test_seg_classes_inferred_and_stray_value_reported(seg_run) -> None:
    manifest, stats, _ = seg_run
    assert list(manifest.columns) == list(MANIFEST_COLUMNS) + list(SEGMENTATION_COLUMNS)
    assert stats["class_values"] == [0, 1, 2, 3]  # 7 is in one mask only: not a class
    assert stats["unknown_value_pixels"] == {"7": 64}
    assert stats["ignored_pixels"] > 0
    assert stats["bit_depth"] == {"uint8": 8, "uint16": 16}
    assert stats["channels"] == 3


def test_seg_mask_facts_in_the_manifest(seg_run) -> None:
    manifest, _, planted = seg_run
    rows = manifest.set_index("image")
    wrong = planted.loc[planted["problem"] == "wrong_size_mask", "image"].iloc[0]
    assert rows.loc[wrong, "mask_width"] * 2 == rows.loc[wrong, "width"]
    ok = manifest[manifest["read_error"].isna() & (manifest["image"] != wrong)]
    assert (ok["mask_width"] == ok["width"]).all() and (ok["mask_height"] == ok["height"]).all()
    assert manifest["mask_read_error"].isna().all()
    blank = planted.loc[planted["problem"] == "blank", "image"].iloc[0]
    assert list(rows.loc[blank, "mask_classes"]) == [0]


def test_parallel_and_serial_ingest_agree() -> None:
    params = DatasetParams(root=SAMPLE_DATA / "shapes_seg", task="segmentation")
    serial = ingest(params, name="seg", workers=0)
    parallel = ingest(params, name="seg", workers=2)
    pd.testing.assert_frame_equal(serial.manifest, parallel.manifest)
    assert serial.stats == parallel.stats
