"""Stage curate@<dataset>: scores + policy + reviews/<dataset>.csv -> curated.parquet,
reports/curation_summary.csv, metrics/curate.json. A review overrides the policy; export a
sheet to fill with ``datapipe review export --dataset <dataset>``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.config import DatasetParams, Params
from datapipe.curate import CURATED_COLUMNS, curate_run, empty_curated_objects
from datapipe.io import read_table, write_table
from datapipe.runs import REVIEWS, RunFiles, read_stats
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/curate.json holds (dvc metrics show); reports/curate_metrics.json has it all
HEADLINE = ("relabel", "downweight", "drop", "reviewed")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    scores = read_table(
        files.scores,
        required=("sample_id", "split", "excluded", "is_label_issue", "label_quality"),
    )
    clean = read_table(files.clean_manifest, required=("sample_id", "exclude_reason"))
    result = curate_run(
        scores, clean, classes=read_stats(files.stats).classes, task=dataset.task,
        policy=dataset.curate, review_path=REVIEWS / f"{name}.csv",
        objects=read_table(files.objects), box_issues=read_table(files.label_issues),
        data_issues=read_table(files.data_issues),
    )  # fmt: skip
    log.info("%s", result.describe(name))
    return [
        write_table(result.curated, files.curated, required=CURATED_COLUMNS),
        write_table(result.summary, files.curation_summary),
        write_table(
            result.objects if result.objects is not None else empty_curated_objects(),
            files.curated_objects,
        ),
        *write_metrics(out, "curate", result.metrics, headline=HEADLINE),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("curate", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
