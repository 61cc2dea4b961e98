"""Thumbnails for the HTML report: any image -> a small JPEG or PNG data URI.

Images are shrunk before the display stretch (so a large 16-bit scan costs a thumbnail's
work), then stretched with :func:`~datapipe.report.render.to_display`: 8-bit grey and RGB(A)
images are shown as stored under ``stretch="auto"`` (a dark image must look dark in a report
about dark images); 16-bit, float and other multi-channel images get a per-image percentile
stretch, so a dim 12-bit micrograph is visible. Each thumbnail is the smaller of a JPEG and a
PNG encoding, and is made once per (path, view) however many sections show it.

:meth:`Thumbnailer.zoom` makes the larger picture a click on a card opens (at most
:data:`ZOOM_SIZE`, never larger than the image, as long as :data:`ZOOM_BUDGET` lasts), so a
segmentation issue map is readable without blowing the page's size budget.

``view="objects"`` (detection, instance segmentation) draws the sample's given boxes and
instance masks (:mod:`datapipe.report.boxes`), plus a card's :class:`~datapipe.report.boxes.Marks`
(the flagged object, a suggested box); each distinct set of marks is its own thumbnail.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from datapipe.config import ReportParams
from datapipe.data import MaskSpec, index_mask
from datapipe.errors import DatapipeError
from datapipe.io import read_image
from datapipe.report.boxes import Marks, ObjectIndex, Placement, draw_objects
from datapipe.report.render import fit, overlay_mask, placement, to_display

View = Literal["image", "mask", "issues", "objects"]
_Key = tuple[str, Hashable, View]

#: The larger picture of a card (pixels on a side) and the bytes all of them may take together;
#: past the budget a click shows the thumbnail enlarged instead.
ZOOM_SIZE = 384
ZOOM_BUDGET = 6_000_000

#: Issue-map values written by the score stage (issue_maps/<sample_id>.png).
ISSUE_PIXEL, IGNORED_PIXEL = 255, 128
_ISSUE_RGB = np.array([255, 32, 32], np.float32)


def data_uri(rgb: np.ndarray, *, jpeg_quality: int = 80) -> str:
    """``(H, W, 3)`` uint8 RGB -> ``data:image/...;base64,...``, whichever of JPEG and PNG
    is smaller (flat synthetic pictures favour PNG, photographs JPEG)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB; got {rgb.shape} {rgb.dtype}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok_j, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    ok_p, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not (ok_j and ok_p):
        raise ValueError("could not encode a thumbnail")
    mime, data = ("image/jpeg", jpeg) if jpeg.size < png.size else ("image/png", png)
    return f"data:{mime};base64,{base64.b64encode(data.tobytes()).decode('ascii')}"


_RESIZABLE = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}


def shrink(image: np.ndarray, size: int) -> np.ndarray:
    """Area-scale so the longer side is at most ``2 * size`` (never enlarge), keeping the
    channel axis; dtypes OpenCV cannot resize become float32.

    Shapes:
        ``(H, W, C)`` -> ``(h, w, C)``.
    """
    h, w = image.shape[:2]
    scale = 2 * size / max(h, w)
    if scale >= 1:
        return image
    src = image if image.dtype in _RESIZABLE else image.astype(np.float32)
    dsize = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = src if src.ndim == 3 else src[..., None]
    parts = [  # OpenCV's area resize takes at most 4 channels at a time
        cv2.resize(img[..., c : c + 4], dsize, interpolation=cv2.INTER_AREA).reshape(
            dsize[1], dsize[0], -1
        )
        for c in range(0, img.shape[2], 4)
    ]
    return np.concatenate(parts, axis=2).reshape(dsize[1], dsize[0], *image.shape[2:])


