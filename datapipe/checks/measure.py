"""Measuring every sample for the checks: the image features from ingest's pixel table where it
holds them (only masks are decoded), by decoding each sample once otherwise; exact pixel hashes
for the images that may have an exact twin.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from datapipe.checks.features import (
    VERIFY_SIZE,
    FeatureSettings,
    SampleFiles,
    finish_many,
    finished_already,
    image_pixel_hash,
    measure,
    measure_mask,
)
from datapipe.checks.pixel_table import group_starts, read_columns, read_rows, row_groups
from datapipe.errors import DatapipeError
from datapipe.parallel import parallel_map

log = logging.getLogger("datapipe")

#: the measurements the clean stage adds to each manifest row
FEATURE_COLUMNS = (
    "decode_error", "phash", "brightness", "highlight", "shadow", "contrast", "value_range",
    "entropy", "sharpness", "saturated", "nonfinite", "mask_hash", "mask_bad_values",
    "mask_bad_pixels", "mask_foreground_pixels", "mask_ignored_pixels", "mask_pixels",
)  # fmt: skip
_INT_FEATURES = ("nonfinite", "mask_bad_pixels", "mask_foreground_pixels",
                 "mask_ignored_pixels", "mask_pixels")  # fmt: skip


def _refs(manifest: pd.DataFrame) -> list[SampleFiles]:
    masks = manifest["mask"] if "mask" in manifest else pd.Series(None, index=manifest.index)
    return [
        SampleFiles(
            image=image, mask=None if pd.isna(mask) else mask, readable=bool(pd.isna(error))
        )
        for image, mask, error in zip(manifest["image"], masks, manifest["read_error"], strict=True)
    ]


class _Measured:
    """The columns of :data:`FEATURE_COLUMNS` for ``n`` rows, all missing to begin with, and
    each row's verification thumbnail (zeros where missing). Integer columns are kept as values
    and a missing mask until :meth:`column` types them as the manifest holds them."""

    def __init__(self, n: int) -> None:
        self.values: dict[str, np.ndarray] = {}
        self.missing: dict[str, np.ndarray] = {}
        for col in FEATURE_COLUMNS:
            if col in ("phash", *_INT_FEATURES):
                self.values[col] = np.zeros(n, np.uint64 if col == "phash" else np.int64)
                self.missing[col] = np.ones(n, bool)
            elif col in _OBJECT_FEATURES:
                self.values[col] = np.full(n, None, dtype=object)
            else:
                self.values[col] = np.full(n, np.nan)
        self.thumbs = np.zeros((n, VERIFY_SIZE, VERIFY_SIZE), np.uint8)

    def column(self, col: str) -> np.ndarray | pd.api.extensions.ExtensionArray:
        if col in self.missing:
            return pd.arrays.IntegerArray(self.values[col], self.missing[col].copy())
        return self.values[col]

    def assign(self, rows: Sequence[int], found: Sequence[Mapping[str, object]]) -> None:
        """Set ``rows`` from one features dict each: the columns any of the dicts names (missing
        where a dict lacks it); the other columns keep their values."""
        at = np.asarray(rows, np.int64)
        named = set().union(*found) if found else set()
        for col, column in self.values.items():
            if col not in named:
                continue
            got = [f.get(col) for f in found]
            if col in self.missing:
                self.missing[col][at] = [v is None for v in got]
                column[at] = [0 if v is None else v for v in got]
            elif column.dtype == object:
                column[at] = got
            else:
                column[at] = [np.nan if v is None else v for v in got]
        for i, f in zip(at, found, strict=True):
            if isinstance(thumb := f.get("thumb"), np.ndarray):
                self.thumbs[i] = thumb

    def take(self, rows: np.ndarray, table: Mapping[str, np.ndarray]) -> None:
        """Set ``rows`` (boolean) from the pixel table's columns
        (:func:`~datapipe.checks.pixel_table.read_columns`), for rows ingest finished."""
        for col, source in _TABLE_SOURCES.items():
            self.values[col][rows] = table[source][rows]
            if col in self.missing:
                self.missing[col][rows] = False
        self.thumbs[rows] = table["verification_thumbnail"][rows]


_OBJECT_FEATURES = ("decode_error", "mask_hash", "mask_bad_values")
#: feature column <- pixel table column, for the rows ingest finished
_TABLE_SOURCES = {"phash": "phash", "brightness": "brightness", "highlight": "highlight",
                  "shadow": "shadow", "contrast": "contrast", "value_range": "value_range",
                  "entropy": "entropy", "sharpness": "sharpness", "saturated": "saturated_share",
                  "nonfinite": "nonfinite"}  # fmt: skip


def measure_samples(
    manifest: pd.DataFrame,
    settings: FeatureSettings,
    *,
    workers: int,
    desc: str,
    pixels: Path | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``manifest`` plus the columns of :data:`FEATURE_COLUMNS`, and every image's verification
    thumbnail (zeros where unreadable). With ``pixels`` (ingest's pixel table for exactly this
    manifest) the image features are finished from it and only masks are decoded; without, or
    when the table is stale or damaged (a warning says so), every sample is decoded once.

    Shapes:
        thumbnails ``(N, VERIFY_SIZE, VERIFY_SIZE)`` uint8, aligned with the rows.
    """
    refs = _refs(manifest)
    measured = None
    if pixels is not None:
        try:
            measured = _finish(refs, manifest["image"].astype(str).tolist(), pixels, settings,
                               workers=workers, desc=desc)  # fmt: skip
        except DatapipeError as exc:  # stale or damaged: the images are still there
            log.warning("%s; decoding the images instead", exc)
    if measured is None:
        measured = _Measured(len(refs))
        measured.assign(range(len(refs)), list(parallel_map(
            functools.partial(measure, settings=settings), refs, workers=workers, desc=desc
        )))  # fmt: skip
    out = manifest.copy()
    for col in FEATURE_COLUMNS:
        kind = object if col in _OBJECT_FEATURES else None  # not inferred as str
        out[col] = pd.Series(measured.column(col), index=out.index, dtype=kind)
    return out, measured.thumbs


