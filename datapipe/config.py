"""Typed params: one pydantic model per params.yaml section, unknown keys refused.

Every key except a dataset's ``root`` and ``task`` has a default or is inferred from the data,
so adding a dataset is one entry::

    datasets:
      my_cells: {root: /data/cells, task: segmentation}

A typo is an error that names the key (``datasets.my_cells.bit_dept: unknown key``).
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from datapipe import tasks
from datapipe.errors import ConfigError
from datapipe.tasks import Task

Layout = Literal[
    "auto", "folders", "labels_csv", "images_masks", "pairs_csv", "coco", "voc", "yolo"
]
BitDepthParam = Literal["auto", "percentile", 8, 10, 12, 14, 16]


def _ordered_percentiles(v: tuple[float, float]) -> tuple[float, float]:
    if not 0.0 <= v[0] < v[1] <= 100.0:
        raise ValueError(f"expected 0 <= low < high <= 100; got {list(v)}")
    return v


#: A ``(low, high)`` percentile pair, ordered, within 0..100.
Percentiles = Annotated[tuple[float, float], AfterValidator(_ordered_percentiles)]
RGB = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _non_negative(v: int | str) -> int | str:
    if isinstance(v, int) and v < 0:
        raise ValueError("expected 'auto' or an integer >= 0")
    return v


#: A process count: ``auto`` or an integer >= 0 (0 = in-process).
Workers = Annotated[int | Literal["auto"], AfterValidator(_non_negative)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(_Strict):
    """Fractions of samples per split; a sample's split follows from a hash of its path."""

    train: float = Field(0.7, ge=0.0, le=1.0)
    val: float = Field(0.15, ge=0.0, le=1.0)
    test: float = Field(0.15, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1; got {total:g}")
        if self.train == 0.0:
            raise ValueError("train must be > 0")
        return self

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


class CurateParams(_Strict):
    """What the curate stage does with flagged label issues (per dataset)."""

    label_issues: Literal["auto", "drop", "relabel", "downweight", "keep"] = Field(
        "auto", description="auto: relabel (classification), downweight (segmentation)"
    )
    relabel_min_prob: float = Field(
        0.8, gt=0, le=1, description="relabel only when the OOF probability of the suggestion "
        "is at least this; otherwise `otherwise` applies"
    )  # fmt: skip
    otherwise: Literal["drop", "downweight", "keep"] = Field(
        "downweight", description="flagged samples not confidently relabelled"
    )
    min_weight: float = Field(
        0.1, ge=0, le=1, description="down-weighted samples get max(min_weight, label_quality)"
    )
    boxes: Literal["fix", "drop", "keep"] = Field(
        "fix", description="object tasks, flagged boxes: fix = relabel / replace the box with a "
        "confident suggestion, drop them, or keep them as given"
    )  # fmt: skip
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train", "val"], description="splits the policy changes; test stays as given "
        "(reviews still apply), so evaluation is not graded by the scoring model"
    )  # fmt: skip