def display_rgb(
    image: np.ndarray,
    *,
    channels: Sequence[int] | None,
    percentiles: tuple[float, float],
    stretch: Literal["auto", "always"],
) -> np.ndarray:
    """An image of any dtype and channel count as ``(H, W, 3)`` uint8 for people.

    A channel pick the image does not have (a stray 1-channel file in an RGB set) falls
    back to the default pick rather than failing the whole report.

    Shapes:
        ``(H, W)`` or ``(H, W, C)`` -> ``(H, W, 3)`` uint8.
    """
    img = image if image.ndim == 3 else image[..., None]
    pick = channels if channels is not None and max(channels) < img.shape[2] else None
    shown = len(pick) if pick is not None else min(3, img.shape[2])
    as_stored = stretch == "auto" and img.dtype == np.uint8 and img.shape[2] in (1, 3, 4)
    if as_stored:
        limits = (np.zeros(shown, np.float32), np.full(shown, 255.0, np.float32))
        return to_display(img, channels=pick, limits=limits)
    finite = np.nan_to_num(img.astype(np.float32)) if img.dtype.kind == "f" else img
    return to_display(finite, channels=pick, percentiles=percentiles)


def issue_overlay(rgb: np.ndarray, issue_map: np.ndarray, *, alpha: float = 0.7) -> np.ndarray:
    """Dim ``rgb`` and paint issue pixels red, ignored pixels flat grey.

    Shapes:
        ``rgb`` ``(H, W, 3)`` uint8, ``issue_map`` ``(h, w)`` uint8 (255 issue, 128 ignored,
        0 fine; resized nearest to ``(H, W)``) -> ``(H, W, 3)`` uint8.
    """
    if issue_map.shape != rgb.shape[:2]:
        issue_map = cv2.resize(
            issue_map, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    out = rgb.astype(np.float32) * 0.55
    issue = issue_map == ISSUE_PIXEL
    out[issue] = (1 - alpha) * out[issue] + alpha * _ISSUE_RGB
    out[issue_map == IGNORED_PIXEL] = 128.0
    return out.astype(np.uint8)


@dataclass
class Thumbnailer:
    """Makes (and remembers) the data-URI thumbnails of one dataset.

    ``thumb(image, mask=..., view=...)`` returns ``None`` for a file that cannot be read, so
    the card shows the read error instead of breaking the report.
    """

    root: Path
    options: ReportParams
    masks: MaskSpec | None = None
    issue_maps: Path | None = None
    objects: ObjectIndex | None = None
    _cache: dict[_Key, str | None] = field(default_factory=dict)
    _zooms: dict[_Key, str | None] = field(default_factory=dict)
    zoom_bytes: int = 0  # spent of ZOOM_BUDGET

    def thumb(
        self,
        image: str,
        *,
        mask: str | None = None,
        view: View = "image",
        sample_id: str = "",
        marks: Marks | None = None,
    ) -> str | None:
        key = _key(image, mask, view, sample_id, marks)
        if key not in self._cache:
            self._cache[key] = self._make(
                image, mask, view, sample_id, self.options.thumb_size, marks=marks
            )
        return self._cache[key]

    def zoom(
        self,
        image: str,
        *,
        mask: str | None = None,
        view: View = "image",
        sample_id: str = "",
        marks: Marks | None = None,
    ) -> str | None:
        """The larger picture of ``thumb``'s (at most :data:`ZOOM_SIZE`, never enlarged);
        ``None`` when unreadable, no larger than the thumbnail, or past :data:`ZOOM_BUDGET`."""
        key = _key(image, mask, view, sample_id, marks)
        if key not in self._zooms:
            uri = None
            if self.zoom_bytes < ZOOM_BUDGET:
                uri = self._make(
                    image, mask, view, sample_id, ZOOM_SIZE, enlarge=False, marks=marks
                )
            self.zoom_bytes += len(uri) if uri is not None else 0
            self._zooms[key] = uri
        return self._zooms[key]

    def __len__(self) -> int:
        """Thumbnails made so far."""
        return sum(uri is not None for uri in self._cache.values())

    def _make(
        self, image: str, mask: str | None, view: View, sample_id: str, size: int,
        *, enlarge: bool = True, marks: Marks | None = None,
    ) -> str | None:  # fmt: skip
        try:
            full = read_image(self.root / image)
        except (DatapipeError, OSError, ValueError):
            return None
        if not enlarge:
            size = min(size, max(full.shape[:2]))
            if size <= self.options.thumb_size:
                return None  # the thumbnail already shows every pixel
        pixels = shrink(full, size)
        rgb = display_rgb(
            pixels, channels=self.options.channels, percentiles=self.options.percentiles,
            stretch=self.options.stretch,
        )  # fmt: skip
        if view == "mask" and mask is not None and self.masks is not None:
            rgb = self._with_mask(rgb, mask, self.masks)
        elif view == "issues":
            rgb = self._with_issues(rgb, sample_id)
        cell = fit(rgb, size)
        if view == "objects" and self.objects is not None:
            top, left, height, width = placement(rgb.shape[0], rgb.shape[1], size)
            place = Placement(top, left, height, width, full.shape[0], full.shape[1])
            cell = draw_objects(cell, place, self.objects.of(sample_id), marks)
        return data_uri(cell, jpeg_quality=self.options.jpeg_quality)

    def _with_mask(self, rgb: np.ndarray, mask: str, spec: MaskSpec) -> np.ndarray:
        try:
            classes = index_mask(mask, spec, self.root)
        except (DatapipeError, OSError, ValueError):
            return rgb
        classes = cv2.resize(
            classes.astype(np.int32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        return overlay_mask(rgb, classes, ignore_index=spec.ignore_index)

    def _with_issues(self, rgb: np.ndarray, sample_id: str) -> np.ndarray:
        if self.issue_maps is None:
            return rgb
        try:
            issue_map = read_image(self.issue_maps / f"{sample_id}.png")[..., 0]
        except (DatapipeError, OSError, ValueError):
            return rgb
        return issue_overlay(rgb, issue_map.astype(np.uint8))


def _key(image: str, mask: str | None, view: View, sample_id: str, marks: Marks | None) -> _Key:
    """What makes two thumbnails the same picture."""
    if view == "mask":
        return image, mask, view
    if view == "issues":
        return image, sample_id, view
    if view == "objects":
        return image, (sample_id, marks or Marks()), view
    return image, None, view


def picture_uri(path: Path, *, max_side: int = 960, jpeg_quality: int = 80) -> str | None:
    """A finished picture (the augmentation preview) as a data URI, at most ``max_side``
    pixels on its longer side; ``None`` if it cannot be read."""
    try:
        image = read_image(path)
    except (DatapipeError, OSError, ValueError):
        return None
    rgb = display_rgb(shrink(image, max_side // 2), channels=None, percentiles=(0.0, 100.0),
                      stretch="auto")  # fmt: skip
    return data_uri(rgb, jpeg_quality=jpeg_quality)


def thumbnailer(
    root: Path,
    options: ReportParams,
    *,
    class_values: Sequence[int] = (),
    ignore_index: int = 255,
    mask_colors: Mapping[int, tuple[int, int, int]] | None = None,
    issue_maps: Path | None = None,
    objects: pd.DataFrame | None = None,
    classes: Sequence[str] = (),
) -> Thumbnailer:
    """The thumbnail maker of one dataset; ``class_values`` (from stats.json) turn stored
    mask values into class indices for the overlays (none: no overlays); ``objects``
    (objects.parquet) gives ``view="objects"`` its boxes, coloured by their place in
    ``classes``."""
    masks = (
        MaskSpec(class_values=list(class_values), ignore_index=ignore_index, colors=mask_colors)
        if class_values
        else None
    )
    index = ObjectIndex(objects, classes) if objects is not None else None
    return Thumbnailer(root=root, options=options, masks=masks, issue_maps=issue_maps,
                       objects=index)  # fmt: skip
