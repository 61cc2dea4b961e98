"""Per-dataset recipes and the resolved params files DVC tracks instead of params.yaml."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from datapipe.config import parse_params
from datapipe.errors import ConfigError
from stages.resolve import STAGE_PARAMS
from stages.resolve import body as resolve
from tests.conftest import REPO

RAW: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())


def _resolved(raw: dict[str, Any], tmp: Path) -> dict[tuple[str, str], str]:
    params = parse_params(raw)
    out = {}
    for name in params.datasets:
        for path in resolve(params, params.dataset(name), tmp / name, name):
            out[(name, path.stem)] = path.read_text()
    return out


def _changed(edit: Any, tmp_path: Path) -> set[tuple[str, str]]:
    before = _resolved(RAW, tmp_path / "a")
    raw = copy.deepcopy(RAW)
    edit(raw)
    after = _resolved(raw, tmp_path / "b")
    assert before.keys() == after.keys()
    return {key for key in before if before[key] != after[key]}


def _set(*path: str, value: Any) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        node = raw
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _set("datasets", "shapes_cls", "score", "image_size", value=32),
            {("shapes_cls", "score")},
        ),
        (_set("datasets", "shapes_seg", "train", "epochs", value=3), {("shapes_seg", "train")}),
        (_set("score", "segmentation", "epochs", value=3), {("shapes_seg", "score")}),
        (_set("workers", value=0), set()),
        (
            _set("clean", "near_duplicate_bits", value=6),
            {
                (name, "clean")
                for name in (
                    "shapes_cls",
                    "shapes_seg",
                    "shapes_det",
                    "shapes_det_voc",
                    "shapes_inst",
                )
            },
        ),
        (  # box_tiny measures boxes at the detector's input size: clean reads it
            _set("train", "detection", "image_size", value=96),
            {
                (name, s)
                for name in ("shapes_det", "shapes_det_voc")
                for s in ("clean", "train", "preview", "evaluate")
            },
        ),
        (
            _set("train", "classification", "image_size", value=32),
            {("shapes_cls", s) for s in ("train", "preview", "evaluate")},
        ),
    ],
    ids=[
        "dataset-score",
        "dataset-train",
        "task-score",
        "workers",
        "clean",
        "detector-size",
        "task-image-size",
    ],
)
def test_a_change_reaches_only_the_stages_that_read_it(edit, expected, tmp_path: Path) -> None:
    assert _changed(edit, tmp_path) == expected


def test_dataset_recipes_merge_over_the_task_recipe_section_by_section() -> None:
    raw = copy.deepcopy(RAW)
    raw["datasets"]["shapes_cls"]["train"] = {"epochs": 3, "loss": {"label_smoothing": 0.1}}
    params = parse_params(raw)
    recipe = params.train_recipe("shapes_cls")
    task = params.train.classification
    assert (recipe.epochs, recipe.loss.label_smoothing) == (3, 0.1)
    assert recipe.loss.terms == task.loss.terms  # the rest of the section is the task's
    assert recipe.image_size == task.image_size
    assert params.train_recipe("shapes_seg") == params.train.segmentation


def test_a_typo_in_a_dataset_recipe_names_its_full_path() -> None:
    raw = copy.deepcopy(RAW)
    raw["datasets"]["shapes_cls"]["score"] = {"imagesize": 32}
    with pytest.raises(ConfigError, match=r"datasets\.shapes_cls\.score\.imagesize: unknown key"):
        parse_params(raw)


def test_every_stage_depends_on_its_resolved_params_and_on_no_params_section() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == {"resolve", *STAGE_PARAMS}
    for name, stage in stages.items():
        if name == "resolve":
            continue
        assert "params" not in stage["do"], name
        assert f"runs/${{key}}/params/{name}.json" in stage["do"]["deps"], name


def test_editing_one_review_sheet_changes_only_that_datasets_curate_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # resolve reads reviews/<dataset>.csv from the project folder
    (tmp_path / "reviews").mkdir()
    sheet = tmp_path / "reviews" / "shapes_cls.csv"
    without = _resolved(RAW, tmp_path / "none")
    sheet.write_text("sample_id,decision\nabc,\n")
    exported = _resolved(RAW, tmp_path / "exported")
    sheet.write_text("sample_id,decision\nabc,drop\n")
    decided = _resolved(RAW, tmp_path / "decided")
    for before, after in ((without, exported), (exported, decided)):
        assert {key for key in before if before[key] != after[key]} == {("shapes_cls", "curate")}
    review = json.loads(decided[("shapes_cls", "curate")])["review"]
    assert review == {
        "file": "reviews/shapes_cls.csv",
        "sha256": hashlib.sha256(sheet.read_bytes()).hexdigest(),
    }
    assert json.loads(decided[("shapes_seg", "curate")])["review"]["sha256"] is None


def test_curate_depends_on_its_resolved_sheet_hash_not_on_the_reviews_folder() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "reviews" not in stages["curate"]["do"]["deps"]
    assert "reviews" in stages["resolve"]["do"]["deps"]  # so the hash is always current