class DatasetParams(_Strict):
    """One entry of ``datasets:``: where the data is and how to read it."""

    root: Path = Field(description="folder holding the data; never modified")
    task: Task
    layout: Layout = Field("auto", description="detected from the folder when 'auto'")
    classes: list[str] | None = Field(
        None,
        description="class names in index order; default: sorted folder/CSV labels "
        "(classification) or mask values seen in >= min_class_images masks (segmentation)",
    )
    min_class_images: int = Field(
        2, ge=1, description="segmentation: a mask value is a class if it is in this many masks"
    )
    ignore_index: int = Field(
        255, ge=0, le=65535, description="mask value that marks unlabelled pixels (masks are "
        "8- or 16-bit, so 0..65535)"
    )  # fmt: skip
    mask_colors: dict[int, RGB] | None = Field(
        None, description="RGB colour masks: class id -> [r, g, b]"
    )
    mask_suffix: str = Field("", description="masks/<stem><mask_suffix>.* pairs images/<stem>.*")
    bit_depth: BitDepthParam = Field(
        "auto", description="integer scaling: auto (from the data's maximum), 8..16, percentile"
    )
    percentiles: Percentiles = Field((0.5, 99.5), description="for bit_depth=percentile")
    splits: SplitParams = SplitParams()
    folds: int = Field(5, ge=2, le=100, description="folds for out-of-fold scoring")
    seed: int = Field(0, description="seed of split and fold assignment")
    max_pixels: int = Field(1 << 28, ge=1, description="decompression-bomb guard, H x W")
    curate: CurateParams = CurateParams()
    score: dict[str, Any] = Field(
        {}, description="this dataset's recipe over score.<task>, e.g. {image_size: 224}"
    )
    train: dict[str, Any] = Field(
        {}, description="this dataset's recipe over train.<task>, e.g. {epochs: 40}"
    )

    @field_validator("root", mode="before")
    @classmethod
    def _some_root(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError(
                "expected a folder, not an empty path, which would read the current folder "
                "(write '.' if that is meant)"
            )
        return v

    @field_validator("mask_colors")
    @classmethod
    def _colors_for_masks(
        cls, v: dict[int, RGB] | None, info: ValidationInfo
    ) -> dict[int, RGB] | None:
        task = info.data.get("task")
        if v is not None and task in tasks.TASKS and not tasks.get(task).dense:
            raise ValueError("mask_colors maps mask colours to classes: segmentation only")
        return v

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        task = info.data.get("task")
        fewest = tasks.get(task).min_classes if task in tasks.TASKS else 2
        if v is not None:
            if len(v) < fewest:
                raise ValueError(f"needs at least {fewest} classes; got {v}")
            if len(set(v)) != len(v):
                raise ValueError(f"class names must be unique; got {v}")
        return v


#: Checks whose flags exclude a sample by default: every error, and the extra copies of an
#: exact duplicate (the first by path is kept).
DEFAULT_EXCLUDE = (
    "unreadable", "mask_unreadable", "channels_mismatch", "size_mismatch", "mask_values",
    "nonfinite", "blank", "exact_duplicate",
)  # fmt: skip


class BoxCheckParams(_Strict):
    """Annotation checks of object tasks (``datapipe.checks.boxes``)."""

    smallest_anchor: float = Field(
        8.0, gt=0, description="box_tiny: a box under a quarter of this side at the detector's "
        "input size (train.<task>.image_size) is tiny; the *_small detectors' is 8, "
        "torchvision's FPNs' 32"
    )  # fmt: skip
    max_aspect: float = Field(8.0, gt=1, description="box_aspect: longer / shorter side above")
    duplicate_iou: float = Field(
        0.9, gt=0, le=1, description="duplicate_box / class_overlap: IoU of two boxes from"
    )
    mask_box_iou: float = Field(
        0.5, ge=0, le=1, description="mask_box_mismatch: IoU of the mask's box with the box below"
    )
    edge_tolerance: float = Field(1.0, ge=0, description="px a box may overhang the image")


class CleanParams(_Strict):
    """Thresholds of the clean stage's checks and which flags exclude a sample."""

    boxes: BoxCheckParams = BoxCheckParams()

    near_duplicate_bits: int = Field(
        10, ge=0, le=16, description="candidates: max Hamming distance of 64-bit perceptual hashes"
    )
    near_duplicate_similarity: float = Field(
        0.85,
        ge=0,
        le=1,
        description="verified pairs: least pixel correlation of the two grey thumbnails",
    )
    near_duplicate_margin: float = Field(
        0.1,
        gt=0,
        le=1,
        description="verified pairs: 1 - correlation at most this share of the dataset's typical "
        "1 - correlation to a (second-nearest) neighbour",
    )
    # Intensity defaults measured by bench/clean_calibration.py (see datapipe.checks.intensity).
    z_threshold: float = Field(
        3.0, gt=0, description="robust z (median/MAD) beyond which blurry, low_information and "
        "saturated are flagged"
    )  # fmt: skip
    brightness_z: float = Field(
        3.0,
        gt=0,
        description="dark/bright: robust z of the log mean and of the log 99th (bright: 1st) "
        "percentile, both beyond this",
    )
    min_brightness_shift: float = Field(
        0.05, ge=0, le=1, description="dark/bright also need this shift from the median (unit)"
    )
    low_entropy: float = Field(
        0.4, gt=0, le=1, description="low_information also needs histogram entropy (0..1) below"
    )
    rare_dtype_share: float = Field(
        0.2, gt=0, le=1, description="a dtype held by fewer images than this share is flagged"
    )
    saturated_fraction: float = Field(
        0.15, gt=0, le=1, description="saturated also needs more than this share of clipped pixels"
    )
    mask_agreement: float = Field(
        0.9, ge=0, le=1, description="conflicting_labels (segmentation): least agreement of a "
        "duplicate's mask with its group's first (mean over classes of a Dice that forgives "
        "borders moved by 3% of the side, as objects move between video frames)"
    )  # fmt: skip
    size_factor: float = Field(4.0, gt=1, description="area this many times off the median")
    aspect_factor: float = Field(2.0, gt=1, description="aspect this many times off the median")
    exclude: list[str] = Field(
        list(DEFAULT_EXCLUDE), description="checks whose (non-info) flags exclude a sample"
    )
    repair_leakage: bool = Field(True, description="move duplicate groups into one split")
    max_leakage_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="leakage repair stops (moves nothing, reports) if it would move this "
        "share of any split's samples or more (0.5: it never halves a split)",
    )


