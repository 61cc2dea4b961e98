"""Stage evaluate@<dataset>: model.pt on the test split (never trained on) ->
metrics/eval.json (headline numbers), reports/eval_metrics.json (accuracy, macro-F1, per-class
recall; or mIoU, per-class IoU, Dice, pixel accuracy) and plots/eval_confusion.csv."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe import tasks
from datapipe.config import DatasetParams, Params
from datapipe.io import read_table, write_table
from datapipe.metrics import confusion_rows
from datapipe.runs import RunFiles, read_stats
from datapipe.training import evaluate_images, load_model
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/eval.json holds (dvc metrics show); reports/eval_metrics.json adds per-class
#: recall / precision or IoU / Dice
HEADLINE = ("accuracy", "macro_f1", "miou", "mdice", "map", "map_50", "mask_map_50", "mask_mar_max")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files, recipe, task = RunFiles.under(out), params.train_recipe(name), tasks.get(dataset.task)
    model, meta = load_model(files.model)
    curated = read_table(files.curated, required=("split", "action"))
    stats = read_stats(files.stats)
    if task.objects:  # COCO metrics of the test split's boxes
        from datapipe.detect.train import evaluate_run

        metrics, cm = evaluate_run(model, meta, curated, read_table(files.curated_objects),
                                   stats, dataset, recipe, params.train)  # fmt: skip
        labels = [*meta["classes"], "background"]
    else:
        metrics, cm = evaluate_images(model, meta, curated, stats, dataset, recipe, params.train,
                                      workers=params.resolved_workers())  # fmt: skip
        labels = meta["classes"]
    log.info("%s: test %s %.3f on %d samples", name, task.headline, metrics[task.headline],
             metrics["test_samples"])  # fmt: skip
    return [
        *write_metrics(out, "eval", metrics, headline=HEADLINE),
        write_table(confusion_rows(cm, labels), files.eval_confusion),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("evaluate", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
