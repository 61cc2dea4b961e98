from __future__ import annotations

import numpy as np
import pytest

from datapipe.label_issues import classification_label_issues


def _noisy_problem(n: int = 600, k: int = 4, flip: float = 0.1, seed: int = 0):
    """OOF-like probabilities from the true class; 10% of given labels flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.random(n) < flip
    given[flipped] = (true[flipped] + rng.integers(1, k, flipped.sum())) % k
    return given, probs, true, flipped


def test_flipped_labels_found_far_above_chance() -> None:
    """10% flips: random flags would reach precision 0.1. Measured with cleanlab 2.9 here:
    precision 0.88, recall 0.64 (confident learning prunes conservatively)."""
    given, probs, true, flipped = _noisy_problem()
    out = classification_label_issues(given, probs)
    found = out["is_label_issue"].to_numpy()
    precision = (found & flipped).sum() / found.sum()
    recall = (found & flipped).sum() / flipped.sum()
    assert precision >= 0.8 and recall >= 0.5
    assert out["label_quality"].between(0, 1).all()
    assert out.loc[flipped, "label_quality"].median() < out.loc[~flipped, "label_quality"].median()
    confident = out["suggested_label"].to_numpy() >= 0
    assert (
        out["suggested_label"].to_numpy()[found & flipped & confident]
        == true[found & flipped & confident]
    ).mean() > 0.9


def test_reasons_name_each_source_of_evidence() -> None:
    given, probs, _, _ = _noisy_problem(n=200)
    aum = np.ones(200)
    aum[5] = -1.0
    conflicting = np.zeros(200, bool)
    conflicting[7] = True
    out = classification_label_issues(given, probs, aum=aum, conflicting=conflicting)
    assert "low_aum" in out.loc[5, "reasons"] and "conflicting_duplicate" in out.loc[7, "reasons"]
    assert bool(out.loc[7, "is_label_issue"])  # a conflicting duplicate is always flagged


@pytest.mark.parametrize(
    ("labels", "probs", "message"),
    [
        (np.array([0, 1]), np.full((3, 2), 0.5), r"pred_probs must be \(N=2, K\)"),
        (np.array([0, 2]), np.full((2, 2), 0.5), r"labels must be integers in \[0, 2\)"),
        (np.array([0, 1]), np.array([[np.nan, 1.0], [0.5, 0.5]]), "NaN or inf"),
        (np.array([0, 1]), np.full((2, 2), 0.9), "sum to 1"),
    ],
    ids=["shape", "label-range", "nan", "not-normalised"],
)
def test_bad_inputs_say_what_was_expected(labels, probs, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_label_issues(labels, probs)
