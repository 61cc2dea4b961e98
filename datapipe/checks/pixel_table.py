"""``pixel_features.parquet``: what ingest measured on each image's pixels in its own decode
pass (:class:`~datapipe.checks.features.PixelFeatures`), so that the clean stage finishes the
features from ~32 KB a sample instead of decoding every image a second time.

One row per manifest row, in manifest order: ``image`` (the manifest's path), the working
``dtype``, the grey ``thumbnail`` as raw bytes with its ``thumbnail_height`` /
``thumbnail_width`` / ``thumbnail_dtype``, ``value_range``, ``sharpness``, ``nonfinite`` and
the ``saturated`` shares; nulls for an image that did not decode. Written in row groups as the
probes arrive (ingest never holds every thumbnail); the clean stage finishes one group a task.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapipe.checks.features import VERIFY_SIZE, PixelFeatures, finish_ahead
from datapipe.errors import DatapipeError
from datapipe.io.atomic import atomic_path

SCHEMA = pa.schema([
    ("image", pa.string()),
    ("dtype", pa.string()),
    ("thumbnail", pa.binary()),
    ("thumbnail_height", pa.int32()),
    ("thumbnail_width", pa.int32()),
    ("thumbnail_dtype", pa.string()),
    ("value_range", pa.float64()),
    ("sharpness", pa.float64()),
    ("nonfinite", pa.int64()),
    ("saturated", pa.list_(pa.float64())),
    # the scaling-dependent features finished in ingest (PixelFeatures.finished), for the
    # scaling str(...) == finished_for; nulls when not finished
    ("finished_for", pa.string()),
    ("phash", pa.uint64()),
    ("brightness", pa.float64()),
    ("highlight", pa.float64()),
    ("shadow", pa.float64()),
    ("contrast", pa.float64()),
    ("entropy", pa.float64()),
    ("saturated_share", pa.float64()),
    ("verification_thumbnail", pa.binary()),
])  # fmt: skip
#: table column of each finished feature (:data:`~datapipe.checks.features.SCALED`)
_FINISHED_COLUMNS = {"phash": "phash", "brightness": "brightness", "highlight": "highlight",
                     "shadow": "shadow", "contrast": "contrast", "entropy": "entropy",
                     "saturated": "saturated_share", "thumb": "verification_thumbnail"}  # fmt: skip
ROW_GROUP = 64  # rows per group: the clean stage finishes one group per pool task


class PixelTableWriter:
    """Append ``(image, PixelFeatures | None)`` rows; the file appears (atomically) on a clean
    exit of the ``with`` block. A row added with ``finish_for`` (the scaling the image would
    have alone) has its scaled features finished as the rows are written, a row group at a
    time (:func:`~datapipe.checks.features.finish_ahead`, with ``percentiles``): in a batch
    they cost a third of what each image alone costs."""

    def __init__(self, path: Path, *, percentiles: tuple[float, float] | None = None) -> None:
        self.path = path
        self.percentiles = percentiles
        self._stack = contextlib.ExitStack()
        self._rows: list[tuple[str, PixelFeatures | None, int | str | None]] = []
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> PixelTableWriter:
        temp = self._stack.enter_context(atomic_path(self.path))
        # thumbnails hardly compress (zstd saved 0-15% on photos and microscopy) and their
        # decompression was most of the clean stage's reading: stored plain, not dictionary-coded
        codecs = {n: "none" if n == "thumbnail" else "zstd" for n in SCHEMA.names}
        coded = ["image", "dtype", "thumbnail_dtype"]
        self._writer = pq.ParquetWriter(temp, SCHEMA, compression=codecs, use_dictionary=coded)
        return self

    def add(
        self, image: str, pixels: PixelFeatures | None, *, finish_for: int | str | None = None
    ) -> None:
        if finish_for is not None and self.percentiles is None:
            raise ValueError("a row to finish needs the writer's percentiles")
        self._rows.append((image, pixels, finish_for))
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    @staticmethod
    def _row(image: str, pixels: PixelFeatures | None) -> dict[str, object]:
        row: dict[str, object] = {"image": image}
        if pixels is not None:
            thumb = np.ascontiguousarray(pixels.thumbnail)
            row |= {
                "dtype": pixels.dtype, "thumbnail": thumb.tobytes(),
                "thumbnail_height": thumb.shape[0], "thumbnail_width": thumb.shape[1],
                "thumbnail_dtype": thumb.dtype.str, "value_range": pixels.value_range,
                "sharpness": pixels.sharpness, "nonfinite": pixels.nonfinite,
                "saturated": pixels.saturated.tolist(),
            }  # fmt: skip
            if pixels.finished is not None:
                done = dict(pixels.finished)
                done["thumb"] = np.ascontiguousarray(done["thumb"]).tobytes()
                done["phash"] = int(done["phash"])  # type: ignore[call-overload]
                row["finished_for"] = pixels.finished_for
                row |= {column: done[key] for key, column in _FINISHED_COLUMNS.items()}
        return row

    def _flush(self) -> None:
        if not self._rows or self._writer is None:
            return
        pixels = [px for _, px, _ in self._rows]
        todo, scalings = [], []
        for i, (_, px, scaling) in enumerate(self._rows):
            if px is not None and scaling is not None:
                todo.append((i, px))
                scalings.append(scaling)
        if todo:
            assert self.percentiles is not None  # add() refuses a row to finish without
            finished = finish_ahead([px for _, px in todo], scalings, percentiles=self.percentiles)
            for (i, _), px in zip(todo, finished, strict=True):
                pixels[i] = px
        rows = [self._row(image, px) for (image, _, _), px in zip(self._rows, pixels, strict=True)]
        self._writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
        self._rows = []

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
            # atomic_path publishes the file only when no exception is passed on
            self._stack.__exit__(kind, error, trace)


def row_groups(path: Path, images: Sequence[str]) -> int:
    """How many row groups ``path`` holds; a :class:`DatapipeError` naming the file when its
    rows are not ``images`` (the manifest's paths, in order) or it does not read: re-run
    ingest."""
    try:
        table = pq.ParquetFile(path)
        found = table.read(columns=["image"]).column("image").to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise DatapipeError(f"{path}: not a readable pixel table ({exc}); re-run ingest") from exc
    missing = sorted(set(SCHEMA.names) - set(table.schema_arrow.names))
    if missing:
        raise DatapipeError(
            f"{path}: no column(s) {missing} (written by an older datapipe); re-run ingest"
        )
    if found != list(images):
        where = next((i for i, (a, b) in enumerate(zip(found, images, strict=False)) if a != b),
                     min(len(found), len(images)))  # fmt: skip
        raise DatapipeError(
            f"{path}: {len(found)} rows for {len(images)} manifest rows, first different at row "
            f"{where}; re-run ingest"
        )
    return table.metadata.num_row_groups


def read_row_group(path: Path, group: int) -> list[PixelFeatures | None]:
    """One row group's pixel features, in row order (None: the image did not decode)."""
    return read_rows(path, [group])


def read_rows(path: Path, groups: Sequence[int]) -> list[PixelFeatures | None]:
    """The pixel features of the rows of ``groups``, in row order, from one opening of the file
    (each opening parses the footer, which grows with the row groups: one per group made
    reading quadratic in the dataset's size)."""
    try:
        table = pq.ParquetFile(path, memory_map=True)
        read = table.read_row_groups(list(groups), columns=_ROW_COLUMNS)
        columns = {name: read.column(name).to_pylist() for name in _ROW_COLUMNS}
    except (OSError, pa.ArrowException) as exc:
        raise DatapipeError(f"{path}: row groups {list(groups)} do not read ({exc})") from exc
    out: list[PixelFeatures | None] = []
    for i, dtype in enumerate(columns["dtype"]):
        if dtype is None:
            out.append(None)
            continue
        shape = (columns["thumbnail_height"][i], columns["thumbnail_width"][i])
        thumb = np.frombuffer(columns["thumbnail"][i], np.dtype(columns["thumbnail_dtype"][i]))
        out.append(PixelFeatures(
            dtype=dtype, thumbnail=thumb.reshape(shape), value_range=columns["value_range"][i],
            sharpness=columns["sharpness"][i], nonfinite=columns["nonfinite"][i],
            saturated=np.asarray(columns["saturated"][i], np.float64),
            finished=_finished(columns, i), finished_for=columns["finished_for"][i],
        ))  # fmt: skip
    return out


#: float columns of :func:`read_columns` (NaN where null)
_FLOAT_COLUMNS = ("value_range", "sharpness", "brightness", "highlight", "shadow", "contrast",
                  "entropy", "saturated_share")  # fmt: skip


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """The table's small columns as arrays, one entry a row, from one read: ``dtype`` and
    ``finished_for`` as object arrays (None where null), the float columns with NaN,
    ``nonfinite`` and ``phash`` with 0, and ``verification_thumbnail`` as ``(N, S, S)`` uint8
    (zeros where ingest did not finish the row). For the rows ingest finished, the clean stage
    takes its features from these without a Python object per row.
    """
    names = ["dtype", "finished_for", "nonfinite", "phash", "verification_thumbnail",
             *_FLOAT_COLUMNS]  # fmt: skip
    try:
        light = pq.ParquetFile(path, memory_map=True).read(columns=names)
    except (OSError, pa.ArrowException) as exc:
        raise DatapipeError(f"{path}: all row groups do not read ({exc})") from exc
    out = {name: light.column(name).to_numpy(zero_copy_only=False)
           for name in ("dtype", "finished_for", *_FLOAT_COLUMNS)}  # fmt: skip
    for name in ("nonfinite", "phash"):
        out[name] = pc.fill_null(light.column(name), 0).to_numpy()
    raw = light.column("verification_thumbnail").to_pylist()
    blank = bytes(VERIFY_SIZE * VERIFY_SIZE)
    if any(r is not None and len(r) != len(blank) for r in raw):
        raise DatapipeError(f"{path}: verification thumbnails of another size; re-run ingest")
    joined = b"".join(blank if r is None else r for r in raw)
    out["verification_thumbnail"] = np.frombuffer(joined, np.uint8).reshape(
        len(raw), VERIFY_SIZE, VERIFY_SIZE
    )
    return out


def group_starts(path: Path) -> list[int]:
    """The first row of every row group, and the row count at the end."""
    meta = pq.ParquetFile(path, memory_map=True).metadata
    starts = [0]
    for g in range(meta.num_row_groups):
        starts.append(starts[-1] + meta.row_group(g).num_rows)
    return starts


_ROW_COLUMNS = [name for name in SCHEMA.names if name != "image"]


def _finished(columns: dict[str, list[object]], i: int) -> dict[str, object] | None:
    if columns["finished_for"][i] is None:
        return None
    done = {key: columns[column][i] for key, column in _FINISHED_COLUMNS.items()}
    phash, raw = done["phash"], done["thumb"]
    assert isinstance(phash, int) and isinstance(raw, bytes)
    side = math.isqrt(len(raw))  # VERIFY_SIZE
    thumb = np.frombuffer(raw, np.uint8).reshape(side, side)
    return done | {"phash": np.uint64(phash), "thumb": thumb}
