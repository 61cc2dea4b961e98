"""COCO detection and instance-mask metrics through pycocotools' ``COCOeval``, as flat,
JSON-friendly numbers.

The ground truth and the detections are built as COCO datasets in memory (no JSON files, no
``loadRes``: it fails on an empty result list). Image ``i`` gets COCO id ``i + 1``, class ``k``
category id ``k + 1``, and annotation ids start at 1: ``COCOeval`` stores matched *ids* in
arrays of zeros and reads them as booleans, so an annotation with id 0 never counts as matched.

``maxDets``: ``COCOeval`` evaluates with ``[1, 10, 100]`` by default, and recall at 100 is a
ceiling for a model that returns more (``box_detections_per_img``). We evaluate with
``sorted({1, 10, 100, max_detections})`` and read the numbers from ``COCOeval.eval`` rather than
``summarize()``, whose first AP is hard-wired to ``maxDets=100`` (-1 when 100 is not listed)
and whose other numbers take ``maxDets[2]``. So: the AP numbers (``map*``) and ``mar_max`` are
at ``max_detections``, ``mar_1/10/100`` at 1, 10, 100. With the default ``max_detections=100``
every number is the one ``summarize()`` prints. Note that COCO's cap is per image *and class*
(the best ``maxDets`` of each class in an image), not per image as a detector's is.

Object areas (small < 32², medium < 96², large) are the box's area for box metrics and the
mask's pixel count for mask metrics (torchmetrics' choice; COCO's own files give the mask area
to both). ``-1`` from ``COCOeval`` (no objects of that kind) becomes ``None``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datapipe.scoring.masks import RleMasks

if TYPE_CHECKING:
    from datapipe.scoring.detection import Boxes

IouType = Literal["bbox", "segm"]
#: the flat keys of one ``iouType``'s metrics (plus ``map_per_class``)
METRIC_KEYS = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_max", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip


def coco_metrics(
    targets: Sequence[Boxes],
    predictions: Sequence[Boxes],
    classes: Sequence[str],
    *,
    sizes: Sequence[tuple[int, int]],
    max_detections: int = 100,
    masks: bool = False,
    crowd: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """COCO mAP / mAR (:data:`METRIC_KEYS`) and ``map_per_class`` {class: AP or None}; with
    ``masks`` the same for instance masks, prefixed ``mask_``.

    ``mar_small/medium/large`` (at ``max_detections``) come with the keys asked for: COCO's
    summary has them.

    Shapes:
        per image ``i``: ``targets[i].boxes (N, 4)`` x0 y0 x1 y1 pixels, ``.labels (N,)`` in
        ``[0, len(classes))``, with ``masks`` ``.masks (N, H, W)`` bool; ``predictions[i]`` the
        same plus ``.scores (M,)``; ``sizes[i]`` ``(H, W)``; ``crowd[i]`` ``(N,)`` bool.
    """
    crowd_flags = _check(targets, predictions, classes, sizes, max_detections, masks, crowd)
    args = (targets, predictions, len(classes), sizes, crowd_flags, max_detections)
    result = _summary(_evaluate("bbox", *args), classes, max_detections)
    if masks:
        mask_result = _summary(_evaluate("segm", *args), classes, max_detections)
        result |= {f"mask_{key}": value for key, value in mask_result.items()}
    return result


# --- validation -----------------------------------------------------------------------------------


def _check(
    targets: Sequence[Boxes],
    predictions: Sequence[Boxes],
    classes: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    max_detections: int,
    masks: bool,
    crowd: Sequence[np.ndarray] | None,
) -> list[np.ndarray]:
    """Raise ``ValueError`` on inconsistent inputs; return the crowd flags, one array an image."""
    n = len(targets)
    if len(predictions) != n or len(sizes) != n:
        raise ValueError(
            f"expected one prediction and one size per target image ({n}), "
            f"got {len(predictions)} predictions and {len(sizes)} sizes"
        )
    if not classes:
        raise ValueError("expected at least one class, got none")
    if max_detections < 1:
        raise ValueError(f"expected max_detections >= 1, got {max_detections}")
    if crowd is not None and len(crowd) != n:
        raise ValueError(f"expected crowd flags for {n} images, got {len(crowd)}")
    flags = []
    for i in range(n):
        _check_boxes(targets[i], f"targets[{i}]", len(classes), sizes[i], masks, scored=False)
        _check_boxes(predictions[i], f"predictions[{i}]", len(classes), sizes[i], masks, True)
        count = len(targets[i].labels)
        flag = np.zeros(count, bool) if crowd is None else np.asarray(crowd[i], bool)
        if flag.shape != (count,):
            raise ValueError(f"expected crowd[{i}] of shape ({count},), got {flag.shape}")
        flags.append(flag)
    return flags


def _check_boxes(
    b: Boxes, name: str, num_classes: int, size: tuple[int, int], masks: bool, scored: bool
) -> None:
    boxes, labels = np.asarray(b.boxes), np.asarray(b.labels)
    n = len(labels)
    if labels.shape != (n,) or boxes.shape != (n, 4):
        raise ValueError(f"expected {name} boxes (N, 4) and labels (N,), got {boxes.shape} "
                         f"and {labels.shape}")  # fmt: skip
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"expected {name} labels in [0, {num_classes}), got {np.unique(labels)}")
    if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError(f"expected {name} finite boxes with x1 >= x0 and y1 >= y0, got {boxes}")
    if scored and (b.scores is None or np.shape(b.scores) != (n,)):
        shape = None if b.scores is None else np.shape(b.scores)
        raise ValueError(f"expected {name} scores ({n},), got {shape}")
    if masks and n and (b.masks is None or tuple(b.masks.shape) != (n, *size)):
        shape = None if b.masks is None else tuple(b.masks.shape)
        raise ValueError(f"expected {name} masks ({n}, {size[0]}, {size[1]}), got {shape}")


# --- evaluation -----------------------------------------------------------------------------------


def _evaluate(
    iou_type: IouType,
    targets: Sequence[Boxes],
    predictions: Sequence[Boxes],
    num_classes: int,
    sizes: Sequence[tuple[int, int]],
    crowd: Sequence[np.ndarray],
    max_detections: int,
) -> COCOeval:
    """A ``COCOeval`` after ``evaluate()`` and ``accumulate()``, its prints swallowed."""
    images = [{"id": i + 1, "height": int(h), "width": int(w)} for i, (h, w) in enumerate(sizes)]
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    gt = _annotations(targets, iou_type, crowd)
    dt = _annotations(predictions, iou_type, None)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _dataset(images, categories, gt)
        coco_dt = _dataset(images, categories, dt)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.maxDets = sorted({1, 10, 100, max_detections})
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _dataset(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


def _annotations(
    per_image: Sequence[Boxes], iou_type: IouType, crowd: Sequence[np.ndarray] | None
) -> list[dict[str, Any]]:
    """COCO annotation dicts, ids from 1: targets with ``crowd`` flags (``iscrowd``),
    predictions (``crowd=None``) with a ``score``."""
    out: list[dict[str, Any]] = []
    for i, b in enumerate(per_image):
        xywh = np.asarray(b.boxes, np.float64).reshape(-1, 4).copy()
        xywh[:, 2:] -= xywh[:, :2]
        rles = _encode(b.masks) if iou_type == "segm" and len(xywh) else []
        for j, box in enumerate(xywh):
            ann = {"id": len(out) + 1, "image_id": i + 1, "category_id": int(b.labels[j]) + 1,
                   "bbox": box.tolist(), "area": float(box[2] * box[3])}  # fmt: skip
            if crowd is None:
                ann["score"] = float(b.scores[j])  # type: ignore[index]  # checked
            else:
                ann["iscrowd"] = int(crowd[i][j])
            if rles:
                ann["segmentation"] = rles[j]
                ann["area"] = float(mask_utils.area(rles[j]))
            out.append(ann)
    return out


def _encode(masks: np.ndarray | RleMasks | None) -> list[dict[str, Any]]:
    """COCO RLEs of ``(N, H, W)`` bool masks (``encode`` wants Fortran-ordered ``(H, W, N)``);
    predictions come encoded already."""
    assert masks is not None  # checked at the boundary
    if isinstance(masks, RleMasks):
        return list(masks.rles)
    stacked = np.asfortranarray(np.asarray(masks).transpose(1, 2, 0).astype(np.uint8))
    return list(mask_utils.encode(stacked))


# --- reading the accumulated arrays ---------------------------------------------------------------


def _summary(evaluator: COCOeval, classes: Sequence[str], max_detections: int) -> dict[str, Any]:
    """The flat metrics from ``precision (T, R, K, A, M)`` and ``recall (T, K, A, M)``."""
    p = evaluator.params
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    area = {label: a for a, label in enumerate(p.areaRngLbl)}
    m = {d: index for index, d in enumerate(p.maxDets)}[max_detections]
    at = {t: int(np.argmin(np.abs(p.iouThrs - t))) for t in (0.5, 0.75)}
    out: dict[str, Any] = {
        "map": _mean(precision[:, :, :, area["all"], m]),
        "map_50": _mean(precision[at[0.5], :, :, area["all"], m]),
        "map_75": _mean(precision[at[0.75], :, :, area["all"], m]),
    }
    for size in ("small", "medium", "large"):
        out[f"map_{size}"] = _mean(precision[:, :, :, area[size], m])
    for index, d in enumerate(p.maxDets):
        if d in (1, 10, 100):
            out[f"mar_{d}"] = _mean(recall[:, :, area["all"], index])
    out["mar_max"] = _mean(recall[:, :, area["all"], m])
    for size in ("small", "medium", "large"):
        out[f"mar_{size}"] = _mean(recall[:, :, area[size], m])
    out["map_per_class"] = {
        name: _mean(precision[:, :, k, area["all"], m]) for k, name in enumerate(classes)
    }
    return {key: out[key] for key in (*METRIC_KEYS, "map_per_class")}


def _mean(values: np.ndarray) -> float | None:
    """COCO's mean over the entries that exist (``-1`` marks none); ``None`` when none do."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None
