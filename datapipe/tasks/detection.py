"""Object detection: boxes per image (COCO JSON, Pascal VOC XML or YOLO txt), one row per object
in ``objects.parquet``; torchvision detectors out of fold and for the final model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from datapipe.errors import ConfigError
from datapipe.tasks.base import TaskModule

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from datapipe.runs import RunStats
    from datapipe.score import ScoreJob, ScoreResult


class Detection(TaskModule):
    name = "detection"
    layouts: ClassVar[tuple[str, ...]] = ("coco", "voc", "yolo")
    models: ClassVar[tuple[str, ...]] = (
        "auto", "fasterrcnn_small", "fcos_small", "fasterrcnn_resnet18_fpn",
        "retinanet_resnet18_fpn", "fcos_resnet18_fpn", "fasterrcnn_mobilenet_v3_fpn",
    )  # fmt: skip
    image_labels = False
    dense = False
    objects = True
    min_classes = 1  # background is the implicit other class
    headline = "map_50"
    default_model = "fasterrcnn_small"  # what ``model: auto`` builds
    label_issue_action = "downweight"  # per image; boxes get their own actions (detect.curate)

    def recipe_problems(self, recipe: Any) -> list[tuple[str, str]]:
        found = []
        if recipe.loss.model_copy(update={"label_smoothing": 0.0}) != type(recipe.loss)():
            found.append((
                "loss", "detectors compute their own losses (classification, box regression, "
                "centre-ness); leave loss: at its defaults but for label_smoothing (the R-CNN "
                "box classifier's)",
            ))  # fmt: skip
        found += _knob_problems(recipe, self.default_model)
        mix = getattr(recipe, "mix", None)  # train recipes only
        if mix is not None and mix.cutmix_alpha > 0:
            found.append((
                "mix.cutmix_alpha", "cutmix is not defined for boxes; use mix.mixup_alpha "
                "(detection mixup keeps both images' boxes)",
            ))  # fmt: skip
        return found

    def suggested_recipe(self, *, median_side: float, samples: int) -> dict[str, int]:
        """The typical shorter side, a multiple of 32 within 128..640; batch 8 up to 320 px,
        else 4; train epochs 36 below 2,000 images, else 24."""
        size = min(640, max(128, 32 * round(median_side / 32)))
        return {"image_size": size, "batch_size": 8 if size <= 320 else 4,
                "epochs": 36 if samples < 2000 else 24}  # fmt: skip

    def detect_layout(self, root: Path) -> str:
        from datapipe.objects import detect_object_layout

        return detect_object_layout(root)

    def ingest_targets(self, table: pd.DataFrame, probes: Sequence[Any], dataset: Any) -> Any:
        from datapipe.ingest import object_targets

        return object_targets(table, probes, dataset)

    def sample_labels(self, manifest: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(manifest), np.int64)  # the targets are the objects

    def class_counts(
        self, labels: np.ndarray, stats: RunStats, classes: Sequence[str]
    ) -> np.ndarray:
        """Annotated objects per class (stats.json's ``object_counts``)."""
        return np.array([float(stats.object_counts.get(c, 0)) for c in classes])

    def build_model(
        self, recipe: Any, *, in_channels: int, num_classes: int, key: str
    ) -> nn.Module:
        """``auto`` is ``fasterrcnn_small`` (the CPU detector whose softmax scores reach the
        0.95 cleanlab's overlooked and swap scores ask of a prediction)."""
        from datapipe.models import build_detector

        if recipe.model == "auto":
            recipe = recipe.model_copy(update={"model": self.default_model})
        knobs = recipe.detector
        min_size = tuple(knobs.min_size) if knobs.min_size else recipe.image_size
        return build_detector(
            recipe.model, in_channels=in_channels, num_classes=num_classes,
            min_size=min_size if not isinstance(min_size, tuple) or len(min_size) > 1
            else min_size[0],
            max_size=knobs.max_size or max(recipe.image_size, *(knobs.min_size or [0])),
            detections_per_img=knobs.detections_per_img, anchor_sizes=knobs.anchor_sizes,
            aspect_ratios=knobs.aspect_ratios, options=knobs.head_options(),
            label_smoothing=recipe.loss.label_smoothing, weights=recipe.weights, key=key,
        )  # fmt: skip

    def score(self, job: ScoreJob) -> ScoreResult | None:
        from datapipe.detect.score import score_detection

        return score_detection(job)

    def metrics(self, confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
        """Per-class recall and precision of the held-out objects matched by class
        (``confusion`` rows = given class, the last row and column = background: a missed
        object or a prediction on nothing). COCO mAP needs the predictions themselves:
        ``datapipe.scoring.coco_eval`` (evaluate)."""
        from datapipe.metrics import classification_metrics

        return classification_metrics(confusion, [*classes, "background"])


class InstanceSegmentation(Detection):
    """Boxes plus one mask per object (COCO polygons / RLE, YOLO segmentation polygons):
    Mask R-CNN out of fold and for the final model, mask issues and mask AP / AR."""

    name = "instance_segmentation"
    layouts = ("coco", "yolo")  # Pascal VOC XML carries no instance masks
    models: ClassVar[tuple[str, ...]] = ("auto", "maskrcnn_small", "maskrcnn_resnet18_fpn")
    instance_masks = True
    headline = "mask_map_50"
    default_model = "maskrcnn_small"


def _knob_problems(recipe: Any, default_model: str) -> list[tuple[str, str]]:
    """The detector knobs the chosen model cannot take (no torch: the params check runs it)."""
    from datapipe.detect import knobs

    name = default_model if recipe.model == "auto" else recipe.model
    found = []
    if recipe.loss.label_smoothing > 0 and knobs.family(name) != "rcnn":
        found.append(("loss.label_smoothing", f"{name} has no softmax box classifier (sigmoid "
                      "focal loss); label smoothing applies to the R-CNNs"))  # fmt: skip
    try:
        knobs.head_kwargs(name, recipe.detector.head_options(), "")
        knobs.anchor_layout(name, recipe.detector.anchor_sizes, recipe.detector.aspect_ratios, "")
    except ConfigError as err:
        where, _, why = str(err).partition(": ")
        found.append((where.removeprefix(".").strip(), why))
    return found
