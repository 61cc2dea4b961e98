"""The fast path for *plain* TIFFs: one 2-D page, chunky samples, a baseline compression.

tifffile understands every TIFF flavour (ImageJ / OME hyperstacks, planar samples, multi-page,
SubIFDs ...), but parsing its page model costs ~0.25 ms per file, more than decoding a small
uncompressed image. Most TIFFs in an image dataset are one page written by tifffile, OpenCV or
Pillow; :func:`probe` reads their first IFD with a few ``struct`` calls and says whether the
file is plain. Only then is it decoded here:

- uncompressed contiguous strips: read straight into the output array (one copy, no decoder);
- LZW (any predictor, strips or tiles), zstd tiles or with the floating-point predictor,
  uncompressed tiles: libtiff through
  ``imagecodecs.tiff_decode`` (libtiff's LZW is 2x tifffile's; on damaged LZW / zstd it fails
  exactly where tifffile does);
- Deflate (strips, no or horizontal predictor): libdeflate per strip, as tifffile does.
  libtiff's inflate is faster but silently returned garbage for ~30% of damaged Deflate files
  that tifffile refuses, so it is not used for Deflate;
- zstd strips (no or horizontal predictor): libzstd, as tifffile does, in one call when the
  frames lie back to back and declare their strips' sizes (one decoder context, not one per
  strip), which skips libtiff's ~0.1 ms open (see :func:`_zstd_strips`).

Anything the probe does not recognise (an unknown tag, a second page, a description other than
tifffile's own shape record, ...) returns ``None`` and the caller keeps tifffile. The decoders
here raise on any trouble; the caller then decodes with tifffile, so a damaged file fails with
the same error as before and the fast path never changes what a file reads as.
"""

from __future__ import annotations

import json
import operator
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import imagecodecs
import numpy as np

#: ``fetch(offset, size)``: up to ``size`` bytes of the file from ``offset``.
Fetch = Callable[[int, int], bytes]

_NONE, _LZW, _DEFLATE, _ADOBE_DEFLATE, _ZSTD = 1, 5, 8, 32946, 50000
_LIBTIFF = frozenset({_LZW, _ZSTD})
_DEFLATES = frozenset({_DEFLATE, _ADOBE_DEFLATE})
_MINISBLACK, _RGB = 1, 2

# Baseline tags that do not change how tifffile shapes a one-page file. Any other tag (SubIFDs,
# ImageDepth, ColorMap, vendor tags of LSM / STK / FluoView / MicroManager ...) -> tifffile.
_PLAIN_TAGS = frozenset(
    {254, 256, 257, 258, 259, 262, 266, 269, 270, 271, 272, 273, 274, 277, 278, 279, 282, 283}
    | {284, 296, 305, 306, 315, 316, 317, 322, 323, 324, 325, 338, 339, 33432}
)
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}
_INT_CODE = {1: "B", 3: "H", 4: "I", 16: "Q"}
_SCALAR_CODE = {1: "B", 3: "H", 4: "I"}  # an integer that fits the entry's 4 value bytes
_SAMPLE_KIND = {1: "u", 2: "i", 3: "f"}
_MAX_ENTRIES = 256
_MAX_SAMPLES = 64


@dataclass(frozen=True, slots=True)
class PlainTiff:
    """What a plain TIFF's first IFD says: enough to decode it without tifffile.

    Shapes:
        decodes to ``(height, width, samples)`` of ``dtype`` (the file's byte order).
    """

    height: int
    width: int
    samples: int
    dtype: np.dtype
    compression: int
    predictor: int
    tiled: bool
    rows_per_strip: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return self.width * self.samples * self.dtype.itemsize


def probe(head: bytes, fetch: Fetch, file_size: int) -> PlainTiff | None:
    """The first IFD of a classic TIFF if the file is plain, else ``None`` (use tifffile)."""
    try:
        return _probe(head, fetch, file_size)
    except (struct.error, _NotPlain):  # an IFD cut short: tifffile names the damage
        return None


