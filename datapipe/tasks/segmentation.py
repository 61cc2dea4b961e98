"""Semantic segmentation: one mask per image, decoded to class indices through the value LUT
(``images/`` + ``masks/`` or ``pairs.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapipe.tasks.base import TaskModule

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from datapipe.runs import RunStats
    from datapipe.score import ScoreJob, ScoreResult


class Segmentation(TaskModule):
    name = "segmentation"
    layouts = ("images_masks", "pairs_csv")
    models = ("auto", "unet", "lraspp_mobilenet_v3", "deeplabv3_mobilenet_v3")
    image_labels = False
    dense = True
    headline = "miou"
    label_issue_action = "downweight"  # a mask has no suggested class to relabel to

    def recipe_problems(self, recipe: Any) -> list[tuple[str, str]]:
        mix = getattr(recipe, "mix", None)  # train recipes only
        if mix is not None and mix.mixup_alpha > 0:
            return [("mix.mixup_alpha", "mixup is refused for segmentation (it would blend "
                     "two masks into labels no pixel has); use mix.cutmix_alpha")]  # fmt: skip
        return []

    def suggested_recipe(self, *, median_side: float, samples: int) -> dict[str, int]:
        """The typical shorter side, a multiple of 8 within 32..256 (larger images are resized
        down); batch 16 below 192 px, else 8; train epochs 40 below 1,000 images, 30 below
        5,000, else 20."""
        size = min(256, max(32, 8 * round(median_side / 8)))
        epochs = 40 if samples < 1000 else 30 if samples < 5000 else 20
        return {"image_size": size, "batch_size": 16 if size < 192 else 8, "epochs": epochs}

    def detect_layout(self, root: Path) -> str:
        from datapipe.manifest import detect_paired_layout

        return detect_paired_layout(root)

    def ingest_targets(self, table: pd.DataFrame, probes: Sequence[Any], dataset: Any) -> Any:
        from datapipe.ingest import mask_targets

        return mask_targets(table, probes, dataset)

    def sample_labels(self, manifest: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(manifest), np.int64)  # the targets are the masks

    def class_counts(
        self, labels: np.ndarray, stats: RunStats, classes: Sequence[str]
    ) -> np.ndarray:
        """Labelled pixels per class (stats.json's ``pixel_counts``)."""
        pixels = stats.pixel_counts
        return np.array([float(pixels.get(c, 0)) for c in classes])

    def build_model(
        self, recipe: Any, *, in_channels: int, num_classes: int, key: str
    ) -> nn.Module:
        from datapipe.models import build_segmenter

        return build_segmenter(
            recipe.model, in_channels=in_channels, num_classes=num_classes,
            weights=recipe.weights, key=key,
        )  # fmt: skip

    def score(self, job: ScoreJob) -> ScoreResult | None:
        from datapipe.score import score_segmentation_job

        return score_segmentation_job(job)

    def metrics(self, confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
        from datapipe.metrics import segmentation_metrics

        return segmentation_metrics(confusion, list(classes))
