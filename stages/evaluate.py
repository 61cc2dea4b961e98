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
from datapipe.data import sample_spec
from datapipe.distributed import init_distributed
from datapipe.errors import DatapipeError
from datapipe.io import read_table, write_table
from datapipe.metrics import confusion_rows
from datapipe.runs import RunFiles, read_stats
from datapipe.training import RunSettings, evaluate, load_model, split_set
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/eval.json holds (dvc metrics show); reports/eval_metrics.json adds per-class
#: recall / precision or IoU / Dice
HEADLINE = ("accuracy", "macro_f1", "miou", "mdice")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files, recipe, task = RunFiles.under(out), params.train_recipe(name), tasks.get(dataset.task)
    model, meta = load_model(files.model)
    curated = read_table(files.curated, required=("split", "action"))
    spec = sample_spec(dataset, read_stats(files.stats), size=recipe.image_size)
    test, _ = split_set(curated, "test", spec)
    if len(test) == 0:
        raise DatapipeError("no usable test samples (datasets.*.splits.test is 0?)")
    _, device = init_distributed(params.train.device, key="train.device")  # one process
    classes = meta["classes"]
    cm = evaluate(
        model, test, task=task, classes=classes, batch_size=recipe.batch_size,
        run=RunSettings(device, params.train.amp, min(params.resolved_workers(), 4)),
        ignore_index=dataset.ignore_index, tta=recipe.tta,
    )  # fmt: skip
    metrics = task.metrics(cm, classes) | {"tta": recipe.tta, "test_samples": len(test)}
    log.info(
        "%s: test %s %.3f on %d samples", name, task.headline, metrics[task.headline], len(test)
    )
    return [
        *write_metrics(out, "eval", metrics, headline=HEADLINE),
        write_table(confusion_rows(cm, classes), files.eval_confusion),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("evaluate", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
