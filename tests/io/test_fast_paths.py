"""The fast decoders (plain TIFF without tifffile, PNG through libpng) read exactly what the
reference decoders read, and every file they do not own still goes the old way."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from datapipe.errors import ImageReadError
from datapipe.io import decode_image, plain_tiff, read_image
from datapipe.io import image as image_module

RNG = np.random.default_rng(11)
H, W = 41, 59  # odd sizes: partial strips and tiles, transposed axes show


def _rand(dtype: type, *shape: int) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _tiff(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def _smooth(dtype: type, channels: int) -> np.ndarray:
    """Compressible pixels (noise alone makes LZW / Deflate store near-raw data)."""
    base = cv2.GaussianBlur(RNG.random((H, W, channels)), (0, 0), 3).reshape(H, W, channels)
    if np.dtype(dtype).kind == "f":
        return base.astype(dtype)
    return np.round(base * np.iinfo(dtype).max).astype(dtype)


def _rgb(dtype: type, channels: int = 3) -> np.ndarray:
    return _smooth(dtype, channels)


def _grey(dtype: type) -> np.ndarray:
    return _smooth(dtype, 1)[:, :, 0]


def _cv2_tiff(arr: np.ndarray) -> bytes:
    return cv2.imencode(".tiff", arr)[1].tobytes()  # libtiff: LZW + predictor, IFD at the end


def _pil_tiff(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "TIFF", **kw)
    return buf.getvalue()


# (id, TIFF bytes): each must take the fast path and read exactly as tifffile reads it
PLAIN = [
    ("u8", _tiff(_grey(np.uint8))),
    ("u16", _tiff(_grey(np.uint16))),
    ("i16", _tiff(_rand(np.int16, H, W))),
    ("u32", _tiff(_rand(np.uint32, H, W))),
    ("f32", _tiff(_rand(np.float32, H, W))),
    ("f64", _tiff(_rand(np.float64, H, W))),
    ("u16-rgb", _tiff(_rgb(np.uint16), photometric="rgb")),
    ("u8-rgba", _tiff(_rgb(np.uint8, 4), photometric="rgb")),
    ("u16-4ch-minisblack", _tiff(_rgb(np.uint16, 4), photometric="minisblack",
                                 planarconfig="contig")),
    ("u16-big-endian", _tiff(_grey(np.uint16), byteorder=">")),
    ("f32-big-endian-rgb", _tiff(_rgb(np.float32), byteorder=">", photometric="rgb")),
    ("u16-many-strips", _tiff(_grey(np.uint16), rowsperstrip=4)),
    ("u16-lzw", _tiff(_grey(np.uint16), compression="lzw")),
    ("u16-lzw-predictor", _tiff(_grey(np.uint16), compression="lzw", predictor=True)),
    ("u16-lzw-rgb-be", _tiff(_rgb(np.uint16), compression="lzw", photometric="rgb", byteorder=">")),
    ("f32-lzw-float-predictor", _tiff(_grey(np.float32), compression="lzw", predictor=True)),
    ("u16-deflate", _tiff(_grey(np.uint16), compression="zlib")),
    ("u16-deflate-strips", _tiff(_grey(np.uint16), compression="zlib", rowsperstrip=8)),
    ("u16-deflate-predictor", _tiff(_grey(np.uint16), compression="zlib", predictor=True)),
    (
        "u16-deflate-predictor-rgb-be",
        _tiff(_rgb(np.uint16), compression="zlib", predictor=True, photometric="rgb",
              byteorder=">", rowsperstrip=16),
    ),
    ("i16-deflate-predictor", _tiff(_rand(np.int16, H, W), compression="zlib", predictor=True)),
    ("u8-deflate-32946", _tiff(_grey(np.uint8), compression="deflate")),
    ("u16-zstd", _tiff(_grey(np.uint16), compression="zstd")),
    ("u16-zstd-predictor-rgb", _tiff(_rgb(np.uint16), compression="zstd", predictor=True,
                                     photometric="rgb")),
    ("f32-zstd-float-predictor", _tiff(_grey(np.float32), compression="zstd", predictor=True)),
    ("u16-tiled", _tiff(_grey(np.uint16), tile=(16, 32))),
    ("u16-tiled-lzw-rgb", _tiff(_rgb(np.uint16), tile=(16, 16), compression="lzw",
                                photometric="rgb")),
    ("u16-tiled-zstd-4ch", _tiff(_rgb(np.uint16, 4), tile=(32, 32), compression="zstd",
                                 photometric="minisblack", planarconfig="contig")),
    ("cv2-u16-lzw", _cv2_tiff(_grey(np.uint16))),
    ("cv2-u8-bgr-lzw", _cv2_tiff(_rgb(np.uint8))),
    ("pil-u16", _pil_tiff(_grey(np.uint16))),
    ("pil-u8-rgb-deflate", _pil_tiff(_rgb(np.uint8), compression="tiff_adobe_deflate")),
]  # fmt: skip
# "zlib" writes Deflate as code 8 (Adobe), "deflate" as the older code 32946: both are read.


def _tifffile_hwc(data: bytes) -> np.ndarray:
    arr = tifffile.imread(io.BytesIO(data))
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return arr.astype(arr.dtype.newbyteorder("="))


def _probe(data: bytes) -> plain_tiff.PlainTiff | None:
    return plain_tiff.probe(data[:512], lambda at, n: data[at : at + n], len(data))


def _refuse_tifffile(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on read_image may not call tifffile: a plain file reaching it is a routing bug."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tifffile was used for a plain TIFF")

    monkeypatch.setattr(image_module.tifffile, "TiffFile", refuse)


@pytest.mark.parametrize("data", [c[1] for c in PLAIN], ids=[c[0] for c in PLAIN])
def test_plain_tiff_is_decoded_without_tifffile_exactly_as_tifffile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    expected = _tifffile_hwc(data)
    path = tmp_path / "a.tif"
    path.write_bytes(data)
    _refuse_tifffile(monkeypatch)
    for out in (read_image(path), decode_image(data, path)):
        assert out.dtype == expected.dtype and out.dtype.isnative
        assert out.shape == expected.shape
        assert out.flags.c_contiguous and out.flags.writeable
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("rows", [41, 6, 5])
def test_zstd_strips_skip_libtiff_and_decode_in_one_call_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """41 rows in strips of 41 / 6 / 5 rows (1, 7 and 9 strips, the last one partial), with
    the horizontal predictor: the same array as tifffile's, libzstd called once per read."""
    data = _tiff(_grey(np.uint16), compression="zstd", predictor=True, rowsperstrip=rows)
    expected = _tifffile_hwc(data)
    path = tmp_path / "z.tif"
    path.write_bytes(data)
    calls = []
    codecs = image_module.plain_tiff.imagecodecs
    zstd = codecs.zstd_decode
    monkeypatch.setattr(codecs, "tiff_decode", lambda *a, **k: pytest.fail("libtiff used"))
    monkeypatch.setattr(codecs, "zstd_decode", lambda *a, **k: calls.append(1) or zstd(*a, **k))
    _refuse_tifffile(monkeypatch)
    for out in (read_image(path), decode_image(data, path)):
        np.testing.assert_array_equal(out, expected)
    assert len(calls) == 2