AugmentList = list[dict[str, dict[str, Any] | None]]
#: Label-preserving on ordinary data: no vertical flips or 90-degree rotations (they turn a 6
#: into a 9, a gesture or a street scene into another picture); opt in with params.yaml where
#: orientation means nothing (micrographs, aerial tiles). A horizontal flip still changes some
#: labels (text, left/right classes): override ``augment`` without it for those.
DEFAULT_AUGMENT: AugmentList = [
    {"HorizontalFlip": {"p": 0.5}},
    {"Affine": {"scale": [0.9, 1.1], "translate_percent": [-0.05, 0.05], "rotate": [-10, 10],
                "p": 0.5}},
    {"RandomBrightnessContrast": {"brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.3}},
]  # fmt: skip


ClassWeighting = Literal["none", "inverse", "median_frequency", "effective_number"]


#: The loss names of ``loss.terms`` (``datapipe.losses.terms.TERMS``; a test keeps them equal,
#: so loading params needs no torch).
LOSS_TERMS = ("loss_ce", "loss_focal", "loss_dice", "loss_bce", "loss_sigmoid_focal")


class LossParams(_Strict):
    """A weighted sum of named losses and their options (see datapipe.losses)."""

    terms: dict[str, float] = Field(
        {"loss_ce": 1.0},
        description="loss_ce, loss_focal, loss_dice, loss_bce, loss_sigmoid_focal -> weight",
    )
    class_weight: list[float] | ClassWeighting = Field(
        "none", description="per-class CE weights: a list, or from the curated class counts"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    avg_non_ignore: bool = Field(True, description="average over non-ignored pixels only")
    focal_gamma: float = Field(2.0, ge=0)
    ohem_thresh: float | None = Field(
        None, gt=0, lt=1, description="segmentation OHEM: keep pixels with p(true) below this"
    )
    ohem_min_kept: int | None = Field(None, ge=1, description="segmentation OHEM: per image")
    ohem_keep_ratio: float | None = Field(
        None, gt=0, le=1, description="classification OHEM: the hardest share of each batch"
    )

    @field_validator("terms")
    @classmethod
    def _known_terms(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError(f"expected at least one loss from {list(LOSS_TERMS)}")
        for name, weight in v.items():
            if name not in LOSS_TERMS:
                close = difflib.get_close_matches(name, LOSS_TERMS, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown loss {name!r}{hint}; known: {list(LOSS_TERMS)}")
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"expected a finite weight >= 0 for {name!r}; got {weight}")
        return v


class MixParams(_Strict):
    """Batch mixing (datapipe.augment.batch); alpha 0 turns a kind off."""

    mixup_alpha: float = Field(0.0, ge=0, description="classification only")
    cutmix_alpha: float = Field(0.0, ge=0, description="cuts masks with images for segmentation")
    prob: float = Field(1.0, ge=0, le=1, description="share of batches that are mixed")
    switch_prob: float = Field(0.5, ge=0, le=1, description="cutmix share when both are on")


class CurriculumParams(_Strict):
    """Hard-example scheduling from the curated difficulty (datapipe.curriculum)."""

    pacing: Literal["none", "linear", "root", "step"] = Field(
        "none", description="start with the easiest share, reach all kept data at full_epoch"
    )
    start: float = Field(0.5, gt=0, le=1, description="share of kept data in epoch 0")
    full_epoch: int | None = Field(None, ge=1, description="default: half of the epochs")
    oversample_alpha: float = Field(
        0.0, ge=0, description="after pacing, draw samples with p ~ difficulty^alpha; 0 = off"
    )


class _Fit(_Strict):
    """Model, optimiser, schedule and loss: the recipe the score and train stages share (both
    train through ``datapipe.loop.fit``)."""

    model: str = Field("auto", description="see datapipe.models; auto picks by task and size")
    weights: str | None = Field(None, description="local state_dict to start from; never fetched")
    image_size: int = Field(64, ge=8, le=4096, description="images are resized to this square")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=2)
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd: nesterov, momentum 0.9")
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    schedule: Literal["cosine", "step", "plateau"] = Field(
        "cosine", description="after warmup; plateau steps on the validation metric"
    )
    milestones: list[Annotated[int, Field(ge=1)]] = Field(
        [], description="step schedule: epochs where lr *= gamma, increasing, before the last"
    )
    gamma: float = Field(0.1, gt=0, le=1)
    tie_weight_decay: bool = Field(False, description="plateau: scale weight decay with the LR")
    lr_mult: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        {}, description="lr multiplier by parameter-name key, e.g. {head: 10.0}; each key must "
        "match a parameter of the model (checked when the train stage builds it)"
    )  # fmt: skip
    clip_grad: float | None = Field(None, gt=0, description="max gradient norm")
    ema: float | None = Field(None, gt=0, lt=1, description="EMA decay of the weights")
    loss: LossParams = LossParams()

    @field_validator("lr_mult")
    @classmethod
    def _lr_mult_keys(cls, v: dict[str, float]) -> dict[str, float]:
        if any(not key.strip() for key in v):
            raise ValueError("expected parameter-name keys (e.g. head), not an empty one")
        return v

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v: list[int], info: ValidationInfo) -> list[int]:
        if not v:
            return v
        schedule, epochs = info.data.get("schedule"), info.data.get("epochs")
        if schedule != "step":
            raise ValueError(f"milestones are for schedule: step; got schedule {schedule!r}")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("expected strictly increasing epochs")
        if epochs is not None and v[-1] >= epochs:
            raise ValueError(
                f"expected epochs before the last (epochs {epochs}); got {v[-1]}, which would "
                "never apply"
            )
        return v


class FitParams(_Fit):
    """How the out-of-fold models of one task train (the score stage)."""

    flip: bool = Field(True, description="random horizontal and vertical flips while training")


def _check_augment_shape(spec: list[Any], where: str) -> None:
    """``[{Name: {args} | None}, ...]`` with identifier names, nested ``transforms`` lists too."""
    for i, item in enumerate(spec):
        here = f"{where}[{i}]"
        if not (isinstance(item, dict) and len(item) == 1):
            raise ValueError(f"{here}: expected a one-key mapping {{Name: {{args}}}}; got {item!r}")
        ((name, args),) = item.items()
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"{here}: {name!r} is not a transform name")
        inner = (args or {}).get("transforms")
        if inner is not None:
            if not isinstance(inner, list):
                raise ValueError(f"{here}.{name}.transforms: expected a list; got {inner!r}")
            _check_augment_shape(inner, f"{here}.{name}.transforms")


