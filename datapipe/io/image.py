"""Decode PNG / JPEG / BMP / TIFF into ``(H, W, C)`` arrays in the file's own dtype.

Nothing here converts bit depth: a 16-bit PNG comes back as ``uint16``, a 12-bit microscopy
TIFF as ``uint16`` with values up to 4095, a float TIFF as ``float32``. The one conversion to
float lives in :mod:`datapipe.io.convert`.

Backends are picked per format, each the fastest decoder measured to return the same array
(``bench/io_throughput.py``): libpng through imagecodecs for 8/16-bit grey / RGB / RGBA PNG,
OpenCV for other PNGs and BMP (keeps 16 bits with ``IMREAD_UNCHANGED``; its BGR order is turned
into RGB here), :mod:`datapipe.io.plain_tiff` for one-page chunky TIFFs (a direct read when
uncompressed, libtiff for LZW / zstd, libdeflate for Deflate), libjpeg-turbo through simplejpeg
for 8-bit grey and colour JPEG (the same library and settings as OpenCV's, bit-identical
pixels, and it reports libjpeg's corrupt-data warnings, which OpenCV only prints on stderr
while it pads the damage with grey), OpenCV for other JPEGs (CMYK, 12-bit), tifffile
(+ imagecodecs for LZW / Deflate / JPEG / zstd) for every other TIFF, which understands planar,
BigTIFF, multi-page and ImageJ / OME hyperstacks. A fast decoder that fails hands the file to
the general one, so damage is reported as before. Every failure becomes
:class:`~datapipe.errors.ImageReadError` naming the file and the cause (``corrupt JPEG: 20
extraneous bytes before marker 0xd9``); a truncated JPEG is caught before decoding.

Before any pixel is decoded the header's size is checked against ``max_pixels``, the
decompression-bomb guard: ``H x W`` at most ``max_pixels`` and the decoded array
(``H x W x channels x bytes per sample``) at most ``4 * max_pixels`` bytes (1 GiB at the
default 2**28: a 355 KB PNG or a 2 MB TIFF can declare gigabytes).

A file in another format is named from its first bytes (``unsupported format: GIF``,
``unsupported format: text/HTML`` for an HTML page saved as ``.png``), or, when no sniffer
knows them, ``not an image: <file name>``.
"""

from __future__ import annotations

import errno
import io
import logging
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

import cv2
import imagecodecs
import numpy as np
import simplejpeg
import tifffile

from datapipe.errors import ImageReadError
from datapipe.io import plain_tiff

ImageFormat = Literal["png", "jpeg", "bmp", "tiff"]

#: Largest ``height * width`` decoded before refusing the file as a decompression bomb.
DEFAULT_MAX_PIXELS = 1 << 28  # 268 M pixels, e.g. 16384 x 16384
#: Decoded bytes allowed per ``max_pixels``: the budget is ``max_pixels`` RGBA 8-bit pixels.
BYTES_PER_MAX_PIXEL = 4
#: More channels than this is a stack, not an image.
MAX_CHANNELS = 64

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

_MAGIC: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
)

#: Bytes of a file's start that the sniffers look at (DICOM's mark sits at offset 128).
HEAD_BYTES = 512

#: Formats datapipe does not read, by their first bytes: every ``(offset, magic)`` must match.
#: ISO media (HEIC / AVIF / MP4) and text (HTML, XML, SVG, plain) are told apart further below.
_OTHER_MAGIC: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...] = (
    ("GIF", ((0, b"GIF87a"),)),
    ("GIF", ((0, b"GIF89a"),)),
    ("WebP", ((0, b"RIFF"), (8, b"WEBP"))),
    ("JPEG 2000", ((0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),)),
    ("JPEG 2000", ((0, b"\xff\x4f\xff\x51"),)),  # bare codestream (.j2k)
    ("JPEG XL", ((0, b"\x00\x00\x00\x0cJXL \r\n\x87\n"),)),
    ("JPEG XL", ((0, b"\xff\x0a"),)),
    ("OpenEXR", ((0, b"v/1\x01"),)),
    ("Photoshop PSD", ((0, b"8BPS"),)),
    ("DICOM", ((128, b"DICM"),)),
    ("PDF", ((0, b"%PDF-"),)),
    ("ZIP", ((0, b"PK\x03\x04"),)),
    ("ZIP", ((0, b"PK\x05\x06"),)),
    ("gzip", ((0, b"\x1f\x8b"),)),
    ("NumPy array", ((0, b"\x93NUMPY"),)),
)

