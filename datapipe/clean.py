"""The clean stage's logic: measure every sample, run every check, repair leakage, decide
exclusions. Nothing is deleted: an excluded sample is a row with ``excluded = True``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
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
from datapipe.checks.features import FeatureSettings
from datapipe.checks.leakage import LeakageRepair, plan_leakage_repair
from datapipe.checks.measure import FEATURE_COLUMNS, add_pixel_hashes, measure_samples
from datapipe.config import CleanParams, DatasetParams
from datapipe.errors import ConfigError
from datapipe.runs import RunStats

#: data_issues.csv; ``object_id`` names the annotated object of an object check ("" otherwise)
ISSUE_COLUMNS = (
    "sample_id", "image", "check", "severity", "score", "detail", "group", "object_id",
)  # fmt: skip


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
