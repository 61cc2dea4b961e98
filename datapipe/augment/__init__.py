"""Augmentation: the params pipeline (albumentations, imported only in this package) and the
batch-level tricks of the loader (mixup, cutmix, multi-scale, padding collate, multi-crop)."""

from datapipe.augment.pipeline import (
    Augment,
    build_pipeline,
    check_pipeline,
    save_pipeline,
    to_dict,
    validate_spec,
)

__all__ = [
    "Augment",
    "build_pipeline",
    "check_pipeline",
    "save_pipeline",
    "to_dict",
    "validate_spec",
]
