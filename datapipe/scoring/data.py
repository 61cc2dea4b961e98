"""Images as normalised tensors for the scoring models: one decode per image, kept in memory.

Each image is read with :func:`~datapipe.io.read_image`, scaled with ``to_unit_float`` at the
dataset's resolved bit depth, resized with area averaging and normalised with the dataset's
per-channel mean and std from ``stats.json``. The decoded set is held as one float16 tensor, so
k folds x E epochs of training decode nothing again.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from datapipe.errors import ConfigError
from datapipe.io import read_image, to_unit_float
from datapipe.io.convert import Scaling
from datapipe.parallel import parallel_map


@dataclass(frozen=True)
class ImageSpec:
    root: Path
    scaling: Mapping[str, Scaling]
    percentiles: tuple[float, float]
    mean: Sequence[float]
    std: Sequence[float]
    size: int


def load_image(relpath: str, spec: ImageSpec) -> np.ndarray:
    """One image as a normalised ``(C, size, size)`` float16 array."""
    img = read_image(spec.root / relpath)
    unit = to_unit_float(
        img, bit_depth=spec.scaling.get(str(img.dtype), "auto"), percentiles=spec.percentiles
    )
    small = cv2.resize(unit, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
    small = small.reshape(spec.size, spec.size, img.shape[2])
    mean = np.asarray(spec.mean, np.float32)
    std = np.maximum(np.asarray(spec.std, np.float32), 1e-6)
    return ((small - mean) / std).transpose(2, 0, 1).astype(np.float16)


def load_images(
    paths: Sequence[str], spec: ImageSpec, *, workers: int, max_bytes: int, desc: str
) -> torch.Tensor:
    """All ``paths`` as one ``(N, C, size, size)`` float16 tensor (decoded in ``workers``)."""
    channels = len(spec.mean)
    need = len(paths) * channels * spec.size**2 * 2
    if need > max_bytes:
        raise ConfigError(
            f"score.image_size: {len(paths)} images of {channels}x{spec.size}² need "
            f"{need / 2**30:.1f} GiB in memory, above score.max_cache_gb; lower image_size"
        )
    arrays = parallel_map(
        functools.partial(load_image, spec=spec), paths, workers=workers, desc=desc
    )
    return torch.from_numpy(np.stack(list(arrays)))
