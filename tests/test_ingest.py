"""Ingest on the committed sample sets: planted unreadable files recorded, statistics exact."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from datapipe.clean import clean
from datapipe.config import CleanParams, DatasetParams
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


# --- files datapipe does not read: rows with their reason, never skipped ----------------------

RNG = np.random.default_rng(12)


def _noise(shape: tuple[int, ...] = (16, 16, 3)) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _png(path: Path) -> None:
    cv2.imwrite(str(path), _noise())


def _gif(path: Path) -> None:
    Image.fromarray(_noise()).save(path, "GIF")  # a scraper's placeholder


def _webp(path: Path) -> None:
    cv2.imwrite(str(path), _noise())  # the suffix picks the encoder


def _html(path: Path) -> None:
    path.write_bytes(b"<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n")


def _thumbs_db(path: Path) -> None:
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024))  # OLE, as Windows writes


def _text(path: Path) -> None:
    path.write_text("Images scraped on 2024-05-01; see the wiki.\n")


def _write(root: Path, files: dict[str, Callable[[Path], None]]) -> Path:
    for rel, write in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write(root / rel)
    return root


#: bad file -> (how it is written, the exact read_error)
CLS_BAD = {
    "cat/placeholder.gif": (_gif, "unsupported format: GIF"),
    "cat/photo.webp": (_webp, "unsupported format: WebP"),
    "dog/page.png": (_html, "unsupported format: text/HTML"),
    "dog/Thumbs.db": (_thumbs_db, "not an image: Thumbs.db"),
    "notes/README.txt": (_text, "unsupported format: text/plain"),  # a folder with no image
}
SEG_BAD = {
    "images/placeholder.gif": (_gif, "unsupported format: GIF"),
    "images/photo.webp": (_webp, "unsupported format: WebP"),
    "images/page.png": (_html, "unsupported format: text/HTML"),
    "images/Thumbs.db": (_thumbs_db, "not an image: Thumbs.db"),
    "images/notes.txt": (_text, "unsupported format: text/plain"),
}


def _mask(path: Path) -> None:
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    cv2.imwrite(str(path), mask)


@pytest.fixture(scope="module")
def cls_odd(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cls_odd")
    good = {f"{c}/{i}.png": _png for c in ("cat", "dog") for i in range(4)}
    hidden = {"cat/.DS_Store": _thumbs_db}
    _write(root, {**good, **{k: w for k, (w, _) in CLS_BAD.items()}, **hidden})
    _write(root, {"README.md": _text})  # at the root: no sample
    dataset = DatasetParams(root=root, task="classification")
    result = ingest(dataset, name="cls_odd", workers=0)
    return result, sorted(good), dataset


@pytest.fixture(scope="module")
def seg_odd(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("seg_odd")
    good = {f"images/{i}.png": _png for i in range(5)}
    masks = {f"masks/{i}.png": _mask for i in range(4)} | {"masks/4.gif": _gif}
    # every bad image gets a mask: pairing is tested in test_manifest.py
    masks |= {f"masks/{Path(rel).stem}.png": _mask for rel in SEG_BAD}
    masks |= {"masks/orphan.png": _mask}
    _write(root, {**good, **masks, **{k: w for k, (w, _) in SEG_BAD.items()}})
    dataset = DatasetParams(root=root, task="segmentation")
    result = ingest(dataset, name="seg_odd", workers=0)
    return result, sorted(good), dataset


@pytest.mark.parametrize(("run", "bad"), [("cls_odd", CLS_BAD), ("seg_odd", SEG_BAD)])
def test_each_file_datapipe_cannot_read_is_a_row_with_its_reason(run: str, bad, request) -> None:
    result, _, _ = request.getfixturevalue(run)
    m = result.manifest
    errors = m.loc[m["read_error"].notna()].set_index("image")["read_error"].to_dict()
    assert errors == {rel: reason for rel, (_, reason) in bad.items()}
    assert result.stats["read_errors"] == len(bad)


@pytest.mark.parametrize("run", ["cls_odd", "seg_odd"])
def test_good_files_beside_unreadable_ones_still_read(run: str, request) -> None:
    result, good, _ = request.getfixturevalue(run)
    rows = result.manifest.set_index("image").loc[good]
    assert rows["read_error"].isna().all()
    assert (rows["height"] == 16).all() and (rows["channels"] == 3).all()


def test_unreadable_files_make_no_class_and_keep_their_folder_label(cls_odd) -> None:
    result, _, _ = cls_odd
    stats, m = result.stats, result.manifest.set_index("image")
    assert stats["classes"] == ["cat", "dog"]  # notes/ holds only a text file: no class
    assert stats["class_counts"] == {"cat": 6, "dog": 6}  # 4 PNGs + 2 unreadable files each
    assert m.loc["notes/README.txt", "label"] == "notes"
    assert pd.isna(m.loc["notes/README.txt", "label_index"])
    assert m.loc["cat/placeholder.gif", "label_index"] == 0


def test_hidden_and_root_files_are_counted_not_listed(cls_odd) -> None:
    result, good, _ = cls_odd
    assert "cat/.DS_Store" not in set(result.manifest["image"])
    assert "README.md" not in set(result.manifest["image"])
    assert len(result.manifest) == len(good) + len(CLS_BAD)
    assert result.stats["not_samples"] == {
        "hidden": 1, "outside": 1, "unused_masks": 0, "unreadable_folders": 0,
    }  # fmt: skip


def test_a_gif_mask_is_the_mask_problem_of_its_image(seg_odd) -> None:
    result, _, _ = seg_odd
    m = result.manifest.set_index("image")
    assert m.loc["images/4.png", "mask"] == "masks/4.gif"
    assert m.loc["images/4.png", "mask_read_error"] == "unsupported format: GIF"
    assert m.loc["images/Thumbs.db", "mask"] == "masks/Thumbs.png"
    assert result.stats["class_values"] == [0, 1]
    assert result.stats["not_samples"]["unused_masks"] == 1  # masks/orphan.png


@pytest.fixture(scope="module")
def cleaned(cls_odd, seg_odd):
    return {
        run: clean(result.manifest, result.stats, dataset, CleanParams(), workers=0, name=run)
        for run, (result, _, dataset) in {"cls_odd": cls_odd, "seg_odd": seg_odd}.items()
    }


@pytest.mark.parametrize(("run", "bad"), [("cls_odd", CLS_BAD), ("seg_odd", SEG_BAD)])
def test_clean_reports_each_unreadable_file_with_its_reason(run: str, bad, cleaned) -> None:
    result = cleaned[run]
    issues = result.issues[result.issues["check"] == "unreadable"]
    assert issues.set_index("image")["detail"].to_dict() == {
        rel: reason for rel, (_, reason) in bad.items()
    }
    assert (issues["severity"] == "error").all()
    assert result.manifest.set_index("image").loc[list(bad), "excluded"].all()


def test_clean_reports_a_gif_mask_as_mask_unreadable(cleaned) -> None:
    issues = cleaned["seg_odd"].issues
    issues = issues[issues["check"] == "mask_unreadable"]
    assert issues.set_index("image")["detail"].to_dict() == {
        "images/4.png": "unsupported format: GIF"
    }
