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

import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.config import DatasetParams, Params
from datapipe.runs import RunFiles
from datapipe.stage_params import STAGE_PARAMS
from stages.common import run_stage, write_json

__all__ = ["STAGE_PARAMS", "body", "main"]


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    folder = RunFiles.under(out).params
    return [
        write_json(folder / f"{stage}.json", fn(params, name)) for stage, fn in STAGE_PARAMS.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("resolve", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
