"""datapipe.inspection: what read_image gives (dtype, shape, range, bit depth) plus the header."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from datapipe.inspection import (
    Failure,
    FolderReport,
    ImageInfo,
    format_folder,
    format_image,
    inspect_file,
    inspect_folder,
    inspect_image,
    inspect_paths,
    sample_evenly,
    summarize,
)


def _tiff_12bit(path: Path) -> Path:
    img = np.zeros((16, 24), np.uint16)
    img[0, 0], img[1, 1] = 4095, 7
    tifffile.imwrite(path, img, compression="zlib")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_12_bit_values_in_a_uint16_tiff(tmp_path: Path) -> None:
    info = inspect_image(_tiff_12bit(tmp_path / "a.tif"))
    assert (info.dtype, info.shape, info.channels) == ("uint16", (16, 24, 1), 1)
    assert (info.min, info.max, info.bit_depth) == ([0], [4095], 12)
    assert info.header["compression"] == "ADOBE_DEFLATE"
    assert info.header["pages"] == 1 and info.header["axes"] == "YX"
    assert info.file_size == (tmp_path / "a.tif").stat().st_size
    assert any("12-bit values in a 16-bit container" in n for n in info.notes)


def test_per_channel_range_of_an_rgb_png(tmp_path: Path) -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30
    img[0, 0] = (200, 21, 31)
    cv2.imwrite(str(tmp_path / "rgb.png"), img[..., ::-1])  # OpenCV writes BGR
    info = inspect_image(tmp_path / "rgb.png")
    assert info.min == [10, 20, 30] and info.max == [200, 21, 31]
    assert info.header == {"bit_depth": 8, "color_type": "RGB", "interlaced": False}


def test_png_header_reports_significant_bits(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".png", np.full((4, 4), 1000, np.uint16))
    assert ok
    data = buf.tobytes()
    ihdr_end = 8 + 4 + 4 + 13 + 4
    path = tmp_path / "sbit.png"
    path.write_bytes(data[:ihdr_end] + _png_chunk(b"sBIT", bytes([12])) + data[ihdr_end:])
    info = inspect_image(path)
    assert info.header["bit_depth"] == 16 and info.header["significant_bits"] == [12]
    assert info.bit_depth == 10  # from the data (max 1000), not from the header


def test_jpeg_header_process_depth_components(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "p.jpg"), img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    info = inspect_image(tmp_path / "p.jpg")
    assert info.header == {"process": "progressive", "bit_depth": 8, "components": 3}
    assert info.format == "jpeg" and info.channels == 3


def test_float_tiff_counts_nonfinite_and_has_no_bit_depth(tmp_path: Path) -> None:
    img = np.array([[0.5, np.nan], [np.inf, 2.0]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", img)
    info = inspect_image(tmp_path / "f.tif")
    assert info.bit_depth is None and info.nonfinite == 2
    assert (info.min, info.max) == ([0.5], [2.0])
    assert any("outside [0, 1]" in n for n in info.notes)


def test_unreadable_file_is_a_failure_naming_it(tmp_path: Path) -> None:
    (tmp_path / "cut.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1][:30])
    result = inspect_file(tmp_path / "cut.png")
    assert isinstance(result, Failure)
    assert result.path == str(tmp_path / "cut.png") and "truncated PNG" in result.reason


def test_sample_evenly_spreads_over_the_list() -> None:
    assert sample_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert sample_evenly([1, 2], 5) == [1, 2]


def test_folder_is_capped_and_summarised_by_dtype_and_shape(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for i in range(6):
        cv2.imwrite(str(tmp_path / "a" / f"{i}.png"), np.full((4, 5), i, np.uint8))
    _tiff_12bit(tmp_path / "a" / "z.tif")
    (tmp_path / "a" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # header only
    report = inspect_folder(tmp_path / "a", limit=8)
    assert report.found == 8 and len(report.results) == 8
    assert [(g.dtype, g.shape, g.count) for g in report.summary] == [
        ("uint8", (4, 5, 1), 6),
        ("uint16", (16, 24, 1), 1),
    ]
    assert (report.summary[0].min, report.summary[0].max) == (0, 5)
    assert [f.path for f in report.failures] == [str(tmp_path / "a" / "zz.png")]
    capped = inspect_folder(tmp_path / "a", limit=3)
    assert capped.found == 8 and len(capped.results) == 3


def test_empty_folder_is_a_failure(tmp_path: Path) -> None:
    report = inspect_folder(tmp_path)
    assert report.found == 0
    assert [f.reason for f in report.failures] == [
        "no images found (PNG, JPEG, BMP, TIFF) in this folder"
    ]


def test_inspect_paths_keeps_going_after_a_bad_path(tmp_path: Path) -> None:
    good = _tiff_12bit(tmp_path / "a.tif")
    entries = inspect_paths([tmp_path / "missing.tif", good, tmp_path])
    assert isinstance(entries[0], Failure) and entries[0].reason == "file not found"
    assert isinstance(entries[1], ImageInfo) and entries[1].bit_depth == 12
    assert isinstance(entries[2], FolderReport) and entries[2].found == 1


def test_text_output_names_the_numbers(tmp_path: Path) -> None:
    text = format_image(inspect_image(_tiff_12bit(tmp_path / "a.tif")))
    assert "uint16, 16 x 24 x 1 (H x W x C)" in text
    assert "bit depth    12 (max 4095 in uint16)" in text
    assert "compression ADOBE_DEFLATE" in text


def test_folder_text_has_a_table_row_per_group(tmp_path: Path) -> None:
    infos = [inspect_image(_tiff_12bit(tmp_path / f"{i}.tif")) for i in range(2)]
    table = format_folder(FolderReport(str(tmp_path), 2, list(infos), summarize(infos)))
    assert table.splitlines()[2].split() == [
        "2", "uint16", "16", "x", "24", "x", "1", "12", "0", "..", "4095", "tiff",
    ]  # fmt: skip


# --- real files ----------------------------------------------------------------------------


def test_bbbc022_imagej_tiff_has_3_channels_12_bit(realdata: Path) -> None:
    info = inspect_image(realdata / "bbbc022" / "IXMtest_A02_s9.tif")
    assert (info.dtype, info.shape, info.channels, info.bit_depth) == (
        "uint16", (395, 695, 3), 3, 12,
    )  # fmt: skip
    assert info.max[2] == 4095
    assert info.header["pages"] == 3 and info.header["series_axes"] == "CYX"
    assert info.header["flavour"] == ["imagej"] and info.header["byte_order"] == "big"
    assert any("separate pages" in n for n in info.notes)


def test_dsb2018_8_bit_values_in_uint16(realdata: Path) -> None:
    info = inspect_image(realdata / "dsb2018" / "img2d.tif")
    assert (info.dtype, info.max, info.bit_depth) == ("uint16", [235], 8)


@pytest.mark.parametrize(
    ("folder", "dtype", "bits", "bit_depth"),
    [("images_16bit", "uint16", 16, 14), ("images_8bit", "uint8", 8, 8)],
    ids=["16bit", "8bit"],
)
def test_nucseg_packbits_twins(
    realdata: Path, folder: str, dtype: str, bits: int, bit_depth: int
) -> None:
    info = inspect_image(realdata / "nucseg_20x" / folder / "heart_20x_1.tif")
    assert (info.dtype, info.bit_depth) == (dtype, bit_depth)  # max 7065 -> 14, 180 -> 8
    assert info.header["compression"] == "PACKBITS"
    assert info.header["bits_per_sample"] == bits


def test_a_file_whose_content_is_not_its_extension_says_so(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "real.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "real.png").rename(tmp_path / "misnamed.tif")
    info = inspect_image(tmp_path / "misnamed.tif")
    assert info.format == "png"
    assert info.notes[0].startswith("PNG data, named .tif: datapipe reads it by its content")
    text = format_folder(inspect_folder(tmp_path))
    assert text.endswith(f"1 of 1 hold another format than their extension:\n    "
                         f"{tmp_path / 'misnamed.tif'}: PNG data")  # fmt: skip


def test_a_file_whose_content_matches_its_extension_has_no_such_note(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpeg"), np.zeros((4, 4, 3), np.uint8))
    info = inspect_image(tmp_path / "a.jpeg")
    assert info.format == "jpeg" and not any("named" in n for n in info.notes)
