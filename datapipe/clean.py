"""The clean stage's logic: measure every sample, run every check, repair leakage, decide
exclusions. Nothing is deleted: an excluded sample is a row with ``excluded = True``.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datapipe import tasks
from datapipe.checks import CHECKS, DatasetFacts
from datapipe.checks.duplicates import (
    DuplicateEvidence,
    add_duplicate_groups,
    exact_candidates,
    mask_agreement,
    perceptual_pairs,
    verify_pairs,
)
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
from datapipe.checks.leakage import LeakageRepair, plan_leakage_repair
from datapipe.checks.pixel_table import group_starts, read_columns, read_rows, row_groups
from datapipe.config import CleanParams, DatasetParams
from datapipe.errors import ConfigError, DatapipeError
from datapipe.parallel import parallel_map
from datapipe.runs import RunStats

log = logging.getLogger("datapipe")

#: data_issues.csv; ``object_id`` names the annotated object of an object check ("" otherwise)
ISSUE_COLUMNS = (
    "sample_id", "image", "check", "severity", "score", "detail", "group", "object_id",
)  # fmt: skip
FEATURE_COLUMNS = (
    "decode_error", "phash", "brightness", "highlight", "shadow", "contrast", "value_range",
    "entropy", "sharpness", "saturated", "nonfinite", "mask_hash", "mask_bad_values",
    "mask_bad_pixels", "mask_foreground_pixels", "mask_ignored_pixels", "mask_pixels",
)  # fmt: skip
_INT_FEATURES = ("nonfinite", "mask_bad_pixels", "mask_foreground_pixels",
                 "mask_ignored_pixels", "mask_pixels")  # fmt: skip


@dataclass
class CleanResult:
    manifest: pd.DataFrame  # manifest + measurements + scores + excluded / exclude_reason
    issues: pd.DataFrame  # one row per (sample, check) flag, columns ISSUE_COLUMNS
    metrics: dict[str, Any]


def dataset_facts(stats: RunStats | Mapping[str, Any], dataset: DatasetParams) -> DatasetFacts:
    stats = RunStats.coerce(stats)
    dtypes = stats.dtypes
    return DatasetFacts(
        task=dataset.task,
        channels=stats.channels,
        dtype=max(dtypes, key=lambda d: dtypes[d]) if dtypes else None,
        dtype_share={str(d): n / sum(dtypes.values()) for d, n in dtypes.items()},
        class_values=list(stats.class_values),
        ignore_index=dataset.ignore_index,
    )


def feature_settings(
    stats: RunStats | Mapping[str, Any], dataset: DatasetParams
) -> FeatureSettings:
    stats = RunStats.coerce(stats)
    return FeatureSettings(
        root=Path(dataset.root),
        scaling=dict(stats.bit_depth),
        percentiles=dataset.percentiles,
        max_pixels=dataset.max_pixels,
        class_values=list(stats.class_values),
        ignore_index=dataset.ignore_index,
        mask_colors=dict(dataset.mask_colors) if dataset.mask_colors else None,
    )


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
        out[col] = pd.Series(measured.column(col), index=out.index)
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
            rows = [i for i in part if readable[i] and not ready[i]]
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
    rows = read_rows(path, groups, finished_under=settings.scaling)
    numbers = [n for g in groups for n in range(starts[g], starts[g + 1])]
    todo = [(n, r) for n, r in zip(numbers, rows, strict=True) if r is not None]
    scalings = [settings.scaling.get(r.dtype, "auto") for _, r in todo]
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
    refs = [r for r, c in zip(_refs(samples), candidates, strict=True) if c]
    if refs:
        hashes = parallel_map(
            functools.partial(image_pixel_hash, settings=settings), refs, workers=workers, desc=desc
        )
        out.loc[out.index[candidates], "pixel_hash"] = list(hashes)
    return out


#: Checks that keep one member of a group and flag the rest: they run after the others and see,
#: in the column ``excluded_for``, the rows those exclude for their own reasons (a copy with a
#: broken mask must not be the one kept).
KEEPER_CHECKS = ("exact_duplicate",)


def run_checks(
    samples: pd.DataFrame, facts: DatasetFacts, params: CleanParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every registered check on ``samples``: the flags (issues) and a score column per check."""
    found: dict[str, pd.DataFrame] = {}
    for name, check in CHECKS.items():
        if name not in KEEPER_CHECKS:
            found[name] = check.run(samples, facts, params)
    if keepers := [name for name in CHECKS if name in KEEPER_CHECKS]:
        reasons = exclusion_reasons(_issues(samples, found), params)
        seen = samples.assign(excluded_for=samples["sample_id"].map(reasons))
        for name in keepers:
            found[name] = CHECKS[name].run(seen, facts, params)
    scores = pd.DataFrame(
        {f"{name}_score": found[name]["score"].reindex(samples.index) for name in CHECKS},
        index=samples.index,
    )
    return _issues(samples, found), scores


