"""Every bad input is an ImageReadError that names the file and says why."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from datapipe.errors import ImageReadError
from datapipe.io import decode_image, read_image, read_mask
from datapipe.io.image import _FTYP_BRANDS, _OTHER_MAGIC, HEAD_BYTES

RNG = np.random.default_rng(3)
NOISE = RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)


def _png(arr: np.ndarray) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


def _jpeg(arr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", arr)[1].tobytes()


def _tiff(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


PNG, JPG = _png(NOISE), _jpeg(NOISE)
TIF = _tiff(NOISE.astype(np.uint16) * 16, photometric="rgb")
TIF_Z = _tiff(NOISE.astype(np.uint16), photometric="rgb", compression="zlib")
GARBLED_PNG = PNG[:60] + bytes(140) + PNG[200:]

# (id, file name, bytes, words the reason must contain)
CASES = [
    ("empty", "empty.png", b"", "empty file"),
    ("truncated-png", "t.png", PNG[: len(PNG) // 2], "truncated PNG"),
    ("truncated-jpeg", "t.jpg", JPG[: len(JPG) * 2 // 3], "truncated JPEG"),
    ("truncated-tiff", "t.tif", TIF[: len(TIF) // 2], "corrupt TIFF"),
    ("truncated-deflate-tiff", "tz.tif", TIF_Z[: len(TIF_Z) // 2], "corrupt TIFF"),
    ("tiff-header-only", "h.tif", TIF[:8], "corrupt TIFF"),
    ("garbled-png", "g.png", GARBLED_PNG, "corrupt PNG"),
    ("text-as-png", "text.png", b"hello, I am not an image\n", "unsupported format"),
    ("gif", "anim.gif", b"GIF89a" + bytes(40), "unsupported format"),
    ("png-bomb", "bomb.png", _huge_png_header(100_000, 100_000), "decompression-bomb"),
]


@pytest.mark.parametrize(
    ("name", "data", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_file_raises_image_read_error_naming_the_file(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert err.value.path == str(path)
    assert str(path) in str(err.value)
    assert reason in err.value.reason


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_max_pixels_guard_applies_to_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((40, 40), np.uint16))
    with pytest.raises(ImageReadError, match="1,600 pixels exceeds max_pixels=1,000"):
        read_image(tmp_path / "a.tif", max_pixels=1000)
    assert read_image(tmp_path / "a.tif", max_pixels=1600).shape == (40, 40, 1)


def test_z_stack_is_refused_with_its_axes(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "z.tif", np.zeros((5, 8, 8), np.uint16), imagej=True, metadata={"axes": "ZYX"}
    )
    with pytest.raises(ImageReadError, match=r"depth \(Z\) axis of length 5"):
        read_image(tmp_path / "z.tif")


def test_truncated_jpeg_is_refused_although_opencv_decodes_it(tmp_path: Path) -> None:
    data = _jpeg(NOISE)
    (tmp_path / "t.jpg").write_bytes(data[: len(data) * 3 // 4])
    assert cv2.imread(str(tmp_path / "t.jpg")) is not None  # OpenCV pads with grey, only warns
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "t.jpg")


def test_error_survives_pickling() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(ImageReadError("/a/b.png", "truncated PNG")))
    assert (err.path, err.reason) == ("/a/b.png", "truncated PNG")


def test_read_mask_refuses_float_and_multicolour_masks(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(ImageReadError, match="integer class ids"):
        read_mask(tmp_path / "f.tif")
    (tmp_path / "c.png").write_bytes(_png(NOISE))
    with pytest.raises(ImageReadError, match="colour table"):
        read_mask(tmp_path / "c.png")


def test_jpeg_with_bytes_after_its_end_marker_still_reads(tmp_path: Path) -> None:
    (tmp_path / "trailer.jpg").write_bytes(JPG + b"CAMERA-TRAILER" * 10)
    assert read_image(tmp_path / "trailer.jpg").shape == (64, 64, 3)


# --- formats datapipe does not read: named from their first bytes ------------------------------


def _pillow(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(NOISE[:16, :16]).save(buf, fmt)
    return buf.getvalue()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", PNG)
    return buf.getvalue()


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, NOISE)
    return buf.getvalue()


def _ftyp(*brands: bytes) -> bytes:
    major, *compatible = brands
    box = b"ftyp" + major + bytes(4) + b"".join(compatible)
    return struct.pack(">I", len(box) + 4) + box + bytes(64)


HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body></body></html>\n"
SVG = b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>\n'
VOC = b'<?xml version="1.0"?>\n<annotation><object><name>cat</name></object></annotation>\n'
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # Thumbs.db: an OLE compound file
# text whose head (HEAD_BYTES) ends inside a two-byte character: still text
CUT_TEXT = b"a" * (HEAD_BYTES - 1) + "\u00fc".encode() + b" more text\n"

# (id, file name, bytes, the exact reason)
OTHER_FORMATS = [
    ("gif", "a.gif", _pillow("GIF"), "unsupported format: GIF"),
    ("webp", "a.webp", cv2.imencode(".webp", NOISE)[1].tobytes(), "unsupported format: WebP"),
    ("avif", "a.avif", _pillow("AVIF"), "unsupported format: AVIF"),
    ("heic", "a.heic", _ftyp(b"heic", b"mif1", b"heic"), "unsupported format: HEIC"),
    ("heif", "a.heif", _ftyp(b"mif1", b"mif1"), "unsupported format: HEIF"),
    ("mp4", "clip.png", _ftyp(b"isom", b"isom", b"mp41"), "unsupported format: MP4 video"),
    ("mov", "clip.mov", _ftyp(b"qt  ", b"qt  "), "unsupported format: QuickTime video"),
    ("other-iso-media", "raw.cr3", _ftyp(b"crx ", b"crx "), "unsupported format: ISO media (crx)"),
    ("jpeg2000", "a.jp2", _pillow("JPEG2000"), "unsupported format: JPEG 2000"),
    ("j2k", "a.j2k", b"\xffO\xffQ" + bytes(60), "unsupported format: JPEG 2000"),
    ("jpeg-xl", "a.jxl", b"\xff\x0a" + bytes(60), "unsupported format: JPEG XL"),
    ("exr", "a.exr", b"v/1\x01" + bytes(60), "unsupported format: OpenEXR"),
    ("psd", "a.psd", b"8BPS\x00\x01" + bytes(60), "unsupported format: Photoshop PSD"),
    ("dicom", "a.dcm", bytes(128) + b"DICM" + bytes(60), "unsupported format: DICOM"),
    (
        "pgm",
        "a.pgm",
        cv2.imencode(".pgm", NOISE[:, :, 0])[1].tobytes(),
        "unsupported format: Netpbm (PBM/PGM/PPM)",
    ),
    ("pdf", "a.pdf", _pillow("PDF"), "unsupported format: PDF"),
    ("zip", "a.png", _zip(), "unsupported format: ZIP"),
    ("gzip", "a.tif.gz", gzip.compress(TIF), "unsupported format: gzip"),
    ("npy", "a.npy", _npy(), "unsupported format: NumPy array"),
    ("html-as-png", "cat.png", HTML, "unsupported format: text/HTML"),
    ("svg-as-png", "icon.png", SVG, "unsupported format: SVG"),
    ("xml", "a.xml", VOC, "unsupported format: text/XML"),
    (
        "text",
        "notes.txt",
        "Notes on the cat folder, caf\u00e9\n".encode(),
        "unsupported format: text/plain",
    ),
    ("text-cut-in-a-character", "long.txt", CUT_TEXT, "unsupported format: text/plain"),
    ("thumbs-db", "Thumbs.db", OLE, "not an image: Thumbs.db"),
    ("unknown-bytes", "x.png", bytes(range(1, 9)) * 8 + b"\x00", "not an image: x.png"),
]


@pytest.mark.parametrize(
    ("name", "data", "reason"), [c[1:] for c in OTHER_FORMATS], ids=[c[0] for c in OTHER_FORMATS]
)
def test_a_format_datapipe_does_not_read_is_named_from_its_bytes(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as from_file:
        read_image(path)
    with pytest.raises(ImageReadError) as from_bytes:
        decode_image(data, path)
    assert from_file.value.reason == from_bytes.value.reason == reason


def test_every_format_in_the_sniff_tables_has_a_case() -> None:
    names = {n for n, _ in _OTHER_MAGIC} | {n for n, _ in _FTYP_BRANDS}
    named = {c[3].removeprefix("unsupported format: ") for c in OTHER_FORMATS}
    assert names - named == set()


def test_a_gif_mask_is_a_mask_read_error_naming_the_format(tmp_path: Path) -> None:
    (tmp_path / "m.gif").write_bytes(_pillow("GIF"))
    with pytest.raises(ImageReadError) as err:
        read_mask(tmp_path / "m.gif")
    assert err.value.reason == "unsupported format: GIF"
