"""Hard and easy positives and negatives, from out-of-fold probabilities.

Every sample is a *positive* of its labelled class and a *negative* of every other class.
A hard positive is labelled c but the model misses it (wrong argmax, or its loss in the top
tail); an easy positive is confidently right. A hard negative for class c is a sample of another
class that the model takes for c; easy negatives are only counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HARD_EXAMPLE_COLUMNS = ("index", "class", "role", "difficulty", "loss", "prob")


@dataclass(frozen=True)
class DifficultyResult:
    rows: pd.DataFrame  # HARD_EXAMPLE_COLUMNS; index = position in the input arrays
    difficulty: np.ndarray  # (N,) in [0, 1]: 1 - p(given label); higher = harder
    counts: dict[str, int]


def hard_and_easy(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    hard_loss_quantile: float = 0.9,
    easy_prob: float = 0.9,
    hard_negative_prob: float = 0.5,
) -> DifficultyResult:
    """Sort every (sample, class) pair into hard / easy positive / negative.

    Shapes:
        ``labels`` ``(N,)``; ``pred_probs`` ``(N, K)``.

    Long by design: the four roles share one pass over the probabilities.
    """
    labels = np.asarray(labels)
    probs = np.clip(np.asarray(pred_probs, np.float64), 1e-12, 1.0)
    n, k = probs.shape
    p_given = probs[np.arange(n), labels]
    loss = -np.log(p_given)
    cut = np.quantile(loss, hard_loss_quantile) if n else np.inf
    hard_pos = (probs.argmax(1) != labels) | (loss >= cut)
    easy_pos = ~hard_pos & (p_given >= easy_prob)
    other = np.ones((n, k), bool)
    other[np.arange(n), labels] = False
    hard_neg = other & (probs >= hard_negative_prob)
    easy_neg = other & (probs <= 1.0 - easy_prob + 1e-12)  # 1 - 0.9 is 0.0999...
    frames = [
        _rows(
            np.flatnonzero(hard_pos),
            labels[hard_pos],
            "positive",
            "hard",
            loss[hard_pos],
            p_given[hard_pos],
        ),
        _rows(
            np.flatnonzero(easy_pos),
            labels[easy_pos],
            "positive",
            "easy",
            loss[easy_pos],
            p_given[easy_pos],
        ),
    ]
    neg_i, neg_c = np.nonzero(hard_neg)
    frames.append(
        _rows(
            neg_i,
            neg_c,
            "negative",
            "hard",
            -np.log1p(-np.minimum(probs[neg_i, neg_c], 1 - 1e-12)),
            probs[neg_i, neg_c],
        )
    )
    rows = pd.concat(frames, ignore_index=True).sort_values(
        ["role", "difficulty", "loss"], ascending=[False, False, False], kind="stable"
    )
    counts = {
        "hard_positive": int(hard_pos.sum()),
        "easy_positive": int(easy_pos.sum()),
        "hard_negative": int(hard_neg.sum()),
        "easy_negative": int(easy_neg.sum()),
    }
    return DifficultyResult(
        rows=rows.reset_index(drop=True), difficulty=1.0 - p_given, counts=counts
    )


def _rows(
    index: np.ndarray,
    cls: np.ndarray,
    role: str,
    difficulty: str,
    loss: np.ndarray,
    prob: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": index,
            "class": cls,
            "role": role,
            "difficulty": difficulty,
            "loss": loss,
            "prob": prob,
        }
    )