def _issues(samples: pd.DataFrame, found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The flagged rows of the checks' answers as one table, columns ISSUE_COLUMNS."""
    parts = {name: answer[answer["flagged"].to_numpy(bool)] for name, answer in found.items()}
    parts = {name: answer for name, answer in parts.items() if len(answer)}
    if not parts:
        return _sorted_issues(pd.DataFrame(columns=list(ISSUE_COLUMNS)))
    at = samples.index.get_indexer(pd.Index(np.concatenate([a.index for a in parts.values()])))

    def each(column: str) -> pd.Series:
        return samples[column].iloc[at].reset_index(drop=True)

    def joined(column: str) -> np.ndarray:
        return np.concatenate([a[column].to_numpy() for a in parts.values()])

    table = pd.DataFrame({
        "sample_id": each("sample_id"),
        "image": each("image"),
        "check": np.repeat(list(parts), [len(a) for a in parts.values()]),
        "severity": np.concatenate([
            a["severity"].to_numpy(object) if "severity" in a
            else np.full(len(a), CHECKS[name].severity, dtype=object)
            for name, a in parts.items()
        ]),
        "score": joined("score").astype(np.float64).round(4),
        "detail": joined("detail"),
        "group": each("group"),
    })  # fmt: skip
    return _sorted_issues(table)


def _sorted_issues(table: pd.DataFrame) -> pd.DataFrame:
    table = table.sort_values(["image", "check"], kind="stable").reset_index(drop=True)
    table["object_id"] = ""
    return table[list(ISSUE_COLUMNS)]


def object_issues(
    samples: pd.DataFrame,
    objects: pd.DataFrame,
    params: CleanParams,
    *,
    root: Path,
    detector_size: int,
) -> pd.DataFrame:
    """The annotation checks (``datapipe.checks.boxes``) as data_issues rows: one per finding,
    with the object's id; an annotated image that is not on disk is ``image_missing``."""
    from datapipe.checks.boxes import BoxCheckSettings, box_issues
    from datapipe.objects import ImageEntry

    entries, sizes = [], {}
    for sid, image, h, w, error in zip(
        samples["sample_id"], samples["image"], samples["height"], samples["width"],
        samples["read_error"], strict=True,
    ):  # fmt: skip
        missing = isinstance(error, str) and bool(error) and not (root / image).exists()
        entries.append(ImageEntry(image, problem=f"annotated, but {error}" if missing else ""))
        if not (pd.isna(h) or pd.isna(w)):
            sizes[sid] = (int(h), int(w))
    settings = BoxCheckSettings(min_size=detector_size, **params.boxes.model_dump())
    found = box_issues(objects, entries, sizes, settings)
    found["group"] = found["sample_id"].map(samples.set_index("sample_id")["group"])
    found["score"] = found["score"].round(4)
    return found[list(ISSUE_COLUMNS)]


def exclusion_reasons(issues: pd.DataFrame, params: CleanParams) -> pd.Series:
    """Per sample id, the excluding checks that flagged it (``"a,b"``); absent when none.

    Excluding: a non-info flag of a check in ``params.exclude``."""
    excluding = issues[issues["check"].isin(params.exclude) & (issues["severity"] != "info")]
    return excluding.groupby("sample_id")["check"].agg(lambda c: ",".join(sorted(set(c))))


def clean(
    manifest: pd.DataFrame,
    stats: RunStats | Mapping[str, Any],
    dataset: DatasetParams,
    params: CleanParams,
    *,
    workers: int,
    name: str,
    objects: pd.DataFrame | None = None,
    detector_size: int = 800,
    pixels: Path | None = None,
) -> CleanResult:
    """Measure, check, repair leakage and mark exclusions for one dataset's manifest; for
    object tasks, ``objects`` (objects.parquet) goes through the annotation checks too
    (``detector_size``: the side the detector sees, for ``box_tiny``). ``pixels``: ingest's
    pixel table for this manifest, which spares decoding the images again."""
    unknown = sorted(set(params.exclude) - set(CHECKS))
    if unknown:
        raise ConfigError(f"clean.exclude: unknown check(s) {unknown}; known: {sorted(CHECKS)}")
    settings = feature_settings(stats, dataset)
    samples, thumbs = measure_samples(manifest, settings, workers=workers, desc=f"clean {name}",
                                      pixels=pixels)  # fmt: skip
    candidates = perceptual_pairs(samples, max_distance=params.near_duplicate_bits)
    evidence = verify_pairs(samples, thumbs, candidates, params)
    samples = add_pixel_hashes(
        samples,
        exact_candidates(samples, evidence.pairs),
        settings,
        workers=workers,
        desc=f"hash {name}",
    )
    samples = add_duplicate_groups(samples, evidence.pairs)
    if tasks.get(dataset.task).dense:  # video frames: duplicates whose objects moved
        samples["mask_agreement"] = mask_agreement(
            samples, settings.root, ignore_index=dataset.ignore_index, colors=settings.mask_colors
        )
    issues, scores = run_checks(samples, facts := dataset_facts(stats, dataset), params)
    if tasks.get(dataset.task).objects and objects is not None:
        found = object_issues(
            samples, objects, params, root=settings.root, detector_size=detector_size
        )
        issues = pd.concat([issues, found], ignore_index=True) if len(found) else issues
    out = pd.concat([samples, scores], axis=1)
    out["original_split"] = out["split"]
    repair = plan_leakage_repair(samples, max_share=params.max_leakage_share)
    if params.repair_leakage and repair.applied:
        out["split"] = repair.split
    out["exclude_reason"] = out["sample_id"].map(exclusion_reasons(issues, params))
    out["excluded"] = out["exclude_reason"].notna()
    metrics = _metrics(out, issues, facts, evidence, repair)
    return CleanResult(manifest=out, issues=issues, metrics=metrics)


def _metrics(
    out: pd.DataFrame,
    issues: pd.DataFrame,
    facts: DatasetFacts,
    evidence: DuplicateEvidence,
    repair: LeakageRepair,
) -> dict[str, Any]:
    flagged = issues[issues["severity"] != "info"]
    groups = out["group"].value_counts()
    return {
        "samples": len(out),
        "excluded": int(out["excluded"].sum()),
        "kept": int((~out["excluded"]).sum()),
        "flagged_samples": int(flagged["sample_id"].nunique()),
        "by_severity": dict(Counter(issues["severity"])),
        "by_check": {name: int((flagged["check"] == name).sum()) for name in CHECKS},
        "by_object_check": {
            str(k): int(v)
            for k, v in flagged.loc[flagged["object_id"] != "", "check"]
            .value_counts()
            .sort_index()
            .items()
        },
        "duplicate_groups": int(out["group"].nunique()),
        "largest_duplicate_group": int(groups.max()) if len(groups) else 0,
        "near_duplicate_candidates": evidence.candidates,
        "near_duplicate_verified": len(evidence.pairs),
        "near_duplicate_min_similarity": round(evidence.min_similarity, 4),
        "leakage_moves": int((out["split"] != out["original_split"]).sum()),
        "leakage_moves_held_back": 0 if repair.applied else int(repair.moved.sum()),
        "splits": {s: int(n) for s, n in out.loc[~out["excluded"], "split"].value_counts().items()},
        "task": facts.task,
    }


__all__ = ["FEATURE_COLUMNS", "ISSUE_COLUMNS", "CleanResult", "clean"]
