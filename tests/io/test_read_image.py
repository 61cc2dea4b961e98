"""Every supported format round-trips exactly: values, dtype and (H, W, C) layout."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from datapipe.io import read_image

RNG = np.random.default_rng(7)
H, W = 37, 53  # odd sizes catch transposed axes


def _rand(dtype: type, *shape: int) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.random(shape, dtype=np.float32)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _cv2_write(path: Path, rgb: np.ndarray) -> None:
    arr = rgb
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), arr)


def _tif(**kwargs: object) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, arr: np.ndarray) -> None:
        tifffile.imwrite(path, arr, **kwargs)  # type: ignore[arg-type]

    return write


# (id, file name, pixels as written, writer, the (H, W, C) array read_image must return)
CASES = [
    ("png-u8-gray", "a.png", _rand(np.uint8, H, W), _cv2_write, None),
    ("png-u16-gray", "a.png", _rand(np.uint16, H, W), _cv2_write, None),
    ("png-u8-rgb", "a.png", _rand(np.uint8, H, W, 3), _cv2_write, None),
    ("png-u16-rgb", "a.png", _rand(np.uint16, H, W, 3), _cv2_write, None),
    ("png-u8-rgba", "a.png", _rand(np.uint8, H, W, 4), _cv2_write, None),
    ("png-u16-rgba", "a.png", _rand(np.uint16, H, W, 4), _cv2_write, None),
    ("bmp-u8-gray", "a.bmp", _rand(np.uint8, H, W), _cv2_write, None),
    ("bmp-u8-rgb", "a.bmp", _rand(np.uint8, H, W, 3), _cv2_write, None),
    ("tif-u8-gray", "a.tif", _rand(np.uint8, H, W), _tif(), None),
    ("tif-u16-gray", "a.tif", _rand(np.uint16, H, W), _tif(), None),
    ("tif-i16-gray", "a.tif", _rand(np.int16, H, W), _tif(), None),
    ("tif-f32-gray", "a.tif", _rand(np.float32, H, W), _tif(), None),
    ("tif-u16-rgb-interleaved", "a.tif", _rand(np.uint16, H, W, 3), _tif(photometric="rgb"), None),
    (
        "tif-u16-4ch-interleaved",
        "a.tif",
        _rand(np.uint16, H, W, 4),
        _tif(photometric="minisblack", planarconfig="contig"),
        None,
    ),
    (
        "tif-u16-planar-rgb",
        "a.tif",
        _rand(np.uint16, 3, H, W),
        _tif(photometric="rgb", planarconfig="separate"),
        "CHW",
    ),
    (
        "tif-u16-5ch-planar",
        "a.tif",
        _rand(np.uint16, 5, H, W),
        _tif(photometric="minisblack", planarconfig="separate"),
        "CHW",
    ),
    (
        "tif-imagej-cyx",
        "a.tif",
        _rand(np.uint16, 3, H, W),
        _tif(imagej=True, metadata={"axes": "CYX"}),
        "CHW",
    ),
    ("tif-multipage", "a.tif", _rand(np.uint16, 4, H, W), _tif(photometric="minisblack"), "CHW"),
    ("tif-tiled", "a.tif", _rand(np.uint16, 64, 80), _tif(tile=(32, 32)), None),
    (
        "tif-bigtiff",
        "a.tif",
        _rand(np.uint16, H, W, 3),
        _tif(bigtiff=True, photometric="rgb"),
        None,
    ),
    ("tif-big-endian", "a.tif", _rand(np.uint16, H, W), _tif(byteorder=">"), None),
    ("tif-packbits", "a.tif", _rand(np.uint16, H, W), _tif(compression="packbits"), None),
    ("tif-deflate", "a.tif", _rand(np.uint16, H, W), _tif(compression="zlib"), None),
    ("tif-lzw", "a.tif", _rand(np.uint16, H, W), _tif(compression="lzw"), None),
    (
        "tif-zstd",
        "a.tif",
        _rand(np.uint16, H, W, 3),
        _tif(compression="zstd", photometric="rgb"),
        None,
    ),
    (
        "tif-f32-deflate-predictor",
        "a.tif",
        _rand(np.float32, H, W),
        _tif(compression="zlib", predictor=True),
        None,
    ),
]


def _expected(arr: np.ndarray, layout: str | None) -> np.ndarray:
    if layout == "CHW":
        return np.moveaxis(arr, 0, -1)
    return arr[:, :, None] if arr.ndim == 2 else arr


@pytest.mark.parametrize(
    ("name", "arr", "writer", "layout"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_round_trip_is_exact(
    tmp_path: Path,
    name: str,
    arr: np.ndarray,
    writer: Callable[[Path, np.ndarray], None],
    layout: str | None,
) -> None:
    path = tmp_path / name
    writer(path, arr)
    out = read_image(path)
    expected = _expected(arr, layout)
    assert out.dtype == expected.dtype.newbyteorder("=")
    assert out.dtype.isnative
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_bilevel_tiff_reads_as_uint8_zero_one(tmp_path: Path) -> None:
    bits = RNG.random((H, W)) > 0.5
    tifffile.imwrite(tmp_path / "b.tif", bits)
    out = read_image(tmp_path / "b.tif")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], bits.astype(np.uint8))


def test_palette_png_expands_to_its_colours(tmp_path: Path) -> None:
    idx = RNG.integers(0, 3, (H, W), dtype=np.uint8)
    palette = [10, 20, 30, 200, 100, 0, 0, 255, 7]
    im = Image.fromarray(idx)
    im.putpalette(palette + [0] * (768 - len(palette)))
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    expected = np.array(palette, np.uint8).reshape(3, 3)[idx]
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
def test_jpeg_matches_an_independent_decoder(tmp_path: Path, channels: int) -> None:
    smooth = cv2.GaussianBlur(_rand(np.uint8, 64, 64, 3), (0, 0), 3)
    arr = smooth[:, :, :channels] if channels == 3 else smooth[:, :, 0]
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    out = read_image(tmp_path / "a.jpg")
    reference = np.asarray(Image.open(tmp_path / "a.jpg"))
    assert out.dtype == np.uint8
    assert out.shape == (64, 64, channels)
    # Two libjpeg builds may round the IDCT differently by a level or two, no more.
    assert np.abs(out.astype(int) - _expected(reference, None).astype(int)).max() <= 2


def test_tiff_with_jpeg_compression_decodes(tmp_path: Path) -> None:
    arr = cv2.GaussianBlur(_rand(np.uint8, 64, 64, 3), (0, 0), 3)
    tifffile.imwrite(tmp_path / "j.tif", arr, photometric="rgb", compression="jpeg")
    out = read_image(tmp_path / "j.tif")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr.astype(int)).mean() < 3  # lossy, but close


def test_sixteen_bit_png_is_not_squashed_to_eight_bits(tmp_path: Path) -> None:
    """The PIL pitfall: 16-bit RGB PNG read as 8-bit. We keep every bit."""
    arr = np.full((4, 4, 3), 4095, np.uint16)
    arr[0, 0] = (1, 2, 65535)
    _cv2_write(tmp_path / "a.png", arr)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint16
    assert out[0, 0].tolist() == [1, 2, 65535] and out[1, 1, 0] == 4095
    assert np.asarray(Image.open(tmp_path / "a.png").convert("RGB")).dtype == np.uint8  # PIL's


def test_read_image_from_bytes_equals_from_file(tmp_path: Path) -> None:
    from datapipe.io import decode_image

    arr = _rand(np.uint16, H, W, 3)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb")
    (tmp_path / "a.tif").write_bytes(buf.getvalue())
    np.testing.assert_array_equal(
        decode_image(buf.getvalue(), "mem.tif"), read_image(tmp_path / "a.tif")
    )


def _opencv_jpeg(data: bytes) -> np.ndarray:
    """What read_image returned for JPEG before it reported libjpeg's warnings: OpenCV's decode."""
    buf = np.frombuffer(data, np.uint8)
    grey = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if grey.ndim == 2:
        return grey[:, :, None]
    return cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)


_JPEG_OPTIONS = {
    "q90_420": [cv2.IMWRITE_JPEG_QUALITY, 90],
    "q50_444": [cv2.IMWRITE_JPEG_QUALITY, 50, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
    "q100_422": [cv2.IMWRITE_JPEG_QUALITY, 100, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422],
    "411": [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411],
    "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
    "restart_markers": [cv2.IMWRITE_JPEG_RST_INTERVAL, 4],
}  # fmt: skip


@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "rgb"])
@pytest.mark.parametrize("options", list(_JPEG_OPTIONS), ids=list(_JPEG_OPTIONS))
def test_jpeg_pixels_are_bit_identical_to_opencv(channels: int, options: str) -> None:
    from datapipe.io import decode_image

    photo = cv2.GaussianBlur(_rand(np.uint8, 67, 93, 3), (0, 0), 2)  # odd sizes: partial MCUs
    img = photo if channels == 3 else photo[:, :, 0]
    data = cv2.imencode(".jpg", img, _JPEG_OPTIONS[options])[1].tobytes()
    out = decode_image(data, "a.jpg")
    expected = _opencv_jpeg(data)
    assert out.shape == expected.shape == (67, 93, channels)
    np.testing.assert_array_equal(out, expected)


def test_sample_jpegs_are_bit_identical_to_opencv() -> None:
    from tests.conftest import SAMPLE_DATA

    files = [p for p in sorted(SAMPLE_DATA.rglob("*.jpg")) if "truncated" not in p.name]
    assert len(files) > 50
    for path in files:
        np.testing.assert_array_equal(read_image(path), _opencv_jpeg(path.read_bytes()))


def test_jpeg_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    """Pixels as stored (README: known limits), for colour as for grey: a mask stays aligned."""
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (40, 80, 3)
    assert out[:, :40, 0].mean() > 200 and out[:, 40:, 0].mean() < 50
