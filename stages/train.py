"""Stage train@<dataset>: curated.parquet (+ curated_objects.parquet), stats.json, train.<task>
-> model.pt, augment.json (the resolved albumentations pipeline), DVCLive logs, metrics/train.json;
resumes from runs/<dataset>/train_state/checkpoint.pt (train.resume). On several devices:

    torchrun --nproc_per_node 4 -m stages.train --dataset my_cells
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe import tasks
from datapipe.augment import save_pipeline
from datapipe.config import DatasetParams, Params
from datapipe.io import read_table
from datapipe.runs import RunFiles, read_stats
from datapipe.training import Trained, save_model, train_images
from stages.common import run_stage, write_metrics

#: metrics/train.json (dvc metrics show); reports/train_metrics.json: the whole last epoch
HEADLINE = ("epochs", "train/loss", "val/accuracy", "val/miou", "val/map_50", "val/mask_map_50")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    curated = read_table(files.curated, required=("split", "action", "weight"))
    stats, recipe, settings = read_stats(files.stats), params.train_recipe(name), params.train
    workers = settings.resolved_loader_workers(params.resolved_workers())
    trained: Trained | None
    if tasks.get(dataset.task).objects:  # detectors: boxes through albumentations' bbox_params
        from datapipe.detect.train import train_run

        objects = read_table(files.curated_objects)
        trained = train_run(curated, objects, stats, dataset, recipe, settings, files=files,
                            name=name)  # fmt: skip
    else:
        trained = train_images(curated, stats, dataset, recipe, settings, files=files,
                               workers=workers, name=name)  # fmt: skip
    if trained is None:  # not rank 0
        return []
    model, history, meta, pipeline = trained
    shutil.rmtree(files.train_state, ignore_errors=True)  # finished: nothing to resume
    last = {k: v for k, v in history[-1].items() if k != "epoch"}
    return [
        save_model(files.model, model, meta),
        save_pipeline(pipeline, files.augment),
        *write_metrics(out, "train", last | {"epochs": len(history)}, headline=HEADLINE),
        files.dvclive,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("train", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
