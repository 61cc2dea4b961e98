"""Integrity: files that cannot be used as they are (unreadable, inconsistent, mismatched)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datapipe.checks.base import Check, DatasetFacts, no_result, result, score_below
from datapipe.config import CleanParams


def readable(samples: pd.DataFrame) -> pd.Series:
    """Rows whose image decoded, at ingest and again now."""
    ok = samples["read_error"].isna()
    if "decode_error" in samples:
        ok &= samples["decode_error"].isna()
    return ok


def _unreadable(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    reason = samples["read_error"]
    if "decode_error" in samples:
        reason = reason.fillna(samples["decode_error"])
    bad = reason.notna()
    return result(samples.index, (~bad).astype(float), bad, reason.fillna(""))


def _mask_unreadable(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    if not facts.kind.dense:
        return no_result()
    bad = samples["mask_read_error"].notna()
    return result(samples.index, (~bad).astype(float), bad, samples["mask_read_error"].fillna(""))


def _channels_mismatch(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[readable(samples)]
    bad = rows["channels"] != facts.channels

    def detail(at: np.ndarray) -> list[str]:
        return [f"{c} channels; the dataset has {facts.channels}" for c in rows["channels"][at]]

    return result(rows.index, (~bad).astype(float), bad, detail)


def _dtype_mismatch(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    """A dtype few images share (e.g. a handful of 8-bit JPEGs among 16-bit TIFFs) hints at a
    different source; a deliberate mix is scaled per dtype and is not flagged."""
    rows = samples[readable(samples)]
    share = rows["dtype"].map(facts.dtype_share).astype(float)
    bad = (rows["dtype"] != facts.dtype) & (share < t.rare_dtype_share)

    def detail(at: np.ndarray) -> list[str]:
        return [
            f"{d} pixels, like {s:.0%} of the dataset; most is {facts.dtype}"
            for d, s in zip(rows["dtype"][at], share[at], strict=True)
        ]

    return result(rows.index, score_below(share, t.rare_dtype_share), bad, detail)


def _size_mismatch(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    if not facts.kind.dense:
        return no_result()
    rows = samples[readable(samples) & samples["mask_height"].notna()]
    bad = (rows["mask_height"] != rows["height"]) | (rows["mask_width"] != rows["width"])
    detail = [
        f"image {w}x{h}, mask {mw}x{mh}"
        for w, h, mw, mh in zip(
            rows["width"], rows["height"], rows["mask_width"], rows["mask_height"], strict=True
        )
    ]
    return result(rows.index, (~bad).astype(float), bad, detail)


def _mask_values(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    if not facts.kind.dense:
        return no_result()
    rows = samples[samples["mask_pixels"].notna()]
    bad_share = rows["mask_bad_pixels"] / rows["mask_pixels"]
    bad = rows["mask_bad_pixels"] > 0
    detail = [
        f"values {list(v)} in {n} pixels are neither a class {list(facts.class_values)} "
        f"nor ignore_index {facts.ignore_index}"
        if n
        else ""
        for v, n in zip(rows["mask_bad_values"], rows["mask_bad_pixels"], strict=True)
    ]
    return result(rows.index, 1.0 - bad_share, bad, detail)


def _nonfinite(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    rows = samples[readable(samples)]
    pixels = rows["height"] * rows["width"] * rows["channels"]
    bad = rows["nonfinite"] > 0

    def detail(at: np.ndarray) -> list[str]:
        return [f"{n} NaN/inf values" for n in rows["nonfinite"][at]]

    return result(rows.index, 1.0 - rows["nonfinite"] / pixels, bad, detail)


def _empty_mask(samples: pd.DataFrame, facts: DatasetFacts, t: CleanParams) -> pd.DataFrame:
    if not facts.kind.dense:
        return no_result()
    rows = samples[samples["mask_pixels"].notna()]
    share = rows["mask_foreground_pixels"] / rows["mask_pixels"]
    bad = rows["mask_foreground_pixels"] == 0
    ignored = rows["mask_ignored_pixels"] == rows["mask_pixels"]
    detail = np.where(ignored, "every pixel is ignore_index", "no foreground class pixel")
    return result(rows.index, score_below(share, 0.01), bad, np.where(bad, detail, ""))


CHECKS = [
    Check(
        "unreadable",
        "error",
        "the image cannot be decoded (empty, truncated, corrupt, unsupported)",
        _unreadable,
    ),
    Check(
        "mask_unreadable",
        "error",
        "the mask is missing, ambiguous or cannot be decoded",
        _mask_unreadable,
    ),
    Check(
        "channels_mismatch",
        "error",
        "channel count differs from the dataset's majority",
        _channels_mismatch,
    ),
    Check(
        "dtype_mismatch",
        "warning",
        "a pixel dtype that few images of the dataset share",
        _dtype_mismatch,
    ),
    Check("size_mismatch", "error", "image and mask sizes differ", _size_mismatch),
    Check(
        "mask_values",
        "error",
        "mask holds values that are neither classes nor ignore_index",
        _mask_values,
    ),
    Check("nonfinite", "error", "NaN or infinite pixel values", _nonfinite),
    Check("empty_mask", "info", "mask has no foreground class pixel", _empty_mask),
]
