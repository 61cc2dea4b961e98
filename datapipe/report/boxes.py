"""Boxes and instance masks on the thumbnails of object tasks (detection, instance
segmentation): what to draw (an image's given objects, a card's :class:`Marks`), and the pure
drawing onto a thumbnail cell that :func:`~datapipe.report.render.fit` already made.

Colours follow the class: class ``i`` of stats.json's ``classes`` is ``PALETTE[i]``, a class the
run does not know is grey (:func:`class_colour`, the same colours as the page's legend). Given
boxes are 1-pixel solid lines; the objects a card is about (``Marks.flagged``) are 2 pixels
thick inside a white rim; suggested boxes (the model's better box, a box it says is missing, a
false alarm) are 2-pixel dashes; instance masks are translucent fills in the class colour.
Boxes are in the image's pixels (x0, y0 inclusive, x1, y1 exclusive, as in objects.parquet)
and are drawn at the thumbnail's own resolution, so every line is crisp at any size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from datapipe.report.render import PALETTE

UNKNOWN_RGB = (150, 150, 150)
RIM_RGB = (255, 255, 255)
MASK_ALPHA = 0.35
DASH = 3  # pixels on, then off, along each edge of a suggested box

Box = tuple[float, float, float, float]
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in cell pixels, all inclusive


@dataclass(frozen=True)
class Marks:
    """What one card adds to an object thumbnail: the ids of the objects it is about (drawn
    thick, with a white rim) and suggested boxes (dashed), each ``(x0, y0, x1, y1, class)``
    with ``class`` an index into the run's classes (-1: unknown, grey)."""

    flagged: tuple[str, ...] = ()
    suggested: tuple[tuple[float, float, float, float, int], ...] = ()


@dataclass(frozen=True)
class ImageObjects:
    """One image's given objects, in annotation order.

    Shapes:
        ``boxes (N, 4)`` float64 x0 y0 x1 y1 pixels; ``classes (N,)`` int64 class index
        (-1 unknown); ``ids`` and ``masks`` (COCO segmentation JSON or "") ``N`` long.
    """

    ids: tuple[str, ...]
    boxes: np.ndarray
    classes: np.ndarray
    masks: tuple[str, ...]


NO_OBJECTS = ImageObjects((), np.zeros((0, 4)), np.zeros(0, np.int64), ())


@dataclass(frozen=True)
class Placement:
    """Where an ``image_h x image_w`` image lies in a thumbnail cell: its top-left corner
    and shown size in cell pixels (:func:`~datapipe.report.render.placement`)."""

    top: int
    left: int
    height: int
    width: int
    image_h: int
    image_w: int

    @property
    def scale(self) -> tuple[float, float]:
        """Cell pixels per image pixel, ``(x, y)``."""
        return self.width / self.image_w, self.height / self.image_h


