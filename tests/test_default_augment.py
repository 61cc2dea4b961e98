"""The default classification augmentation keeps labels: no vertical flips or 90° rotations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from datapipe.config import DEFAULT_AUGMENT, load_params

REPO = Path(__file__).resolve().parents[1]
ORIENTATION_CHANGERS = {"VerticalFlip", "RandomRotate90", "Transpose", "D4"}


def _names(spec: list[Any]) -> set[str]:
    found = set()
    for entry in spec:
        for name, args in entry.items():
            found.add(name)
            if isinstance(args, dict) and isinstance(args.get("transforms"), list):
                found |= _names(args["transforms"])
    return found


@pytest.mark.parametrize(
    "spec",
    [DEFAULT_AUGMENT, load_params(REPO / "params.yaml").train.classification.augment],
    ids=["config-default", "params-yaml"],
)
def test_default_classification_augment_never_changes_orientation(spec: list[Any]) -> None:
    names = _names(spec)
    assert "HorizontalFlip" in names
    assert names & ORIENTATION_CHANGERS == set()
