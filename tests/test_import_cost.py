"""Ingest and clean never import the training stack (torch, torchvision, albumentations).

Each stage is a fresh process; torch alone costs ~1-2 s and ~500 MB before a single image is
read (bench/stage_startup.py). The checks run in a subprocess, so what this pytest process has
already imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "albumentations")

_RUN = """
import sys
from pathlib import Path
import cv2
import numpy as np
from datapipe.clean import clean
from datapipe.config import CleanParams, DatasetParams
from datapipe.ingest import ingest

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for i in range(6):
    (root / f"c{i % 2}").mkdir(exist_ok=True)
    cv2.imwrite(str(root / f"c{i % 2}" / f"{i}.png"), rng.integers(0, 256, (32, 32, 3), np.uint8))
dataset = DatasetParams(root=root, task="classification", folds=2)
ingested = ingest(dataset, name="t", workers=0)
clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0, name="t")
"""


def _heavy_after(code: str, *args: str) -> list[str]:
    loaded = f"sorted(set({HEAVY!r}) & set(sys.modules))"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({loaded}))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "modules",
    ["stages.ingest", "stages.clean", "datapipe.cli", "datapipe.ingest, datapipe.clean"],
    ids=["stages.ingest", "stages.clean", "cli", "library"],
)
def test_importing_does_not_load_the_training_stack(modules: str) -> None:
    assert _heavy_after(f"import {modules}") == []


def test_an_ingest_and_clean_run_does_not_load_the_training_stack(tmp_path: Path) -> None:
    assert _heavy_after(_RUN, str(tmp_path)) == []
