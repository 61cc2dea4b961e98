"""Annotation checks for object boxes and instance masks, one row per finding.

The same score / flag convention as the image checks (``score`` in [0, 1], lower = worse),
but per object: each row names the image and the ``object_id`` (``""`` for an image-level
finding such as ``no_objects``). Pure numpy (no torch), so the clean stage stays light.

=====================  ========  =========================================================
check                  severity  flags
=====================  ========  =========================================================
annotation_problem     error     an entry that does not make sense as given (unknown class,
                                 a box that is not four numbers, a line of the wrong length)
image_missing          error     an annotation for an image that is not on disk
box_degenerate         error     zero or negative width or height
box_outside            error     no overlap with the image
box_clipped            warning   partly outside the image (beyond ``edge_tolerance`` px)
box_tiny               warning   smaller than a quarter of the smallest anchor at the
                                 detector's input size (``min_size`` on the shorter side)
box_aspect             warning   longer side more than ``max_aspect`` times the shorter
duplicate_box          warning   a second box of the same class on the same object
                                 (IoU >= ``duplicate_iou``); the later one is flagged
class_overlap          warning   boxes of different classes on the same place (IoU >=
                                 ``duplicate_iou``): a swap or double label; both flagged
mask_invalid           error     a polygon / RLE that does not decode
mask_box_mismatch      warning   the mask's bounding box has IoU < ``mask_box_iou`` with the
                                 given box (or the mask is empty)
no_objects             info      an image without any object
=====================  ========  =========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from datapipe.checks.base import Severity
from datapipe.manifest import sample_id
from datapipe.objects import ImageEntry, box_intersection, box_iou, decode_instance_mask

#: ``(object_id, check, score, detail)`` -> a row, for one image's findings
Flag = Callable[[str, str, float, str], None]
BOX_ISSUE_COLUMNS = ("sample_id", "image", "object_id", "check", "severity", "score", "detail")
SEVERITY: dict[str, Severity] = {
    "annotation_problem": "error", "image_missing": "error", "box_degenerate": "error",
    "box_outside": "error", "box_clipped": "warning", "box_tiny": "warning",
    "box_aspect": "warning", "duplicate_box": "warning", "class_overlap": "warning",
    "mask_invalid": "error", "mask_box_mismatch": "warning", "no_objects": "info",
}  # fmt: skip


@dataclass(frozen=True)
class BoxCheckSettings:
    min_size: int = 800  # the detector resizes the shorter side to this (torchvision default)
    smallest_anchor: float = 32.0  # torchvision's smallest FPN anchor
    max_aspect: float = 8.0  # anchors span 1:2..2:1; beyond 1:8 few anchors match
    duplicate_iou: float = 0.9
    mask_box_iou: float = 0.5
    edge_tolerance: float = 1.0  # pixels a box may overhang the image (rounding in tools)


def box_issues(
    objects: pd.DataFrame,
    images: Sequence[ImageEntry],
    sizes: Mapping[str, tuple[int, int]],
    settings: BoxCheckSettings = BoxCheckSettings(),
) -> pd.DataFrame:
    """Every finding of the checks above. ``objects`` has ``datapipe.objects.OBJECT_COLUMNS``
    (in pixels); ``sizes`` maps sample id -> ``(height, width)`` of the decoded image (an image
    not in it is not measured against its size)."""
    found: list[dict[str, object]] = []

    def add(sid: str, image: str, object_id: str, check: str, score: float, detail: str) -> None:
        found.append({"sample_id": sid, "image": image, "object_id": object_id, "check": check,
                      "severity": SEVERITY[check], "score": float(np.clip(score, 0.0, 1.0)),
                      "detail": detail})  # fmt: skip

    with_objects = set(objects["sample_id"])
    for entry in images:
        sid = sample_id(entry.image)
        if entry.problem:
            add(sid, entry.image, "", "image_missing", 0.0, entry.problem)
        elif sid not in with_objects:
            add(sid, entry.image, "", "no_objects", 1.0, "no object annotated")
    bad = objects[objects["problem"] != ""]
    for sid, image, object_id, problem in zip(
        bad["sample_id"], bad["image"], bad["object_id"], bad["problem"], strict=True
    ):
        add(str(sid), str(image), str(object_id), "annotation_problem", 0.0, str(problem))
    usable = objects[(objects["problem"] == "") & ~objects["relative"]]
    group_id: object
    for group_id, group in usable.groupby("sample_id", sort=False):
        sid = str(group_id)
        image = str(group["image"].iat[0])

        def flag(object_id: str, check: str, score: float, detail: str) -> None:
            add(sid, image, object_id, check, score, detail)  # noqa: B023 (used at once)

        _image_checks(group, sizes.get(sid), settings, flag)
    return pd.DataFrame(found, columns=list(BOX_ISSUE_COLUMNS))


def _image_checks(
    group: pd.DataFrame, size: tuple[int, int] | None, s: BoxCheckSettings, add: Flag
) -> None:
    boxes = group[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ids = [str(i) for i in group["object_id"]]
    degenerate = (w <= 0) | (h <= 0)
    for i in np.flatnonzero(degenerate):
        add(ids[i], "box_degenerate", 0.0, f"width {w[i]:g}, height {h[i]:g}")
    good = ~degenerate
    if size is not None:
        height, width = size
        inside = box_intersection(boxes, np.array([[0.0, 0.0, width, height]]))[:, 0]
        t = s.edge_tolerance
        over = (
            (boxes[:, 0] < -t)
            | (boxes[:, 1] < -t)
            | (boxes[:, 2] > width + t)
            | (boxes[:, 3] > height + t)
        )
        for i in np.flatnonzero(good & (inside <= 0)):
            add(
                ids[i],
                "box_outside",
                0.0,
                f"box {_fmt(boxes[i])} is outside the {width}x{height} image",
            )
        for i in np.flatnonzero(good & (inside > 0) & over):
            share = inside[i] / max(w[i] * h[i], 1e-12)
            add(
                ids[i],
                "box_clipped",
                share,
                f"box {_fmt(boxes[i])} overhangs the {width}x{height} image ({share:.0%} inside)",
            )
        scale = s.min_size / max(1, min(height, width))
        side = np.sqrt(np.clip(w * h, 0, None)) * scale
        floor = s.smallest_anchor / 4
        for i in np.flatnonzero(good & (side < floor)):
            add(
                ids[i],
                "box_tiny",
                side[i] / floor,
                f"{side[i]:.1f} px at min_size {s.min_size} "
                f"(smallest anchor {s.smallest_anchor:g})",
            )
    aspect = np.maximum(w, h) / np.maximum(np.minimum(w, h), 1e-12)
    for i in np.flatnonzero(good & (aspect > s.max_aspect)):
        add(ids[i], "box_aspect", s.max_aspect / aspect[i], f"aspect {aspect[i]:.1f}:1")
    _overlaps(boxes, good, group, s, add)
    _masks(boxes, good, group, size, s, add)


def _overlaps(
    boxes: np.ndarray, good: np.ndarray, group: pd.DataFrame, s: BoxCheckSettings, add: Flag
) -> None:
    idx = np.flatnonzero(good)
    if len(idx) < 2:
        return
    iou = box_iou(boxes[idx], boxes[idx])
    classes = group["class"].to_numpy()[idx]
    names = [str(v) for v in group["object_id"]]
    ids = [names[i] for i in idx.tolist()]
    upper = np.triu(iou >= s.duplicate_iou, k=1)
    for a, b in zip(*np.nonzero(upper), strict=True):
        if classes[a] == classes[b]:
            add(
                ids[b],
                "duplicate_box",
                1.0 - iou[a, b],
                f"IoU {iou[a, b]:.2f} with {ids[a]} ({classes[a]})",
            )
        else:
            for x, y in ((a, b), (b, a)):
                add(
                    ids[x],
                    "class_overlap",
                    1.0 - iou[a, b],
                    f"{classes[x]} box on the place of {ids[y]} ({classes[y]}), "
                    f"IoU {iou[a, b]:.2f}",
                )


def _masks(
    boxes: np.ndarray,
    good: np.ndarray,
    group: pd.DataFrame,
    size: tuple[int, int] | None,
    s: BoxCheckSettings,
    add: Flag,
) -> None:
    if size is None:
        return
    height, width = size
    for i, (object_id, text) in enumerate(
        zip(group["object_id"], group["instance_mask"], strict=True)
    ):
        if not text or not good[i]:
            continue
        object_id = str(object_id)
        try:
            mask = decode_instance_mask(text, height, width)
        except ValueError as exc:
            add(object_id, "mask_invalid", 0.0, str(exc))
            continue
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            add(object_id, "mask_box_mismatch", 0.0, "the mask is empty")
            continue
        mask_box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)
        iou = float(box_iou(boxes[i : i + 1], mask_box)[0, 0])
        if iou < s.mask_box_iou:
            add(
                object_id,
                "mask_box_mismatch",
                iou,
                f"mask box {_fmt(mask_box[0])} has IoU {iou:.2f} with the box",
            )


def _fmt(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in np.round(box, 1)) + "]"
