"""What each stage of one dataset reads from params.yaml, resolved: defaults filled in and the
dataset's own recipes merged (``stages/resolve.py`` writes it as runs/<ds>/params/<stage>.json,
which dvc.yaml's stages depend on instead of params.yaml sections)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from datapipe import tasks
from datapipe.config import Params
from datapipe.runs import REVIEWS

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
    "clean": lambda p, n: {
        "dataset": _data(p, n),
        "clean": p.clean.model_dump(mode="json"),
        # box_tiny measures boxes at the detector's input size (object tasks only)
        **(
            {"detector_size": p.train_recipe(n).image_size}
            if tasks.get(p.dataset(n).task).objects
            else {}
        ),
    },
    "score": _score,
    "curate": lambda p, n: {
        "dataset": _data(p, n),
        "curate": p.dataset(n).curate.model_dump(mode="json"),
        "review": review_sheet(n),
        **(
            {"object_review": review_sheet(f"{n}_objects")}
            if tasks.get(p.dataset(n).task).objects
            else {}
        ),
    },
    "preview": _preview,
    "train": _train,
    "evaluate": _evaluate,
    "report": lambda p, n: {"dataset": _data(p, n), "report": p.report.model_dump(mode="json")},
}