def _probe(head: bytes, fetch: Fetch, file_size: int) -> PlainTiff | None:
    if head[:4] == b"II*\x00":
        bo = "<"
    elif head[:4] == b"MM\x00*":
        bo = ">"
    else:
        return None  # BigTIFF or not a TIFF
    if len(head) < 8:
        return None
    (ifd,) = struct.unpack_from(bo + "I", head, 4)
    if ifd < 8 or ifd + 2 > file_size:
        return None
    (n,) = struct.unpack(bo + "H", fetch(ifd, 2))
    raw = fetch(ifd + 2, n * 12 + 4)
    if not 0 < n <= _MAX_ENTRIES or len(raw) < n * 12 + 4:
        return None
    if struct.unpack_from(bo + "I", raw, n * 12)[0] != 0:
        return None  # a second page
    entries = {}
    scalars = {}
    for tag, typ, count, value in struct.iter_unpack(bo + "HHI4s", raw[: n * 12]):
        if tag not in _PLAIN_TAGS or tag in entries:
            return None
        entries[tag] = (typ, count, value)
        if count == 1 and typ in _SCALAR_CODE:
            scalars[tag] = struct.unpack_from(bo + _SCALAR_CODE[typ], value)[0]
    return _plain(_Tags(entries, scalars, bo, fetch, file_size))


class _NotPlain(Exception):
    """A tag value the fast path does not handle."""


class _Tags:
    """The IFD's entries, decoded lazily with ``struct`` (numpy costs more on a dozen ints)."""

    def __init__(
        self,
        entries: dict[int, tuple[int, int, bytes]],
        scalars: dict[int, int],
        bo: str,
        fetch: Fetch,
        size: int,
    ) -> None:
        self.entries, self.scalars, self.bo, self.fetch, self.size = (
            entries,
            scalars,
            bo,
            fetch,
            size,
        )

    def raw(self, tag: int) -> tuple[int, int, bytes]:
        typ, count, value = self.entries[tag]
        nbytes = _TYPE_SIZE.get(typ, 0) * count
        if nbytes == 0:
            raise _NotPlain
        if nbytes > 4:
            (offset,) = struct.unpack(self.bo + "I", value)
            if offset + nbytes > self.size:
                raise _NotPlain
            value = self.fetch(offset, nbytes)
            if len(value) < nbytes:
                raise _NotPlain
        return typ, count, value[:nbytes]

    def ints(self, tag: int) -> tuple[int, ...]:
        typ, count, value = self.raw(tag)
        code = _INT_CODE.get(typ)
        if code is None:
            raise _NotPlain
        return struct.unpack(f"{self.bo}{count}{code}", value)

    def one(self, tag: int, default: int | None = None) -> int:
        value = self.scalars.get(tag)
        if value is not None:
            return value
        if tag not in self.entries:
            if default is None:
                raise _NotPlain
            return default
        values = self.ints(tag)
        if len(values) != 1:
            raise _NotPlain
        return values[0]

    def same(self, tag: int, samples: int, default: int) -> int:
        """A per-sample tag whose values are all equal (BitsPerSample, SampleFormat)."""
        if tag not in self.entries:
            return default
        values = self.ints(tag)
        if len(values) not in (1, samples) or len(set(values)) != 1:
            raise _NotPlain
        return values[0]

    def text(self, tag: int) -> str | None:
        if tag not in self.entries:
            return None
        typ, _, value = self.raw(tag)
        if typ != 2:
            raise _NotPlain
        return value.rstrip(b"\x00").decode("ascii", errors="replace")


