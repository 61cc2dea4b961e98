"""The training dataset: one decode path, augmentation seeded by (seed, epoch, index),
per-batch sizes, native sizes for a padding collate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch
from torch.utils.data import DataLoader

from datapipe.augment import Augment, build_pipeline
from datapipe.data import AugmentedSet, ImageSpec, MaskSpec, SampleSpec

SPEC = [{"Affine": {"rotate": [-30, 30], "p": 1.0}}, {"HorizontalFlip": {"p": 0.5}}]


def _set(root: Path, n: int = 6, *, augment: bool = True) -> AugmentedSet:
    rng = np.random.default_rng(0)
    items: list[tuple[str, str | None]] = []
    for i in range(n):
        pixels = rng.integers(0, 4096, (20, 30, 2), dtype=np.uint16)
        tifffile.imwrite(
            root / f"i{i}.tif", pixels, photometric="minisblack", planarconfig="contig"
        )
        cv2.imwrite(str(root / f"m{i}.png"), rng.integers(0, 3, (20, 30), dtype=np.uint8))
        items.append((f"i{i}.tif", f"m{i}.png"))
    spec = SampleSpec(
        ImageSpec(root, {"uint16": 12}, (0.5, 99.5), mean=[0.5, 0.5], std=[0.25, 0.25], size=16),
        MaskSpec(class_values=[0, 1, 2], ignore_index=255),
    )
    aug = Augment(build_pipeline(SPEC, ignore_index=255)) if augment else None
    return AugmentedSet(items, spec, np.zeros(n, np.int64), augment=aug, seed=3)


def _epoch(data: AugmentedSet, epoch: int, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    data.set_epoch(epoch)
    loader = DataLoader(data, batch_size=3, num_workers=workers)
    xs, ys = zip(*[(x, y) for x, y, _ in loader], strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_augmentation_depends_on_seed_epoch_and_index_not_on_workers(tmp_path: Path) -> None:
    data = _set(tmp_path)
    x0, y0 = _epoch(data, 0, workers=0)
    x2, y2 = _epoch(data, 0, workers=2)
    torch.testing.assert_close(x0, x2, rtol=0, atol=0)
    torch.testing.assert_close(y0, y2, rtol=0, atol=0)
    x1, _ = _epoch(data, 1, workers=0)
    assert not torch.equal(x0, x1)  # a new epoch draws new views


def test_unaugmented_sample_is_the_scoring_decode(tmp_path: Path) -> None:
    data = _set(tmp_path, augment=False)
    image, mask, index = data[4]
    scoring_image, scoring_mask = data.spec.decode(data.items[4])
    assert index == 4 and image.shape == (2, 16, 16) and image.dtype == torch.float32
    np.testing.assert_allclose(image.numpy(), scoring_image, atol=2e-3)  # float16 there
    np.testing.assert_array_equal(mask.numpy(), scoring_mask)
    assert mask.dtype == torch.int64


def test_rotation_corners_are_ignore_index_in_the_mask(tmp_path: Path) -> None:
    data = _set(tmp_path)
    masks = torch.stack([data[i][1] for i in range(len(data))])
    assert (masks == 255).any()  # a 30-degree rotation leaves corners
    assert set(torch.unique(masks).tolist()) <= {0, 1, 2, 255}


def test_a_size_in_the_key_overrides_the_stored_size(tmp_path: Path) -> None:
    data = _set(tmp_path)
    image, mask, _ = data[(2, 24)]
    assert image.shape == (2, 24, 24) and mask.shape == (24, 24)
    image, mask, _ = data[2]
    assert image.shape == (2, 16, 16) and mask.shape == (16, 16)
