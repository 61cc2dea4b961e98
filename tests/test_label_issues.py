from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.label_issues import REASONS, classification_label_issues, lowest

K, PER_CLASS, WRONG = 3, 30, 3


def _planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 classes x 30 samples: p(given) = 0.9, except the first 3 of each class, whose 0.9 sits
    on the next class. cleanlab's calibrated estimate of the number of issues is exactly 9."""
    labels = np.repeat(np.arange(K), PER_CLASS)
    n = len(labels)
    probs = np.full((n, K), 0.05)
    probs[np.arange(n), labels] = 0.9
    wrong = np.concatenate([np.arange(WRONG) + c * PER_CLASS for c in range(K)])
    probs[wrong] = 0.05
    probs[wrong, (labels[wrong] + 1) % K] = 0.9
    return labels, probs, wrong


def _flagged(table) -> list[int]:
    return np.flatnonzero(table["is_label_issue"].to_numpy()).tolist()


@pytest.mark.parametrize(
    ("count", "below", "expected"),
    [
        (2, -np.inf, [False, True, False, False, True]),  # -1 and 0.1
        (2, 0.0, [False, True, False, False, True]),  # the count already covers < 0
        (1, 0.5, [True, True, False, False, True]),  # cut at -1, all under 0.5
        (0, 0.0, [False, True, False, False, False]),  # nothing counted: only < 0
        (9, -np.inf, [True, True, True, False, True]),  # more than known: every finite
    ],
    ids=["count", "count-covers-below", "below-wins", "zero-count", "count-above-known"],
)
def test_lowest_takes_the_count_lowest_and_all_below(count, below, expected) -> None:
    score = np.array([0.3, -1.0, 2.0, np.nan, 0.1])
    assert lowest(score, count, below=below).tolist() == expected


def test_lowest_includes_ties_at_the_cut() -> None:
    assert lowest(np.array([0.5, 0.2, 0.2, 0.9]), 2).tolist() == [False, True, True, False]


def test_without_aum_the_disagreeing_lowest_confidences_are_flagged() -> None:
    labels, probs, wrong = _planted()
    out = classification_label_issues(labels, probs)
    assert _flagged(out) == wrong.tolist()
    assert (out.loc[wrong, "suggested_label"] == (labels[wrong] + 1) % K).all()
    assert (np.delete(out["suggested_label"].to_numpy(), wrong) == -1).all()


def test_aum_must_agree_with_the_model_to_flag() -> None:
    """Eight planted errors have AUM -1; the ninth has +3 (not among the 9 lowest) and a correct
    sample has -2 (low, but the model agrees): only the eight are flagged."""
    labels, probs, wrong = _planted()
    aum = np.full(len(labels), 2.0)
    aum[wrong[:-1]] = -1.0
    aum[wrong[-1]] = 3.0
    aum[50] = -2.0
    out = classification_label_issues(labels, probs, aum=aum)
    assert _flagged(out) == wrong[:-1].tolist()
    assert out.loc[50, "reasons"] == "low_aum"
    assert out.loc[wrong[-1], "reasons"] == (
        "confident_learning,model_disagrees,low_self_confidence"
    )


def test_low_aum_cut_rises_to_the_estimated_count_when_all_margins_are_positive() -> None:
    """Models that memorised the noise leave every AUM > 0; the 9 lowest (n̂ = 9) still count."""
    labels, probs, wrong = _planted()
    aum = np.full(len(labels), 3.0)
    aum[wrong] = 0.5
    out = classification_label_issues(labels, probs, aum=aum)
    assert _flagged(out) == wrong.tolist()
    assert out["reasons"].str.contains("low_aum").sum() == len(wrong)


def test_unknown_aum_falls_back_to_self_confidence_per_row() -> None:
    labels, probs, wrong = _planted()
    aum = np.full(len(labels), 2.0)
    aum[wrong[4:]] = 3.0  # five planted errors have the highest AUM: not flagged ...
    aum[wrong[:4]] = np.nan  # ... four have none: judged by their self-confidence
    out = classification_label_issues(labels, probs, aum=aum)
    assert _flagged(out) == wrong[:4].tolist()


def test_conflicting_duplicate_alone_never_flags_a_sample_the_model_agrees_with() -> None:
    labels, probs, _ = _planted()
    conflicting = np.zeros(len(labels), bool)
    conflicting[[40, 41]] = True  # a (wrongly joined) pair: the model agrees with both labels
    out = classification_label_issues(labels, probs, conflicting=conflicting)
    assert not out.loc[[40, 41], "is_label_issue"].any()
    assert out.loc[40, "reasons"] == "conflicting_duplicate"
    assert out.loc[42, "reasons"] == ""


