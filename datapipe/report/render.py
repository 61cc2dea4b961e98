"""Images for people to look at: any dtype and channel count -> 8-bit RGB, mask overlays,
grids. The only place pixels are squeezed to 8 bits, and only for display.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Class colours (RGB) for overlays; class i uses PALETTE[i % len(PALETTE)].
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
     [0, 128, 128], [220, 190, 255], [170, 110, 40], [128, 0, 0], [170, 255, 195]],
    np.uint8,
)  # fmt: skip


def to_display(
    image: np.ndarray,
    *,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    limits: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Any image -> ``(H, W, 3)`` uint8 RGB with a per-channel percentile stretch.

    ``channels`` picks which to show as R, G, B (default: the first three, or the single
    channel as grey); 16-bit, 12-bit and float data all stretch the same way, so a dim
    microscopy image is visible. ``limits`` (from :func:`stretch_limits`) reuses another
    image's stretch, so augmented views keep their source's look.

    Shapes:
        ``image`` ``(H, W)`` or ``(H, W, C)`` any dtype -> ``(H, W, 3)`` uint8.
    """
    picked = _pick(image, channels).astype(np.float32)
    low, high = limits if limits is not None else stretch_limits(image, channels, percentiles)
    unit = np.clip((picked - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    if unit.shape[2] == 1:
        unit = np.repeat(unit, 3, axis=2)
    elif unit.shape[2] == 2:
        unit = np.concatenate([unit, np.zeros_like(unit[..., :1])], axis=2)
    return (unit * 255.0 + 0.5).astype(np.uint8)


def _pick(image: np.ndarray, channels: Sequence[int] | None) -> np.ndarray:
    img = image if image.ndim == 3 else image[..., None]
    pick = list(channels) if channels is not None else list(range(min(3, img.shape[2])))
    if any(not 0 <= c < img.shape[2] for c in pick):
        raise ValueError(f"channels {pick} out of range for {img.shape[2]} channels")
    return img[..., pick]


def stretch_limits(
    image: np.ndarray,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Per displayed channel, the ``percentiles`` of ``image``: the stretch of to_display."""
    picked = _pick(image, channels)
    flat = picked.reshape(-1, picked.shape[2]).astype(np.float32)
    low, high = np.percentile(flat, percentiles, axis=0).astype(np.float32)
    return low, high


def overlay_mask(
    rgb: np.ndarray, mask: np.ndarray, *, ignore_index: int, alpha: float = 0.45
) -> np.ndarray:
    """Colour classes 1.. over ``rgb`` (class 0 = background left clear); ignored pixels
    are shown as a grey checkerboard so padding and unlabelled areas stand out."""
    out = rgb.astype(np.float32)
    labelled = (mask > 0) & (mask != ignore_index)
    colours = PALETTE[np.clip(mask, 0, None) % len(PALETTE)].astype(np.float32)
    out[labelled] = (1 - alpha) * out[labelled] + alpha * colours[labelled]
    ignored = mask == ignore_index
    yy, xx = np.indices(mask.shape)
    tiles = np.asarray((yy // 4 + xx // 4) % 2)
    checker = np.where(tiles[..., None] == 0, 90.0, 170.0)
    out[ignored] = np.broadcast_to(checker, out.shape)[ignored]
    return out.astype(np.uint8)


def placement(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where :func:`fit` puts a ``height x width`` picture in a ``size`` square:
    ``(top, left, shown height, shown width)``."""
    scale = size / max(height, width)
    nh, nw = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - nh) // 2, (size - nw) // 2, nh, nw


def fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scale to fit a ``size`` square (nearest when enlarging, to keep pixels visible),
    centred on a dark background."""
    h, w = rgb.shape[:2]
    top, left, nh, nw = placement(h, w, size)
    interp = cv2.INTER_NEAREST if size > max(h, w) else cv2.INTER_AREA
    small = cv2.resize(rgb, (nw, nh), interpolation=interp)
    cell = np.full((size, size, 3), 32, np.uint8)
    cell[top : top + nh, left : left + nw] = small
    return cell


def grid(cells: Sequence[Sequence[np.ndarray]], *, gap: int = 4) -> np.ndarray:
    """Rows of equal-size RGB cells -> one image, with ``gap`` pixels between cells."""
    if not cells or not cells[0]:
        raise ValueError("grid needs at least one cell")
    size = cells[0][0].shape[0]
    rows, cols = len(cells), max(len(r) for r in cells)
    out = np.full((rows * (size + gap) + gap, cols * (size + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            y, x = gap + r * (size + gap), gap + c * (size + gap)
            out[y : y + size, x : x + size] = cell
    return out
