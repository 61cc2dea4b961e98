"""Dirty-label detection for classification. The only module that imports cleanlab.

Given out-of-fold probabilities (every row from a model that never trained on that sample),
cleanlab's confident learning (``find_label_issues``, prune by noise rate) flags samples whose
given label the data contradicts, and ``get_label_quality_scores`` ranks every sample. Evidence
from elsewhere joins as named ``reasons``: a low area under the margin (AUM) from training
dynamics, and duplicates that carry another label (from the clean stage).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

LABEL_ISSUE_COLUMNS = (
    "label_quality", "self_confidence", "is_label_issue", "suggested_label", "reasons",
)  # fmt: skip


def classification_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    aum: np.ndarray | None = None,
    conflicting: np.ndarray | None = None,
    min_suggest_prob: float = 0.5,
) -> pd.DataFrame:
    """One row per sample: ``label_quality`` in [0, 1] (lower = worse), ``is_label_issue``,
    ``suggested_label`` (-1 when the model is not confident in another class) and ``reasons``.

    Shapes:
        ``labels`` ``(N,)`` ints in ``[0, K)``; ``pred_probs`` ``(N, K)`` rows summing to 1;
        ``aum`` ``(N,)`` (NaN allowed); ``conflicting`` ``(N,)`` bool.
    """
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    _validate(labels, pred_probs)
    n = len(labels)
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    # n_jobs=1: cleanlab's process pool is 2.3x slower at 10k samples (PERF_NOTES).
    flagged = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
    self_confidence = pred_probs[np.arange(n), labels]
    best = pred_probs.argmax(1)
    confident_other = (best != labels) & (pred_probs.max(1) >= min_suggest_prob)
    low_aum = np.zeros(n, bool) if aum is None else np.nan_to_num(np.asarray(aum), nan=0.0) < 0
    conflict = np.zeros(n, bool) if conflicting is None else np.asarray(conflicting, bool)
    reasons = [
        ",".join(
            name
            for name, hit in (
                ("confident_learning", f),
                ("low_aum", a),
                ("conflicting_duplicate", c),
            )
            if hit
        )
        for f, a, c in zip(flagged, low_aum, conflict, strict=True)
    ]
    return pd.DataFrame(
        {
            "label_quality": quality,
            "self_confidence": self_confidence,
            "is_label_issue": flagged | conflict,
            "suggested_label": np.where(confident_other, best, -1),
            "reasons": reasons,
        }
    )


def _validate(labels: np.ndarray, pred_probs: np.ndarray) -> None:
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(f"pred_probs must be (N={len(labels)}, K); got {pred_probs.shape}")
    k = pred_probs.shape[1]
    if labels.dtype.kind not in "iu" or labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        raise ValueError(
            f"labels must be integers in [0, {k}); got {labels.dtype} in "
            f"[{labels.min(initial=0)}, {labels.max(initial=0)}]"
        )
    if not np.isfinite(pred_probs).all():
        raise ValueError("pred_probs hold NaN or inf (a sample left out of every fold?)")
    if not np.allclose(pred_probs.sum(1), 1.0, atol=1e-3):
        raise ValueError("pred_probs rows must sum to 1")
