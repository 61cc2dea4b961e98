"""Stage clean@<dataset>: integrity, intensity, duplicate and leakage checks -> data_issues.csv,
clean_manifest.parquet, metrics/clean.json. Nothing under the data root is touched."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.clean import ISSUE_COLUMNS, clean
from datapipe.config import DatasetParams, Params
from datapipe.ingest import MANIFEST_COLUMNS
from datapipe.io import read_table, write_table
from datapipe.runs import RunFiles, read_stats
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/clean.json holds (dvc metrics show); reports/clean_metrics.json has it all
HEADLINE = ("excluded", "flagged_samples", "duplicate_groups", "leakage_moves")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    manifest = read_table(files.manifest, required=MANIFEST_COLUMNS)
    stats = read_stats(files.stats)
    objects = read_table(files.objects) if files.objects.exists() else None
    result = clean(
        manifest, stats, dataset, params.clean, workers=params.resolved_workers(), name=name,
        objects=objects, detector_size=params.train_recipe(name).image_size,
        pixels=files.pixel_features if files.pixel_features.exists() else None,
    )  # fmt: skip
    m = result.metrics
    log.info(
        "%s: %d samples, %d flagged, %d excluded, %d duplicate groups, %d leakage moves",
        name,
        m["samples"],
        m["flagged_samples"],
        m["excluded"],
        m["duplicate_groups"],
        m["leakage_moves"],
    )
    return [
        write_table(result.issues, files.data_issues, required=ISSUE_COLUMNS),
        write_table(result.manifest, files.clean_manifest),
        *write_metrics(out, "clean", m, headline=HEADLINE),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("clean", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
