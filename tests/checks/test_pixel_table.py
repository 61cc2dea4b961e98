"""Ingest measures the clean stage's pixel features in its own decode pass
(``pixel_features.parquet``); clean finished from that table must equal clean decoding every
image again, on the sample sets (truncated files, 8/16-bit twins, masks) and on real TIFFs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapipe.checks.features import (
    PixelFeatures,
    _saturated_shares,
    finish_features,
    finish_many,
    pixel_features,
)
from datapipe.checks.pixel_table import PixelTableWriter, read_row_group, row_groups
from datapipe.clean import clean
from datapipe.config import CleanParams, DatasetParams
from datapipe.errors import DatapipeError
from datapipe.ingest import ingest
from tests.conftest import SAMPLE_DATA


def _both(dataset: DatasetParams, tmp_path: Path, workers: int = 0) -> tuple:
    table = tmp_path / "pixel_features.parquet"
    ingested = ingest(dataset, name="t", workers=workers, pixels=table)
    plain = ingest(dataset, name="t", workers=0)
    pd.testing.assert_frame_equal(ingested.manifest, plain.manifest)  # measuring changes nothing
    run = [clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=workers,
                 name="t", pixels=p) for p in (None, table)]  # fmt: skip
    return run, table


@pytest.mark.parametrize(("name", "task"), [("shapes_cls", "classification"),
                                            ("shapes_seg", "segmentation")])  # fmt: skip
def test_clean_from_the_pixel_table_equals_clean_decoding_the_sample_sets(
    name: str, task: str, tmp_path: Path
) -> None:
    (decoding, from_table), table = _both(DatasetParams(root=SAMPLE_DATA / name, task=task),
                                          tmp_path)  # fmt: skip
    pd.testing.assert_frame_equal(decoding.manifest, from_table.manifest)
    pd.testing.assert_frame_equal(decoding.issues, from_table.issues)
    assert decoding.metrics == from_table.metrics
    assert (decoding.issues["check"] == "unreadable").any()  # unreadable rows went through too
    rows = [r for g in range(row_groups(table, decoding.manifest["image"].tolist()))
            for r in read_row_group(table, g)]  # fmt: skip
    readable = decoding.manifest["read_error"].isna().to_numpy()
    assert [r is not None for r in rows] == readable.tolist()


def test_clean_from_the_pixel_table_equals_clean_decoding_real_tiffs(
    realdata: Path, tmp_path: Path
) -> None:
    root = tmp_path / "real"
    for depth in ("16bit", "8bit"):
        (root / depth).mkdir(parents=True)
        for path in sorted((realdata / "nucseg_20x" / f"images_{depth}").glob("*.tif"))[:4]:
            shutil.copy(path, root / depth / path.name)
    shutil.copy(realdata / "bbbc022" / "IXMtest_A02_s9.tif", root / "16bit" / "imagej3.tif")
    shutil.copy(realdata / "dsb2018" / "img2d.tif", root / "8bit" / "dsb.tif")
    (decoding, from_table), _ = _both(DatasetParams(root=root, task="classification"), tmp_path,
                                      workers=2)  # fmt: skip
    pd.testing.assert_frame_equal(decoding.manifest, from_table.manifest)
    pd.testing.assert_frame_equal(decoding.issues, from_table.issues)
    assert decoding.manifest["phash"].notna().all()


def test_a_pixel_table_of_another_manifest_is_refused_naming_the_file(tmp_path: Path) -> None:
    table = tmp_path / "pixel_features.parquet"
    with PixelTableWriter(table) as writer:
        writer.add("a.png", pixel_features(np.zeros((4, 4, 1), np.uint8)))
        writer.add("b.png", None)
    assert row_groups(table, ["a.png", "b.png"]) == 1
    with pytest.raises(DatapipeError, match=r"pixel_features\.parquet.*row 1.*re-run ingest"):
        row_groups(table, ["a.png", "c.png"])
    with pytest.raises(DatapipeError, match="2 rows for 3 manifest rows"):
        row_groups(table, ["a.png", "b.png", "c.png"])


def test_the_writer_finishes_each_row_for_its_own_scaling_across_row_groups(
    tmp_path: Path,
) -> None:
    """Rows are finished a row group at a time, each for the scaling it was added with; the
    values equal finishing each image alone, and a row added without one stays unfinished."""
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 4096, (40, 30, 1)).astype(np.uint16) for _ in range(70)]
    images += [rng.integers(0, 256, (20, 50, 3)).astype(np.uint8) for _ in range(70)]
    scalings: list[int | str | None] = [[12, "percentile", 16, None][i % 4] for i in range(70)]
    scalings += [[8, None][i % 2] for i in range(70)]
    pixels = [pixel_features(img) for img in images]
    table = tmp_path / "pixel_features.parquet"
    with PixelTableWriter(table, percentiles=(1.0, 99.0)) as writer:
        for i, (px, scaling) in enumerate(zip(pixels, scalings, strict=True)):
            writer.add(f"{i}.tif", px, finish_for=scaling)
    assert row_groups(table, [f"{i}.tif" for i in range(140)]) == 3  # 64 + 64 + 12 rows
    rows = [r for g in range(3) for r in read_row_group(table, g)]
    for px, scaling, row in zip(pixels, scalings, rows, strict=True):
        assert row is not None
        if scaling is None:
            assert row.finished is None and row.finished_for is None
            continue
        alone = finish_features(px, scaling, percentiles=(1.0, 99.0))  # type: ignore[arg-type]
        assert row.finished_for == str(scaling)
        assert row.finished is not None
        for key, value in row.finished.items():
            np.testing.assert_array_equal(value, alone[key], err_msg=f"{scaling} {key}")


def test_a_row_to_finish_needs_the_writers_percentiles(tmp_path: Path) -> None:
    with (
        PixelTableWriter(tmp_path / "t.parquet") as writer,
        pytest.raises(ValueError, match="percentiles"),
    ):
        writer.add("a.png", pixel_features(np.zeros((4, 4, 1), np.uint8)), finish_for=8)


def test_a_failed_ingest_leaves_no_pixel_table(tmp_path: Path) -> None:
    table = tmp_path / "pixel_features.parquet"
    with pytest.raises(RuntimeError), PixelTableWriter(table) as writer:
        writer.add("a.png", None)
        raise RuntimeError("a worker died")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_saturation_shares_count_every_scale_top_exactly(dtype: type) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    img = rng.integers(info.min, info.max, (300, 200, 2), endpoint=True).astype(dtype)
    img[:40] = info.max  # a saturated band
    shares = _saturated_shares(img)
    step = max(1, round((300 * 200 / 128**2) ** 0.5))
    sample = img[::step, ::step].max(axis=2).astype(np.int64)
    bits = np.dtype(dtype).itemsize * 8
    expected = [np.count_nonzero(sample >= (1 << s) - 1) / sample.size for s in range(bits + 1)]
    assert shares.tolist() == expected
    assert (np.diff(shares) <= 0).all()  # a higher top: fewer pixels reach it
    top = shares[int(info.max).bit_length()]  # the dtype's own maximum
    assert 40 / 300 <= top < 40 / 300 + 0.01  # the band, and the rare random hit


@pytest.mark.parametrize("damage", ["garbage", "stale", "older", "thumbnail size"])
def test_a_damaged_or_stale_pixel_table_means_decoding_again_with_a_warning(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = DatasetParams(root=SAMPLE_DATA / "shapes_cls", task="classification")
    table = tmp_path / "pixel_features.parquet"
    ingested = ingest(dataset, name="t", workers=0, pixels=table)
    if damage == "garbage":
        table.write_bytes(b"PAR1 not really")
    elif damage == "older":  # written before ingest finished features: no such columns
        old = pq.read_table(table)
        pq.write_table(old.drop_columns(["finished_for", "phash"]), table)
    elif damage == "thumbnail size":  # verification thumbnails of another VERIFY_SIZE
        old = pq.read_table(table)
        at = old.schema.get_field_index("verification_thumbnail")
        small = [None if b is None else b[:16] for b in old.column(at).to_pylist()]
        pq.write_table(old.set_column(at, "verification_thumbnail", pa.array(small, pa.binary())),
                       table)  # fmt: skip
    else:  # the table of a set one image shorter
        with PixelTableWriter(table) as writer:
            for image in ingested.manifest["image"].iloc[1:]:
                writer.add(str(image), None)
    decoded = clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0,
                    name="t")  # fmt: skip
    with caplog.at_level("WARNING", logger="datapipe"):
        fallback = clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0,
                         name="t", pixels=table)  # fmt: skip
    pd.testing.assert_frame_equal(decoded.manifest, fallback.manifest)
    assert "pixel_features.parquet" in caplog.text and "decoding the images instead" in caplog.text


def test_finishing_a_batch_gives_each_image_what_it_gets_alone() -> None:
    """Row groups are finished as stacks of one shape, dtype and scaling; an image's features
    must not depend on its neighbours, for every scaling and for mixed shapes."""
    rng = np.random.default_rng(5)
    pixels, scalings = [], []
    for i in range(24):
        shape = [(128, 128), (128, 96), (20, 30), (1, 1)][i % 4]
        dtype = [np.uint16, np.uint8, np.float32][i % 3]
        values = rng.random(shape)
        thumb = values * (1.2 if dtype == np.float32 else 4095 if dtype == np.uint16 else 255)
        pixels.append(PixelFeatures(
            dtype=np.dtype(dtype).name, thumbnail=thumb.astype(dtype), value_range=1.0,
            sharpness=0.5, nonfinite=0, saturated=np.zeros(17),
        ))  # fmt: skip
        scalings.append([12, "auto", "percentile", 8][i % 4])
    together = finish_many(pixels, scalings, percentiles=(0.5, 99.5))
    for px, scaling, batched in zip(pixels, scalings, together, strict=True):
        alone = finish_features(px, scaling, percentiles=(0.5, 99.5))
        assert batched.keys() == alone.keys()
        for key, value in alone.items():
            assert np.array_equal(batched[key], value), key
    flat = finish_features(pixels[0].__class__(**{**pixels[0].__dict__,
                           "thumbnail": np.full((8, 8), 700, np.uint16)}), 12,
                           percentiles=(0.5, 99.5))  # fmt: skip
    assert flat["contrast"] == 0.0 and flat["entropy"] == 0.0
    assert flat["shadow"] == flat["highlight"] == round(700 / 4095 * 255) / 255
    assert not flat["thumb"].any()


def test_ingest_finishes_what_it_can_and_clean_finishes_only_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest finishes each image for the scaling it would have alone; clean takes that where
    it is the dataset's (12-bit here, from the brighter images) and finishes only the dim
    image (10-bit alone) again, with the same result as clean decoding every image."""
    import tifffile

    from datapipe.checks import features

    rng = np.random.default_rng(2)
    for i, top in enumerate([4095, 4000, 900, 3000]):
        (tmp_path / "data" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        pic = (rng.random((40, 50)) * top).astype(np.uint16)
        pic[0, 0] = top
        tifffile.imwrite(tmp_path / "data" / f"c{i % 2}" / f"{i}.tif", pic)
    dataset = DatasetParams(root=tmp_path / "data", task="classification")
    table = tmp_path / "pixel_features.parquet"
    ingested = ingest(dataset, name="t", workers=0, pixels=table)
    assert ingested.stats["bit_depth"] == {"uint16": 12}
    rows = read_row_group(table, 0)
    images = ingested.manifest["image"].tolist()
    assert {image: r.finished_for for image, r in zip(images, rows, strict=True)} == {
        "c0/0.tif": "12", "c1/1.tif": "12", "c0/2.tif": "10", "c1/3.tif": "12",
    }  # fmt: skip
    finished = []
    unit_features = features._unit_features
    monkeypatch.setattr(features, "_unit_features",
                        lambda unit: finished.append(len(unit)) or unit_features(unit))  # fmt: skip
    from_table = clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0,
                       name="t", pixels=table)  # fmt: skip
    assert finished == [1]  # the dim image only
    decoding = clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0,
                     name="t")  # fmt: skip
    pd.testing.assert_frame_equal(decoding.manifest, from_table.manifest)
    pd.testing.assert_frame_equal(decoding.issues, from_table.issues)
