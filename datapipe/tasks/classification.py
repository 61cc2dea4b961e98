"""Image classification: one class label per image (class folders or ``labels.csv``)."""

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


class Classification(TaskModule):
    name = "classification"
    layouts = ("folders", "labels_csv")
    models = ("auto", "small_cnn", "resnet18", "resnet34", "resnet50")
    image_labels = True
    dense = False
    headline = "accuracy"
    label_issue_action = "relabel"
    # bench/score_levers.py, small_cnn, 1 thread: channels_last 1.35-1.42x, with bf16 autocast
    # (AMX CPU) 1.79-2.18x, label-issue F1 0.988 either way (digits, 20% noise)
    cpu_fast_paths = True

    def recipe_problems(self, recipe: Any) -> list[tuple[str, str]]:
        if "loss_dice" in recipe.loss.terms:
            return [("loss.terms.loss_dice", "Dice is a segmentation loss; use loss_ce or "
                     "loss_focal for classification")]  # fmt: skip
        return []

    def suggested_recipe(self, *, median_side: float, samples: int) -> dict[str, int]:
        """The typical shorter side, a multiple of 8 within 16..224; batch 64 up to 64 px, else
        32; train epochs 30 below 2,000 images, 20 below 20,000, else 12."""
        size = min(224, max(16, 8 * round(median_side / 8)))
        epochs = 30 if samples < 2000 else 20 if samples < 20000 else 12
        return {"image_size": size, "batch_size": 64 if size <= 64 else 32, "epochs": epochs}

    def detect_layout(self, root: Path) -> str:
        from datapipe.manifest import detect_labelled_layout

        return detect_labelled_layout(root)

    def ingest_targets(self, table: pd.DataFrame, probes: Sequence[Any], dataset: Any) -> Any:
        from datapipe.ingest import label_targets

        return label_targets(table, probes, dataset)

    def sample_labels(self, manifest: pd.DataFrame) -> np.ndarray:
        return manifest["label_index"].fillna(0).to_numpy(np.int64)

    def class_counts(
        self, labels: np.ndarray, stats: RunStats, classes: Sequence[str]
    ) -> np.ndarray:
        """Samples per class; negative labels (unusable rows) are skipped."""
        labels = np.asarray(labels, np.int64)
        return np.bincount(labels[labels >= 0], minlength=len(classes)).astype(np.float64)

    def build_model(
        self, recipe: Any, *, in_channels: int, num_classes: int, key: str
    ) -> nn.Module:
        from datapipe.models import build_classifier

        return build_classifier(
            recipe.model, in_channels=in_channels, num_classes=num_classes,
            image_size=recipe.image_size, weights=recipe.weights, key=key,
        )  # fmt: skip

    def score(self, job: ScoreJob) -> ScoreResult | None:
        from datapipe.score import score_classification

        return score_classification(job)

    def metrics(self, confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
        from datapipe.metrics import classification_metrics

        return classification_metrics(confusion, list(classes))
