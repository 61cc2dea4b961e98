"""The score stage: out-of-fold models over the cleaned manifest, label issues, hard examples.

Samples excluded by the clean stage neither train nor get scores. Each included sample is
scored by a model trained on the other folds (``datapipe.scoring.oof``); classification then
goes through cleanlab and training dynamics (``datapipe.label_issues``) and the hard/easy sort
(``datapipe.difficulty``); segmentation through the streaming pixel scorer
(``datapipe.scoring.segmentation``), whose float16 probability shards live on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from datapipe import tasks
from datapipe.config import DatasetParams, FitParams, ScoreParams
from datapipe.data import manifest_items, sample_spec
from datapipe.difficulty import hard_and_easy
from datapipe.distributed import Dist
from datapipe.errors import DatapipeError
from datapipe.io import atomic_path, write_table, write_text_atomic
from datapipe.label_issues import classification_label_issues
from datapipe.metrics import confusion_rows, segmentation_metrics
from datapipe.optim import cpu_has_bf16
from datapipe.runs import RunFiles, RunStats
from datapipe.scoring.data import make_source
from datapipe.scoring.oof import FoldCheckpoint, OOFResult, TrainSettings, out_of_fold
from datapipe.scoring.segmentation import (
    SegmentationScores,
    ShardWriter,
    score_segmentation,
)

log = logging.getLogger("datapipe")

LABEL_ISSUE_REPORT = (
    "sample_id", "image", "given_label", "suggested_label", "label_quality", "oof_loss",
    "self_confidence", "aum", "reasons",
)  # fmt: skip
HARD_EXAMPLE_REPORT = ("sample_id", "image", "class", "role", "difficulty", "loss", "prob")
#: the held-out number a score run's one-line summary names, first present wins
SUMMARY_METRICS = {"oof_accuracy": "accuracy", "oof_miou": "mIoU", "oof_map_50": "mAP@0.5"}
#: issue_maps/README.txt, by whether the task's targets are masks
ISSUE_MAPS_README = {
    True: "One <sample_id>.png per flagged mask: the pixels whose given class the "
    "out-of-fold model doubts (read by the report).\n",
    False: "No issue maps: they are drawn for masks only; this "
    "dataset's label issues are in ../reports/label_issues.csv.\n",
}


@dataclass
class ScoreResult:
    scores: pd.DataFrame  # one row per manifest row
    label_issues: pd.DataFrame  # flagged rows, worst first
    hard_examples: pd.DataFrame
    confusion_rows: pd.DataFrame  # actual, predicted (for dvc plots' confusion template)
    metrics: dict[str, Any]
    issue_maps: dict[str, np.ndarray] = field(default_factory=dict)  # sample_id -> uint8 map
    issue_columns: tuple[str, ...] = LABEL_ISSUE_REPORT  # what label_issues.csv must hold
    hard_columns: tuple[str, ...] = HARD_EXAMPLE_REPORT

    def summary(self, name: str) -> str:
        m = self.metrics
        kind, value = next(
            (label, m[key]) for key, label in SUMMARY_METRICS.items() if m.get(key) is not None
        )
        issues = m["label_issues"]
        return f"{name}: {m['scored']} scored, OOF {kind} {value:.3f}, {issues} label issues"

    def write(self, files: RunFiles, *, dense: bool) -> list[Path]:
        """The score stage's outputs but the metrics files: the tables and ``issue_maps/``
        (this run's maps only; a README says what the folder holds, so it is never empty)."""
        shutil.rmtree(files.issue_maps, ignore_errors=True)  # ours: an earlier run's maps go
        files.issue_maps.mkdir(parents=True)
        write_text_atomic(files.issue_maps / "README.txt", ISSUE_MAPS_README[dense])
        for sample_id, issue_map in self.issue_maps.items():
            path = files.issue_maps / f"{sample_id}.png"
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), issue_map):
                    raise DatapipeError(f"{path}: cannot write the issue map")
        return [
            write_table(self.scores, files.scores),
            write_table(self.label_issues, files.label_issues, required=self.issue_columns),
            write_table(self.hard_examples, files.hard_examples, required=self.hard_columns),
            write_table(self.confusion_rows, files.oof_confusion),
            files.issue_maps,
        ]


