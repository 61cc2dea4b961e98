from __future__ import annotations

import numpy as np
import pytest

from datapipe.difficulty import HARD_EXAMPLE_COLUMNS, hard_and_easy

LABELS = np.array([0, 0, 1, 2])
PROBS = np.array(
    [
        [0.95, 0.03, 0.02],  # easy positive of 0; easy negative of 1 and 2
        [0.30, 0.60, 0.10],  # hard positive of 0 (missed), hard negative for 1
        [0.20, 0.70, 0.10],  # right but not confident: neither easy nor hard (loss below the cut)
        [0.05, 0.05, 0.90],  # right; loss 0.105 ...
    ]
)


def test_known_roles() -> None:
    result = hard_and_easy(
        LABELS, PROBS, hard_loss_quantile=0.99, easy_prob=0.9, hard_negative_prob=0.5
    )
    rows = result.rows
    assert list(rows.columns) == list(HARD_EXAMPLE_COLUMNS)
    got = set(rows[["index", "class", "role", "difficulty"]].itertuples(index=False, name=None))
    assert got == {
        (0, 0, "positive", "easy"),
        (1, 0, "positive", "hard"),
        (3, 2, "positive", "easy"),
        (1, 1, "negative", "hard"),
    }
    assert result.counts == {
        "hard_positive": 1,
        "easy_positive": 2,
        "hard_negative": 1,
        "easy_negative": 6,
    }
    np.testing.assert_allclose(result.difficulty, 1 - PROBS[np.arange(4), LABELS])
    hard_neg = rows[rows.role == "negative"].iloc[0]
    assert hard_neg.prob == pytest.approx(0.6) and hard_neg.loss == pytest.approx(-np.log(0.4))


def test_top_loss_tail_is_hard_even_when_right() -> None:
    result = hard_and_easy(LABELS, PROBS, hard_loss_quantile=0.5)
    hard = set(result.rows.query("role == 'positive' and difficulty == 'hard'")["index"])
    assert hard == {1, 2}  # losses 1.20 and 0.36 are at or above the median (0.23)
