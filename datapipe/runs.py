"""The stage boundary: where every file of ``runs/<dataset>/`` lives, and ``stats.json`` typed.

Stages, the CLI and the report find run files through :class:`RunFiles` only, and read
``stats.json`` into :class:`RunStats` (one model instead of string lookups in every module);
ARCHITECTURE.md's data contracts list the same files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from datapipe.errors import DatapipeError

#: Review sheets, one per dataset: reviews/<dataset>.csv (read by curate, hashed by resolve).
REVIEWS = Path("reviews")


@dataclass(frozen=True)
class RunFiles:
    """Every path of one dataset's run folder; :meth:`under` gives the layout."""

    root: Path
    params: Path  # resolve: params/<stage>.json
    manifest: Path  # ingest
    stats: Path
    objects: Path  # one row per annotated object (object tasks; empty otherwise)
    pixel_features: Path  # the clean stage's pixel measurements, taken in ingest's decode
    clean_manifest: Path  # clean
    data_issues: Path
    scores: Path  # score
    label_issues: Path
    hard_examples: Path
    issue_maps: Path
    oof_confusion: Path
    oof_probs: Path  # segmentation shards while scoring (kept with score.keep_probs)
    oof_state: Path  # finished folds, for a resumed score
    curated: Path  # curate
    curated_objects: Path
    curation_summary: Path
    augment_preview: Path  # preview
    model: Path  # train
    augment: Path
    train_state: Path
    dvclive: Path
    eval_confusion: Path  # evaluate
    report: Path  # report
    history: Path
    metrics: Path  # metrics/<stage>.json: headline numbers (DVC-cached)
    metric_details: Path  # reports/<stage>_metrics.json: everything

    @classmethod
    def under(cls, run: Path) -> RunFiles:
        reports, plots = run / "reports", run / "plots"
        return cls(
            root=run,
            params=run / "params",
            manifest=run / "manifest.parquet",
            stats=run / "stats.json",
            objects=run / "objects.parquet",
            pixel_features=run / "pixel_features.parquet",
            clean_manifest=run / "clean_manifest.parquet",
            data_issues=reports / "data_issues.csv",
            scores=run / "scores.parquet",
            label_issues=reports / "label_issues.csv",
            hard_examples=reports / "hard_examples.csv",
            issue_maps=run / "issue_maps",
            oof_confusion=plots / "oof_confusion.csv",
            oof_probs=run / "oof_probs",
            oof_state=run / "oof_state",
            curated=run / "curated.parquet",
            curated_objects=run / "curated_objects.parquet",
            curation_summary=reports / "curation_summary.csv",
            augment_preview=reports / "augment_preview.png",
            model=run / "model.pt",
            augment=run / "augment.json",
            train_state=run / "train_state",
            dvclive=run / "dvclive",
            eval_confusion=plots / "eval_confusion.csv",
            report=reports / "report.html",
            history=run / "report_history.jsonl",
            metrics=run / "metrics",
            metric_details=reports,
        )

    def metrics_of(self, stage: str) -> Path:
        return self.metrics / f"{stage}.json"

    def metric_details_of(self, stage: str) -> Path:
        return self.metric_details / f"{stage}_metrics.json"


class RunStats(BaseModel):
    """``stats.json``, written by ingest: what the data is (task, classes, channels, bit
    depths, normalisation) and how it is split. Unknown keys are kept (a newer ingest may add
    some); the typed ones are what later stages rely on."""

    model_config = ConfigDict(extra="allow", frozen=True)

    dataset: str = ""
    task: str = ""  # checked where a task module is needed
    root: str = ""
    layout: str = ""
    samples: int = 0
    readable: int = 0
    read_errors: int = 0
    channels: int | None = None  # the majority channel count (None: nothing readable)
    channel_counts: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    bit_depth: dict[str, Any] = {}  # dtype -> significant bits or "percentile"
    mean: list[float] = []  # per channel, of unit-scaled pixels (sample_spec needs them)
    std: list[float] = []
    pixels: int = 0
    nonfinite_images: int = 0
    nonfinite_pixels: int = 0
    classes: list[str]
    class_values: list[int] = []
    splits: dict[str, int] = {}
    folds: dict[str, int] = {}
    class_counts: dict[str, int] = {}  # image labels
    class_counts_by_split: dict[str, dict[str, int]] = {}
    ignore_index: int | None = None  # masks
    pixel_counts: dict[str, int] = {}
    ignored_pixels: int = 0
    object_counts: dict[str, int] = {}  # objects
    object_counts_by_split: dict[str, dict[str, int]] = {}
    not_samples: dict[str, int] = {}

    @model_validator(mode="after")
    def _channels_from_mean(self) -> RunStats:
        if self.channels is None and self.mean:
            object.__setattr__(self, "channels", len(self.mean))
        return self

    def image_channels(self) -> int:
        """The channel count models are built for; an error when no image was readable."""
        if not self.channels:
            raise DatapipeError("stats.json: no readable image, so no channel count; re-run ingest")
        return self.channels

    @classmethod
    def coerce(cls, stats: RunStats | Mapping[str, Any], *, source: str = "stats.json") -> RunStats:
        """``stats`` as a :class:`RunStats` (a mapping, e.g. from a test, is validated)."""
        if isinstance(stats, RunStats):
            return stats
        try:
            return cls.model_validate(
                {**stats, "classes": [str(c) for c in stats.get("classes", [])]}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise DatapipeError(f"{source}: {problems}; re-run ingest") from None


def read_stats(path: Path) -> RunStats:
    """``stats.json`` typed; a missing, damaged or incomplete file is one line naming it."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatapipeError(f"{path}: not found (has the ingest stage run?)") from None
    except (OSError, ValueError) as exc:
        raise DatapipeError(f"{path}: cannot read ({exc}); re-run ingest") from None
    if not isinstance(raw, dict):
        raise DatapipeError(f"{path}: expected a JSON object; re-run ingest")
    return RunStats.coerce(raw, source=str(path))
