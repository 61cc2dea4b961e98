"""What an image file holds, as the pipeline sees it: ``datapipe inspect``.

Pixels are read with :func:`datapipe.io.read_image` (native dtype, ``(H, W, C)``), so the
dtype, shape, channels and value range shown are exactly what ingest will see. The container's
own header is read alongside: for TIFF the first page's compression, photometric, planar
configuration and axes, the page count and the series layout; for PNG / JPEG / BMP the bit depth
and colour layout the header declares. A folder is sampled (evenly over its sorted images, so
every sub-folder is seen) and summarised by dtype and shape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tifffile

from datapipe.errors import ImageReadError
from datapipe.io import infer_bit_depth, read_image, sniff_format
from datapipe.manifest import list_images

T = TypeVar("T")

#: Images inspected per folder unless asked otherwise.
DEFAULT_FOLDER_LIMIT = 200
#: Bytes read for a PNG / JPEG / BMP header (the pixels come from read_image).
_HEADER_BYTES = 1 << 20
#: Channels listed one by one in the text output; more are summarised.
_CHANNELS_SHOWN = 8
#: Groups listed in a folder's summary table.
_GROUPS_SHOWN = 20
#: The container each image extension names (datapipe itself reads by content).
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp",
                   ".tif": "tiff", ".tiff": "tiff"}  # fmt: skip
#: Misnamed files listed in a folder's text output.
_MISNAMED_SHOWN = 5


@dataclass(frozen=True)
class ImageInfo:
    """One readable image: pixels as read_image returns them, and the container's header.

    ``min`` / ``max`` are per channel (``None`` for a float channel with no finite value);
    ``bit_depth`` is :func:`infer_bit_depth` of the image's maximum (``None`` for floats).
    """

    path: str
    format: str
    file_size: int
    dtype: str
    shape: tuple[int, ...]
    channels: int
    min: list[float | int | None]
    max: list[float | int | None]
    bit_depth: int | None
    nonfinite: int
    header: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "image", **asdict(self), "shape": list(self.shape)}


@dataclass(frozen=True)
class Failure:
    """A path that could not be inspected, with the reason (one line)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "error", "path": self.path, "error": self.reason}


@dataclass(frozen=True)
class Group:
    """Inspected images of one dtype and shape: a row of a folder's summary table."""

    dtype: str
    shape: tuple[int, ...]
    count: int
    formats: list[str]
    bit_depths: list[int]
    min: float | int | None
    max: float | int | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}


@dataclass(frozen=True)
class FolderReport:
    """A folder: how many images it holds, those inspected, and their summary."""

    path: str
    found: int
    results: list[ImageInfo | Failure]
    summary: list[Group]

    @property
    def failures(self) -> list[Failure]:
        return [r for r in self.results if isinstance(r, Failure)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "folder",
            "path": self.path,
            "found": self.found,
            "inspected": len(self.results),
            "errors": len(self.failures),
            "summary": [g.to_dict() for g in self.summary],
            "images": [r.to_dict() for r in self.results],
        }


Entry = ImageInfo | Failure | FolderReport


def failures_of(entry: Entry) -> list[Failure]:
    """The path itself if it failed, or the images of a folder that failed."""
    if isinstance(entry, Failure):
        return [entry]
    return entry.failures if isinstance(entry, FolderReport) else []


# --- inspecting ----------------------------------------------------------------------------


def inspect_paths(paths: Sequence[str | Path], *, limit: int = DEFAULT_FOLDER_LIMIT) -> list[Entry]:
    """One entry per path: a folder report for folders, else an image or a failure."""
    return [inspect_folder(p, limit=limit) if Path(p).is_dir() else inspect_file(p) for p in paths]


def inspect_file(path: str | Path) -> ImageInfo | Failure:
    """:func:`inspect_image`, with a read error returned as a :class:`Failure`."""
    try:
        return inspect_image(path)
    except ImageReadError as exc:
        return Failure(exc.path, exc.reason)


