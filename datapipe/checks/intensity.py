"""Intensity and quality, judged on ``to_unit_float`` pixels so every bit depth looks alike.

Dataset-relative checks (dark, bright, blurry) compare each image with the dataset's own
distribution through a robust z-score (median and MAD), not with a fixed 8-bit threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datapipe.checks.base import Check, DatasetFacts, result, robust_z, score_above, score_below
from datapipe.checks.integrity import readable
from datapipe.config import CleanParams


def _rows(samples: pd.DataFrame) -> pd.DataFrame:
    return samples[readable(samples) & samples["brightness"].notna()]


def _blank(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = _rows(samples)
    bad = rows["value_range"] <= 0.0
    detail = [
        f"every pixel is {b:.4f} (unit scale)" if f else ""
        for b, f in zip(rows["brightness"], bad, strict=True)
    ]
    return result(rows.index, np.where(bad, 0.0, 1.0), bad, detail)


def _low_information(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = _rows(samples)
    score = score_below(rows["entropy"], t.low_entropy)
    bad = (score < 0.5) & (rows["value_range"] > 0)  # constant images are "blank" instead
    detail = [f"entropy {e:.2f} of 1 (threshold {t.low_entropy})" for e in rows["entropy"]]
    return result(rows.index, score, bad, detail)


def _brightness(samples: pd.DataFrame, t: CleanParams, sign: float) -> pd.DataFrame:
    """Dark (``sign=-1``) or bright (``+1``): robust z beyond the threshold *and* a real shift."""
    rows = _rows(samples)
    median = rows["brightness"].median()
    z = robust_z(rows["brightness"]) * sign
    far = (rows["brightness"] - median) * sign > t.min_brightness_shift
    score = np.where(far, np.power(0.5, z.clip(lower=0) / t.z_threshold), 1.0)
    detail = [f"mean {b:.3f} vs dataset median {median:.3f}" for b in rows["brightness"]]
    return result(rows.index, score, score < 0.5, detail)


def _dark(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    return _brightness(samples, t, -1.0)


def _bright(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    return _brightness(samples, t, 1.0)


def _saturated(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = _rows(samples)
    score = score_above(rows["saturated"], t.saturated_fraction)
    bad = score < 0.5
    detail = [f"{s:.1%} of pixels at the top of the bit depth" for s in rows["saturated"]]
    return result(rows.index, score, bad, detail)


def _blurry(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = _rows(samples)
    log_sharpness = np.log10(rows["sharpness"] + 1e-12)
    z = -robust_z(log_sharpness)
    score = np.power(0.5, z.clip(lower=0) / t.z_threshold)
    bad = (z > t.z_threshold) & (rows["value_range"] > 0)  # constant images are "blank" instead
    median = float(np.median(rows["sharpness"])) if len(rows) else 0.0
    detail = [
        f"Laplacian variance {s:.3g} vs dataset median {median:.3g}" for s in rows["sharpness"]
    ]
    return result(rows.index, score, bad, detail)


def _odd_size(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[readable(samples)]
    area = (rows["height"] * rows["width"]).astype(float)
    aspect = (rows["width"] / rows["height"]).astype(float)
    typical_area, typical_aspect = area.median(), aspect.median()
    area_off = np.abs(np.log(area / typical_area)) / np.log(t.size_factor)
    aspect_off = np.abs(np.log(aspect / typical_aspect)) / np.log(t.aspect_factor)
    score = np.power(0.5, np.maximum(area_off, aspect_off))
    bad = score < 0.5
    typical = f"typical {int(np.sqrt(typical_area))}² area, aspect {typical_aspect:.2f}"
    detail = [f"{w}x{h}; {typical}" for w, h in zip(rows["width"], rows["height"], strict=True)]
    return result(rows.index, score, bad, detail)


CHECKS = [
    Check("blank", "error", "every pixel has the same value", _blank),
    Check(
        "low_information",
        "warning",
        "few distinct intensities (low histogram entropy)",
        _low_information,
    ),
    Check("dark", "warning", "much darker than the rest of the dataset", _dark),
    Check("bright", "warning", "much brighter than the rest of the dataset", _bright),
    Check("saturated", "warning", "many pixels clipped at the top of the bit depth", _saturated),
    Check(
        "blurry", "warning", "far less fine detail (Laplacian variance) than the dataset", _blurry
    ),
    Check("odd_size", "warning", "size or aspect ratio far from the dataset's", _odd_size),
]
