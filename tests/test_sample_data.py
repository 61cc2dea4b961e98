"""The committed sample data is exactly what its generator makes, and it carries what it claims."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SAMPLE_DATA


def _generator():  # the script lives beside the data, not in the package
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", SAMPLE_DATA / "make_sample_data.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", ["shapes_cls", "shapes_seg"])
def test_regenerates_byte_identically(tmp_path: Path, name: str) -> None:
    _generator().generate(tmp_path)
    assert _digests(tmp_path / name) == _digests(SAMPLE_DATA / name)


def test_size_budget() -> None:
    total = sum(p.stat().st_size for p in SAMPLE_DATA.rglob("*") if p.is_file())
    assert total < 15 * 2**20


@pytest.mark.parametrize(
    ("name", "required"),
    [
        (
            "shapes_cls",
            {
                "label_flip",
                "truncated",
                "zero_byte",
                "exact_duplicate",
                "cross_format_duplicate",
                "near_duplicate",
                "conflicting_label_duplicate",
                "blank",
                "bit_depth_twin",
            },
        ),
        (
            "shapes_seg",
            {
                "mask_shifted",
                "mask_eroded",
                "mask_wrong_class",
                "truncated",
                "zero_byte",
                "exact_duplicate",
                "cross_format_duplicate",
                "near_duplicate",
                "conflicting_label_duplicate",
                "wrong_size_mask",
                "bad_mask_value",
                "blank",
                "bit_depth_twin",
            },
        ),
    ],
)
def test_planted_csv_lists_every_problem_kind_and_real_files(name: str, required: set[str]) -> None:
    planted = pd.read_csv(SAMPLE_DATA / name / "planted.csv", keep_default_na=False)
    assert list(planted.columns) == ["image", "problem", "true_label", "detail"]
    assert required == set(planted["problem"])
    assert all((SAMPLE_DATA / name / p).is_file() for p in planted["image"])


def test_about_eight_percent_of_labels_flipped_to_another_class() -> None:
    planted = pd.read_csv(SAMPLE_DATA / "shapes_cls" / "planted.csv", keep_default_na=False)
    flips = planted[planted["problem"] == "label_flip"]
    n_images = len(list((SAMPLE_DATA / "shapes_cls").glob("*/img_*")))
    assert 0.07 <= len(flips) / n_images <= 0.09
    assert (flips["image"].str.split("/").str[0] != flips["true_label"]).all()