class TrainTaskParams(_Fit):
    """How the final model of one task trains (the train stage)."""

    augment: AugmentList = Field(
        DEFAULT_AUGMENT, description="albumentations transforms: [{Name: {arg: value}}, ...]"
    )
    mix: MixParams = MixParams()
    curriculum: CurriculumParams = CurriculumParams()
    multi_scale: list[Annotated[int, Field(ge=8, le=4096)]] | None = Field(
        None, min_length=1, description="train sizes, one drawn per batch (e.g. 320..608 step 32)"
    )
    multi_scale_every: int = Field(1, ge=1, description="batches between size draws")
    sample_weights: bool = Field(True, description="curation weights multiply the loss")
    sync_bn: bool = Field(True, description="SyncBatchNorm when world size > 1")
    tta: Literal["none", "flip", "five_crop", "ten_crop"] = Field(
        "none", description="evaluation test-time augmentation (crops: classification only)"
    )
    seed: int = 0

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: AugmentList) -> AugmentList:
        """The shape only; albumentations checks names and arguments in the stages that augment
        (preview, train: ``datapipe.augment.build_pipeline``), so loading params never imports it
        (nor torch), and a typo in a transform fails only those stages."""
        _check_augment_shape(v, "augment")
        return v


class DetectorParams(_Strict):
    """torchvision detector knobs (``datapipe.models.build_detector``)."""

    min_size: list[Annotated[int, Field(ge=8, le=4096)]] | None = Field(
        None, min_length=1, description="shorter side the detector resizes to; several = one "
        "drawn per training batch (multi-scale); default: image_size"
    )  # fmt: skip
    max_size: int | None = Field(None, ge=8, description="longer side cap; default: image_size")
    detections_per_img: int = Field(
        100, ge=1, description="kept per image; evaluation's AR@max_detections uses the same"
    )
    anchor_sizes: list[list[Annotated[int, Field(ge=1)]]] | None = Field(
        None, description="anchor sizes in input pixels, one list per feature level (the small "
        "detectors have 2 levels: [[8, 16], [24, 48]]; the ResNet FPNs 5); default: the model's"
    )  # fmt: skip
    aspect_ratios: list[list[Annotated[float, Field(gt=0)]]] | None = Field(
        None, description="anchor height / width ratios: one list for every level, or one per "
        "level; default: the model's ([1.0] small, [0.5, 1, 2] FPN)"
    )  # fmt: skip
    rpn_pre_nms_top_n: int | None = Field(
        None, ge=1, description="R-CNN proposals per level before NMS (training and test)"
    )  # fmt: skip
    rpn_post_nms_top_n: int | None = Field(
        None, ge=1, description="R-CNN proposals kept after NMS (training and test); keep it "
        "above the most objects an image has, and above detections_per_img"
    )  # fmt: skip
    rpn_nms_thresh: float | None = Field(None, gt=0, le=1, description="R-CNN proposal NMS IoU")
    rpn_fg_iou_thresh: float | None = Field(None, gt=0, le=1, description="anchor positive IoU")
    rpn_bg_iou_thresh: float | None = Field(None, ge=0, lt=1, description="anchor negative IoU")
    rpn_batch_size_per_image: int | None = Field(None, ge=1, description="anchors sampled")
    rpn_positive_fraction: float | None = Field(None, gt=0, le=1)
    box_score_thresh: float | None = Field(
        None, ge=0, lt=1, description="predictions below this score are dropped (all families)"
    )
    box_nms_thresh: float | None = Field(None, gt=0, le=1, description="per-class NMS IoU")
    box_fg_iou_thresh: float | None = Field(None, gt=0, le=1, description="RoI positive IoU")
    box_bg_iou_thresh: float | None = Field(None, ge=0, lt=1, description="RoI negative IoU")
    box_batch_size_per_image: int | None = Field(None, ge=1, description="RoIs sampled")
    box_positive_fraction: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _anchors(self) -> Self:
        for level, sizes in enumerate(self.anchor_sizes or []):
            if not sizes:
                raise ValueError(f"anchor_sizes[{level}]: at least one size")
        for level, ratios in enumerate(self.aspect_ratios or []):
            if not ratios:
                raise ValueError(f"aspect_ratios[{level}]: at least one ratio")
        for lo, hi in (("rpn_bg_iou_thresh", "rpn_fg_iou_thresh"),
                       ("box_bg_iou_thresh", "box_fg_iou_thresh")):  # fmt: skip
            low, high = getattr(self, lo), getattr(self, hi)
            if low is not None and high is not None and low > high:
                raise ValueError(f"{lo} {low} is above {hi} {high}")
        return self

    def head_options(self) -> dict[str, Any]:
        """The thresholds and sampler sizes set (torchvision's names), for ``build_detector``."""
        skip = {"min_size", "max_size", "detections_per_img", "anchor_sizes", "aspect_ratios"}
        return {k: v for k, v in self.model_dump().items() if k not in skip and v is not None}


