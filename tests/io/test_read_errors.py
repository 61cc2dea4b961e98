"""Every bad input is an ImageReadError that names the file and says why."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from datapipe.errors import ImageReadError
from datapipe.io import read_image, read_mask

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
