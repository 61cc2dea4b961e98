"""Synthetic test images shared by the benchmarks (not part of the package)."""

from __future__ import annotations

import cv2
import numpy as np


def scene(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """Smooth texture + shapes + sensor noise in [0, 1]: compresses like a real photo.

    Shapes:
        returns ``(size, size, channels)`` float64.
    """
    small = rng.random((size // 16, size // 16, channels))
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, -1)
    for _ in range(8):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        layer = np.zeros((size, size), np.float64)
        cv2.circle(layer, centre, int(rng.integers(size // 40, size // 8)), 1.0, -1)
        img += layer[..., None] * rng.uniform(-0.3, 0.3)
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img, 0, 1)