class DetectionFitParams(FitParams):
    """Out-of-fold detectors (the score stage, task detection)."""

    detector: DetectorParams = DetectorParams()
    # bench/detection_oof.py: flips left the held-out mAP@0.5 as it was (0.966 / 0.962 on
    # shapes_det, 0.554 / 0.567 on real nuclei) and cost wrong-class flags (3/6 against 6/6)
    flip: bool = Field(
        False, description="random horizontal and vertical flips of images, boxes and masks"
    )


class DetectionTrainParams(TrainTaskParams):
    """The final detector (the train stage, task detection)."""

    detector: DetectorParams = DetectorParams()
    min_visibility: float = Field(
        0.3, ge=0, le=1, description="a box cut by augmentation to less of its area is dropped"
    )


class TrainParams(_Strict):
    """The train and evaluate stages."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    amp: bool = Field(True, description="bfloat16 autocast on CUDA; ignored on the CPU")
    loader_workers: Workers = Field("auto", description="DataLoader processes")
    resume: Literal["auto", "never"] = Field(
        "auto", description="auto: continue from runs/<ds>/checkpoint.pt when it matches"
    )
    classification: TrainTaskParams = TrainTaskParams()
    segmentation: TrainTaskParams = TrainTaskParams(
        image_size=128, batch_size=8, optimizer="adamw", lr=1e-3, weight_decay=0.01,
        loss=LossParams(terms={"loss_ce": 1.0, "loss_dice": 1.0}),
    )  # fmt: skip
    detection: DetectionTrainParams = DetectionTrainParams(
        model="fasterrcnn_small", image_size=128, batch_size=8, optimizer="adamw", lr=2e-3,
        weight_decay=1e-4, augment=[{"HorizontalFlip": {"p": 0.5}}],
    )  # fmt: skip
    instance_segmentation: DetectionTrainParams = DetectionTrainParams(
        model="maskrcnn_small", image_size=128, batch_size=8, optimizer="adamw", lr=2e-3,
        weight_decay=1e-4, augment=[{"HorizontalFlip": {"p": 0.5}}],
    )  # fmt: skip
    preview_samples: int = Field(6, ge=1, le=64, description="rows of augment_preview.png")
    preview_views: int = Field(5, ge=1, le=16, description="augmented views per row")

    def resolved_loader_workers(self, workers: int) -> int:
        """``loader_workers``, with ``auto`` = the decode ``workers``."""
        return workers if self.loader_workers == "auto" else int(self.loader_workers)


class ScoreParams(_Strict):
    """The score stage: out-of-fold models, label issues, hard / easy examples."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    amp: bool = Field(True, description="bfloat16 autocast on CUDA; ignored on the CPU")
    cpu_bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bfloat16 autocast of the out-of-fold classifiers on the CPU; auto: "
        "where the CPU has bf16 instructions (AMX / AVX512-BF16), which make it faster"
    )  # fmt: skip
    loader_workers: Workers = Field(
        "auto", description="DataLoader processes when images stream from disk"
    )
    max_cache_gb: float = Field(
        2.0, gt=0, description="decoded images above this size stream from disk instead"
    )
    classification: FitParams = FitParams(image_size=64, epochs=20)
    segmentation: FitParams = FitParams(image_size=128, epochs=20, batch_size=8, lr=0.02)
    detection: DetectionFitParams = DetectionFitParams(
        model="fasterrcnn_small", image_size=128, epochs=25, batch_size=8, optimizer="adamw",
        lr=2e-3, weight_decay=1e-4,
    )  # fmt: skip
    instance_segmentation: DetectionFitParams = DetectionFitParams(
        model="maskrcnn_small", image_size=128, epochs=30, batch_size=8, optimizer="adamw",
        lr=2e-3, weight_decay=1e-4,
    )  # fmt: skip
    min_suggest_prob: float = Field(
        0.5, gt=0, le=1, description="suggest another label only when its OOF prob is this high"
    )
    hard_loss_quantile: float = Field(0.9, gt=0, lt=1, description="top loss tail = hard")
    easy_prob: float = Field(0.9, gt=0, lt=1, description="p(given) at least this = easy")
    hard_negative_prob: float = Field(0.5, gt=0, lt=1, description="p(other) this high = hard")
    seg_issue_fraction: Annotated[float, Field(gt=0, le=1)] | Literal["auto"] = Field(
        "auto", description="segmentation: flag an image with this share of issue pixels; auto: "
        "median + 3 MAD of the dataset's shares, at least 0.01 (scoring.segmentation)"
    )  # fmt: skip
    hard_pixel_fraction: float = Field(
        0.2, gt=0, le=1, description="segmentation: share of missed / false-alarm pixels = hard"
    )
    keep_probs: bool = Field(
        False, description="segmentation: keep the float16 probability shards after scoring"
    )


