"""Per-sample measurements the checks judge: one decode, computed on ``to_unit_float`` pixels.

Everything intensity-related is measured after the dataset's bit-depth scaling, so an 8-bit,
a 12-bit and a 16-bit picture of the same scene get the same brightness, entropy and
sharpness; nothing here divides by 255.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datapipe.checks.hashing import perceptual_hash, pixel_hash
from datapipe.errors import ImageReadError
from datapipe.io.convert import Scaling, to_unit_float
from datapipe.io.image import read_image, read_mask

_HIST_BINS = 256


@dataclass(frozen=True)
class FeatureSettings:
    root: Path
    scaling: Mapping[str, Scaling]  # dtype name -> bit depth / "percentile" (from stats.json)
    percentiles: tuple[float, float]
    max_pixels: int
    class_values: Sequence[int]
    ignore_index: int
    mask_colors: Mapping[int, tuple[int, int, int]] | None = None


@dataclass(frozen=True)
class SampleRef:
    image: str
    mask: str | None
    readable: bool


def measure(ref: SampleRef, settings: FeatureSettings) -> dict[str, object]:
    """Decode one sample and measure it; a file that no longer decodes gives ``decode_error``."""
    out: dict[str, object] = {}
    if ref.readable:
        try:
            img = read_image(settings.root / ref.image, max_pixels=settings.max_pixels)
        except ImageReadError as exc:  # changed since ingest, or flaky storage
            out["decode_error"] = exc.reason
        else:
            out.update(image_features(img, settings))
    if ref.mask is not None:
        try:
            mask = read_mask(
                settings.root / ref.mask,
                colors=settings.mask_colors,
                max_pixels=settings.max_pixels,
            )
        except ImageReadError:
            pass  # recorded by ingest as mask_read_error
        else:
            out.update(mask_features(mask, settings))
    return out


def image_features(img: np.ndarray, settings: FeatureSettings) -> dict[str, object]:
    """Fingerprints and intensity statistics of one ``(H, W, C)`` image."""
    nonfinite = int(np.count_nonzero(~np.isfinite(img))) if img.dtype.kind == "f" else 0
    if nonfinite:
        img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
    unit = to_unit_float(
        img,
        bit_depth=settings.scaling.get(str(img.dtype), "auto"),
        percentiles=settings.percentiles,
    )
    grey = unit.mean(axis=2) if unit.shape[2] > 1 else unit[:, :, 0]
    hist = cv2.calcHist([grey], [0], None, [_HIST_BINS], [0.0, 1.0 + 1e-6]).ravel()
    p = hist[hist > 0] / grey.size
    return {
        "pixel_hash": pixel_hash(img),
        "phash": np.uint64(perceptual_hash(unit)),
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "value_range": float(unit.max() - unit.min()),
        "entropy": float(-(p * np.log2(p)).sum() / np.log2(_HIST_BINS)),
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_32F).var()),
        "saturated": float(np.count_nonzero(unit.max(axis=2) >= 1.0) / grey.size),
        "nonfinite": nonfinite,
    }


def mask_features(mask: np.ndarray, settings: FeatureSettings) -> dict[str, object]:
    """Content hash and value census of one ``(H, W)`` mask."""
    values, counts = np.unique(mask, return_counts=True)
    known = np.isin(values, [*settings.class_values, settings.ignore_index])
    foreground = (values != settings.ignore_index) & (values != 0) & known
    return {
        "mask_hash": pixel_hash(mask),
        "mask_bad_values": [int(v) for v in values[~known]],
        "mask_bad_pixels": int(counts[~known].sum()),
        "mask_foreground_pixels": int(counts[foreground].sum()),
        "mask_ignored_pixels": int(counts[values == settings.ignore_index].sum()),
        "mask_pixels": int(mask.size),
    }
