"""Stage train@<dataset>: curated.parquet + stats.json + train.<task> params -> model.pt,
augment.json (the resolved albumentations pipeline), DVCLive logs (dvclive/), metrics/train.json.
Resumes from runs/<dataset>/train_state/checkpoint.pt after an interruption (train.resume).
On several devices:

    torchrun --nproc_per_node 4 -m stages.train --dataset my_cells
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.augment import build_pipeline, save_pipeline, to_dict
from datapipe.config import DatasetParams, Params
from datapipe.io import read_table
from datapipe.runs import RunFiles, read_stats
from datapipe.training import model_meta, save_model, train_dataset
from stages.common import run_stage, write_metrics

#: what metrics/train.json holds (dvc metrics show); reports/train_metrics.json has the whole
#: last epoch
HEADLINE = ("epochs", "train/loss", "val/accuracy", "val/miou")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    curated = read_table(files.curated, required=("split", "action", "weight"))
    stats, recipe, settings = read_stats(files.stats), params.train_recipe(name), params.train
    own = "lr_mult" in dataset.train
    trained = train_dataset(
        curated, stats, dataset, recipe, settings, files=files, name=name,
        workers=params.resolved_workers() if settings.loader_workers == "auto"
        else settings.loader_workers,
        section=f"datasets.{name}.train" if own else f"train.{dataset.task}",
    )  # fmt: skip
    if trained is None:  # not rank 0
        return []
    inputs, result = trained
    pipeline = build_pipeline(recipe.augment, ignore_index=dataset.ignore_index)
    shutil.rmtree(files.train_state, ignore_errors=True)  # finished: nothing to resume
    last = {k: v for k, v in result.history[-1].items() if k != "epoch"}
    meta = model_meta(inputs, recipe, stats, to_dict(pipeline))
    return [
        save_model(files.model, result.model, meta),
        save_pipeline(pipeline, files.augment),
        *write_metrics(out, "train", last | {"epochs": len(result.history)}, headline=HEADLINE),
        files.dvclive,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("train", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
