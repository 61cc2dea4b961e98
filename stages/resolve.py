"""Stage resolve@<dataset>: what each later stage of one dataset reads from params.yaml, with
defaults filled in and the dataset's own recipes merged, as runs/<ds>/params/<stage>.json.

DVC tracks these files instead of params.yaml sections, so a change re-runs exactly the stages
whose resolved inputs changed: ``datasets.x.score.image_size`` re-runs score@x (and what follows
it) but no other dataset's stage and not x's ingest or clean; ``score.segmentation.*`` re-runs no
classification dataset's score; ``workers`` (speed, not results) re-runs nothing.

curate.json also holds the SHA-256 of reviews/<dataset>.csv (``null`` without one): curate
depends on that file, not on reviews/, so editing one dataset's sheet re-runs that dataset's
curate only (DVC cannot depend on a file that may not exist; resolve re-runs for every dataset,
which costs nothing and changes no other dataset's file).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datapipe import tasks
from datapipe.config import DatasetParams, Params
from stages.common import REVIEWS, run_stage, write_json

Resolved = dict[str, Any]


def _data(params: Params, name: str) -> Resolved:
    """The dataset entry without its curate policy and recipes (what ingest reads)."""
    return params.dataset(name).model_dump(mode="json", exclude={"curate", "score", "train"})


def _score(params: Params, name: str) -> Resolved:
    task = params.dataset(name).task
    other = set(tasks.TASKS) - {task}  # the other tasks' recipes are not read
    section = params.score_params(name).model_dump(mode="json", exclude=other)
    return {"dataset": _data(params, name), "score": section}


def _train(params: Params, name: str) -> Resolved:
    run = params.train.model_dump(
        mode="json", include={"device", "amp", "loader_workers", "resume"}
    )
    return {"dataset": _data(params, name), "train": run,
            "recipe": params.train_recipe(name).model_dump(mode="json")}  # fmt: skip


def _preview(params: Params, name: str) -> Resolved:
    recipe = params.train_recipe(name)
    return {
        "dataset": _data(params, name),
        "recipe": recipe.model_dump(mode="json", include={"augment", "seed", "image_size"}),
        "preview": [params.train.preview_samples, params.train.preview_views],
    }


def _evaluate(params: Params, name: str) -> Resolved:
    recipe = params.train_recipe(name)
    return {
        "dataset": _data(params, name),
        "train": params.train.model_dump(mode="json", include={"device", "amp"}),
        "recipe": recipe.model_dump(mode="json", include={"image_size", "batch_size", "tta"}),
    }


def review_sheet(name: str) -> Resolved:
    """Which review sheet curate reads for dataset ``name``, and its content's SHA-256."""
    path = REVIEWS / f"{name}.csv"
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"file": path.as_posix(), "sha256": digest}


#: stage -> what it reads; a test checks every stage of dvc.yaml depends on its file.
STAGE_PARAMS: dict[str, Callable[[Params, str], Resolved]] = {
    "ingest": lambda p, n: {"dataset": _data(p, n)},
    "clean": lambda p, n: {"dataset": _data(p, n), "clean": p.clean.model_dump(mode="json")},
    "score": _score,
    "curate": lambda p, n: {
        "dataset": _data(p, n),
        "curate": p.dataset(n).curate.model_dump(mode="json"),
        "review": review_sheet(n),
    },
    "preview": _preview,
    "train": _train,
    "evaluate": _evaluate,
    "report": lambda p, n: {"dataset": _data(p, n), "report": p.report.model_dump(mode="json")},
}


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    folder = out / "params"
    return [
        write_json(folder / f"{stage}.json", fn(params, name)) for stage, fn in STAGE_PARAMS.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("resolve", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
