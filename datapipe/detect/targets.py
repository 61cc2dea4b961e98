"""Per-image detection targets from ``objects.parquet``: what a detector trains on and what
its predictions are judged against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from datapipe.scoring.detection import Boxes
from datapipe.scoring.masks import RleMasks


@dataclass(frozen=True)
class ImageObjects:
    """The usable objects of each image, in manifest order: ``targets[i]`` in the image's own
    pixels and ``object_ids[i]`` the ids of its boxes, in the same order."""

    targets: list[Boxes]
    object_ids: list[list[str]]


def image_objects(
    objects: pd.DataFrame,
    sample_ids: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    *,
    classes: Sequence[str],
    masks: bool = False,
) -> ImageObjects:
    """Every image's trainable boxes: entries without a ``problem``, not ``iscrowd``, in
    pixels, clipped to the image, with a positive width and height (degenerate and outside
    boxes are clean's findings, not targets). ``sizes`` are ``(height, width)`` per sample id.

    With ``masks``, each box carries its decoded instance mask (the filled box where the
    annotation has none).

    Shapes: ``targets[i].boxes`` (N_i, 4) float32 x0 y0 x1 y1, ``.labels`` (N_i,) int64,
    ``.masks`` (N_i, H_i, W_i) bool or None."""
    if len(sample_ids) != len(sizes):
        raise ValueError(f"expected one size per sample id; got {len(sizes)} for {len(sample_ids)}")
    index = {c: i for i, c in enumerate(classes)}
    usable = objects[
        (objects["problem"] == "")
        & ~objects["relative"].astype(bool)
        & ~objects["iscrowd"].astype(bool)  # crowd regions are neither targets nor misses
    ]
    usable = usable[usable["class"].astype(str).isin(index)]
    groups = dict(tuple(usable.groupby("sample_id", sort=False)))
    targets: list[Boxes] = []
    ids: list[list[str]] = []
    for sid, (h, w) in zip(sample_ids, sizes, strict=True):
        group = groups.get(sid)
        if group is None:
            targets.append(Boxes.empty((h, w) if masks else None))
            ids.append([])
            continue
        boxes = group[["x0", "y0", "x1", "y1"]].to_numpy(np.float32)
        boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = group["class"].astype(str).map(index).to_numpy(np.int64)
        found = group_masks(group[keep], boxes[keep], h, w) if masks else None
        targets.append(Boxes(boxes[keep], labels[keep], masks=found))
        ids.append([str(v) for v in group["object_id"].to_numpy()[keep]])
    return ImageObjects(targets, ids)


def instance_mask(text: str, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """An object's ``(H, W)`` bool mask: its polygon / RLE decoded, or the filled box when it
    has none or it does not decode (clean reports those: mask_invalid)."""
    from datapipe.objects import decode_instance_mask

    if text:
        try:
            return decode_instance_mask(text, height, width)
        except ValueError:
            pass
    out = np.zeros((height, width), bool)
    x0, y0, x1, y1 = np.round(box).astype(int)
    out[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return out


def group_masks(group: pd.DataFrame, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(N, H, W)`` bool: the :func:`instance_mask` of each row of ``group`` (its
    ``instance_mask`` text and its box in ``boxes``)."""
    texts = group["instance_mask"].fillna("").astype(str).tolist()
    out = np.zeros((len(texts), height, width), bool)
    for k, (text, box) in enumerate(zip(texts, boxes, strict=True)):
        out[k] = instance_mask(text, box, height, width)
    return out


def resize_masks(found: Boxes, height: int, width: int) -> Boxes:
    """``found`` with its masks resized (nearest) to ``(height, width)``; boxes unchanged."""
    if found.masks is None or found.masks.shape[1:] == (height, width):
        return found
    import cv2

    rle = isinstance(found.masks, RleMasks)
    dense = found.masks.dense() if isinstance(found.masks, RleMasks) else found.masks
    resized = [cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
               for m in dense]  # fmt: skip
    stack = np.stack(resized).astype(bool) if resized else np.zeros((0, height, width), bool)
    return Boxes(found.boxes, found.labels, found.scores, RleMasks.encode(stack) if rle else stack)


def scale_boxes(found: Boxes, sx: float, sy: float) -> Boxes:
    """``found`` with x multiplied by ``sx`` and y by ``sy`` (to or from the model's input)."""
    factor = np.array([sx, sy, sx, sy], np.float32)
    return Boxes((found.boxes * factor).astype(np.float32), found.labels, found.scores, found.masks)