def _finish(
    refs: list[SampleFiles],
    images: list[str],
    pixels: Path,
    settings: FeatureSettings,
    *,
    workers: int,
    desc: str,
) -> _Measured:
    """Every sample's features from ingest's pixel table (masks decoded here): the rows ingest
    finished for the dataset's scaling are taken, column by column, from one read of the
    table's small columns; the row groups that hold any other row are read whole and
    finished, a few groups a task."""
    row_groups(pixels, images)
    table = read_columns(pixels)
    measured = _Measured(len(refs))
    readable = np.array([ref.readable for ref in refs], bool) & (table["dtype"] != None)  # noqa: E711
    ready = readable & np.array([
        dtype is not None and finished_already(done, settings.scaling.get(dtype, "auto"))
        for dtype, done in zip(table["dtype"], table["finished_for"], strict=True)
    ], bool)  # fmt: skip
    measured.take(ready, table)
    if (stale := np.flatnonzero(readable & ~ready)).size:
        starts = group_starts(pixels)
        groups = sorted({bisect.bisect_right(starts, i) - 1 for i in stale})
        step = max(1, min(8, len(groups) // (max(workers, 1) * 8)))
        spans = [tuple(groups[k : k + step]) for k in range(0, len(groups), step)]
        for part in parallel_map(functools.partial(finish_row_groups, path=pixels,
                                                   settings=settings, starts=starts),
                                 spans, workers=workers, desc=desc):  # fmt: skip
            rows = [i for i in part if readable[i]]  # the group's unfinished rows
            measured.assign(rows, [part[i] for i in rows])
    masked = [i for i, ref in enumerate(refs) if ref.mask is not None]
    if masked:
        found = parallel_map(functools.partial(measure_mask, settings=settings),
                             [refs[i] for i in masked], workers=workers,
                             desc=f"{desc}: masks")  # fmt: skip
        measured.assign(masked, [dict(f) for f in found])
    return measured


def finish_row_groups(
    groups: tuple[int, ...], *, path: Path, settings: FeatureSettings, starts: list[int]
) -> dict[int, dict[str, object]]:
    """The image features of the rows of ``groups`` of the pixel table, by row number: those
    ingest did not finish for the dataset's scaling finished here, as one batch (``starts``:
    :func:`~datapipe.checks.pixel_table.group_starts`)."""
    rows = read_rows(path, groups)
    numbers = [n for g in groups for n in range(starts[g], starts[g + 1])]
    todo, scalings = [], []
    for n, row in zip(numbers, rows, strict=True):
        if row is None:
            continue
        scaling = settings.scaling.get(row.dtype, "auto")
        if not finished_already(row.finished_for, scaling):  # ingest's features hold otherwise
            todo.append((n, row))
            scalings.append(scaling)
    done = finish_many([r for _, r in todo], scalings, percentiles=settings.percentiles)
    return {n: features for (n, _), features in zip(todo, done, strict=True)}


def add_pixel_hashes(
    samples: pd.DataFrame,
    candidates: np.ndarray,
    settings: FeatureSettings,
    *,
    workers: int,
    desc: str,
) -> pd.DataFrame:
    """``pixel_hash`` for the ``candidates`` rows (decoded again), ``None`` elsewhere."""
    out = samples.copy()
    out["pixel_hash"] = pd.Series(None, index=out.index, dtype=object)
    refs = _refs(samples[np.asarray(candidates, bool)])
    if refs:
        hashes = parallel_map(
            functools.partial(image_pixel_hash, settings=settings), refs, workers=workers, desc=desc
        )
        out.loc[out.index[candidates], "pixel_hash"] = list(hashes)
    return out