def inspect_image(path: str | Path) -> ImageInfo:
    """Read one image with read_image and describe its pixels and its container.

    Raises:
        ImageReadError: the file cannot be read (missing, corrupt, unsupported, a stack ...).
    """
    path = Path(path)
    img = read_image(path)
    with path.open("rb") as fh:
        head = fh.read(8)
        fmt = sniff_format(head) or "unknown"
        if fmt != "tiff":  # tifffile reads its own header
            head += fh.read(_HEADER_BYTES)
    try:
        header = _tiff_header(path) if fmt == "tiff" else _HEADERS.get(fmt, _no_header)(head)
    except Exception as exc:  # the pixels were readable; a header quirk must not hide them
        header = {"error": f"header not understood: {exc}"}
    lows, highs, nonfinite = _channel_range(img)
    finite_highs = [h for h in highs if h is not None]
    bit_depth = (
        infer_bit_depth(float(max(finite_highs, default=0)), img.dtype)
        if img.dtype.kind in "ui"
        else None
    )
    info = ImageInfo(
        path=str(path),
        format=fmt,
        file_size=path.stat().st_size,
        dtype=str(img.dtype),
        shape=tuple(int(n) for n in img.shape),
        channels=int(img.shape[2]),
        min=lows,
        max=highs,
        bit_depth=bit_depth,
        nonfinite=nonfinite,
        header=header,
    )
    return replace(info, notes=_notes(info))