def test_zstd_frames_that_declare_other_sizes_are_decoded_strip_by_strip() -> None:
    """Two frames whose sizes add up to the image but split it elsewhere than the strips:
    one call over both would fill the array; strip by strip, the first strip comes out short
    and the fast path refuses (tifffile then decides)."""
    step = 2 * 8 * 2  # two rows of 8 uint16
    first, second = (
        imagecodecs.zstd_encode(bytes(step - 2)),
        imagecodecs.zstd_encode(bytes(step + 2)),
    )
    data = first + second
    info = plain_tiff.PlainTiff(
        height=4, width=8, samples=1, dtype=np.dtype("<u2"), compression=50000, predictor=1,
        tiled=False, rows_per_strip=2, offsets=(0, len(first)), counts=(len(first), len(second)),
    )  # fmt: skip
    assert plain_tiff.zstd_content_size(first) == step - 2
    assert len(imagecodecs.zstd_decode(data)) == 2 * step  # what one call would have given
    with pytest.raises(ValueError, match="strip 0 decodes to 30 bytes, expected 32"):
        plain_tiff.decode(info, None, data)
    good = imagecodecs.zstd_encode(bytes(range(step))) * 2
    fine = dataclasses.replace(info, offsets=(0, len(good) // 2), counts=(len(good) // 2,) * 2)
    np.testing.assert_array_equal(plain_tiff.decode(fine, None, good).ravel().view(np.uint8),
                                  np.frombuffer(bytes(range(step)) * 2, np.uint8))  # fmt: skip


# (id, TIFF bytes, the (H, W, C) array read_image must return): tifffile's semantics needed
NOT_PLAIN = [
    (
        "imagej-hyperstack-cyx",
        _tiff(a := _rand(np.uint16, 3, H, W), imagej=True, metadata={"axes": "CYX"}),
        np.moveaxis(a, 0, -1),
    ),
    ("multipage", _tiff(b := _rand(np.uint16, 2, H, W), photometric="minisblack"),
     np.moveaxis(b, 0, -1)),
    ("multipage-no-description", _tiff(b, photometric="minisblack", metadata=None),
     np.moveaxis(b, 0, -1)),
    ("planar-rgb", _tiff(c := _rand(np.uint16, 3, H, W), photometric="rgb",
                         planarconfig="separate"), np.moveaxis(c, 0, -1)),
    ("ome", _tiff(d := _rand(np.uint16, H, W), ome=True), d[:, :, None]),
    ("bigtiff", _tiff(e := _rand(np.uint16, H, W), bigtiff=True), e[:, :, None]),
    ("bilevel", _tiff(f := RNG.random((H, W)) > 0.5), f.astype(np.uint8)[:, :, None]),
    ("packbits", _tiff(g := _rand(np.uint16, H, W), compression="packbits"), g[:, :, None]),
    ("deflate-tiled", _tiff(h := _grey(np.uint16), compression="zlib", tile=(16, 16)),
     h[:, :, None]),
    ("deflate-float-predictor", _tiff(i := _grey(np.float32), compression="zlib", predictor=True),
     i[:, :, None]),
    ("text-description", _tiff(j := _grey(np.uint16), description="microscope 7"),
     j[:, :, None]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in NOT_PLAIN], ids=[c[0] for c in NOT_PLAIN]
)
def test_tiff_needing_tifffile_is_not_taken_by_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, expected: np.ndarray
) -> None:
    assert _probe(data) is None
    opened = []
    real = image_module.tifffile.TiffFile

    def spy(*args: object, **kwargs: object) -> tifffile.TiffFile:
        opened.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(image_module.tifffile, "TiffFile", spy)
    path = tmp_path / "a.tif"
    path.write_bytes(data)
    out = read_image(path)
    assert opened == [1]
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_shape_record_that_disagrees_with_the_page_is_tifffile_s_damaged_tiff(
    tmp_path: Path,
) -> None:
    data = _tiff(_grey(np.uint16), description='{"shape": [2, 20, 59]}', metadata=None)
    assert _probe(data) is None
    (tmp_path / "s.tif").write_bytes(data)
    with pytest.raises(ImageReadError, match=r"damaged TIFF: .*shaped series shape"):
        read_image(tmp_path / "s.tif")


def test_imagej_z_stack_is_still_refused_as_a_stack(tmp_path: Path) -> None:
    data = _tiff(_rand(np.uint16, 4, H, W), imagej=True, metadata={"axes": "ZYX"})
    (tmp_path / "z.tif").write_bytes(data)
    with pytest.raises(ImageReadError, match=r"depth \(Z\) axis of length 4"):
        read_image(tmp_path / "z.tif")


def _reason_via_tifffile(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    with monkeypatch.context() as m:
        m.setattr(image_module.plain_tiff, "probe", lambda *a: None)
        with pytest.raises(ImageReadError) as err:
            read_image(path)
    return err.value.reason


DAMAGED = {
    "uncompressed-truncated": lambda d: d[: len(d) * 2 // 3],
    "strip-garbled": lambda d: d[:300] + bytes(60) + d[360:],
    "strip-cut": lambda d: d[: len(d) - 40],
}
DAMAGE_SOURCES = {
    "none": _tiff(_grey(np.uint16)),
    "lzw": _tiff(_grey(np.uint16), compression="lzw"),
    "deflate": _tiff(_grey(np.uint16), compression="zlib"),
    "zstd": _tiff(_grey(np.uint16), compression="zstd"),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
@pytest.mark.parametrize("source", list(DAMAGE_SOURCES))
def test_damaged_plain_tiff_fails_exactly_as_through_tifffile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, damage: str
) -> None:
    data = DAMAGED[damage](DAMAGE_SOURCES[source])
    path = tmp_path / "bad.tif"
    path.write_bytes(data)
    try:
        reference = _reason_via_tifffile(monkeypatch, path)
    except pytest.fail.Exception:  # tifffile reads it (garbled raw pixels are still pixels)
        with monkeypatch.context() as m:
            m.setattr(image_module.plain_tiff, "probe", lambda *a: None)
            expected = read_image(path)
        np.testing.assert_array_equal(read_image(path), expected)
        return
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert err.value.reason == reference
    assert err.value.path == str(path)


def test_garbled_deflate_strip_is_an_error_although_libtiff_decodes_it(tmp_path: Path) -> None:
    """libtiff's inflate returns garbage for this damage; tifffile (and read_image) refuse."""
    import imagecodecs

    data = bytearray(_tiff(_grey(np.uint16), compression="zlib"))
    info = _probe(bytes(data))
    assert info is not None
    middle = info.offsets[0] + info.counts[0] // 2
    for seed in range(40):  # find damage libtiff lets through
        bad = bytearray(data)
        bad[middle : middle + 4] = np.random.default_rng(seed).bytes(4)
        try:
            imagecodecs.tiff_decode(bytes(bad))
        except Exception:
            continue
        break
    else:
        pytest.skip("libtiff caught every damage tried")
    (tmp_path / "bad.tif").write_bytes(bytes(bad))
    with pytest.raises(ImageReadError, match="TIFF"):
        read_image(tmp_path / "bad.tif")


def test_bomb_guard_counts_channels_and_bytes_of_a_plain_tiff(tmp_path: Path) -> None:
    data = _tiff(_rand(np.float64, 40, 40, 4), photometric="minisblack", planarconfig="contig")
    assert _probe(data) is not None
    (tmp_path / "a.tif").write_bytes(data)
    # 1,600 pixels is within max_pixels=2,000, but 40x40x4 x 8 bytes = 51,200 > 4 x 2,000
    with pytest.raises(ImageReadError, match="decompression-bomb guard"):
        read_image(tmp_path / "a.tif", max_pixels=2000)
    with pytest.raises(ImageReadError, match="1,600 pixels exceeds max_pixels=1,000"):
        read_image(tmp_path / "a.tif", max_pixels=1000)


# --- PNG through imagecodecs' libpng -------------------------------------------------------


def _opencv_png(data: bytes) -> np.ndarray:
    """What read_image returned for PNG before libpng was called directly."""
    buf = np.frombuffer(data, np.uint8)
    if data[25] == 2:
        return cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img.ndim == 2:
        return img[:, :, None]
    code = cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def _png(arr: np.ndarray) -> bytes:
    bgr = arr
    if arr.ndim == 3:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    return cv2.imencode(".png", bgr)[1].tobytes()


def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """The PNG with an extra chunk right after IHDR."""
    chunk = struct.pack(">I", len(body)) + kind + body
    chunk += struct.pack(">I", zlib.crc32(kind + body))
    return data[:33] + chunk + data[33:]


def _pil_png(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **kw)
    return buf.getvalue()


PNGS: list[tuple[str, Callable[[], bytes], bool]] = [
    ("u8-grey", lambda: _png(_rand(np.uint8, H, W)), True),
    ("u16-grey", lambda: _png(_rand(np.uint16, H, W)), True),
    ("u8-rgb", lambda: _png(_rand(np.uint8, H, W, 3)), True),
    ("u16-rgb", lambda: _png(_rand(np.uint16, H, W, 3)), True),
    ("u8-rgba", lambda: _png(_rand(np.uint8, H, W, 4)), True),
    ("u16-rgba", lambda: _png(_rand(np.uint16, H, W, 4)), True),
    ("u16-grey-sbit-12", lambda: _with_chunk(_png(_rand(np.uint16, H, W)), b"sBIT", b"\x0c"), True),
    ("u8-rgb-gamma", lambda: _with_chunk(_png(_rand(np.uint8, H, W, 3)), b"gAMA",
                                         struct.pack(">I", 45455)), True),
    ("u8-grey-alpha", lambda: _pil_png(np.dstack([_rand(np.uint8, H, W)] * 2)), False),
    ("u8-rgb-trns", lambda: _pil_png(_rand(np.uint8, H, W, 3), transparency=(1, 2, 3)), False),
    ("u8-grey-trns", lambda: _pil_png(_rand(np.uint8, H, W), transparency=5), False),
    ("1-bit", lambda: _pil_png(_rand(np.uint8, H, W) > 128), False),
]  # fmt: skip


@pytest.mark.parametrize(("make", "fast"), [c[1:] for c in PNGS], ids=[c[0] for c in PNGS])
def test_png_reads_exactly_as_opencv_read_it(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], bytes], fast: bool
) -> None:
    data = make()
    assert image_module._png_plain(data) is fast
    calls = []
    real = image_module._decode_png_libpng
    monkeypatch.setattr(image_module, "_decode_png_libpng", lambda d: calls.append(1) or real(d))
    out = decode_image(data, "a.png")
    expected = _opencv_png(data)
    assert calls == ([1] if fast else [])
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_garbled_png_still_fails_with_the_opencv_reason(tmp_path: Path) -> None:
    data = _png(_rand(np.uint8, 64, 64, 3))
    garbled = data[:60] + bytes(140) + data[200:]
    assert image_module._png_plain(garbled)
    with pytest.raises(ImageReadError) as err:
        decode_image(garbled, "g.png")
    assert err.value.reason == "corrupt PNG: OpenCV could not decode the data"
