"""``reports/augment_preview.png``: a few samples, each beside augmented views of itself, with
mask overlays; looking at it is the fastest check of an augmentation pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datapipe.data import AugmentFn, Item, SampleSpec, sample_seed
from datapipe.report.render import fit, grid, overlay_mask, stretch_limits, to_display


def augment_preview(
    items: Sequence[Item],
    spec: SampleSpec,
    augment: AugmentFn,
    *,
    views: int,
    cell: int = 160,
    seed: int = 0,
    channels: Sequence[int] | None = None,
) -> np.ndarray:
    """One row per item: the decoded sample, then ``views`` augmented views.

    Shapes:
        returns ``(H, W, 3)`` uint8 RGB.
    """
    ignore = spec.mask.ignore_index if spec.mask is not None else -1
    rows = []
    for i, item in enumerate(items):
        image, mask = spec.decode_unit(item)
        limits = stretch_limits(image, channels)
        row = [_cell(image, mask, ignore, cell, channels, limits)]
        for v in range(views):
            aug_image, aug_mask = augment(image, mask, sample_seed(seed, v, i))
            row.append(_cell(aug_image, aug_mask, ignore, cell, channels, limits))
        rows.append(row)
    return grid(rows)


def _cell(
    image: np.ndarray,
    mask: np.ndarray | None,
    ignore: int,
    size: int,
    channels: Sequence[int] | None,
    limits: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    rgb = to_display(image, channels=channels, limits=limits)
    if mask is not None:
        rgb = overlay_mask(rgb, mask, ignore_index=ignore)
    return fit(rgb, size)
