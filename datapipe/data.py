"""Samples as model inputs: one decode path for scoring, training and evaluation.

Each image is read with :func:`~datapipe.io.read_image`, scaled with ``to_unit_float`` at the
dataset's resolved bit depth (float32 in [0, 1] from here on), optionally augmented, resized
with area averaging and normalised with the dataset's per-channel mean and std from
``stats.json``. Masks are read with :func:`~datapipe.io.read_mask`, their stored values mapped
to class indices (anything that is not a class becomes ``ignore_index``) and resized
nearest-neighbour, so no label is invented.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from datapipe import tasks
from datapipe.config import DatasetParams
from datapipe.errors import DatapipeError
from datapipe.io import read_image, read_mask, to_unit_float
from datapipe.io.convert import Scaling
from datapipe.runs import RunStats
from datapipe.workers import worker_init_fn

#: ``(image path, mask path or None)`` relative to the data root.
Item = tuple[str, str | None]
#: ``(image (H, W, C) float32, mask (H, W) int16 | None, seed) -> (image, mask)``.
AugmentFn = Callable[[np.ndarray, np.ndarray | None, int], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class ImageSpec:
    root: Path
    scaling: Mapping[str, Scaling]
    percentiles: tuple[float, float]
    mean: Sequence[float]
    std: Sequence[float]
    size: int


@dataclass(frozen=True)
class MaskSpec:
    """How stored mask values become class indices: ``class_values[i]`` is class ``i``."""

    class_values: Sequence[int]
    ignore_index: int
    colors: Mapping[int, tuple[int, int, int]] | None = None

    @functools.cached_property
    def lut(self) -> np.ndarray:
        """Stored value -> class index for every 16-bit value (built once per spec)."""
        table = np.full(65536, self.ignore_index, np.int16)
        table[np.asarray(self.class_values, np.int64)] = np.arange(len(self.class_values))
        return table


def unit_image(relpath: str, spec: ImageSpec) -> np.ndarray:
    """One image at its own size as ``(H, W, C)`` float32 in [0, 1]."""
    img = read_image(spec.root / relpath)
    unit = to_unit_float(
        img, bit_depth=spec.scaling.get(str(img.dtype), "auto"), percentiles=spec.percentiles
    )
    return unit.reshape(*img.shape[:2], img.shape[2])


def normalise(unit: np.ndarray, spec: ImageSpec, size: int | None) -> np.ndarray:
    """``(H, W, C)`` unit float -> ``(C, size, size)`` float32, mean/std normalised
    (``size=None`` keeps the image's own size)."""
    channels = unit.shape[2]
    if size is not None and unit.shape[:2] != (size, size):
        unit = cv2.resize(unit, (size, size), interpolation=cv2.INTER_AREA)
        unit = unit.reshape(size, size, channels)
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.maximum(np.asarray(spec.std, np.float32), 1e-6)[:, None, None]
    out = np.empty((channels, *unit.shape[:2]), np.float32)  # one array, no temporaries
    np.subtract(unit.transpose(2, 0, 1), mean, out=out)
    np.divide(out, std, out=out)
    return out


def load_image(relpath: str, spec: ImageSpec) -> np.ndarray:
    """One image as a normalised ``(C, size, size)`` float16 array (the scoring input)."""
    return normalise(unit_image(relpath, spec), spec, spec.size).astype(np.float16)


def index_mask(relpath: str, spec: MaskSpec, root: Path) -> np.ndarray:
    """One mask at its own size as ``(H, W)`` int16 class indices."""
    raw = read_mask(root / relpath, colors=spec.colors)
    if raw.dtype.kind == "i":
        raw = np.clip(raw, 0, 65535)
    index: np.ndarray = spec.lut[raw.astype(np.int64)]
    return index


def resize_mask(mask: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or mask.shape == (size, size):
        return mask
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def load_mask(relpath: str, spec: MaskSpec, root: Path, size: int) -> np.ndarray:
    """One mask as ``(size, size)`` int16 class indices (``ignore_index`` where unlabelled)."""
    return resize_mask(index_mask(relpath, spec, root), size)


@dataclass(frozen=True)
class SampleSpec:
    """Everything needed to decode sample ``i``: an image, and a mask for segmentation."""

    image: ImageSpec
    mask: MaskSpec | None = None

    def decode(self, item: Item) -> tuple[np.ndarray, np.ndarray | None]:
        """Scoring input: float16 ``(C, S, S)`` image and int16 ``(S, S)`` mask or None."""
        image_path, mask_path = item
        image = load_image(image_path, self.image)
        if self.mask is None or mask_path is None:
            return image, None
        return image, load_mask(mask_path, self.mask, self.image.root, self.image.size)

    def decode_unit(self, item: Item) -> tuple[np.ndarray, np.ndarray | None]:
        """Augmentation input at the stored size: ``(H, W, C)`` float32 in [0, 1] and
        ``(H, W)`` int16 class indices or None."""
        image_path, mask_path = item
        image = unit_image(image_path, self.image)
        if self.mask is None or mask_path is None:
            return image, None
        return image, index_mask(mask_path, self.mask, self.image.root)


def sample_spec(
    dataset: DatasetParams, stats: RunStats | Mapping[str, Any], *, size: int
) -> SampleSpec:
    """The decode recipe of a dataset from its params and ``stats.json``."""
    stats = RunStats.coerce(stats)
    if not stats.mean or len(stats.mean) != len(stats.std):
        raise DatapipeError("stats.json: no per-channel mean / std to normalise; re-run ingest")
    image = ImageSpec(
        root=Path(dataset.root),
        scaling=dict(stats.bit_depth),
        percentiles=dataset.percentiles,
        mean=stats.mean,
        std=stats.std,
        size=size,
    )
    if not tasks.get(dataset.task).dense:
        return SampleSpec(image)
    mask = MaskSpec(
        class_values=list(stats.class_values),
        ignore_index=dataset.ignore_index,
        colors=dict(dataset.mask_colors) if dataset.mask_colors else None,
    )
    return SampleSpec(image, mask)


def manifest_items(table: pd.DataFrame) -> list[Item]:
    """``(image, mask)`` per row of a manifest-like table (mask None without a mask column)."""
    masks = table["mask"] if "mask" in table else pd.Series([None] * len(table))
    return [
        (str(image), None if pd.isna(mask) else str(mask))
        for image, mask in zip(table["image"], masks, strict=True)
    ]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on ``(seed, epoch, index)``."""
    key = np.array([seed, epoch, index], np.int64).tobytes()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


class SwappableBatches:
    """A batch sampler whose batches are swapped between passes, so one DataLoader with
    persistent workers serves every epoch and prediction pass (no re-forking per epoch)."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def swappable_loader(
    dataset: Dataset[Any], *, workers: int, pin_memory: bool
) -> tuple[DataLoader[Any], SwappableBatches]:
    """The one DataLoader configuration of scoring and training: batches swapped in per pass
    (:class:`SwappableBatches`), persistent workers that prefetch 4 batches each and die with
    the stage (``datapipe.workers``), pinned memory for CUDA."""
    batches = SwappableBatches()
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,
        worker_init_fn=worker_init_fn(),
    )
    return loader, batches


