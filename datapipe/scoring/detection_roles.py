"""Hard and easy examples for detection, from held-out predictions (the detection counterpart
of :mod:`datapipe.difficulty`).

Per image, predictions are matched one-to-one to ground-truth objects of their class as COCO
does: in order of score, each prediction takes the unmatched object it overlaps most, at
IoU >= ``iou_threshold``. Then

* a **hard positive** is an object no prediction matched (missed, or found only below
  ``iou_threshold``); its ``iou`` / ``score`` are those of the best-overlapping same-class
  prediction left unmatched (0 / NaN when there is none);
* an **easy positive** is an object matched at IoU >= ``easy_iou`` with score >= ``easy_score``
  (objects matched less well are neither and get no row);
* a **hard negative** is an unmatched prediction with score >= ``negative_score``. Its ``kind``
  says where it fired: ``wrong_class`` (on an object of another class, IoU >= ``iou_threshold``),
  ``duplicate`` (on an object of its class that another prediction matched first) or
  ``background`` (nowhere near an object: its ``iou`` is its best overlap with any object).

``difficulty`` is in [0, 1], higher = harder: ``1 - score * iou`` for objects (1 when missed),
the score for a hard negative. An image's difficulty is the mean over its objects and its hard
negatives (0 for an image with neither), so a confident false positive makes an image harder.

Numpy only: predictions and targets are anything with ``.boxes``, ``.labels`` (and ``.scores``),
such as :class:`datapipe.scoring.detection.Boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from datapipe.objects import box_iou

if TYPE_CHECKING:
    from datapipe.scoring.detection import Boxes

ROLES = ("hard_positive", "easy_positive", "hard_negative")
NEGATIVE_KINDS = ("background", "wrong_class", "duplicate")
ROLE_COLUMNS = ("image", "box", "prediction", "class", "role", "kind", "difficulty", "iou",
                "score")  # fmt: skip


@dataclass(frozen=True)
class ObjectRoles:
    """``rows``: :data:`ROLE_COLUMNS`, one row per hard / easy positive (``box`` = the object's
    index in its image, ``prediction`` = the matched or nearest prediction, -1 for none,
    ``kind`` empty) and per hard negative (``box`` -1, ``prediction`` its index), in image
    order; ``image_difficulty (n_images,)`` in [0, 1]; ``counts[role][class]``."""

    rows: pd.DataFrame
    image_difficulty: np.ndarray
    counts: dict[str, dict[int, int]]


@dataclass(frozen=True)
class _Thresholds:
    iou_threshold: float
    easy_iou: float
    easy_score: float
    negative_score: float


def object_roles(
    targets: Sequence[Boxes],
    predictions: Sequence[Boxes],
    *,
    iou_threshold: float = 0.5,
    easy_iou: float = 0.75,
    easy_score: float = 0.5,
    negative_score: float = 0.5,
) -> ObjectRoles:
    """Sort every object and every confident prediction into hard / easy positive or hard
    negative.

    Shapes:
        per image ``i``: ``targets[i].boxes (N, 4)`` x0 y0 x1 y1, ``.labels (N,)``;
        ``predictions[i].boxes (M, 4)``, ``.labels (M,)``, ``.scores (M,)`` in [0, 1].
    """
    th = _Thresholds(iou_threshold, easy_iou, easy_score, negative_score)
    _check(targets, predictions, th)
    found: list[dict[str, object]] = []
    difficulty = np.zeros(len(targets))
    for i, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        rows, difficulty[i] = _image_roles(i, t, p, th)
        found += rows
    frame = _frame(found)
    return ObjectRoles(frame, difficulty, _counts(frame, targets, predictions))


def _check(targets: Sequence[Boxes], predictions: Sequence[Boxes], th: _Thresholds) -> None:
    if len(targets) != len(predictions):
        raise ValueError(f"expected one prediction per target image ({len(targets)}), "
                         f"got {len(predictions)}")  # fmt: skip
    for name, value in vars(th).items():
        if not 0.0 <= value <= 1.0 or (name == "iou_threshold" and value == 0.0):
            bounds = "(0, 1]" if name == "iou_threshold" else "[0, 1]"
            raise ValueError(f"expected {name} in {bounds}, got {value}")
    for i, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        for name, b in ((f"targets[{i}]", t), (f"predictions[{i}]", p)):
            n = len(b.labels)
            if np.shape(b.boxes) != (n, 4) or np.shape(b.labels) != (n,):
                raise ValueError(f"expected {name} boxes (N, 4) and labels (N,), got "
                                 f"{np.shape(b.boxes)} and {np.shape(b.labels)}")  # fmt: skip
        scores = p.scores
        if scores is None or np.shape(scores) != (len(p.labels),):
            raise ValueError(f"expected predictions[{i}] scores ({len(p.labels)},), "
                             f"got {None if scores is None else np.shape(scores)}")  # fmt: skip
        if len(scores) and not (np.min(scores) >= 0.0 and np.max(scores) <= 1.0):
            raise ValueError(f"expected predictions[{i}] scores in [0, 1], got {scores}")


def _image_roles(
    i: int, t: Boxes, p: Boxes, th: _Thresholds
) -> tuple[list[dict[str, object]], float]:
    """One image's rows and difficulty."""
    t_labels, p_labels = np.asarray(t.labels, np.int64), np.asarray(p.labels, np.int64)
    scores = np.asarray(p.scores, np.float64)
    iou = box_iou(np.asarray(t.boxes, np.float64), np.asarray(p.boxes, np.float64))
    same = t_labels[:, None] == p_labels[None, :]
    gt_match, pred_match = match_greedy(np.where(same, iou, 0.0), scores, th.iou_threshold)
    positives, object_difficulty = _positives(i, t_labels, iou, same, scores, gt_match, th)
    negatives = _negatives(i, p_labels, iou, same, scores, pred_match, th)
    hard_negative = scores[(pred_match < 0) & (scores >= th.negative_score)]  # their difficulty
    items = np.concatenate([object_difficulty, hard_negative])
    return positives + negatives, float(items.mean()) if items.size else 0.0


