"""The one place integer pixels become float32 in ``[0, 1]``.

Bit depth is a property of the *data*, not of the container: a 12-bit camera writes ``uint16``
files whose values stop at 4095, and dividing them by 65535 (what ``ToDtype(scale=True)`` does)
leaves every image below 0.07. ``to_unit_float`` takes the bit depth explicitly; the ingest
stage resolves ``auto`` once per dataset and per dtype from the data's maximum
(:func:`infer_bit_depth`) and records it in ``stats.json`` so every later stage scales alike.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

BitDepth = Literal[8, 10, 12, 14, 16]
BIT_DEPTHS: tuple[int, ...] = (8, 10, 12, 14, 16)
#: How to scale one image: a bit depth, ``"auto"`` (from this image's dtype and maximum), or a
#: per-image, per-channel percentile stretch (microscopy with bright outliers).
Scaling = int | Literal["auto", "percentile"]

DEFAULT_PERCENTILES = (0.5, 99.5)


def unit_scale(bit_depth: int) -> float:
    """The factor that maps ``[0, 2**bit_depth - 1]`` onto ``[0, 1]``."""
    if not 1 <= bit_depth <= 32:
        raise ValueError(f"bit_depth must be in 1..32; got {bit_depth}")
    return 1.0 / float((1 << bit_depth) - 1)


def infer_bit_depth(max_value: float, dtype: np.dtype | type | str) -> int:
    """The smallest common bit depth (8, 10, 12, 14, 16, then the dtype's) holding ``max_value``.

    ``uint8`` data is always 8-bit. For ``uint16`` a maximum of 4095 means 12-bit, 255 means
    8-bit data stored in a 16-bit container.
    """
    dt = np.dtype(dtype)
    if dt.kind not in "ui":
        raise ValueError(f"bit depth applies to integer images; got dtype {dt}")
    if dt.itemsize == 1:
        return 8
    for bits in BIT_DEPTHS:
        if max_value <= (1 << bits) - 1:
            return bits
    return dt.itemsize * 8 - (1 if dt.kind == "i" else 0)


def to_unit_float(
    img: np.ndarray,
    *,
    bit_depth: Scaling = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """Convert an image to float32 in ``[0, 1]``, aware of its bit depth.

    Args:
        img: ``(H, W, C)`` or ``(H, W)`` array from :func:`datapipe.io.read_image`.
        bit_depth: ``8``/``10``/``12``/``14``/``16``: divide by ``2**bit_depth - 1`` and clip
            (values above the declared depth saturate at 1, negatives at 0). ``"auto"``: the
            depth :func:`infer_bit_depth` gives for this image alone (prefer the per-dataset
            depth in ``stats.json``; one dim 16-bit image would otherwise look 12-bit).
            ``"percentile"``: stretch each channel from its ``percentiles[0]`` to its
            ``percentiles[1]`` percentile.
        percentiles: low and high percentile for ``"percentile"``.

    Float images are taken to be scaled already: they are returned as float32 (clipped to
    ``[0, 1]``) unless ``"percentile"`` is asked for. Signed integer images use
    ``"percentile"`` under ``"auto"``.

    Shapes:
        same shape as ``img``; dtype float32.
    """
    if bit_depth == "percentile":
        return _percentile_stretch(img, percentiles)
    if img.dtype.kind == "f":
        return np.clip(img, 0.0, 1.0, dtype=np.float32)
    if img.dtype.kind == "b":
        return img.astype(np.float32)
    if img.dtype.kind not in "ui":
        raise ValueError(f"cannot convert {img.dtype} pixels to float")
    if bit_depth == "auto":
        if img.dtype.kind == "i":
            return _percentile_stretch(img, percentiles)
        bit_depth = infer_bit_depth(float(img.max(initial=0)), img.dtype)
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(
            f"bit_depth must be one of {BIT_DEPTHS}, 'auto' or 'percentile'; got {bit_depth!r}"
        )
    out = img.astype(np.float32)
    out *= np.float32(unit_scale(bit_depth))
    if img.dtype.kind == "i" or bit_depth < img.dtype.itemsize * 8:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _percentile_stretch(img: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    low_q, high_q = percentiles
    if not 0.0 <= low_q < high_q <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100; got {percentiles}")
    out = img.astype(np.float32)
    flat = out.reshape(-1, out.shape[-1]) if out.ndim == 3 else out.reshape(-1, 1)
    low, high = np.percentile(flat, [low_q, high_q], axis=0).astype(np.float32)
    span = high - low
    span[span <= 0] = np.inf  # a constant channel maps to 0, not to NaN
    out -= low if out.ndim == 3 else low[0]
    out /= span if out.ndim == 3 else span[0]
    np.clip(out, 0.0, 1.0, out=out)
    return out