@dataclass
class ScoreJob:
    """One dataset's out-of-fold run, prepared by :func:`score` for its task's
    :meth:`~datapipe.tasks.base.TaskModule.score`: call :meth:`run` (with a sink for tasks
    whose held-out predictions go to disk), then turn :class:`OOFResult` into a result."""

    manifest: pd.DataFrame
    rows: np.ndarray  # the scored manifest positions
    issues: pd.DataFrame
    dataset: DatasetParams
    params: ScoreParams
    classes: list[str]
    source: Any
    labels: np.ndarray  # (len(rows),) int64
    folds: np.ndarray
    make_model: Any
    settings: TrainSettings
    name: str
    dist: Dist
    scratch: Path | None
    checkpoint: FoldCheckpoint | None
    objects: pd.DataFrame | None = None  # objects.parquet (object tasks)

    def run(self, sink: Any = None) -> OOFResult:
        return out_of_fold(
            self.source, None if sink is not None else self.labels, self.folds,
            np.ones(len(self.rows), bool), num_classes=len(self.classes),
            make_model=self.make_model, settings=self.settings, desc=f"score {self.name}",
            sink=sink, dist=self.dist, checkpoint=self.checkpoint,
        )  # fmt: skip


def score(
    manifest: pd.DataFrame,
    stats: RunStats | Mapping[str, Any],
    issues: pd.DataFrame,
    dataset: DatasetParams,
    params: ScoreParams,
    *,
    workers: int,
    device: torch.device,
    dist: Dist | None = None,
    scratch: Path | None = None,
    state: Path | None = None,
    name: str = "",
    objects: pd.DataFrame | None = None,
) -> ScoreResult | None:
    """Score every included sample; returns the result on rank 0 and None on other ranks.

    Segmentation probabilities go to float16 shards in ``scratch`` (a temporary folder when
    None; under torchrun a folder every rank can write), removed afterwards unless
    ``params.keep_probs``. With ``state`` (a folder), each finished fold is recorded there and a
    killed run resumes at the first unfinished fold (one process only: under torchrun every
    run starts over).

    Long by design: the one place that wires the decoded source, the recipe and the checkpoint.
    """
    dist = dist or Dist()
    stats = RunStats.coerce(stats)
    task = tasks.get(dataset.task)
    classes = list(stats.classes)
    include = _included(manifest, classes, dataset.folds, min_classes=task.min_classes)
    fit: FitParams = getattr(params, task.name)
    labels = task.sample_labels(manifest)
    items = manifest_items(manifest)
    # decode only what is scored; positions map back through `rows`
    rows = np.flatnonzero(include)
    source = make_source(
        [items[i] for i in rows],
        sample_spec(dataset, stats, size=fit.image_size),
        labels[rows],
        workers=workers,
        max_bytes=int(params.max_cache_gb * 2**30),
        loader_workers=workers if params.loader_workers == "auto" else params.loader_workers,
        pin_memory=device.type == "cuda",
        desc=f"score {name}: decode",
    )
    channels = len(stats.mean)
    settings = _settings(
        fit,
        device,
        params,
        fast=task.cpu_fast_paths,
        ignore=dataset.ignore_index if task.dense else -100,
        class_counts=task.class_counts(labels[rows], stats, classes),
        key=f"score.{task.name}",
    )
    checkpoint = (
        FoldCheckpoint(state, _fingerprint(manifest, rows, labels, stats, fit, settings))
        if state is not None and not dist.active
        else None
    )
    job = ScoreJob(
        manifest, rows, issues, dataset, params, classes, source, labels[rows],
        manifest["fold"].to_numpy(np.int64)[rows],
        lambda: task.build_model(
            fit, in_channels=channels, num_classes=len(classes), key=f"score.{task.name}"
        ),
        settings, name, dist, scratch, checkpoint, objects,
    )  # fmt: skip
    result = task.score(job)
    if result is not None and checkpoint is not None:
        checkpoint.clear()
    return result


