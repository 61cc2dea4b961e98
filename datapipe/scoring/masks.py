"""Predicted instance masks kept as COCO run-length encodings (no torch: evaluation and the
report read them too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RleMasks:
    """``N`` binary masks of one ``(H, W)`` image as COCO run-length encodings (pycocotools):
    how held-out and test predictions are kept, since dense masks of 10k images x 100
    predictions take 15 GiB and their RLEs 0.46 GiB (``bench/detection_memory.py``).
    ``masks[j]`` decodes one ``(H, W)`` bool mask; ``shape`` is the dense shape."""

    rles: tuple[dict[str, Any], ...]
    height: int
    width: int

    @classmethod
    def encode(cls, masks: np.ndarray) -> RleMasks:
        """From ``(N, H, W)`` bool (``encode`` wants Fortran-ordered ``(H, W, N)`` uint8)."""
        from pycocotools import mask as mask_utils

        n, h, w = masks.shape
        if not n:
            return cls((), h, w)
        stacked = np.asfortranarray(np.asarray(masks).transpose(1, 2, 0).astype(np.uint8))
        return cls(tuple(mask_utils.encode(stacked)), h, w)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.rles), self.height, self.width)

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, j: int) -> np.ndarray:
        from pycocotools import mask as mask_utils

        return mask_utils.decode(self.rles[j]).astype(bool)

    def dense(self) -> np.ndarray:
        """All of them as ``(N, H, W)`` bool."""
        if not self.rles:
            return np.zeros((0, self.height, self.width), bool)
        from pycocotools import mask as mask_utils

        return np.moveaxis(mask_utils.decode(list(self.rles)), -1, 0).astype(bool)
