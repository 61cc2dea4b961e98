"""Stage score@<dataset>: out-of-fold models -> scores.parquet, reports/label_issues.csv,
reports/hard_examples.csv, plots/oof_confusion.csv, metrics/score.json (and issue maps of
flagged segmentation masks). Runs as is on one device, or under torchrun on several:

    torchrun --nproc_per_node 4 -m stages.score --dataset my_cells
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2

from datapipe import tasks
from datapipe.config import DatasetParams, Params
from datapipe.distributed import init_distributed, shutdown
from datapipe.errors import DatapipeError
from datapipe.io import atomic_path, read_table, write_table, write_text_atomic
from datapipe.score import HARD_EXAMPLE_REPORT, LABEL_ISSUE_REPORT, score
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: issue_maps/README.txt: the folder is never empty (DVC warns on an empty output folder)
ISSUE_MAPS_README = {  # by whether the task's targets are masks
    True: "One <sample_id>.png per flagged mask: the pixels whose given class the "
    "out-of-fold model doubts (read by the report).\n",
    False: "No issue maps: they are drawn for masks only; this "
    "dataset's label issues are in ../reports/label_issues.csv.\n",
}
#: what metrics/score.json holds (dvc metrics show); reports/score_metrics.json has it all
HEADLINE = ("oof_accuracy", "oof_miou", "label_issues", "estimated_noise_rate")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    manifest = read_table(
        out / "clean_manifest.parquet", required=("sample_id", "fold", "excluded")
    )
    issues = read_table(out / "reports" / "data_issues.csv", required=("sample_id", "check"))
    try:
        stats = json.loads((out / "stats.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatapipeError(f"{out / 'stats.json'}: cannot read ({exc}); re-run ingest") from None
    dist, device = init_distributed(params.score.device)
    try:
        result = score(
            manifest,
            stats,
            issues,
            dataset,
            params.score_params(name),
            workers=params.resolved_workers(),
            device=device,
            dist=dist,
            scratch=out / "oof_probs",
            state=out / "oof_state",  # a killed run resumes at its first unfinished fold
            name=name,
        )
    finally:
        shutdown()
    if result is None:  # not rank 0
        return []
    m = result.metrics
    quality = m.get("oof_accuracy", m.get("oof_miou"))
    log.info(
        "%s: %d scored on %s, OOF %s %.3f, %d label issues",
        name, m["scored"], device, "accuracy" if "oof_accuracy" in m else "mIoU", quality,
        m["label_issues"],
    )  # fmt: skip
    maps_dir = out / "issue_maps"
    shutil.rmtree(maps_dir, ignore_errors=True)  # ours: maps of an earlier run go
    maps_dir.mkdir(parents=True)
    write_text_atomic(maps_dir / "README.txt", ISSUE_MAPS_README[tasks.get(dataset.task).dense])
    for sample_id, issue_map in result.issue_maps.items():
        path = maps_dir / f"{sample_id}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), issue_map):
                raise DatapipeError(f"{path}: cannot write the issue map")
    return [
        write_table(result.scores, out / "scores.parquet"),
        write_table(result.label_issues, out / "reports" / "label_issues.csv",
                    required=LABEL_ISSUE_REPORT),
        write_table(result.hard_examples, out / "reports" / "hard_examples.csv",
                    required=HARD_EXAMPLE_REPORT),
        write_table(result.confusion_rows, out / "plots" / "oof_confusion.csv"),
        *write_metrics(out, "score", m, headline=HEADLINE),
        maps_dir,
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("score", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