#: A dataset key: an index, ``(index, size)`` or ``(index, size, epoch)`` (size None = default).
Key = int | tuple[int, int | None] | tuple[int, int | None, int]


class AugmentedSet(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """Training / evaluation samples: decode, augment, resize, normalise.

    ``dataset[i]`` returns ``(image (C, S, S) float32, target, i)`` with target the class
    index (classification) or the ``(S, S)`` int64 mask. ``dataset[(i, size)]`` resizes to
    ``size`` instead of ``spec.image.size`` (multi-scale batch samplers).

    Augmentation of sample ``i`` in epoch ``e`` is seeded by ``(seed, e, i)``: the same in
    any worker and after a resume. The epoch comes from the key ``(i, size, epoch)`` (so
    persistent workers need no message) or else from :meth:`set_epoch`.
    """

    def __init__(
        self,
        items: Sequence[Item],
        spec: SampleSpec,
        labels: np.ndarray,
        *,
        augment: AugmentFn | None = None,
        seed: int = 0,
    ) -> None:
        if len(labels) != len(items):
            raise ValueError(f"expected {len(items)} labels; got {len(labels)}")
        self.items, self.spec, self.labels = list(items), spec, np.asarray(labels, np.int64)
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.size = spec.image.size

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, int]:
        if isinstance(key, tuple):
            i, size, epoch = (*key, self.epoch) if len(key) == 2 else key
            size = self.size if size is None else size
        else:
            i, size, epoch = key, self.size, self.epoch
        image, mask = self.spec.decode_unit(self.items[i])
        if self.augment is not None:
            image, mask = self.augment(image, mask, sample_seed(self.seed, epoch, i))
        x = torch.from_numpy(normalise(image, self.spec.image, size))
        if mask is None:
            return x, torch.tensor(self.labels[i]), i
        return x, torch.from_numpy(resize_mask(mask, size).astype(np.int64)), i