def score_classification(job: ScoreJob) -> ScoreResult | None:
    """Held-out probabilities in memory, then cleanlab + training dynamics and the hard/easy
    sort."""
    oof = job.run()
    if not job.dist.is_main:
        return None
    return _classification_result(
        job.manifest, job.rows, oof, job.classes, job.issues, job.params, job.dataset
    )


def score_segmentation_job(job: ScoreJob) -> ScoreResult | None:
    """Held-out probabilities to float16 shards on disk, then the streaming pixel scorer."""
    dist, params = job.dist, job.params
    if job.scratch is None and dist.active:
        raise DatapipeError("under torchrun the probability shards need a shared scratch folder")
    shards = Path(tempfile.mkdtemp(prefix="oof_probs_")) if job.scratch is None else job.scratch
    resuming = job.checkpoint is not None and job.checkpoint.load() is not None
    if dist.is_main and job.scratch is not None and not resuming:  # an earlier run's shards go
        shutil.rmtree(shards, ignore_errors=True)
    dist.barrier()
    try:
        oof = job.run(sink=ShardWriter(shards, rank=dist.rank))
        dist.barrier()
        if not dist.is_main:
            return None
        result = score_segmentation(
            shards,
            num_classes=len(job.classes),
            ignore_index=job.dataset.ignore_index,
            issue_fraction=params.seg_issue_fraction,
            hard_pixel_fraction=params.hard_pixel_fraction,
        )
    finally:
        if not params.keep_probs and dist.is_main:
            shutil.rmtree(shards, ignore_errors=True)
    return _segmentation_result(
        job.manifest, job.rows, oof.fold_accuracy, result, job.classes, job.dataset
    )