#: ISO media (``ftyp`` box) brands, checked in this order against the major and compatible ones.
_FTYP_BRANDS: tuple[tuple[str, frozenset[bytes]], ...] = (
    ("AVIF", frozenset({b"avif", b"avis"})),
    ("HEIC", frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})),
    ("HEIF", frozenset({b"mif1", b"msf1"})),
    ("MP4 video", frozenset({b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"M4V "})),
    ("QuickTime video", frozenset({b"qt  "})),
)
_NETPBM = re.compile(rb"P[1-7]\s")  # its binary variants have a text header: test it first
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")

# tifffile axis codes that hold channels of one 2-D image; anything else (Z, T, ...) is a stack.
_CHANNEL_AXES = frozenset("SCIQ")
_AXIS_NAMES = {"Z": "depth (Z)", "T": "time (T)", "R": "tile (R)", "H": "lifetime (H)"}

_PNG_COLOR_TYPE_RGB = 2
_PNG_COLOR_TYPE_PALETTE = 3
_PNG_COLOR_TYPES_LIBPNG = frozenset({0, 2, 6})  # grey, RGB, RGBA


def sniff_format(head: bytes) -> ImageFormat | None:
    """The container format from a file's first bytes, or ``None`` if it is none we read."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def sniff_other_format(head: bytes) -> str | None:
    """The name of a format datapipe does not read (``GIF``, ``WebP``, ``HEIC``, ``PDF``,
    ``text/HTML`` ...) from a file's first :data:`HEAD_BYTES` bytes, or ``None`` if unknown."""
    for name, marks in _OTHER_MAGIC:
        if all(head[at : at + len(magic)] == magic for at, magic in marks):
            return name
    if _NETPBM.match(head):
        return "Netpbm (PBM/PGM/PPM)"
    return _iso_media(head) or _text_kind(head)


def unsupported_reason(head: bytes, name: str) -> str:
    """Why a file that starts with ``head`` is not read: ``unsupported format: GIF`` for a known
    format, ``not an image: <name>`` for bytes no sniffer knows (``name`` is the file's name)."""
    other = sniff_other_format(head)
    return f"unsupported format: {other}" if other else f"not an image: {name}"


def _iso_media(head: bytes) -> str | None:
    """HEIC / AVIF / HEIF / MP4 / QuickTime from an ISO base media ``ftyp`` box's brands."""
    if head[4:8] != b"ftyp":
        return None
    end = min(int.from_bytes(head[:4], "big"), len(head))
    # major brand at 8, minor version at 12, compatible brands from 16 to the box's end
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    for name, known in _FTYP_BRANDS:
        if brands & known:
            return name
    return f"ISO media ({head[8:12].decode('latin-1').strip()})"


def _text_kind(head: bytes) -> str | None:
    """``text/HTML``, ``SVG``, ``text/XML`` or ``text/plain`` for UTF-8 text, else ``None``."""
    body = head.removeprefix(b"\xef\xbb\xbf")
    if not body or b"\x00" in body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":  # a character cut by the head's end is fine
            return None
        text = body[: exc.start].decode("utf-8")
    if not all(c.isprintable() or c in _TEXT_CONTROLS for c in text):
        return None
    start = text.lstrip().lower()
    if start.startswith(("<?xml", "<svg")):
        return "SVG" if "<svg" in start else "text/XML"
    if start.startswith("<!doctype html") or any(t in start for t in ("<html", "<head", "<body")):
        return "text/HTML"
    return "text/plain"


@contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    """Turn the OS's complaints about a path into :class:`ImageReadError`."""
    try:
        yield
    except FileNotFoundError:
        raise ImageReadError(path, link_problem(path) or "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file") from None
    except OSError as exc:
        reason = link_problem(path) or f"cannot read file: {exc.strerror or exc}"
        raise ImageReadError(path, reason) from None


def link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be read (``broken symbolic link -> target``, ``symbolic link
    loop``); ``None`` for a link that resolves, or no link."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except FileNotFoundError:
        return f"broken symbolic link -> {path.readlink()}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"symbolic link cannot be followed: {exc.strerror or exc}"
    return None


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, with missing / unreadable / empty files as :class:`ImageReadError`."""
    path = Path(path)
    with _file_errors(path):
        data = path.read_bytes()
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    return data


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file into an ``(H, W, C)`` array in the file's own dtype.

    Colour images come back in RGB(A) order. Palette PNGs are expanded to their colours (use
    :func:`read_mask` for palette indices).

    Shapes:
        returns ``(H, W, C)``, ``C >= 1``; dtype ``uint8``, ``uint16``, ``int16``,
        ``float32`` ... as stored (big-endian TIFF data is returned in native byte order,
        1-bit TIFF as ``uint8`` 0/1).

    Raises:
        ImageReadError: missing, empty, truncated, corrupt or unsupported file, a 3-D stack, or
            more than ``max_pixels`` pixels or ``4 * max_pixels`` decoded bytes.
    """
    path = Path(path)
    with _file_errors(path), path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
        fmt = _sniff_checked(head, path)
        if fmt == "tiff":
            fast = _plain_tiff_from_file(fh, head, path, max_pixels)
            if fast is not None:
                return fast
            # tifffile reads strips straight into the output array: no copy of the file bytes.
            fh.seek(0)
            return _decode(fh, path, fmt, max_pixels)
        data = plain_tiff.read_all(fh)
    return _decode(data, path, fmt, max_pixels)


