"""Stage train@<dataset>: curated.parquet + stats.json + train.<task> params -> model.pt,
augment.json (the resolved albumentations pipeline), DVCLive logs (dvclive/), metrics/train.json.
Resumes from runs/<dataset>/train_state/checkpoint.pt after an interruption (train.resume).
On several devices:

    torchrun --nproc_per_node 4 -m stages.train --dataset my_cells
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from dvclive import Live

from datapipe.augment import build_pipeline, save_pipeline, to_dict
from datapipe.config import DatasetParams, Params
from datapipe.distributed import init_distributed, shutdown
from datapipe.io import read_table
from datapipe.models import check_lr_mult
from datapipe.training import RunSettings, build_model, save_model, train_inputs, train_model
from stages.common import run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/train.json holds (dvc metrics show); reports/train_metrics.json has the whole
#: last epoch
HEADLINE = ("epochs", "train/loss", "val/accuracy", "val/miou")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    curated = read_table(out / "curated.parquet", required=("split", "action", "weight"))
    stats = json.loads((out / "stats.json").read_text())
    recipe, settings = params.train_recipe(name), params.train
    inputs = train_inputs(curated, stats, dataset, recipe)
    dist, device = init_distributed(settings.device, key="train.device")
    workers = (
        params.resolved_workers() if settings.loader_workers == "auto" else settings.loader_workers
    )
    torch.manual_seed(recipe.seed)
    model = build_model(inputs.task, recipe, in_channels=int(stats["channels"]),
                        num_classes=len(inputs.classes))  # fmt: skip
    section = (
        f"datasets.{name}.train" if "lr_mult" in dataset.train else f"train.{inputs.task.name}"
    )
    check_lr_mult(model, recipe.lr_mult, key=f"{section}.lr_mult")  # before any epoch
    state = out / "train_state" / "checkpoint.pt"
    if settings.resume == "never":
        state.unlink(missing_ok=True)
    live = _live(out / "dvclive") if dist.is_main else None
    try:
        result = train_model(
            model, inputs, recipe, RunSettings(device, settings.amp, min(workers, 4), dist),
            checkpoint=state, fingerprint=_fingerprint(recipe.model_dump_json(), curated, stats),
            log=_logger(live), desc=f"train {name}",
        )  # fmt: skip
    finally:
        shutdown()
        if live is not None:
            live.end()
    if not dist.is_main:
        return []
    pipeline = build_pipeline(recipe.augment, ignore_index=dataset.ignore_index)
    meta = {"task": inputs.task.name, "classes": inputs.classes,
            "in_channels": int(stats["channels"]), "recipe": recipe.model_dump(mode="json"),
            "augment": to_dict(pipeline)}  # fmt: skip
    last = {k: v for k, v in result.history[-1].items() if k != "epoch"}
    shutil.rmtree(out / "train_state", ignore_errors=True)  # finished: nothing to resume
    return [
        save_model(out / "model.pt", result.model, meta),
        save_pipeline(pipeline, out / "augment.json"),
        *write_metrics(out, "train", last | {"epochs": len(result.history)}, headline=HEADLINE),
        out / "dvclive",
    ]


def _live(folder: Path) -> Live | None:
    """DVCLive, or None (curves not logged) where it cannot start, e.g. in a git repo with no
    commit yet (dvclive asks git for the baseline revision); training goes on either way."""
    try:
        return Live(str(folder), save_dvc_exp=False, dvcyaml=None)
    except Exception as exc:
        log.warning("dvclive could not start (%s); training curves are not logged", exc)
        (folder / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
        return None


def _logger(live: Live | None) -> Callable[[int, dict[str, float]], None] | None:
    if live is None:
        return None

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                live.log_metric(key, value)
        live.next_step()

    return log_epoch


def _fingerprint(recipe: str, curated: pd.DataFrame, stats: dict[str, Any]) -> str:
    """What a checkpoint must match to be resumed: the recipe, the curated table, the stats."""
    digest = hashlib.sha256(recipe.encode())
    digest.update(pd.util.hash_pandas_object(curated, index=False).to_numpy().tobytes())
    digest.update(json.dumps(stats, sort_keys=True).encode())
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("train", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