def _plain(tags: _Tags) -> PlainTiff | None:
    width, height = tags.one(256), tags.one(257)
    samples = tags.one(277, 1)
    photometric = tags.one(262)
    compression = tags.one(259, _NONE)
    predictor = tags.one(317, 1)
    if (
        tags.one(254, 0) != 0
        or tags.one(266, 1) != 1  # fill order
        or tags.one(274, 1) != 1  # orientation
        or tags.one(284, 1) != 1  # chunky (contig) samples
        or not width * height > 0
        or not 0 < samples <= _MAX_SAMPLES
        or photometric not in (_MINISBLACK, _RGB)
        or (photometric == _RGB and samples < 3)
        or compression not in _LIBTIFF | _DEFLATES | {_NONE}
        or predictor not in (1, 2, 3)
        or (compression == _NONE and predictor != 1)
    ):
        return None
    dtype = _dtype(tags, samples)
    # horizontal differencing (2) is for integers, the floating-point predictor (3) for floats
    if (
        dtype is None
        or (predictor == 2 and dtype.kind == "f")
        or (predictor == 3 and dtype.kind != "f")
    ):
        return None
    if not _shape_record_agrees(tags.text(270), height, width, samples):
        return None
    tiled = 322 in tags.entries
    if compression in _DEFLATES and (tiled or predictor == 3):
        return None  # libtiff's inflate is lax on damage; tifffile's libdeflate is not
    if tiled:
        tile_w, tile_h = tags.one(322), tags.one(323)
        if tile_w <= 0 or tile_h <= 0:
            return None
        segments = -(-height // tile_h) * -(-width // tile_w)
        offsets, counts, rows = tags.ints(324), tags.ints(325), tile_h
    else:
        rows = min(tags.one(278, height), height)
        if rows <= 0:
            return None
        segments = -(-height // rows)
        offsets, counts = tags.ints(273), tags.ints(279)
    if len(offsets) != segments or len(counts) != segments:
        return None
    if min(counts) <= 0 or max(map(operator.add, offsets, counts)) > tags.size:
        return None  # truncated or damaged: tifffile names it
    return PlainTiff(
        height, width, samples, dtype, compression, predictor, tiled, rows, offsets, counts
    )


def _dtype(tags: _Tags, samples: int) -> np.dtype | None:
    bits = tags.same(258, samples, 1)
    kind = _SAMPLE_KIND.get(tags.same(339, samples, 1))
    if kind is None or bits not in (8, 16, 32, 64) or (kind == "f" and bits < 32):
        return None
    return np.dtype(f"{tags.bo}{kind}{bits // 8}")


def _shape_record_agrees(description: str | None, height: int, width: int, samples: int) -> bool:
    """No description, or tifffile's ``{"shape": [...]}`` for this very page (ImageJ, OME and
    every other description are left to tifffile)."""
    if description is None:
        return True
    if not description.startswith("{"):
        return False
    try:
        record = json.loads(description)
        shape = [int(n) for n in record["shape"]]
    except (ValueError, KeyError, TypeError):
        return False
    page = [height, width] + ([samples] if samples > 1 else [])
    return [n for n in shape if n != 1] == [n for n in page if n != 1]


# --- decoders ---------------------------------------------------------------------------


def decode(info: PlainTiff, fh: BinaryIO | None, data: bytes | None) -> np.ndarray:
    """Decode a probed plain TIFF from its open file (``fh``) or its bytes (``data``).

    Raises on any trouble (the caller then falls back to tifffile).

    Shapes:
        returns ``(height, width, samples)`` in native byte order, C-contiguous.
    """
    if info.compression == _NONE and not info.tiled and _contiguous(info):
        out = _read_raw(info, fh, data)
    elif info.compression in _DEFLATES:  # strips, predictor 1 or 2 (the probe's promise)
        out = _strips(info, fh, data, imagecodecs.deflate_decode)
    elif _zstd_strips(info):
        out = _strips(info, fh, data, imagecodecs.zstd_decode, zstd_frames=True)
    else:
        out = _libtiff(info, fh, data)
    if not out.dtype.isnative:
        out = out.byteswap().view(out.dtype.newbyteorder("="))
    return out


def _contiguous(info: PlainTiff) -> bool:
    ends = map(operator.add, info.offsets, info.counts)
    return sum(info.counts) == info.height * info.row_bytes and all(
        end == start for end, start in zip(ends, info.offsets[1:], strict=False)
    )


def _shape(info: PlainTiff) -> tuple[int, int, int]:
    return info.height, info.width, info.samples


def _read_raw(info: PlainTiff, fh: BinaryIO | None, data: bytes | None) -> np.ndarray:
    nbytes = info.height * info.row_bytes
    start = info.offsets[0]
    if data is not None:
        flat = np.frombuffer(data, info.dtype, nbytes // info.dtype.itemsize, start)
        return flat.reshape(_shape(info)).copy()
    assert fh is not None
    out = np.empty(_shape(info), info.dtype)
    fh.seek(start)
    if fh.readinto(out.data.cast("B")) != nbytes:  # type: ignore[attr-defined]
        raise OSError("file shorter than its strips")
    return out


def _zstd_strips(info: PlainTiff) -> bool:
    """zstd strips with no or the horizontal predictor: libzstd decodes them here, as tifffile
    does, which spares libtiff's ~0.1 ms open (512² uint16: 0.86x -> 0.9x of imagecodecs'
    libtiff rate; 2048² in 32 strips: as fast as libtiff)."""
    return info.compression == _ZSTD and not info.tiled and info.predictor in (1, 2)


def _strips(
    info: PlainTiff,
    fh: BinaryIO | None,
    data: bytes | None,
    codec: Callable[..., bytes | bytearray],
    *,
    zstd_frames: bool = False,
) -> np.ndarray:
    """Strips decoded one by one with ``codec`` into the output array (as tifffile does),
    then the horizontal predictor undone. From a file, only the span of the strips is read.
    ``zstd_frames``: the strips are zstd frames, decoded in one call when they lie in line
    (:func:`_zstd_frames_in_line`)."""
    base = 0
    if data is None:
        assert fh is not None
        base = min(info.offsets)
        data = read_at(fh, base, max(map(operator.add, info.offsets, info.counts)) - base)
    buf = memoryview(data)
    out = np.empty(_shape(info), info.dtype)
    flat = out.data.cast("B")
    step = info.rows_per_strip * info.row_bytes
    if zstd_frames and _zstd_frames_in_line(info, buf, base):
        strips: list[tuple[int, int]] = [(info.offsets[0], sum(info.counts))]  # one context
        step = len(flat)
    else:
        strips = list(zip(info.offsets, info.counts, strict=True))
    for i, (offset, count) in enumerate(strips):
        part = flat[i * step : (i + 1) * step]
        decoded = codec(buf[offset - base : offset - base + count], out=part)
        if len(decoded) != len(part):
            raise ValueError(f"strip {i} decodes to {len(decoded)} bytes, expected {len(part)}")
    if info.predictor == 2:
        if not out.dtype.isnative:
            out = out.byteswap().view(out.dtype.newbyteorder("="))
        imagecodecs.delta_decode(out, axis=-2, out=out)
    return out


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_frames_in_line(info: PlainTiff, buf: memoryview, base: int) -> bool:
    """Whether the strips lie back to back and each one's zstd frame declares exactly its
    strip's decoded size. Then one ``zstd_decode`` of them all (zstd decodes concatenated
    frames, and checks each one against its declared size) gives what strip-by-strip calls
    give, with one decoder context instead of one per strip."""
    step = info.rows_per_strip * info.row_bytes
    last = info.height * info.row_bytes - step * (len(info.offsets) - 1)
    at = info.offsets[0]
    for i, (offset, count) in enumerate(zip(info.offsets, info.counts, strict=True)):
        expected = step if i < len(info.offsets) - 1 else last
        if offset != at or zstd_content_size(buf[offset - base : offset - base + 18]) != expected:
            return False
        at = offset + count
    return True


def zstd_content_size(head: bytes | memoryview) -> int | None:
    """The decoded size a zstd frame declares in its header (RFC 8878, 3.1.1.1), or ``None``
    (not a frame, or no size declared)."""
    if len(head) < 5 or bytes(head[:4]) != _ZSTD_MAGIC:
        return None
    descriptor = head[4]
    single_segment = (descriptor >> 5) & 1
    size = (single_segment, 2, 4, 8)[descriptor >> 6]
    at = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    if size == 0 or len(head) < at + size:
        return None
    value = int.from_bytes(head[at : at + size], "little")
    return value + 256 if size == 2 else value


def _libtiff(info: PlainTiff, fh: BinaryIO | None, data: bytes | None) -> np.ndarray:
    arr = imagecodecs.tiff_decode(data if data is not None else _all_bytes(fh))
    out = arr.reshape((*arr.shape, 1)) if arr.ndim == 2 else arr
    if out.shape != _shape(info) or out.dtype.newbyteorder("=") != info.dtype.newbyteorder("="):
        raise ValueError(f"libtiff decoded {arr.shape} {arr.dtype}, expected {_shape(info)}")
    return np.ascontiguousarray(out)


def _all_bytes(fh: BinaryIO | None) -> bytes:
    assert fh is not None
    return read_all(fh)


def read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of an open file from ``offset``: one ``pread`` where the OS has it
    (no detour through the file object's buffer), else seek and read."""
    if _PREAD is not None:
        return _PREAD(fh.fileno(), size, offset)
    fh.seek(offset)
    return fh.read(size)


_PREAD = getattr(os, "pread", None)


def read_all(fh: BinaryIO) -> bytes:
    """An open file's whole content: ``read(size)`` from offset 0. A BufferedReader's bare
    ``read()`` after a partial read gathers the rest in small chunks: 10-20x slower on 0.5 MB."""
    fh.seek(0)
    data = fh.read(os.fstat(fh.fileno()).st_size)
    rest = fh.read()  # the file grew since fstat
    return data + rest if rest else data