def decode_image(
    data: bytes, path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """:func:`read_image` on bytes already in memory (``path`` is only used in errors)."""
    fmt = _sniff_checked(data[:HEAD_BYTES], path)
    if fmt == "tiff":
        fast = _plain_tiff_from_bytes(data, path, max_pixels)
        return fast if fast is not None else _decode(io.BytesIO(data), path, fmt, max_pixels)
    return _decode(data, path, fmt, max_pixels)


def _sniff_checked(head: bytes, path: str | Path) -> ImageFormat:
    if not head:
        raise ImageReadError(path, "empty file (0 bytes)")
    fmt = sniff_format(head)
    if fmt is None:
        raise ImageReadError(path, unsupported_reason(head, Path(path).name))
    return fmt


def _decode(
    source: bytes | BinaryIO, path: str | Path, fmt: ImageFormat, max_pixels: int
) -> np.ndarray:
    try:
        if isinstance(source, bytes):
            return _decode_cv2(source, path, fmt, max_pixels)
        return _decode_tiff(source, path, max_pixels)
    except ImageReadError:
        raise
    except Exception as exc:  # a decoder's own error, whatever its class: name the file
        raise ImageReadError(path, f"corrupt {fmt.upper()}: {exc}") from exc


def read_mask(
    path: str | Path,
    *,
    colors: Mapping[int, tuple[int, int, int]] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode a label mask into an ``(H, W)`` array of class ids.

    Accepts single-channel 8/16-bit PNG or TIFF (values are the ids), palette PNG (the palette
    indices are the ids, whatever the colours), and RGB colour masks when ``colors`` maps each
    class id to its ``(r, g, b)``. An RGB mask whose three channels are equal is read as grey.

    Shapes:
        returns ``(H, W)``; dtype as stored for id masks, ``uint8`` (``uint16`` past 255 ids)
        for palette and colour masks.
    """
    data = read_bytes(path)
    if sniff_format(data[:8]) == "png" and _png_color_type(data) == _PNG_COLOR_TYPE_PALETTE:
        _check_budget(path, _png_size(data), max_pixels, channels=1, itemsize=1)
        return _decode_palette_png(data, path)
    img = decode_image(data, path, max_pixels=max_pixels)
    if img.dtype.kind not in "iub":
        raise ImageReadError(path, f"a mask holds integer class ids; got {img.dtype} pixels")
    channels = img.shape[2]
    if channels == 1:
        return img[:, :, 0]
    rgb = img[:, :, :3]
    if colors is not None and channels in (3, 4):
        return colors_to_index(rgb, colors, path)
    if (
        channels in (3, 4)
        and np.array_equal(rgb[:, :, 0], rgb[:, :, 1])
        and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
    ):
        return np.ascontiguousarray(rgb[:, :, 0])
    raise ImageReadError(
        path,
        f"mask has {channels} channels of different values; expected one channel of class ids, "
        "a palette PNG, or an RGB mask with a colour table (mask_colors in params)",
    )


def colors_to_index(
    rgb: np.ndarray, colors: Mapping[int, tuple[int, int, int]], path: str | Path
) -> np.ndarray:
    """Map an RGB colour mask to class ids with a ``{class_id: (r, g, b)}`` table.

    Shapes:
        ``rgb`` is ``(H, W, 3)`` uint8; returns ``(H, W)``.
    """
    if rgb.dtype != np.uint8:
        raise ImageReadError(path, f"colour masks must be 8-bit RGB; got {rgb.dtype}")
    keys = _rgb_keys(rgb)
    table = np.array([(r << 16) | (g << 8) | b for r, g, b in colors.values()], dtype=np.int32)
    ids = np.array(list(colors.keys()), dtype=np.int64)
    order = np.argsort(table)
    table, ids = table[order], ids[order]
    pos = np.clip(np.searchsorted(table, keys), 0, len(table) - 1)
    unknown = table[pos] != keys
    if unknown.any():
        bad = np.unique(keys[unknown])[:5]
        shown = ", ".join(f"({k >> 16}, {(k >> 8) & 255}, {k & 255})" for k in bad.tolist())
        raise ImageReadError(
            path, f"{int(unknown.sum())} pixels have colours not in mask_colors, e.g. {shown}"
        )
    out_dtype = np.uint8 if ids.max(initial=0) < 256 else np.uint16
    return ids[pos].astype(out_dtype)


def _rgb_keys(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[:, :, i].astype(np.int32) for i in range(3))
    return (r << 16) | (g << 8) | b


# --- OpenCV formats -----------------------------------------------------------------------


def _decode_cv2(data: bytes, path: str | Path, fmt: ImageFormat, max_pixels: int) -> np.ndarray:
    size = _HEADER_SIZE[fmt](data)
    if size is None:
        raise ImageReadError(path, f"truncated {fmt.upper()}: header incomplete")
    channels, itemsize = _HEADER_SAMPLES[fmt](data)
    _check_budget(path, size, max_pixels, channels=channels, itemsize=itemsize)
    if fmt == "png":
        _check_png_complete(data, path)
        if _png_plain(data):
            try:
                return _decode_png_libpng(data)
            except Exception:  # damaged: OpenCV's decode below gives today's error
                pass
    if fmt == "jpeg":
        if not _jpeg_complete(data):
            # libjpeg pads a cut-off scan with grey and only warns; refuse instead.
            raise ImageReadError(path, "truncated JPEG: no end-of-image marker after the last scan")
        if channels in (1, 3) and _jpeg_precision(data) == 8:
            return _decode_jpeg(data, path, grey=channels == 1)
    rgb = (fmt == "png" and _png_color_type(data) == _PNG_COLOR_TYPE_RGB) or (
        fmt == "jpeg" and _jpeg_components(data) == 3
    )
    # Three-channel files decode straight to RGB (no BGR pass); the rest keep every channel.
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH if rgb else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise ImageReadError(path, f"corrupt {fmt.upper()}: OpenCV could not decode the data")
    if rgb:
        return img
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def _decode_jpeg(data: bytes, path: str | Path, *, grey: bool) -> np.ndarray:
    """An 8-bit grey or colour JPEG, with libjpeg's corrupt-data warnings as errors.

    OpenCV's libjpeg-turbo only prints "Corrupt JPEG data: ..." on stderr and returns the
    damaged pixels; simplejpeg (``strict=True``) raises on it. Same library, same settings
    (accurate integer DCT, fancy upsampling): identical pixels for a sound file. EXIF
    orientation is not applied (pixels as stored).
    """
    try:
        img = simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "RGB", strict=True)
    except ValueError as exc:
        raise ImageReadError(path, f"corrupt JPEG: {_jpeg_reason(str(exc))}") from None
    return np.asarray(img)


def _png_plain(data: bytes) -> bool:
    """An 8/16-bit grey, RGB or RGBA PNG, not interlaced, without a transparency chunk: the
    files imagecodecs' libpng decodes to exactly OpenCV's pixels in RGB(A) order (it keeps
    grey+alpha as 2 channels and ignores ``tRNS``, where OpenCV makes 4 channels)."""
    if len(data) < 33 or data[12:16] != b"IHDR" or data[28] != 0:
        return False
    if data[24] not in (8, 16) or data[25] not in _PNG_COLOR_TYPES_LIBPNG:
        return False
    first_idat = data.find(b"IDAT", 33)
    return data.find(b"tRNS", 33, first_idat if first_idat > 0 else len(data)) < 0


def _decode_png_libpng(data: bytes) -> np.ndarray:
    img = imagecodecs.png_decode(data)
    return img[:, :, None] if img.ndim == 2 else img


def _jpeg_reason(message: str) -> str:
    """``20 extraneous bytes before marker 0xd9`` from libjpeg's ``Corrupt JPEG data: ...``."""
    reason = re.sub(r"^\s*corrupt jpeg data:\s*", "", message.strip(), flags=re.IGNORECASE)
    if len(reason) > 1 and reason[0].isupper() and reason[1].islower():
        reason = reason[0].lower() + reason[1:]
    return reason or "libjpeg could not decode the data"


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _check_png_complete(data: bytes, path: str | Path) -> None:
    if data.rfind(b"IEND") < 0:
        raise ImageReadError(path, "truncated PNG: no IEND chunk (file cut short)")


def _png_color_type(data: bytes) -> int:
    return data[25] if len(data) > 25 else -1


# Channels OpenCV returns per PNG colour type (palette and grey+alpha as 4: an upper bound).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}


def _png_samples(data: bytes) -> tuple[int, int]:
    """(channels, bytes per sample) the decoded PNG will have, from its IHDR chunk."""
    bit_depth = data[24] if len(data) > 24 else 16
    return _PNG_CHANNELS.get(_png_color_type(data), 4), 2 if bit_depth > 8 else 1


def _bmp_samples(data: bytes) -> tuple[int, int]:
    bits = int.from_bytes(data[28:30], "little") if len(data) >= 30 else 32
    return (4 if bits == 32 else 3), 1


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    return abs(width), abs(height)


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset(range(0xD0, 0xDA)) | {0x01}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    sof = _jpeg_sof(data)
    if sof is None or sof + 9 > len(data):
        return None
    height = int.from_bytes(data[sof + 5 : sof + 7], "big")
    width = int.from_bytes(data[sof + 7 : sof + 9], "big")
    return width, height


def _jpeg_components(data: bytes) -> int:
    sof = _jpeg_sof(data)
    return data[sof + 9] if sof is not None and sof + 9 < len(data) else -1


def _jpeg_precision(data: bytes) -> int:
    """Bits per sample (8, or 12 / 16 for medical and lossless JPEG) from the frame header."""
    sof = _jpeg_sof(data)
    return data[sof + 4] if sof is not None and sof + 4 < len(data) else -1


def _jpeg_samples(data: bytes) -> tuple[int, int]:
    components = _jpeg_components(data)
    return (components if components in (1, 3) else 4), 2 if _jpeg_precision(data) > 8 else 1


def _jpeg_sof(data: bytes) -> int | None:
    """Offset of the first start-of-frame marker (it holds size and component count)."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker in _JPEG_SOF:
            return i
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _jpeg_complete(data: bytes) -> bool:
    """An end-of-image marker follows the last scan (fast path: the file ends with it)."""
    if data[-64:].rstrip(b"\x00").endswith(b"\xff\xd9"):
        return True
    # Trailing bytes after EOI (camera trailers) are fine; a scan cut short is not. A scan
    # never holds these markers: 0xFF in entropy-coded data is stuffed as FF 00.
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")


_HEADER_SIZE = {"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size}
_HEADER_SAMPLES = {"png": _png_samples, "jpeg": _jpeg_samples, "bmp": _bmp_samples}


def decoded_bytes_budget(max_pixels: int) -> int:
    """The most bytes a decoded image may take under ``max_pixels`` (4 per allowed pixel)."""
    return BYTES_PER_MAX_PIXEL * max_pixels


def _check_budget(
    path: str | Path,
    size: tuple[int, int] | None,
    max_pixels: int,
    *,
    channels: int,
    itemsize: int,
) -> None:
    """Refuse, from the header alone, an image over ``max_pixels`` pixels or its byte budget."""
    if size is None:
        return
    width, height = size
    if width == 0 or height == 0:
        raise ImageReadError(path, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            path,
            f"{width}x{height} = {width * height:,} pixels exceeds max_pixels={max_pixels:,} "
            "(decompression-bomb guard)",
        )
    nbytes = width * height * channels * itemsize
    budget = decoded_bytes_budget(max_pixels)
    if nbytes > budget:
        raise ImageReadError(
            path,
            f"{width}x{height}x{channels} x {itemsize} bytes decodes to {_size(nbytes)}, over "
            f"the {_size(budget)} budget of max_pixels={max_pixels:,} "
            f"({BYTES_PER_MAX_PIXEL} bytes per pixel; decompression-bomb guard)",
        )


def _size(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{nbytes} bytes"


def _decode_palette_png(data: bytes, path: str | Path) -> np.ndarray:
    # OpenCV expands palettes to colours; the indices are the class ids, so ask Pillow.
    from PIL import Image

    _check_png_complete(data, path)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.array(im, dtype=np.uint8)
    except Exception as exc:
        raise ImageReadError(path, f"corrupt palette PNG: {exc}") from exc


# --- TIFF ---------------------------------------------------------------------------------


class _TiffWarnings(logging.Filter):
    """Collects tifffile's warnings while a TIFF decodes in this thread, and keeps them quiet.

    tifffile logs, rather than raises, on some damaged files; those messages become the
    :class:`ImageReadError`. Installed once on tifffile's logger: outside a decode it lets
    every record through unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def start(self) -> None:
        self._local.messages = []

    def stop(self) -> list[str]:
        messages: list[str] = self._local.messages
        self._local.messages = None
        return messages

    def filter(self, record: logging.LogRecord) -> bool:
        messages = getattr(self._local, "messages", None)
        if messages is None or record.levelno < logging.WARNING:
            return True
        messages.append(record.getMessage())
        return False


_TIFF_WARNINGS = _TiffWarnings()
logging.getLogger("tifffile").addFilter(_TIFF_WARNINGS)


def _plain_tiff_from_file(
    fh: BinaryIO, head: bytes, path: str | Path, max_pixels: int
) -> np.ndarray | None:
    """A plain TIFF (:mod:`datapipe.io.plain_tiff`) decoded without tifffile, or ``None``."""
    size = os.fstat(fh.fileno()).st_size

    def fetch(offset: int, n: int) -> bytes:
        if offset + n <= len(head):
            return head[offset : offset + n]
        return plain_tiff.read_at(fh, offset, n)

    info = plain_tiff.probe(head, fetch, size)
    if info is None:
        return None
    _check_plain_budget(path, info, max_pixels)
    try:
        return plain_tiff.decode(info, fh, None)
    except Exception:  # damaged: tifffile (the caller's fallback) names the trouble
        return None


def _plain_tiff_from_bytes(data: bytes, path: str | Path, max_pixels: int) -> np.ndarray | None:
    info = plain_tiff.probe(data[:HEAD_BYTES], lambda at, n: data[at : at + n], len(data))
    if info is None:
        return None
    _check_plain_budget(path, info, max_pixels)
    try:
        return plain_tiff.decode(info, None, data)
    except Exception:
        return None


def _check_plain_budget(path: str | Path, info: plain_tiff.PlainTiff, max_pixels: int) -> None:
    size = (info.width, info.height)
    _check_budget(path, size, max_pixels, channels=1, itemsize=1)
    _check_budget(path, size, max_pixels, channels=info.samples, itemsize=info.dtype.itemsize)


def _decode_tiff(source: BinaryIO, path: str | Path, max_pixels: int) -> np.ndarray:
    _TIFF_WARNINGS.start()
    try:
        with tifffile.TiffFile(source) as tif:
            if not tif.series:
                raise ImageReadError(path, "corrupt TIFF: no readable image page")
            series = tif.series[0]
            axes, shape = series.axes, tuple(series.shape)
            _check_tiff_shape(path, axes, shape, max_pixels, itemsize=series.dtype.itemsize)
            arr = series.asarray()
    finally:
        warnings = _TIFF_WARNINGS.stop()
    if warnings:
        raise ImageReadError(path, f"damaged TIFF: {warnings[0]}")
    return _tiff_to_hwc(arr, axes)


def _check_tiff_shape(
    path: str | Path, axes: str, shape: tuple[int, ...], max_pixels: int, *, itemsize: int
) -> None:
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(path, f"TIFF series has axes {axes!r}; expected a 2-D image (Y, X)")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    _check_budget(path, (width, height), max_pixels, channels=1, itemsize=1)
    for axis, length in zip(axes, shape, strict=True):
        if axis in "YX" or length == 1:
            continue
        if axis not in _CHANNEL_AXES:
            name = _AXIS_NAMES.get(axis, repr(axis))
            raise ImageReadError(
                path,
                f"TIFF is a stack with a {name} axis of length {length} (axes {axes!r}); "
                "datapipe reads 2-D images, save one plane per file",
            )
    channels = math.prod(n for a, n in zip(axes, shape, strict=True) if a not in "YX")
    if channels > MAX_CHANNELS:
        raise ImageReadError(
            path, f"{channels} channels (axes {axes!r}) exceeds the limit of {MAX_CHANNELS}"
        )
    _check_budget(path, (width, height), max_pixels, channels=channels, itemsize=itemsize)


def _tiff_to_hwc(arr: np.ndarray, axes: str) -> np.ndarray:
    """Move Y and X first and fold every channel-like axis (S, C, I, Q) into the last one."""
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a not in "YX"]
    height, width = arr.shape[order[0]], arr.shape[order[1]]
    out = arr.transpose(order).reshape(height, width, -1)
    if out.dtype == np.bool_:
        out = out.view(np.uint8)
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    return np.ascontiguousarray(out)