def _fingerprint(
    manifest: pd.DataFrame,
    rows: np.ndarray,
    labels: np.ndarray,
    stats: RunStats,
    fit: FitParams,
    settings: TrainSettings,
) -> str:
    """What a fold checkpoint is valid for: the scored files (ids and bytes), their labels and
    folds, the normalisation, the recipe and the training settings."""
    picked = manifest.iloc[rows]
    content = {
        "samples": picked["sample_id"].tolist(),
        "sha256": picked["sha256"].tolist() if "sha256" in picked else None,
        "masks": picked["mask_sha256"].tolist() if "mask_sha256" in picked else None,
        "labels": labels[rows].tolist(),
        "folds": picked["fold"].astype(int).tolist(),
        "stats": stats.model_dump(include={"mean", "std", "bit_depth", "classes"}),
        "recipe": fit.model_dump(mode="json"),
        "settings": {k: v for k, v in vars(settings).items() if k != "recipe"},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _included(
    manifest: pd.DataFrame, classes: list[str], folds: int, *, min_classes: int = 2
) -> np.ndarray:
    """Rows to score: not excluded by clean. Refuses data that cannot be scored at all."""
    include = ~manifest["excluded"].to_numpy(bool)
    if len(classes) < min_classes:
        raise DatapipeError(
            f"scoring this task needs at least {min_classes} classes; stats.json lists {classes}"
        )
    if include.sum() < 2 * folds:
        raise DatapipeError(
            f"only {int(include.sum())} samples are left after clean's exclusions; "
            f"{folds} folds need at least {2 * folds}"
        )
    if len(np.unique(manifest["fold"].to_numpy()[include])) < 2:
        raise DatapipeError("every included sample is in one fold; set datasets.*.folds >= 2")
    return include


def _settings(
    fit: FitParams,
    device: torch.device,
    params: ScoreParams,
    *,
    fast: bool,
    ignore: int,
    class_counts: np.ndarray,
    key: str,
) -> TrainSettings:
    """``fast``: the task's CPU fast paths (channels_last; bfloat16 per ``cpu_bf16``)."""
    bf16 = params.cpu_bf16 == "on" or (params.cpu_bf16 == "auto" and cpu_has_bf16())
    return TrainSettings(
        fit,
        device=str(device),
        amp=params.amp,
        ignore_index=ignore,
        class_counts=tuple(float(c) for c in class_counts),
        key=key,
        channels_last=True if fast else None,
        cpu_amp=fast and device.type == "cpu" and bf16,
    )


def base_frame(manifest: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    base = manifest[["sample_id", "image", "split", "fold", "excluded"]].copy()
    base["scored"] = False
    base.loc[base.index[rows], "scored"] = True
    return base


def _classification_result(
    manifest: pd.DataFrame,
    rows: np.ndarray,
    oof: OOFResult,
    classes: list[str],
    issues: pd.DataFrame,
    params: ScoreParams,
    dataset: DatasetParams,
) -> ScoreResult:
    """The score table, hard examples and metrics from one set of held-out arrays (long by
    design: they share the arrays)."""
    probs = oof.probs
    assert probs is not None and oof.dynamics is not None  # classification: no sink given
    labels = manifest["label_index"].to_numpy()[rows].astype(np.int64)
    dyn = oof.dynamics.summary()
    found, rare = _label_issues(
        manifest, rows, labels, probs, dyn, classes, issues, params, dataset
    )
    sort = hard_and_easy(
        labels,
        probs,
        hard_loss_quantile=params.hard_loss_quantile,
        easy_prob=params.easy_prob,
        hard_negative_prob=params.hard_negative_prob,
    )
    names = np.asarray(classes, dtype=object)
    p_given = probs[np.arange(len(rows)), labels]
    scored = pd.DataFrame(
        {
            "given_label": names[labels],
            "predicted_label": names[probs.argmax(1)],
            "suggested_label": np.where(
                found["suggested_label"] >= 0, names[found["suggested_label"].clip(0)], ""
            ),
            "label_quality": found["label_quality"].to_numpy(),
            "is_label_issue": found["is_label_issue"].to_numpy(),
            "reasons": found["reasons"].to_numpy(),
            "oof_loss": -np.log(np.clip(p_given, 1e-12, 1.0)),
            "self_confidence": p_given,
            "difficulty": sort.difficulty,
            **dyn,
            **{f"prob_{c}": probs[:, i] for i, c in enumerate(classes)},
        },
        index=manifest.index[rows],
    )
    scores = base_frame(manifest, rows).join(scored)
    hard = sort.rows.copy()
    hard.insert(0, "image", manifest["image"].to_numpy()[rows][hard["index"]])
    hard.insert(0, "sample_id", manifest["sample_id"].to_numpy()[rows][hard["index"]])
    hard["class"] = names[hard["class"].to_numpy(np.int64)]
    flagged = scored["is_label_issue"].to_numpy(bool)
    pred = probs.argmax(1)
    metrics = {
        "task": dataset.task,
        "scored": len(rows),
        "oof_accuracy": float((pred == labels).mean()),
        "fold_accuracy": {str(k): v for k, v in oof.fold_accuracy.items()},
        "label_issues": int(flagged.sum()),
        "estimated_noise_rate": float(flagged.mean()),
        "label_issues_per_class": {
            c: int((flagged & (labels == i)).sum()) for i, c in enumerate(classes)
        },
        "rare_classes": [classes[c] for c in np.flatnonzero(rare)],
        **{k: int(v) for k, v in sort.counts.items()},
    }
    k = len(classes)
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    return ScoreResult(
        scores=scores,
        label_issues=_issue_report(scores, worst="label_quality"),
        hard_examples=hard.drop(columns="index")[list(HARD_EXAMPLE_REPORT)],
        confusion_rows=confusion_rows(confusion, classes),
        metrics=metrics,
    )


def _label_issues(
    manifest: pd.DataFrame,
    rows: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    dyn: Mapping[str, np.ndarray],
    classes: list[str],
    issues: pd.DataFrame,
    params: ScoreParams,
    dataset: DatasetParams,
) -> tuple[pd.DataFrame, np.ndarray]:
    """cleanlab + AUM + clean's conflicting duplicates per sample, and the per-class mask of
    classes too rare to judge out of fold (reported, never flagged)."""
    conflicting = (
        manifest["sample_id"]
        .iloc[rows]
        .isin(issues.loc[issues["check"] == "conflicting_labels", "sample_id"])
    )
    found = classification_label_issues(
        labels, probs, aum=dyn["aum"], conflicting=conflicting.to_numpy(),
        min_suggest_prob=params.min_suggest_prob,
    )  # fmt: skip
    rare = np.bincount(labels, minlength=len(classes)) < dataset.folds
    if rare.any():
        log.warning(
            "classes with fewer scored samples than folds (not flagged): %s",
            [classes[c] for c in np.flatnonzero(rare)],
        )
        hit = rare[labels]
        found.loc[hit, "is_label_issue"] = False
        found.loc[hit, "reasons"] = "rare_class"
    return found, rare


def _segmentation_result(
    manifest: pd.DataFrame,
    rows: np.ndarray,
    fold_accuracy: dict[int, float],
    result: SegmentationScores,
    classes: list[str],
    dataset: DatasetParams,
) -> ScoreResult:
    per_image = result.per_image
    scored = per_image.set_axis(manifest.index[rows[per_image.index.to_numpy()]])
    scored = scored.assign(
        given_label="", suggested_label="", aum=np.nan,
        reasons=np.where(scored["is_label_issue"], "pixel_issues", ""),
    )  # fmt: skip
    scores = base_frame(manifest, rows).join(scored)
    scores.insert(2, "mask", manifest["mask"])
    names = np.asarray(classes, dtype=object)
    hard = result.hard_examples
    hard = hard.assign(
        sample_id=manifest["sample_id"].to_numpy()[rows][hard["index"]],
        image=manifest["image"].to_numpy()[rows][hard["index"]],
        **{"class": names[hard["class"].to_numpy(np.int64)]},
    )[[*HARD_EXAMPLE_REPORT, "pixel_fraction"]]
    hard = hard.sort_values(
        ["role", "difficulty", "pixel_fraction"], ascending=[False, True, False], kind="stable"
    )
    pixels = segmentation_metrics(result.confusion, classes)
    flagged = scored["is_label_issue"].to_numpy(bool)
    metrics = {
        "task": dataset.task,
        "scored": len(rows),
        "oof_miou": pixels["miou"],
        "oof_iou": pixels["iou"],
        "oof_pixel_accuracy": pixels["pixel_accuracy"],
        "fold_pixel_accuracy": {str(k): v for k, v in fold_accuracy.items()},
        "label_issues": int(flagged.sum()),
        "estimated_noise_rate": float(flagged.mean()),
        "issue_fraction_threshold": result.issue_threshold,
        "class_thresholds": {c: float(t) for c, t in zip(classes, result.thresholds, strict=True)},
    }
    sample_ids = manifest["sample_id"].to_numpy()[rows]
    sizes = manifest[["height", "width"]].to_numpy()[rows]
    maps = {}
    for i, m in result.issue_maps.items():
        h, w = (int(v) for v in sizes[i])
        maps[str(sample_ids[i])] = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    report = _issue_report(scores, worst="label_quality")
    report["issue_fraction"] = scores.loc[report.index, "issue_fraction"]
    report["mask"] = scores.loc[report.index, "mask"]
    return ScoreResult(
        scores=scores,
        label_issues=report,
        hard_examples=hard,
        confusion_rows=confusion_rows(result.confusion, classes),
        metrics=metrics,
        issue_maps=maps,
    )


def _issue_report(scores: pd.DataFrame, *, worst: str) -> pd.DataFrame:
    flagged = scores[scores["is_label_issue"].fillna(False).astype(bool)]
    return flagged.sort_values(worst, kind="stable")[list(LABEL_ISSUE_REPORT)]
