"""Out-of-fold detectors over the scored images, then per-object label issues
(``cleanlab.object_detection``), the hard / easy sort of objects and held-out COCO metrics.

Images come from the score stage's decoded source (resized to ``image_size`` squares); the
given boxes are scaled into that frame for training and the predictions back to each image's
own pixels before anything is judged, so every box in the reports is in the image's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from datapipe import tasks
from datapipe.config import DetectorParams
from datapipe.detect.targets import ImageObjects, image_objects, resize_masks, scale_boxes
from datapipe.errors import DatapipeError
from datapipe.objects import box_iou
from datapipe.scoring.detection import Boxes, detection_label_issues, detection_out_of_fold
from datapipe.scoring.held_out import HeldOutStore

if TYPE_CHECKING:
    from datapipe.score import ScoreJob, ScoreResult

log = logging.getLogger("datapipe")

#: reports/label_issues.csv for object tasks: one row per flagged object, worst first
BOX_ISSUE_REPORT = (
    "sample_id", "image", "object_id", "issue", "given_class", "given_box", "suggested_class",
    "suggested_box", "box_score", "label_quality",
)  # fmt: skip
#: reports/hard_examples.csv for object tasks: one row per object (or confident false alarm)
OBJECT_HARD_REPORT = (
    "sample_id", "image", "object_id", "class", "role", "kind", "difficulty", "iou", "score",
    "predicted_box",
)  # fmt: skip
#: a held-out prediction this confident counts in the object confusion
CONFIDENT = 0.5


def score_detection(job: ScoreJob) -> ScoreResult | None:
    """Train the fold detectors, predict the held-out images, and judge every given box.
    Long by design: the one place that joins the predictions to the manifest's rows."""
    from datapipe.score import ScoreResult, base_frame  # score builds on the task modules

    if job.objects is None:
        raise DatapipeError("detection scoring needs objects.parquet (re-run ingest)")
    picked = job.manifest.iloc[job.rows]
    sizes = [(int(h), int(w)) for h, w in zip(picked["height"], picked["width"], strict=True)]
    masks = tasks.get(job.dataset.task).instance_masks
    given = image_objects(job.objects, picked["sample_id"].tolist(), sizes, classes=job.classes,
                          masks=masks)  # fmt: skip
    side = job.settings.recipe.image_size
    images = _decoded(job.source, len(job.rows))
    to_input = [resize_masks(scale_boxes(t, side / w, side / h), side, side)
                for t, (h, w) in zip(given.targets, sizes, strict=True)]  # fmt: skip
    store = (None if job.checkpoint is None
             else HeldOutStore(job.checkpoint.directory, job.checkpoint.fingerprint))  # fmt: skip
    held = detection_out_of_fold(
        images,
        to_input,
        job.folds,
        make_model=job.make_model,
        settings=job.settings,
        desc=f"score {job.name}",
        store=store,  # cleared once the result is built
        dist=job.dist,
    )
    if not job.dist.is_main:
        return None
    found = [resize_masks(scale_boxes(p, w / side, h / side), h, w)
             for p, (h, w) in zip(held, sizes, strict=True)]  # fmt: skip
    judged = judge(given, found, job.classes, sizes=sizes, masks=masks,
                   max_detections=getattr(job.settings.recipe, "detector", DetectorParams())
                   .detections_per_img)  # fmt: skip
    names = np.asarray(job.classes, dtype=object)
    scored = judged.images.set_axis(job.manifest.index[job.rows])
    scores = base_frame(job.manifest, job.rows).join(scored)
    issues = judged.issues.assign(
        sample_id=picked["sample_id"].to_numpy()[judged.issues["image"]],
        image=picked["image"].to_numpy()[judged.issues["image"]],
        label_quality=judged.images["label_quality"].to_numpy()[judged.issues["image"]],
    )
    hard = judged.hard.assign(
        sample_id=picked["sample_id"].to_numpy()[judged.hard["image"]],
        image=picked["image"].to_numpy()[judged.hard["image"]],
        **{"class": names[judged.hard["class"].to_numpy(np.int64)]},
    )
    k = len(job.classes)
    metrics = {
        "task": job.dataset.task,
        "scored": len(job.rows),
        **{f"oof_{key}": value for key, value in judged.coco.items()},
        "label_issues": int(scored["is_label_issue"].sum()),
        "estimated_noise_rate": float(scored["is_label_issue"].mean()),
        "box_issues": {str(kind): int(n) for kind, n in issues["issue"].value_counts().items()},
        "objects": int(sum(len(t.labels) for t in given.targets)),
        **{f"{role}s": int((hard["role"] == role).sum())
           for role in ("hard_positive", "easy_positive", "hard_negative")},
    }  # fmt: skip
    from datapipe.metrics import confusion_rows

    if store is not None:
        store.clear()
    return ScoreResult(
        scores=scores,
        label_issues=issues.sort_values(["box_score", "label_quality"], kind="stable")[
            list(BOX_ISSUE_REPORT)
        ],
        hard_examples=hard.sort_values(
            ["role", "difficulty"], ascending=[False, False], kind="stable"
        )[list(OBJECT_HARD_REPORT)],
        confusion_rows=confusion_rows(judged.confusion, [*job.classes, "background"]),
        metrics=metrics | {"confusion_classes": k + 1},
        issue_columns=BOX_ISSUE_REPORT,
        hard_columns=OBJECT_HARD_REPORT,
    )


