"""Evaluation metrics from a confusion matrix: accuracy, macro-F1 and per-class recall for
classification; mIoU, per-class IoU, Dice and pixel accuracy for segmentation.

A class absent from both targets and predictions has no IoU / F1 (NaN) and is left out of
the means, as MMSegmentation and torchmetrics do; the per-class dicts report it as None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch


def confusion_matrix(
    targets: torch.Tensor | np.ndarray,
    predictions: torch.Tensor | np.ndarray,
    *,
    num_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = target class, columns = predicted class.

    Shapes:
        ``targets`` and ``predictions`` of equal shape (``(N,)`` labels or ``(N, H, W)``).
    """
    t = torch.as_tensor(targets).reshape(-1).long()
    p = torch.as_tensor(predictions).reshape(-1).long()
    if t.shape != p.shape:
        raise ValueError(f"targets and predictions must match; got {t.shape} and {p.shape}")
    keep = (t >= 0) & (t < num_classes)
    if ignore_index is not None:
        keep &= t != ignore_index
    t, p = t[keep], p[keep].clamp(0, num_classes - 1)
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _per_class(values: np.ndarray, classes: Sequence[str]) -> dict[str, float | None]:
    return {
        c: (None if np.isnan(v) else round(float(v), 6))
        for c, v in zip(classes, values, strict=True)
    }


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def classification_metrics(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in targets or predictions), per-class recall
    and precision."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    recall, precision = _ratio(tp, support), _ratio(tp, predicted)
    f1 = _ratio(2 * tp, support + predicted)
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": _mean(f1),
        "balanced_accuracy": _mean(recall),
        "samples": int(total),
        "recall": _per_class(recall, classes),
        "precision": _per_class(precision, classes),
    }


def segmentation_metrics(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """mIoU, mean Dice, pixel accuracy and per-class IoU / Dice from a pixel confusion."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    iou = _ratio(tp, support + predicted - tp)
    dice = _ratio(2 * tp, support + predicted)
    total = cm.sum()
    return {
        "miou": _mean(iou),
        "mdice": _mean(dice),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "pixels": int(total),
        "iou": _per_class(iou, classes),
        "dice": _per_class(dice, classes),
    }


def confusion_rows(
    cm: np.ndarray, classes: Sequence[str], *, max_rows: int = 20_000
) -> pd.DataFrame:
    """``actual, predicted`` rows for DVC's confusion template, whose cell proportions equal
    ``cm``'s (scaled down to about ``max_rows`` rows for pixel counts)."""
    total = int(cm.sum())
    scale = min(1.0, max_rows / total) if total else 1.0
    counts = np.round(np.asarray(cm, np.float64) * scale).astype(np.int64)
    actual, predicted = np.nonzero(counts)
    names = np.asarray(list(classes), dtype=object)
    reps = counts[actual, predicted]
    return pd.DataFrame(
        {"actual": np.repeat(names[actual], reps), "predicted": np.repeat(names[predicted], reps)}
    )
