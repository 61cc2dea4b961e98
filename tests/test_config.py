from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from datapipe.config import load_params, parse_params
from datapipe.errors import ConfigError
from tests.conftest import REPO

MINIMAL = {"datasets": {"cells": {"root": "data/cells", "task": "segmentation"}}}


def test_minimal_entry_fills_every_default() -> None:
    ds = parse_params(MINIMAL).dataset("cells")
    assert ds.layout == "auto" and ds.bit_depth == "auto" and ds.ignore_index == 255
    assert ds.splits.fractions() == {"train": 0.7, "val": 0.15, "test": 0.15}
    assert ds.folds == 5 and ds.classes is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"datasets": {"cells": {"root": "d", "task": "segmentation", "bit_dept": 12}}},
            "datasets.cells.bit_dept: unknown key",
        ),
        ({"datasets": {"cells": {"root": "d"}}}, "datasets.cells.task: required key missing"),
        ({"datasets": {"cells": {"root": "d", "task": "keypoints"}}}, "datasets.cells.task"),
        (
            {"datasets": {"cells": {"root": "d", "task": "segmentation", "bit_depth": 9}}},
            "datasets.cells.bit_depth",
        ),
        (
            {
                "datasets": {
                    "cells": {
                        "root": "d",
                        "task": "segmentation",
                        "splits": {"train": 0.9, "val": 0.2, "test": 0.0},
                    }
                }
            },
            "datasets.cells.splits: Value error, train \\+ val \\+ test must be 1",
        ),
        (
            {"datasets": {"cells": {"root": "d", "task": "classification", "classes": ["a", "a"]}}},
            "datasets.cells.classes: .*unique",
        ),
        ({"datasets": {"bad name": {"root": "d", "task": "segmentation"}}}, "dataset name"),
        ({"datasets": {}}, "needs at least one dataset"),
        ({**MINIMAL, "ingset": {}}, "ingset: unknown key"),
        ({**MINIMAL, "workers": "many"}, "workers"),
    ],
    ids=[
        "typo",
        "missing-task",
        "bad-task",
        "bad-bit-depth",
        "splits-sum",
        "dup-classes",
        "bad-name",
        "no-datasets",
        "top-level-typo",
        "bad-workers",
    ],
)
def test_bad_params_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"datasets.nope: no such dataset; params.yaml has \['cells'\]"
    ):
        parse_params(MINIMAL).dataset("nope")


def test_load_params_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("datasets: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_repo_params_yaml_is_valid() -> None:
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert {"shapes_cls", "shapes_seg"} <= set(params.datasets)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"datasets": {"cells": {"root": "d", "task": "segmentation", "bit_dept": 12}}},
            "datasets.cells.bit_dept: unknown key (did you mean 'bit_depth'?)",
        ),
        (
            {**MINIMAL, "train": {"segmentation": {"loss": {"label_smooth": 0.1}}}},
            "train.segmentation.loss.label_smooth: unknown key (did you mean 'label_smoothing'?)",
        ),
        (
            {"datasets": {"c": {"root": "d", "task": "classification", "score": {"epoch": 2}}}},
            "datasets.c.score.epoch: unknown key (did you mean 'epochs'?)",
        ),
        ({**MINIMAL, "report": {"colour": 1}}, "report.colour: unknown key"),
    ],
    ids=["dataset", "nested-section", "dataset-recipe", "nothing-close"],
)
def test_unknown_keys_suggest_the_closest_known_one(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert str(info.value).endswith(message)


def test_config_model_names_are_the_model_factories() -> None:
    from typing import get_args

    from datapipe.config import MODEL_NAMES
    from datapipe.models import ModelName, SegmenterName

    assert set(MODEL_NAMES["classification"]) == set(get_args(ModelName))
    assert set(MODEL_NAMES["segmentation"]) == set(get_args(SegmenterName))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {**MINIMAL, "score": {"segmentation": {"model": "unett"}}},
            "score.segmentation.model: unknown segmentation model 'unett' (did you mean 'unet'?)",
        ),
        (
            {"datasets": {"c": {"root": "d", "task": "classification",
                                "train": {"model": "unet"}}}},
            "datasets.c.train.model: unknown classification model 'unet'",
        ),
    ],
    ids=["task-recipe", "dataset-recipe"],
)  # fmt: skip
def test_model_names_are_checked_when_params_load(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_params(raw)


@pytest.mark.parametrize("where", ["dataset", "report"])
def test_percentiles_must_be_ordered_wherever_they_are_given(where: str) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    target = raw["datasets"]["shapes_cls"] if where == "dataset" else raw["report"]
    target["percentiles"] = [60.0, 40.0]
    with pytest.raises(ConfigError, match=r"percentiles: .*expected 0 <= low < high <= 100"):
        parse_params(raw)