def _decoded(source: Any, n: int) -> list[np.ndarray]:
    """Every scored image as a normalised ``(C, S, S)`` float16 array, in row order."""
    images: list[np.ndarray] = [np.empty(0, np.float16)] * n
    chunks = [np.arange(start, min(start + 64, n)) for start in range(0, n, 64)]
    for index, x, _ in source.batches(chunks):
        for i, image in zip(np.asarray(index).tolist(), x.numpy(), strict=True):
            images[i] = image
    return images


@dataclass(frozen=True)
class Judged:
    """Held-out predictions judged against the given boxes (all in image pixels)."""

    images: pd.DataFrame  # per image: label_quality, is_label_issue, reasons, difficulty, ...
    issues: pd.DataFrame  # per flagged object: reports/label_issues.csv's columns
    hard: pd.DataFrame  # per object (or confident false alarm): its role
    confusion: np.ndarray  # (K+1, K+1), background last
    coco: dict[str, Any]


def judge(
    given: ImageObjects,
    found: Sequence[Boxes],
    classes: Sequence[str],
    *,
    sizes: Sequence[tuple[int, int]],
    max_detections: int,
    masks: bool = False,
) -> Judged:
    """Per image: label quality, flag, difficulty, box counts; per flagged box one issue row;
    per object its role; the object confusion; COCO metrics. Long by design: the four views
    share the matched boxes."""
    from datapipe.scoring.coco_eval import coco_metrics
    from datapipe.scoring.detection_roles import object_roles

    k = len(classes)
    names = np.asarray(classes, dtype=object)
    found_issues = detection_label_issues(given.targets, found, k)
    boxes = found_issues.boxes
    rows = []
    for r in boxes.to_dict("records") if len(boxes) else []:
        if not r["issue"]:
            continue
        suggested = r["suggested_box"]
        rows.append({
            "image": r["image"], "object_id": given.object_ids[r["image"]][r["box"]],
            "issue": r["issue"], "given_class": names[r["class"]],
            "given_box": _box_text(given.targets[r["image"]].boxes[r["box"]]),
            "suggested_class": names[r["suggested_class"]] if r["suggested_class"] >= 0 else "",
            "suggested_box": _box_text(suggested) if suggested is not None else "",
            "box_score": min(r["badloc"], r["swap"]),
        })  # fmt: skip
    if masks:  # a box in place whose mask the model draws elsewhere
        flagged_boxes = {(r["image"], r["object_id"]) for r in rows}
        rows += [r for r in mask_issues(given, found, names)
                 if (r["image"], r["object_id"]) not in flagged_boxes]  # fmt: skip
    for r in found_issues.missing.to_dict("records"):
        rows.append({
            "image": r["image"], "object_id": "", "issue": "missing", "given_class": "",
            "given_box": "", "suggested_class": names[r["class"]],
            "suggested_box": _box_text(r["box"]), "box_score": r["overlooked"],
        })  # fmt: skip
    issues = pd.DataFrame(rows, columns=["image", "object_id", "issue", "given_class",
                                         "given_box", "suggested_class", "suggested_box",
                                         "box_score"])  # fmt: skip
    roles = object_roles(given.targets, found)
    pairs = list(zip(roles.rows["image"], roles.rows["box"], roles.rows["prediction"], strict=True))
    hard = roles.rows.assign(
        object_id=[given.object_ids[i][b] if b >= 0 else "" for i, b, _ in pairs],
        # the matched (or nearest) held-out prediction's box: a false alarm's only box
        predicted_box=[_box_text(found[i].boxes[j]) if j >= 0 else "" for i, _, j in pairs],
    )
    n = len(given.targets)
    per_image_issues = np.bincount(issues["image"].to_numpy(np.int64), minlength=n)
    flagged = found_issues.images["is_label_issue"].to_numpy(bool) | (per_image_issues > 0)
    reasons = issues.groupby("image")["issue"].agg(
        lambda v: ",".join(f"{kind}:{count}" for kind, count in sorted(v.value_counts().items()))
    )
    images = pd.DataFrame({
        "given_label": "", "suggested_label": "",
        "label_quality": found_issues.images["label_quality"].to_numpy(np.float64),
        "is_label_issue": flagged,
        "reasons": [reasons.get(i, "") for i in range(n)],
        "difficulty": roles.image_difficulty,
        "n_objects": [len(t.labels) for t in given.targets],
        "n_predicted": [int((p.scores >= CONFIDENT).sum()) if p.scores is not None else 0
                        for p in found],
        "box_issues": per_image_issues, "aum": np.nan,
    })  # fmt: skip
    coco = coco_metrics(given.targets, found, classes, sizes=sizes, max_detections=max_detections,
                        masks=masks)  # fmt: skip
    return Judged(images, issues, hard, object_confusion(given.targets, found, k), coco)