class ReportParams(_Strict):
    """What the report stage's HTML page shows, and how large it may get."""

    max_cards: int = Field(
        200, ge=1, description="cards per section (issues, label issues, duplicate groups, "
        "galleries); the rest are counted, not shown"
    )  # fmt: skip
    gallery_per_class: int = Field(
        12, ge=1, description="hard positives and hard negatives shown per class (each)"
    )
    page_size: int = Field(48, ge=1, description="cards per page; longer lists paginate")
    thumb_size: int = Field(96, ge=32, le=512, description="thumbnail square, pixels")
    jpeg_quality: int = Field(
        80, ge=10, le=100, description="each thumbnail is the smaller of this JPEG and a PNG"
    )
    channels: list[int] | None = Field(
        None, description="image channels shown as R, G, B (one: grey); default the first three"
    )
    percentiles: Percentiles = Field((1.0, 99.0), description="display stretch")
    stretch: Literal["auto", "always"] = Field(
        "auto", description="auto: 8-bit grey / RGB(A) shown as stored (a dark image stays "
        "dark), every other image percentile-stretched; always: stretch every image"
    )  # fmt: skip

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not 1 <= len(v) <= 3 or min(v) < 0):
            raise ValueError(f"expected 1 to 3 channel indices >= 0; got {v}")
        return v


