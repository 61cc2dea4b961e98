"""What the report reads: the files of one run folder, loaded once, absent ones as ``None``.

Only the manifest and ``stats.json`` are required; every other input may be missing (a
stage not run yet, train and evaluate not built) and its section then says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from datapipe import tasks
from datapipe.errors import ConfigError, DatapipeError
from datapipe.io import read_table
from datapipe.runs import RunFiles, RunStats, read_stats
from datapipe.tasks import TaskModule

#: The metrics/<name>.json files the report shows, in page order. They hold the headline
#: numbers DVC tabulates; reports/<name>_metrics.json next to them holds all (per-class
#: tables, lists), and is what the report shows where it exists.
METRIC_FILES = ("clean", "score", "curate", "train", "eval")
#: The columns of objects.parquet the thumbnails draw from (object tasks).
OBJECT_COLUMNS = ("sample_id", "object_id", "class", "x0", "y0", "x1", "y1")


@dataclass
class ReportInputs:
    """Everything one report shows. ``missing`` maps an input's name to the path that was
    not there, for the 'not available' notes."""

    name: str
    task: str
    stats: RunStats
    manifest: pd.DataFrame
    data_issues: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    label_issues: pd.DataFrame | None = None
    hard_examples: pd.DataFrame | None = None
    curated: pd.DataFrame | None = None
    curation_summary: pd.DataFrame | None = None
    objects: pd.DataFrame | None = None  # object tasks: objects.parquet (the given boxes)
    curated_objects: pd.DataFrame | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    oof_confusion: pd.DataFrame | None = None
    eval_confusion: pd.DataFrame | None = None
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    live_metrics: dict[str, Any] | None = None
    augment_preview: Path | None = None
    missing: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stats = RunStats.coerce(self.stats)

    @property
    def kind(self) -> TaskModule:
        """The task's module (stats.json's ``task``)."""
        try:
            return tasks.get(self.task)
        except KeyError as exc:
            raise DatapipeError(
                f"stats.json of {self.name}: {exc.args[0]}; re-run ingest"
            ) from None

    def check_channels(self, shown: Sequence[int] | None) -> None:
        """``report.channels`` (the channels drawn) against the images' channel count."""
        have = self.stats.channels
        if shown and have and max(shown) >= have:
            raise ConfigError(
                f"report.channels: {list(shown)} needs {max(shown) + 1} channels; {self.name}'s "
                f"images have {have} (stats.json), so pick from 0..{have - 1}"
            )

    @property
    def classes(self) -> list[str]:
        return list(self.stats.classes)

    @cached_property
    def object_classes(self) -> dict[str, list[str]]:
        """Per sample id, the classes of its given objects (empty without objects.parquet)."""
        if self.objects is None or self.objects.empty:
            return {}
        named = self.objects[self.objects["class"].map(lambda c: isinstance(c, str) and c != "")]
        per = named.groupby(named["sample_id"].astype(str))["class"].unique()
        return {str(sid): [str(c) for c in names] for sid, names in per.items()}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (NaN allowed, as Python writes it)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatapipeError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise DatapipeError(f"{path}: expected a JSON object; got {type(obj).__name__}")
    return obj


def read_curves(root: Path) -> dict[str, pd.DataFrame]:
    """DVCLive's ``plots/metrics/**/<name>.tsv`` (columns ``step``, value) under ``root``,
    keyed by the path below ``plots/metrics`` without ``.tsv`` (``train/loss``)."""
    base = root / "plots" / "metrics"
    curves = {}
    for path in sorted(base.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        value = [c for c in table.columns if c not in ("step", "timestamp")]
        if "step" in table and value:
            key = path.relative_to(base).with_suffix("").as_posix()
            curves[key] = table[["step", value[0]]].rename(columns={value[0]: "value"})
    return curves


def load_inputs(files: RunFiles, *, name: str) -> ReportInputs:
    """Read every input of one run; a missing optional one is recorded in ``missing``."""
    stats = read_stats(files.stats)
    manifest = read_table(files.clean_manifest, required=("sample_id", "image", "split"))
    found = ReportInputs(name=name, task=stats.task, stats=stats, manifest=manifest)
    tables = {
        "data_issues": (files.data_issues, ("sample_id", "image", "check", "severity")),
        "scores": (files.scores, ("sample_id",)),
        "label_issues": (files.label_issues, ("sample_id", "image")),
        "hard_examples": (files.hard_examples, ("sample_id", "image", "class", "role")),
        "curated": (files.curated, ("sample_id", "action")),
        "curation_summary": (files.curation_summary, ()),
        "oof_confusion": (files.oof_confusion, ("actual", "predicted")),
        "eval_confusion": (files.eval_confusion, ("actual", "predicted")),
    }
    if found.kind.objects:
        tables["objects"] = (files.objects, OBJECT_COLUMNS)
        tables["curated_objects"] = (files.curated_objects, ("sample_id", "object_id", "action"))
    for key, (path, required) in tables.items():
        if path.is_file():
            setattr(found, key, read_table(path, required=required))
        else:
            found.missing[key] = path
    for metric in METRIC_FILES:
        path = files.metrics_of(metric)
        detail = files.metric_details_of(metric)
        if detail.is_file():
            found.metrics[metric] = read_json(detail)
        elif path.is_file():
            found.metrics[metric] = read_json(path)
        else:
            found.missing[f"metrics/{metric}"] = path
    found.curves = read_curves(files.dvclive) if files.dvclive.is_dir() else {}
    if not found.curves:
        found.missing["curves"] = files.dvclive / "plots" / "metrics"
    live = files.dvclive / "metrics.json"
    found.live_metrics = read_json(live) if live.is_file() else None
    if files.augment_preview.is_file():
        found.augment_preview = files.augment_preview
    else:
        found.missing["augment_preview"] = files.augment_preview
    return found


def is_number(value: Any) -> bool:
    """A real, finite number (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