#: mask_mismatch: a confidently found object (box IoU >= 0.5) whose given mask has a mask IoU
#: below this with the prediction's
MASK_ISSUE_IOU = 0.5


def mask_issues(
    given: ImageObjects, found: Sequence[Boxes], names: np.ndarray
) -> list[dict[str, Any]]:
    """Per given mask, the mask IoU with the best-overlapping confident same-class prediction
    (box IoU >= 0.5); a row ``mask_mismatch`` where it is below :data:`MASK_ISSUE_IOU`, the
    prediction's box as the suggestion (``box_score`` = the mask IoU)."""
    rows = []
    for i, (t, p) in enumerate(zip(given.targets, found, strict=True)):
        if t.masks is None or p.masks is None or not len(t.labels) or not len(p.labels):
            continue
        sure = p.confidences() >= CONFIDENT
        overlap = box_iou(t.boxes, p.boxes) * (t.labels[:, None] == p.labels[None, :]) * sure
        for b in range(len(t.labels)):
            j = int(np.argmax(overlap[b]))
            if overlap[b, j] < 0.5:
                continue
            inter = np.logical_and(t.masks[b], p.masks[j]).sum()
            union = np.logical_or(t.masks[b], p.masks[j]).sum()
            iou = float(inter / union) if union else 0.0
            if iou < MASK_ISSUE_IOU:
                rows.append({"image": i, "object_id": given.object_ids[i][b],
                             "issue": "mask_mismatch", "given_class": names[t.labels[b]],
                             "given_box": _box_text(t.boxes[b]), "suggested_class": "",
                             "suggested_box": _box_text(p.boxes[j]), "box_score": iou})  # fmt: skip
    return rows


def object_confusion(
    targets: Sequence[Boxes], found: Sequence[Boxes], num_classes: int, *, iou: float = 0.5
) -> np.ndarray:
    """``(K+1, K+1)`` counts, rows = given class, columns = the class of the best-overlapping
    confident prediction (IoU >= ``iou``); index K is background (a missed object in the last
    column, a confident prediction on nothing in the last row)."""
    k = num_classes
    cm = np.zeros((k + 1, k + 1), np.int64)
    for t, p in zip(targets, found, strict=True):
        keep = p.confidences() >= CONFIDENT
        pb, pl = p.boxes[keep], p.labels[keep]
        used = np.zeros(len(pl), bool)
        if len(t.labels) and len(pl):
            overlap = box_iou(t.boxes, pb)
            for g in np.argsort(-overlap.max(1)):
                j = int(np.argmax(np.where(used, -1.0, overlap[g])))
                if overlap[g, j] >= iou and not used[j]:
                    used[j] = True
                    cm[t.labels[g], pl[j]] += 1
                else:
                    cm[t.labels[g], k] += 1
        else:
            np.add.at(cm, (t.labels, np.full(len(t.labels), k)), 1)
        np.add.at(cm, (np.full(int((~used).sum()), k), pl[~used]), 1)
    return cm


def _box_text(box: Any) -> str:
    return "[" + ", ".join(f"{float(v):.1f}" for v in np.asarray(box).reshape(-1)) + "]"