class ObjectIndex:
    """objects.parquet by ``sample_id``: sorted once, an image's objects are one slice.
    Rows still in relative coordinates (their image could not be read) are left out."""

    def __init__(self, objects: pd.DataFrame, classes: Sequence[str]) -> None:
        usable = objects
        if "relative" in objects:
            usable = objects[~objects["relative"].fillna(False).astype(bool)]
        frame = usable.sort_values("sample_id", kind="stable")
        index = {str(name): i for i, name in enumerate(classes)}
        self._sample_ids = frame["sample_id"].astype(str).to_numpy(dtype=object)
        self._ids = frame["object_id"].astype(str).to_numpy(dtype=object)
        self._boxes = frame[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
        named = frame["class"].astype(str).map(index)
        self._classes = named.fillna(-1).to_numpy(np.int64)
        masks = frame["instance_mask"] if "instance_mask" in frame else pd.Series("", frame.index)
        self._masks = masks.fillna("").astype(str).to_numpy(dtype=object)

    def of(self, sample_id: str) -> ImageObjects:
        lo = int(np.searchsorted(self._sample_ids, sample_id, side="left"))
        hi = int(np.searchsorted(self._sample_ids, sample_id, side="right"))
        if hi <= lo:
            return NO_OBJECTS
        return ImageObjects(
            ids=tuple(self._ids[lo:hi]), boxes=self._boxes[lo:hi],
            classes=self._classes[lo:hi], masks=tuple(self._masks[lo:hi]),
        )  # fmt: skip


def class_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of class ``index`` (grey for -1, a class the run does not know)."""
    if index < 0:
        return UNKNOWN_RGB
    r, g, b = (int(v) for v in PALETTE[index % len(PALETTE)])
    return r, g, b


def parse_box(value: Any) -> Box | None:
    """``"[x0, y0, x1, y1]"`` (as label_issues.csv writes it) or four numbers -> a box;
    ``None`` for an empty cell or anything that is not four finite numbers."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list | tuple | np.ndarray) or len(value) != 4:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (x0, y0, x1, y1) if all(map(math.isfinite, (x0, y0, x1, y1))) else None


def cell_rect(box: Sequence[float], place: Placement) -> Rect | None:
    """An image-pixel box -> the inclusive cell pixels its outline runs along, clipped to the
    shown image (a box wholly outside it, or with a NaN corner, is ``None``). A zero-width
    box is a one-pixel line, so a degenerate box is still seen."""
    if len(box) != 4 or not all(map(math.isfinite, box)):
        return None
    sx, sy = place.scale
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    ix0, iy0 = math.floor(place.left + x0 * sx), math.floor(place.top + y0 * sy)
    ix1 = max(ix0, math.ceil(place.left + x1 * sx) - 1)
    iy1 = max(iy0, math.ceil(place.top + y1 * sy) - 1)
    right, bottom = place.left + place.width - 1, place.top + place.height - 1
    if ix1 < place.left or iy1 < place.top or ix0 > right or iy0 > bottom:
        return None
    return (max(ix0, place.left), max(iy0, place.top), min(ix1, right), min(iy1, bottom))


def outline(rect: Rect, *, thickness: int = 1, dash: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``(ys, xs)`` pixels of a rectangle's outline, ``thickness`` rings inward; with
    ``dash`` > 0 only every other run of ``dash`` pixels along each edge (corners kept)."""
    x0, y0, x1, y1 = rect
    ys: list[np.ndarray] = []
    xs: list[np.ndarray] = []
    for k in range(thickness):
        a0, b0, a1, b1 = x0 + k, y0 + k, x1 - k, y1 - k
        if a0 > a1 or b0 > b1:
            break
        across, down = np.arange(a0, a1 + 1), np.arange(b0, b1 + 1)
        keep_x = (across - x0) // dash % 2 == 0 if dash else np.ones(len(across), bool)
        keep_y = (down - y0) // dash % 2 == 0 if dash else np.ones(len(down), bool)
        for row in (b0, b1):
            xs.append(across[keep_x])
            ys.append(np.full(int(keep_x.sum()), row))
        for col in (a0, a1):
            ys.append(down[keep_y])
            xs.append(np.full(int(keep_y.sum()), col))
    if not xs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ys).astype(np.int64), np.concatenate(xs).astype(np.int64)


def paint(
    cell: np.ndarray, pixels: tuple[np.ndarray, np.ndarray], colour: Sequence[int]
) -> np.ndarray:
    """A copy of ``cell`` with ``pixels`` (``(ys, xs)``, those inside it) set to ``colour``."""
    ys, xs = pixels
    inside = (ys >= 0) & (ys < cell.shape[0]) & (xs >= 0) & (xs < cell.shape[1])
    out = cell.copy()
    out[ys[inside], xs[inside]] = np.asarray(colour, np.uint8)
    return out


def instance_pixels(segmentation: str, place: Placement) -> np.ndarray | None:
    """An object's COCO segmentation as a ``(height, width)`` bool mask of the shown image;
    ``None`` when empty or invalid (the clean stage reports those). Polygons are scaled and
    drawn at the thumbnail's size, an RLE decoded at the image's size and then shrunk."""
    # imported here: datapipe.objects (and datapipe.manifest under it) are not among the
    # report stage's code deps in dvc.yaml, which follow module-level imports
    from datapipe.objects import decode_instance_mask

    if not segmentation:
        return None
    try:
        value = json.loads(segmentation)
        if isinstance(value, list):
            sx, sy = place.scale
            scaled = [
                [float(c) * (sx if i % 2 == 0 else sy) for i, c in enumerate(polygon)]
                for polygon in value
                if isinstance(polygon, list)
            ]
            return decode_instance_mask(json.dumps(scaled), place.height, place.width)
        full = decode_instance_mask(segmentation, place.image_h, place.image_w)
    except (ValueError, TypeError):
        return None
    small = cv2.resize(
        full.astype(np.uint8), (place.width, place.height), interpolation=cv2.INTER_NEAREST
    )
    return np.asarray(small > 0)


def overlay_instances(
    cell: np.ndarray,
    place: Placement,
    fills: Sequence[tuple[np.ndarray, Sequence[int]]],
    *,
    alpha: float = MASK_ALPHA,
) -> np.ndarray:
    """A copy of ``cell`` with each ``(mask, colour)`` blended over the shown image.

    Shapes:
        ``cell (S, S, 3)`` uint8; each mask ``(place.height, place.width)`` bool.
    """
    out = cell.astype(np.float32)
    view = out[place.top : place.top + place.height, place.left : place.left + place.width]
    for mask, colour in fills:
        view[mask] = (1 - alpha) * view[mask] + alpha * np.asarray(colour, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_objects(
    cell: np.ndarray, place: Placement, objects: ImageObjects, marks: Marks | None = None
) -> np.ndarray:
    """``cell`` with the image's instance masks, given boxes, and a card's marks on top.

    Shapes:
        ``cell (S, S, 3)`` uint8 -> the same.
    """
    marks = marks or Marks()
    fills = []
    for segmentation, k in zip(objects.masks, objects.classes.tolist(), strict=True):
        mask = instance_pixels(segmentation, place)
        if mask is not None:
            fills.append((mask, class_colour(k)))
    out = overlay_instances(cell, place, fills) if fills else cell.copy()
    flagged = set(marks.flagged)
    later = []
    for oid, box, k in zip(objects.ids, objects.boxes, objects.classes.tolist(), strict=True):
        rect = cell_rect(box.tolist(), place)
        if rect is None:
            continue
        if oid in flagged:
            later.append((rect, k))
        else:
            out = paint(out, outline(rect), class_colour(k))
    for rect, k in later:
        x0, y0, x1, y1 = rect
        out = paint(out, outline((x0 - 1, y0 - 1, x1 + 1, y1 + 1)), RIM_RGB)
        out = paint(out, outline(rect, thickness=2), class_colour(k))
    for *box, k in marks.suggested:
        rect = cell_rect(box, place)
        if rect is not None:
            out = paint(out, outline(rect, thickness=2, dash=DASH), class_colour(k))
    return out