def test_conflicting_duplicate_flags_with_the_model_where_the_aum_alone_would_not() -> None:
    labels, probs, wrong = _planted()
    aum = np.full(len(labels), 2.0)
    aum[wrong] = -1.0
    aum[wrong[0]] = 3.0  # the model disagrees, but the margin is not low
    without = classification_label_issues(labels, probs, aum=aum)
    conflicting = np.zeros(len(labels), bool)
    conflicting[wrong[0]] = True
    with_dup = classification_label_issues(labels, probs, aum=aum, conflicting=conflicting)
    assert not without.loc[wrong[0], "is_label_issue"]
    assert with_dup.loc[wrong[0], "is_label_issue"]
    assert _flagged(with_dup) == sorted(wrong.tolist())


@pytest.mark.parametrize(
    ("aum", "expected"),
    [(0.0, (0.9 + 0.5) / 2), (np.nan, 0.9), (1e4, (0.9 + 1.0) / 2), (-1e4, 0.9 / 2)],
    ids=["zero", "unknown", "huge", "very-negative"],
)
def test_label_quality_is_mean_of_self_confidence_and_sigmoid_aum(aum, expected) -> None:
    labels, probs, _ = _planted()
    with np.errstate(all="raise"):  # no overflow in the sigmoid
        out = classification_label_issues(labels, probs, aum=np.full(len(labels), aum))
    assert out.loc[45, "self_confidence"] == pytest.approx(0.9)
    assert out.loc[45, "label_quality"] == pytest.approx(expected)


def test_suggestion_needs_min_suggest_prob() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.4, 0.6], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    strict = classification_label_issues(labels, probs, min_suggest_prob=0.7)
    loose = classification_label_issues(labels, probs, min_suggest_prob=0.5)
    assert strict["suggested_label"].tolist() == [-1, -1, -1, -1]
    assert loose["suggested_label"].tolist() == [1, -1, 0, -1]


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
    """10% flips: random flags would reach precision 0.1. Measured here: precision 1.00,
    recall 0.76 (cleanlab's prune by noise rate alone: 0.88, 0.64)."""
    given, probs, _, flipped = _noisy_problem()
    out = classification_label_issues(given, probs)
    found = out["is_label_issue"].to_numpy()
    precision = (found & flipped).sum() / found.sum()
    recall = (found & flipped).sum() / flipped.sum()
    assert precision >= 0.95 and recall >= 0.7
    assert out.loc[flipped, "label_quality"].median() < out.loc[~flipped, "label_quality"].median()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), aum_scale=st.floats(0.0, 1e3))
def test_quality_in_unit_interval_and_flags_need_disagreement(seed: int, aum_scale: float) -> None:
    rng = np.random.default_rng(seed)
    given_, probs, _, _ = _noisy_problem(n=80, k=3, flip=0.2, seed=seed)
    aum = rng.normal(0, 1, 80) * aum_scale
    aum[rng.random(80) < 0.2] = np.nan
    out = classification_label_issues(given_, probs, aum=aum)
    assert out["label_quality"].between(0, 1).all()
    flagged = out["is_label_issue"].to_numpy()
    assert (probs.argmax(1)[flagged] != given_[flagged]).all()
    names = {name for r in out["reasons"] for name in r.split(",") if name}
    assert names <= set(REASONS)


@pytest.mark.parametrize(
    ("labels", "probs", "kwargs", "message"),
    [
        (np.array([0, 1]), np.full((3, 2), 0.5), {}, r"pred_probs must be \(N=2, K\)"),
        (np.array([0, 2]), np.full((2, 2), 0.5), {}, r"labels must be integers in \[0, 2\)"),
        (np.array([0, 1]), np.array([[np.nan, 1.0], [0.5, 0.5]]), {}, "NaN or inf"),
        (np.array([0, 1]), np.full((2, 2), 0.9), {}, "sum to 1"),
        (np.array([0, 1]), np.full((2, 2), 0.5), {"aum": np.zeros(3)}, r"aum must be \(N=2,\)"),
        (
            np.array([0, 1]),
            np.full((2, 2), 0.5),
            {"conflicting": np.zeros((2, 1), bool)},
            r"conflicting must be \(N=2,\); got \(2, 1\)",
        ),
    ],
    ids=["shape", "label-range", "nan", "not-normalised", "aum-length", "conflicting-shape"],
)
def test_bad_inputs_say_what_was_expected(labels, probs, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_label_issues(labels, probs, **kwargs)
