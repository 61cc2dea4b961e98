"""Stage preview@<dataset>: reports/augment_preview.png, a grid of training samples each
beside augmented views of itself (masks overlaid), from train.<task>.augment in params.yaml.
The pipeline is checked against the dataset's channel count first."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from datapipe.augment import Augment, build_pipeline, check_pipeline
from datapipe.augment.preview import augment_preview
from datapipe.config import DatasetParams, Params
from datapipe.data import manifest_items, sample_spec
from datapipe.errors import DatapipeError
from datapipe.io import atomic_path, read_table
from datapipe.runs import RunFiles, read_stats
from stages.common import run_stage


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    manifest = read_table(
        files.clean_manifest, required=("image", "split", "excluded", "height", "width")
    )
    stats = read_stats(files.stats)
    recipe = params.train_recipe(name)
    usable = manifest[(manifest["split"] == "train") & ~manifest["excluded"].astype(bool)]
    if usable.empty:
        raise DatapipeError("no usable training samples to preview")
    typical = (int(usable["height"].median()), int(usable["width"].median()))
    check_pipeline(
        recipe.augment, channels=stats.image_channels(), ignore_index=dataset.ignore_index,
        size=typical,
    )  # fmt: skip
    pick = np.random.default_rng(recipe.seed).permutation(len(usable))
    rows = usable.iloc[np.sort(pick[: params.train.preview_samples])]
    picture = augment_preview(
        manifest_items(rows),
        sample_spec(dataset, stats, size=recipe.image_size),
        Augment(build_pipeline(recipe.augment, ignore_index=dataset.ignore_index)),
        views=params.train.preview_views,
        seed=recipe.seed,
    )
    path = files.augment_preview
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
            raise DatapipeError(f"{path}: OpenCV could not write the preview PNG")
    return [path]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("preview", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