def inspect_folder(folder: str | Path, *, limit: int = DEFAULT_FOLDER_LIMIT) -> FolderReport:
    """Inspect up to ``limit`` images under ``folder``, spread evenly over its sorted images."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1; got {limit}")
    images = list_images(Path(folder))
    results: list[ImageInfo | Failure] = [inspect_file(p) for p in sample_evenly(images, limit)]
    if not images:
        results = [Failure(str(folder), "no images found (PNG, JPEG, BMP, TIFF) in this folder")]
    infos = [r for r in results if isinstance(r, ImageInfo)]
    return FolderReport(str(folder), len(images), results, summarize(infos))


def sample_evenly(items: Sequence[T], limit: int) -> list[T]:
    """At most ``limit`` items, evenly spaced over ``items`` (all of them when few enough)."""
    if len(items) <= limit:
        return list(items)
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in picks]


def summarize(infos: Iterable[ImageInfo]) -> list[Group]:
    """Group images by (dtype, shape), largest group first."""
    groups: dict[tuple[str, tuple[int, ...]], list[ImageInfo]] = defaultdict(list)
    for info in infos:
        groups[(info.dtype, info.shape)].append(info)
    rows = []
    for (dtype, shape), members in groups.items():
        lows = [v for m in members for v in m.min if v is not None]
        highs = [v for m in members for v in m.max if v is not None]
        rows.append(
            Group(
                dtype=dtype,
                shape=shape,
                count=len(members),
                formats=sorted({m.format for m in members}),
                bit_depths=sorted({m.bit_depth for m in members if m.bit_depth is not None}),
                min=min(lows) if lows else None,
                max=max(highs) if highs else None,
            )
        )
    return sorted(rows, key=lambda g: (-g.count, g.dtype, g.shape))


def _channel_range(img: np.ndarray) -> tuple[list[Any], list[Any], int]:
    """Per-channel minimum and maximum as Python numbers, and the count of non-finite values."""
    flat = img.reshape(-1, img.shape[2])
    if img.dtype.kind != "f":
        return flat.min(axis=0).tolist(), flat.max(axis=0).tolist(), 0
    finite = np.isfinite(flat)
    lows: list[Any] = []
    highs: list[Any] = []
    for c in range(flat.shape[1]):
        values = flat[finite[:, c], c]
        lows.append(float(values.min()) if values.size else None)
        highs.append(float(values.max()) if values.size else None)
    return lows, highs, int(finite.size - finite.sum())


def misnamed(info: ImageInfo) -> str | None:
    """``PNG data`` when the content's format is not the one the file's extension names
    (``misnamed.tif`` holding a PNG), else ``None``."""
    named = _SUFFIX_FORMATS.get(Path(info.path).suffix.lower())
    if named is None or info.format in (named, "unknown"):
        return None
    return f"{info.format.upper()} data"


def _notes(info: ImageInfo) -> list[str]:
    """Plain-language remarks on what is easy to get wrong with this file."""
    notes = []
    content = misnamed(info)
    if content is not None:
        notes.append(
            f"{content}, named {Path(info.path).suffix}: datapipe reads it by its content; "
            "tools that go by the extension may not (rename it to match)"
        )
    container_bits = np.dtype(info.dtype).itemsize * 8
    kind = np.dtype(info.dtype).kind
    if info.bit_depth is not None and kind == "u" and info.bit_depth < container_bits:
        notes.append(
            f"{info.bit_depth}-bit values in a {container_bits}-bit container "
            "(bit_depth: auto finds the depth from the dataset's maximum)"
        )
    if kind == "i":
        notes.append("signed integers: bit_depth auto scales them with a percentile stretch")
    if kind == "f":
        highs = [v for v in info.max if v is not None]
        lows = [v for v in info.min if v is not None]
        if (highs and max(highs) > 1.0) or (lows and min(lows) < 0.0):
            notes.append(
                "float values outside [0, 1] are clipped by bit_depth: auto; "
                "use bit_depth: percentile for such data"
            )
    if info.header.get("color_type") == "palette":
        notes.append("palette PNG: images read as its colours, masks (read_mask) as its indices")
    if info.nonfinite:
        notes.append(f"{info.nonfinite} NaN / inf values")
    series_axes = info.header.get("series_axes", "")
    if info.format == "tiff" and info.header.get("pages", 1) > 1 and "C" in series_axes:
        notes.append(
            f"channels are stored as separate pages (series axes {series_axes}); "
            f"read as {info.channels} channels"
        )
    return notes


# --- container headers ---------------------------------------------------------------------


def _enum_name(enum: Any, value: Any) -> str | int:
    try:
        return str(enum(value).name)
    except (ValueError, TypeError):
        return int(value)


def _tiff_header(path: Path) -> dict[str, Any]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if not isinstance(page, tifffile.TiffPage):  # the first page is never a frame
            raise TypeError(f"first page is a {type(page).__name__}")
        series = tif.series[0] if tif.series else None
        header: dict[str, Any] = {
            "pages": len(tif.pages),
            "compression": _enum_name(tifffile.COMPRESSION, page.compression),
            "photometric": _enum_name(tifffile.PHOTOMETRIC, page.photometric),
            "planarconfig": _enum_name(tifffile.PLANARCONFIG, page.planarconfig),
            "axes": str(page.axes),
            "page_shape": [int(n) for n in page.shape],
            "bits_per_sample": int(page.bitspersample),
            "sample_format": _enum_name(tifffile.SAMPLEFORMAT, page.sampleformat),
            "tiled": bool(page.is_tiled),
            "byte_order": "little" if tif.byteorder == "<" else "big",
            "bigtiff": bool(tif.is_bigtiff),
            "flavour": [name for name in ("imagej", "ome", "shaped") if getattr(tif, f"is_{name}")],
            "series": len(tif.series),
        }
        if series is not None:
            header["series_axes"] = str(series.axes)
            header["series_shape"] = [int(n) for n in series.shape]
    return header


_PNG_COLOR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


def _png_header(data: bytes) -> dict[str, Any]:
    header: dict[str, Any] = {
        "bit_depth": data[24],
        "color_type": _PNG_COLOR_TYPES.get(data[25], data[25]),
        "interlaced": bool(data[28]),
    }
    # sBIT (before IDAT) declares how many of the stored bits are significant, e.g. 12 of 16.
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"sBIT":
            header["significant_bits"] = list(data[pos + 8 : pos + 8 + length])
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return header


_JPEG_PROCESSES = {
    0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive", 0xC3: "lossless",
    0xC5: "differential sequential", 0xC6: "differential progressive",
    0xC7: "differential lossless", 0xC9: "arithmetic sequential", 0xCA: "arithmetic progressive",
    0xCB: "arithmetic lossless", 0xCD: "differential arithmetic sequential",
    0xCE: "differential arithmetic progressive", 0xCF: "differential arithmetic lossless",
}  # fmt: skip
_JPEG_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}


def _jpeg_header(data: bytes) -> dict[str, Any]:
    pos = 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        if data[pos] != 0xFF:
            break
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in _JPEG_PROCESSES and pos + 10 <= len(data):
            return {
                "process": _JPEG_PROCESSES[marker],
                "bit_depth": data[pos + 4],
                "components": data[pos + 9],
            }
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return {"error": "no start-of-frame marker in the first MiB"}


def _bmp_header(data: bytes) -> dict[str, Any]:
    return {
        "bits_per_pixel": int.from_bytes(data[28:30], "little"),
        "compression": int.from_bytes(data[30:34], "little"),
    }


def _no_header(data: bytes) -> dict[str, Any]:
    return {}


_HEADERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "png": _png_header,
    "jpeg": _jpeg_header,
    "bmp": _bmp_header,
}


# --- text output ---------------------------------------------------------------------------


def format_entry(entry: Entry) -> str:
    """The text ``datapipe inspect`` prints for one path (a folder's failures not listed:
    :func:`failures_of` gives them, one line each with :func:`format_failure`)."""
    if isinstance(entry, Failure):
        return format_failure(entry)
    if isinstance(entry, FolderReport):
        return format_folder(entry)
    return format_image(entry)


def format_failure(failure: Failure) -> str:
    return f"{failure.path}: cannot read: {failure.reason}"


def format_image(info: ImageInfo) -> str:
    height, width, channels = info.shape
    lines = [
        info.path,
        f"  file         {info.format.upper()}, {_human_size(info.file_size)}",
        f"  pixels       {info.dtype}, {height} x {width} x {channels} (H x W x C)",
        f"  channels     {channels}",
        *_range_lines(info),
        f"  bit depth    {_bit_depth_text(info)}",
        *_header_lines(info.format, info.header),
    ]
    lines += [f"  note         {note}" for note in info.notes]
    return "\n".join(lines)


def _range_lines(info: ImageInfo) -> list[str]:
    pairs = list(zip(info.min, info.max, strict=True))
    if len(pairs) == 1:
        return [f"  value range  {_num(pairs[0][0])} .. {_num(pairs[0][1])}"]
    if len(pairs) > _CHANNELS_SHOWN:
        lows = [v for v in info.min if v is not None]
        highs = [v for v in info.max if v is not None]
        low, high = (min(lows), max(highs)) if lows and highs else (None, None)
        return [f"  value range  {_num(low)} .. {_num(high)} over {len(pairs)} channels"]
    return [
        f"  {'value range' if c == 0 else '':<11}  ch{c}: {_num(low)} .. {_num(high)}"
        for c, (low, high) in enumerate(pairs)
    ]


def _bit_depth_text(info: ImageInfo) -> str:
    if info.bit_depth is None:
        return f"n/a ({info.dtype} data is not scaled by a bit depth)"
    top = max((v for v in info.max if v is not None), default=0)
    return f"{info.bit_depth} (max {_num(top)} in {info.dtype})"


def _header_lines(fmt: str, header: dict[str, Any]) -> list[str]:
    if "error" in header or fmt not in _HEADER_TEXT:
        return [f"  header       {_pairs_text(header)}"]
    return [
        f"  {fmt + ' header' if i == 0 else '':<11}  {line}"
        for i, line in enumerate(_HEADER_TEXT[fmt](header))
    ]


def _tiff_text(h: dict[str, Any]) -> list[str]:
    pages = f"{h['pages']} page{'s' if h['pages'] != 1 else ''}"
    flavour = "".join(f", {name}" for name in h["flavour"])
    lines = [
        f"{pages}{', BigTIFF' if h['bigtiff'] else ''}, {h['byte_order']}-endian{flavour}",
        f"first page: axes {h['axes']} {_shape_text(h['page_shape'])}, "
        f"{h['bits_per_sample']}-bit {h['sample_format']}, {'tiles' if h['tiled'] else 'strips'}",
        f"compression {h['compression']}, photometric {h['photometric']}, "
        f"planarconfig {h['planarconfig']}",
    ]
    if "series_axes" in h:
        lines.append(
            f"series: axes {h['series_axes']} {_shape_text(h['series_shape'])}"
            + (f" (first of {h['series']})" if h["series"] > 1 else "")
        )
    return lines


def _png_text(h: dict[str, Any]) -> list[str]:
    text = f"{h['bit_depth']}-bit {h['color_type']}, {'' if h['interlaced'] else 'not '}interlaced"
    if "significant_bits" in h:
        text += f", sBIT {','.join(str(b) for b in h['significant_bits'])} significant bits"
    return [text]


def _jpeg_text(h: dict[str, Any]) -> list[str]:
    plural = "s" if h["components"] != 1 else ""
    return [f"{h['process']}, {h['bit_depth']}-bit, {h['components']} component{plural}"]


def _bmp_text(h: dict[str, Any]) -> list[str]:
    return [f"{h['bits_per_pixel']} bits per pixel, compression {h['compression']}"]


_HEADER_TEXT: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "tiff": _tiff_text,
    "png": _png_text,
    "jpeg": _jpeg_text,
    "bmp": _bmp_text,
}


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + " x ".join(str(n) for n in shape) + ")"


def _pairs_text(header: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in header.items()) or "-"


def format_folder(report: FolderReport) -> str:
    inspected = len(report.results)
    spread = "" if inspected >= report.found else f", {inspected} inspected (spread evenly)"
    lines = [f"{report.path}/: {report.found} images{spread}"]
    if report.summary:
        table = [("count", "dtype", "H x W x C", "bit depth", "value range", "format")]
        for g in report.summary[:_GROUPS_SHOWN]:
            table.append((
                str(g.count),
                g.dtype,
                " x ".join(str(n) for n in g.shape),
                ",".join(str(b) for b in g.bit_depths) or "-",
                f"{_num(g.min)} .. {_num(g.max)}",
                ",".join(g.formats),
            ))  # fmt: skip
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                  for row in table]  # fmt: skip
        hidden = len(report.summary) - _GROUPS_SHOWN
        if hidden > 0:
            lines.append(f"  ... and {hidden} more dtype / shape groups (--json lists them all)")
    wrong = [(r.path, text) for r in report.results
             if isinstance(r, ImageInfo) and (text := misnamed(r)) is not None]  # fmt: skip
    if wrong:
        lines.append(f"  {len(wrong)} of {inspected} hold another format than their extension:")
        lines += [f"    {path}: {text}" for path, text in wrong[:_MISNAMED_SHOWN]]
        if len(wrong) > _MISNAMED_SHOWN:
            lines.append(f"    ... and {len(wrong) - _MISNAMED_SHOWN} more (--json: notes)")
    if report.failures:
        lines.append(f"  {len(report.failures)} of {inspected} could not be read")
    return "\n".join(lines)


def _num(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not (value.is_integer() and abs(value) < 1e15):
        return f"{value:.6g}"
    return str(int(value))


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit} ({size:,} bytes)"
        value /= 1024
    return f"{value:.1f} GiB ({size:,} bytes)"