def match_greedy(
    iou: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """COCO's one-to-one matching: by descending score, each prediction takes the unmatched
    object it overlaps most, at IoU >= ``threshold``. Returns each object's prediction and each
    prediction's object (-1 for none).

    Shapes:
        ``iou (N, M)`` objects x predictions (0 where classes differ); ``scores (M,)``;
        returns ``(N,)`` and ``(M,)`` int64.
    """
    gt_match = np.full(iou.shape[0], -1, np.int64)
    pred_match = np.full(iou.shape[1], -1, np.int64)
    for j in np.argsort(-scores, kind="stable"):
        free = np.where(gt_match < 0, iou[:, j], -1.0)
        if free.size and free.max() >= threshold:
            g = int(np.argmax(free))
            gt_match[g], pred_match[j] = j, g
    return gt_match, pred_match


def _positives(
    i: int,
    labels: np.ndarray,
    iou: np.ndarray,
    same: np.ndarray,
    scores: np.ndarray,
    gt_match: np.ndarray,
    th: _Thresholds,
) -> tuple[list[dict[str, object]], np.ndarray]:
    """Rows of the hard and easy positives, and every object's difficulty ``(N,)``."""
    taken = np.zeros(iou.shape[1], bool)
    taken[gt_match[gt_match >= 0]] = True
    rows: list[dict[str, object]] = []
    difficulty = np.ones(len(labels))
    for b in range(len(labels)):
        j = int(gt_match[b]) if gt_match[b] >= 0 else _nearest(iou[b], same[b] & ~taken)
        overlap, score = (float(iou[b, j]), float(scores[j])) if j >= 0 else (0.0, np.nan)
        difficulty[b] = 1.0 - score * overlap if j >= 0 else 1.0
        easy = overlap >= th.easy_iou and score >= th.easy_score
        role = "hard_positive" if gt_match[b] < 0 else "easy_positive" if easy else ""
        if role:
            rows.append({"image": i, "box": b, "prediction": j, "class": int(labels[b]),
                         "role": role, "kind": "", "difficulty": float(difficulty[b]),
                         "iou": overlap, "score": score})  # fmt: skip
    return rows, np.clip(difficulty, 0.0, 1.0)


def _nearest(iou: np.ndarray, allowed: np.ndarray) -> int:
    """The allowed prediction overlapping an object most, -1 when none overlaps it at all.

    Shapes:
        ``iou (M,)``, ``allowed (M,)`` bool.
    """
    candidates = np.where(allowed, iou, 0.0)
    return int(np.argmax(candidates)) if candidates.size and candidates.max() > 0 else -1


def _negatives(
    i: int,
    labels: np.ndarray,
    iou: np.ndarray,
    same: np.ndarray,
    scores: np.ndarray,
    pred_match: np.ndarray,
    th: _Thresholds,
) -> list[dict[str, object]]:
    """Rows of the hard negatives: confident predictions that matched no object."""
    rows: list[dict[str, object]] = []
    for j in np.flatnonzero((pred_match < 0) & (scores >= th.negative_score)):
        kind, overlap = _negative_kind(iou[:, j], same[:, j], th.iou_threshold)
        rows.append({"image": i, "box": -1, "prediction": int(j), "class": int(labels[j]),
                     "role": "hard_negative", "kind": kind, "difficulty": float(scores[j]),
                     "iou": overlap, "score": float(scores[j])})  # fmt: skip
    return rows


def _negative_kind(iou: np.ndarray, same: np.ndarray, threshold: float) -> tuple[str, float]:
    """Where an unmatched prediction fired, and its IoU with the object that says so.

    Shapes:
        ``iou (N,)`` and ``same (N,)`` (same class) against the image's objects.
    """
    best_same = float(iou[same].max()) if same.any() else 0.0
    best_other = float(iou[~same].max()) if (~same).any() else 0.0
    if best_same >= threshold:
        return "duplicate", best_same
    if best_other >= threshold:
        return "wrong_class", best_other
    return "background", max(best_same, best_other)


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(ROLE_COLUMNS))
    ints = ["image", "box", "prediction", "class"]
    floats = ["difficulty", "iou", "score"]
    return frame.astype(dict.fromkeys(ints, "int64") | dict.fromkeys(floats, "float64"))


def _counts(
    rows: pd.DataFrame, targets: Sequence[Boxes], predictions: Sequence[Boxes]
) -> dict[str, dict[int, int]]:
    """``counts[role][class]``, every class seen in the targets or predictions (zeros kept)."""
    seen = [np.asarray(b.labels, np.int64) for b in (*targets, *predictions)]
    classes = np.unique(np.concatenate([np.zeros(0, np.int64), *seen])).tolist()
    counts = rows.groupby(["role", "class"]).size()
    return {role: {int(c): int(counts.get((role, c), 0)) for c in classes} for role in ROLES}