class Params(_Strict):
    """The whole of params.yaml."""

    datasets: dict[str, DatasetParams]
    workers: Workers = Field(
        "auto", description="decode processes of ingest and clean; 0 = in-process, auto = CPUs"
    )
    clean: CleanParams = CleanParams()
    score: ScoreParams = ScoreParams()
    train: TrainParams = TrainParams()
    report: ReportParams = ReportParams()

    @field_validator("datasets")
    @classmethod
    def _names(cls, v: dict[str, DatasetParams]) -> dict[str, DatasetParams]:
        if not v:
            raise ValueError("needs at least one dataset entry")
        for name in v:
            if not _DATASET_NAME.match(name):
                raise ValueError(f"dataset name {name!r} must be letters, digits, '_', '.', '-'")
        return v

    def resolved_workers(self) -> int:
        if self.workers == "auto":
            return (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
        return max(0, self.workers)

    def score_recipe(self, name: str) -> FitParams:
        """``score.<task>`` with ``datasets.<name>.score`` merged over it."""
        dataset = self.dataset(name)
        base = getattr(self.score, dataset.task)
        return _merged(base, dataset.score, f"datasets.{name}.score")

    def train_recipe(self, name: str) -> TrainTaskParams:
        """``train.<task>`` with ``datasets.<name>.train`` merged over it (see :func:`_merge`)."""
        dataset = self.dataset(name)
        base = getattr(self.train, dataset.task)
        return _merged(base, dataset.train, f"datasets.{name}.train")

    def score_params(self, name: str) -> ScoreParams:
        """The score section as dataset ``name`` sees it: its task's recipe merged."""
        task = self.dataset(name).task
        return self.score.model_copy(update={task: self.score_recipe(name)})

    def dataset(self, name: str) -> DatasetParams:
        try:
            return self.datasets[name]
        except KeyError:
            raise ConfigError(
                f"datasets.{name}: no such dataset; params.yaml has {sorted(self.datasets)}"
            ) from None


def parse_params(raw: Any, *, source: str = "params.yaml") -> Params:
    """Validate a loaded params mapping; errors name every bad key with its dotted path
    (per-dataset recipes included: ``datasets.x.train.epocs: unknown key``)."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    try:
        for name in params.datasets:
            params.score_recipe(name)
            params.train_recipe(name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for task in tasks.TASKS:
        for stage in ("score", "train"):
            for key, problem in _task_problems(getattr(getattr(params, stage), task), task):
                raise ConfigError(f"{source}: {stage}.{task}.{key}: {problem}")
    for name, dataset in params.datasets.items():  # what a dataset's own recipe brought in
        recipes = {"score": params.score_recipe(name), "train": params.train_recipe(name)}
        for stage, recipe in recipes.items():
            for key, problem in _task_problems(recipe, dataset.task):
                raise ConfigError(f"{source}: datasets.{name}.{stage}.{key}: {problem}")
    return params


#: Model names per task (``datapipe.models``' factories; a test keeps them equal, so loading
#: params needs no torch).
MODEL_NAMES: dict[str, tuple[str, ...]] = {name: t.models for name, t in tasks.TASKS.items()}


def _task_problems(recipe: _Fit, task: str) -> list[tuple[str, str]]:
    """``(key, what is wrong)`` for the parts of a recipe its task (or stage) cannot use."""
    found = []
    if recipe.model not in MODEL_NAMES[task]:
        close = difflib.get_close_matches(recipe.model, MODEL_NAMES[task], n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        found.append(("model", f"unknown {task} model {recipe.model!r}{hint}; known: "
                      f"{list(MODEL_NAMES[task])}"))  # fmt: skip
    found += tasks.get(task).recipe_problems(recipe)
    if isinstance(recipe, FitParams) and recipe.schedule == "plateau":
        found.append(("schedule", "plateau steps on a validation metric, which out-of-fold "
                      "scoring has none of; use cosine or step"))  # fmt: skip
    return found


_Recipe = TypeVar("_Recipe", FitParams, TrainTaskParams)


def _merged(base: _Recipe, override: dict[str, Any], path: str) -> _Recipe:
    """``base`` with ``override`` merged over it, validated as strictly as params.yaml."""
    if not override:
        return base
    try:
        return type(base).model_validate(_merge(base, override))
    except ValidationError as exc:
        errors = "; ".join(_describe(e, prefix=path, model=type(base)) for e in exc.errors())
        raise ConfigError(errors) from None


def _merge(base: BaseModel, override: dict[str, Any]) -> dict[str, Any]:
    """Sections (``loss``, ``mix``, ``curriculum``) merge key by key; every other value,
    mappings such as ``loss.terms`` and lists such as ``augment`` included, is replaced."""
    out = base.model_dump()
    for key, value in override.items():
        section = getattr(base, key, None)
        out[key] = (
            _merge(section, value)
            if isinstance(section, BaseModel) and isinstance(value, dict)
            else value
        )
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the
    last one and drops the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"line {line}: key {key!r} given twice (first on line {seen[key]}); YAML "
                    "would silently keep only the last: delete one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, *, source: str) -> Any:
    """A YAML document, a key given twice in one mapping refused (ConfigError naming both
    lines), like invalid YAML."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    return parse_params(load_yaml(text, source=str(path)), source=str(path))


def _describe(err: Any, *, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    key = ".".join([prefix] * bool(prefix) + [str(part) for part in err["loc"]]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key{_did_you_mean(model or Params, err['loc'])}"
    if err["type"] == "missing":
        return f"{key}: required key missing"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def _did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'bit_depth'?)`` for an unknown key close to a known one at ``loc``."""
    node: Any = model
    for part in loc[:-1]:
        node = _child_type(node, part)
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(node.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _child_type(node: Any, part: Any) -> Any:
    """The model (or ``dict[str, X]``) one step below ``node``, None where there is none."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        tp = field.annotation if field is not None else None
    elif get_origin(node) is dict:
        tp = get_args(node)[1]  # ``part`` is a key: a dataset's name
    else:
        return None
    for option in get_args(tp) if get_origin(tp) in (Union, UnionType) else (tp,):
        if (isinstance(option, type) and issubclass(option, BaseModel)) or get_origin(
            option
        ) is dict:
            return option
    return None
