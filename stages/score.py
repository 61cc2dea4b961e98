"""Stage score@<dataset>: out-of-fold models -> scores.parquet, reports/label_issues.csv,
reports/hard_examples.csv, plots/oof_confusion.csv, metrics/score.json (and issue maps of
flagged segmentation masks). Runs as is on one device, or under torchrun on several:

    torchrun --nproc_per_node 4 -m stages.score --dataset my_cells
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe import tasks
from datapipe.config import DatasetParams, Params
from datapipe.distributed import init_distributed, shutdown
from datapipe.io import read_table
from datapipe.runs import RunFiles, read_stats
from datapipe.score import score
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/score.json holds (dvc metrics show); reports/score_metrics.json has it all
HEADLINE = ("oof_accuracy", "oof_miou", "oof_map_50", "label_issues", "estimated_noise_rate")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    manifest = read_table(files.clean_manifest, required=("sample_id", "fold", "excluded"))
    issues = read_table(files.data_issues, required=("sample_id", "check"))
    stats = read_stats(files.stats)
    dist, device = init_distributed(params.score.device)
    try:
        result = score(
            manifest, stats, issues, dataset, params.score_params(name),
            workers=params.resolved_workers(), device=device, dist=dist, name=name,
            scratch=files.oof_probs,
            state=files.oof_state,  # a killed run resumes at its first unfinished fold
            objects=read_table(files.objects) if files.objects.exists() else None,
        )  # fmt: skip
    finally:
        shutdown()
    if result is None:  # not rank 0
        return []
    log.info("%s on %s", result.summary(name), device)
    written = result.write(files, dense=tasks.get(dataset.task).dense)
    return written + write_metrics(out, "score", result.metrics, headline=HEADLINE)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("score", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
