"""Per-sample measurements the checks judge, computed on ``to_unit_float`` pixels.

Everything intensity-related is measured after the dataset's bit-depth scaling, so an 8-bit,
a 12-bit and a 16-bit picture of the same scene get the same brightness, entropy and
sharpness; nothing here divides by 255. The bit depth is the dataset's, known only once ingest
has seen every image, so the work is in two parts: :func:`pixel_features` on the native pixels
(ingest runs it in its decode pass and keeps the result in ``pixel_features.parquet``) and
:func:`finish_features` with the dataset's scaling (the clean stage, without decoding again).
:func:`measure` does both from the file, for a manifest without a pixel table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from datapipe.checks.hashing import dct_input, hashes_of_dct_inputs, pixel_hash
from datapipe.errors import ImageReadError
from datapipe.io.convert import Scaling, to_unit_float
from datapipe.io.image import read_image, read_mask

_HIST_BINS = 256
#: Longer side of the thumbnail that brightness, contrast, entropy and the pHash are read from.
THUMBNAIL = 128
#: Side of the grey thumbnail on which candidate near-duplicate pairs are verified.
VERIFY_SIZE = 32


@dataclass(frozen=True)
class FeatureSettings:
    root: Path
    scaling: Mapping[str, Scaling]  # dtype name -> bit depth / "percentile" (from stats.json)
    percentiles: tuple[float, float]
    max_pixels: int
    class_values: Sequence[int]
    ignore_index: int
    mask_colors: Mapping[int, tuple[int, int, int]] | None = None


@dataclass(frozen=True)
class SampleFiles:
    """Where one sample's files are, and whether ingest could decode its image."""

    image: str
    mask: str | None
    readable: bool


def measure(ref: SampleFiles, settings: FeatureSettings) -> dict[str, object]:
    """Decode one sample and measure it; a file that no longer decodes gives ``decode_error``."""
    out: dict[str, object] = {}
    if ref.readable:
        try:
            img = read_image(settings.root / ref.image, max_pixels=settings.max_pixels)
        except ImageReadError as exc:  # changed since ingest, or flaky storage
            out["decode_error"] = exc.reason
        else:
            out.update(image_features(img, settings))
    return out | measure_mask(ref, settings)


def measure_mask(ref: SampleFiles, settings: FeatureSettings) -> dict[str, object]:
    """The mask features of one sample (nothing when it has no mask or it does not decode:
    ingest recorded that as ``mask_read_error``)."""
    out: dict[str, object] = {}
    if ref.mask is not None:
        try:
            mask = read_mask(
                settings.root / ref.mask,
                colors=settings.mask_colors,
                max_pixels=settings.max_pixels,
            )
        except ImageReadError:
            pass  # recorded by ingest as mask_read_error
        else:
            out.update(mask_features(mask, settings))
    return out


@dataclass(frozen=True)
class PixelFeatures:
    """What is measured on an image's native pixels, whatever the dataset's bit-depth scaling:
    ingest measures it in its decode pass, and clean finishes the features from it
    (:func:`finish_features`) without decoding the image again.

    Shapes:
        ``thumbnail`` ``(h, w)`` grey, longer side at most ``THUMBNAIL``, in the working dtype
        (RGB of the image's dtype; other channel counts float32); ``saturated`` ``(B + 1,)``:
        for integer images of ``B`` bits, entry ``s`` is the share of sampled pixels with a
        channel at or above ``2**s - 1``; for float images one entry, at or above 1.0.
    """

    dtype: str  # the working dtype, which the dataset's scaling is looked up by
    thumbnail: np.ndarray
    value_range: float
    sharpness: float
    nonfinite: int
    saturated: np.ndarray
    #: the :data:`SCALED` features already finished for the scaling ``str(scaling) ==
    #: finished_for`` (ingest finishes with the scaling the image would have alone, which is the
    #: dataset's whenever the data decide nothing: 8-bit, float, signed, a set bit depth; or
    #: when this image holds its dtype's largest value), so clean need not finish it again
    finished: Mapping[str, object] | None = None
    finished_for: str | None = None


def finish_ahead(
    pixels: Sequence[PixelFeatures],
    scalings: Sequence[int | str],
    *,
    percentiles: tuple[float, float],
) -> list[PixelFeatures]:
    """The pixel features with their :data:`SCALED` features finished, each for its scaling (a
    bit depth, ``"percentile"``, or stats.json's ``"float"`` for float images), as one batch
    (:func:`finish_many`: on 64² thumbnails ~30 µs an image in a batch of 64, ~95 alone)."""
    done = finish_many(pixels, [cast(Scaling, s) for s in scalings], percentiles=percentiles)
    return [
        dataclasses.replace(px, finished={k: d[k] for k in SCALED}, finished_for=str(scaling))
        for px, scaling, d in zip(pixels, scalings, done, strict=True)
    ]


def finished_already(finished_for: str | None, scaling: object) -> bool:
    """Whether features that ingest finished for ``finished_for`` hold under ``scaling``."""
    return finished_for is not None and finished_for == str(scaling)


#: The features that depend on the dataset's scaling (the rest are the pixel features' own).
SCALED = ("phash", "brightness", "highlight", "shadow", "contrast", "entropy", "saturated", "thumb")


def image_features(img: np.ndarray, settings: FeatureSettings) -> dict[str, object]:
    """Intensity statistics and the perceptual hash of one ``(H, W, C)`` image: its
    :func:`pixel_features`, finished with the dataset's scaling."""
    pixels = pixel_features(img)
    return finish_features(
        pixels, settings.scaling.get(pixels.dtype, "auto"), percentiles=settings.percentiles
    )


def pixel_features(img: np.ndarray) -> PixelFeatures:
    """The scaling-free measurements of one ``(H, W, C)`` image.

    One grey version at full resolution feeds the sharpness measure; its ``THUMBNAIL``-pixel
    area-averaged copy is kept for :func:`finish_features`. Value range and saturation look at
    the native pixels.
    """
    nonfinite = int(np.count_nonzero(~np.isfinite(img))) if img.dtype.kind == "f" else 0
    if nonfinite:
        img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
    if img.dtype not in _CV_DTYPES:
        img = img.astype(np.float32)
    grey = _grey(img)
    thumb = _thumbnail(grey)
    return PixelFeatures(
        dtype=str(img.dtype),
        thumbnail=thumb,
        value_range=_value_range(img),
        sharpness=_sharpness(grey, thumb),
        nonfinite=nonfinite,
        saturated=_saturated_shares(img),
    )


def finish_features(
    pixels: PixelFeatures, scaling: Scaling, *, percentiles: tuple[float, float]
) -> dict[str, object]:
    """The features of :data:`datapipe.checks.measure.FEATURE_COLUMNS` an image gives: its
    thumbnail scaled with ``to_unit_float`` feeds brightness, its 1st / 99th percentiles
    (shadow, highlight), contrast, entropy, the pHash and the verification thumbnail."""
    return finish_many([pixels], [scaling], percentiles=percentiles)[0]


def finish_many(
    pixels: Sequence[PixelFeatures],
    scalings: Sequence[Scaling],
    *,
    percentiles: tuple[float, float],
) -> list[dict[str, object]]:
    """:func:`finish_features` of many images at once, each with its scaling: the thumbnails
    of one shape, dtype and scaling are stacked and measured with array operations. An
    image's values do not depend on what it is batched with."""
    out: list[dict[str, object]] = [{} for _ in pixels]
    batches: dict[tuple[object, ...], list[int]] = {}
    for i, (px, scaling) in enumerate(zip(pixels, scalings, strict=True)):
        key = (px.thumbnail.shape, px.thumbnail.dtype.str, scaling)
        batches.setdefault(key, []).append(i)
    for rows in batches.values():
        thumbs, scaling = [pixels[i].thumbnail for i in rows], scalings[rows[0]]
        if isinstance(scaling, str):  # per image: its own maximum or percentiles
            unit = np.stack([to_unit_float(t, bit_depth=scaling, percentiles=percentiles)
                             for t in thumbs])  # fmt: skip
        else:  # element-wise: the same values for the stack as for each image
            unit = to_unit_float(np.stack(thumbs), bit_depth=scaling)
        for i, features in zip(rows, _unit_features(unit), strict=True):
            px = pixels[i]
            out[i] = features | {
                "value_range": px.value_range, "sharpness": px.sharpness,
                "nonfinite": px.nonfinite, "saturated": _saturated_share(px, scaling),
            }  # fmt: skip
    return out


def _unit_features(unit: np.ndarray) -> list[dict[str, object]]:
    """Brightness, contrast, shadow / highlight, entropy, pHash and verification thumbnail of a
    stack of unit-scale grey thumbnails ``(B, h, w)``."""
    count, size = unit.shape[0], unit.shape[1] * unit.shape[2]
    rounded = (unit * (_HIST_BINS - 1) + 0.5).astype(np.uint8)
    # OpenCV's 8-bit histogram is ~2x np.bincount; its float32 counts are exact below 2**24
    levels = np.stack([cv2.calcHist([r], [0], None, [_HIST_BINS], [0, _HIST_BINS]).ravel()
                       for r in rounded]).astype(np.int64)  # fmt: skip
    # 1st / 99th percentile from the cumulative histogram: the first level reaching the share
    cumulative = np.cumsum(levels, axis=1) / size
    shadow = np.count_nonzero(cumulative < 0.01, axis=1) / (_HIST_BINS - 1)
    highlight = np.count_nonzero(cumulative < 0.99, axis=1) / (_HIST_BINS - 1)
    share = levels / size
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(levels > 0, share * np.log2(share), 0.0)
    entropy = -terms.sum(axis=1) / np.log2(_HIST_BINS)
    moments = [cv2.meanStdDev(u) for u in unit]
    small = np.stack([dct_input(u) for u in unit])
    same = small.shape[1] == VERIFY_SIZE and max(unit.shape[1:]) > VERIFY_SIZE
    thumbs = verification_thumbnails(unit, small if same else None)  # the same resampling
    hashes = hashes_of_dct_inputs(small)
    return [
        {"phash": hashes[i], "brightness": float(moments[i][0][0, 0]),
         "contrast": float(moments[i][1][0, 0]), "shadow": float(shadow[i]),
         "highlight": float(highlight[i]), "entropy": float(entropy[i]), "thumb": thumbs[i]}
        for i in range(count)
    ]  # fmt: skip


def _value_range(img: np.ndarray) -> float:
    """The largest per-channel range: 0 for a flat image of any colour (a flat red RGB image
    spans 0..255 across its channels, yet every pixel is the same).

    Reduced over rows first (element-wise over contiguous rows: fast), then over the ``(W, C)``
    rest: reducing ``(H*W, C)`` over its long axis took 16 ms on a 512² RGB image, 0.1 ms so.
    """
    hi = img.max(axis=0).max(axis=0)
    lo = img.min(axis=0).min(axis=0)
    return float((hi.astype(np.float64) - lo).max())


_CV_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16),
              np.dtype(np.float32), np.dtype(np.float64))  # fmt: skip


def _grey(img: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey in the image's dtype (RGB: luma weights; other counts: channel mean)."""
    if img.shape[2] == 1:
        return img[:, :, 0]
    if img.shape[2] in (3, 4) and img.dtype in (np.uint8, np.uint16, np.float32):
        code = cv2.COLOR_RGB2GRAY if img.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(img, code)
    # np.mean over a short last axis is slow; a matrix product over channels is not.
    weights = np.full(img.shape[2], 1.0 / img.shape[2], np.float32)
    return np.tensordot(img.astype(np.float32, copy=False), weights, axes=([2], [0]))


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    """Area-averaged copy whose longer side is at most ``THUMBNAIL`` (same dtype)."""
    height, width = grey.shape
    scale = THUMBNAIL / max(height, width)
    if scale >= 1.0:
        return grey
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _sharpness(grey: np.ndarray, thumb: np.ndarray) -> float:
    """Variance of the full-resolution Laplacian over the variance of the thumbnail.

    The ratio is blind to bit depth and contrast; it measures how much of the picture's signal
    sits in its finest details, which blur removes. The Laplacian is evaluated on about
    ``THUMBNAIL`` evenly spaced rows (every stencil complete at full resolution): an unbiased
    estimate of its variance from ~10⁵ pixels, at a fraction of the cost of every row.
    """
    spread = float(cv2.meanStdDev(thumb)[1][0, 0])
    height = grey.shape[0]
    if spread <= 0 or height < 3 or grey.shape[1] < 3:
        return 0.0
    step = max(1, (height - 2) // THUMBNAIL)
    up, mid, down = (grey[start : height - 2 + start : step] for start in (0, 1, 2))
    if grey.dtype not in _CV_DTYPES[:4] or grey.strides[1] != grey.itemsize:
        # float64, or rows OpenCV cannot take as they are (elements not adjacent)
        up, mid, down = (rows.astype(np.float32) for rows in (up, mid, down))
    # float32 4*mid - up - down - left - right, in that order, on strided views of the rows:
    # the same values as numpy's expression, in one buffer instead of four copies
    lap = np.multiply(mid[:, 1:-1], np.float32(4.0), dtype=np.float32)
    for rows in (up[:, 1:-1], down[:, 1:-1], mid[:, :-2], mid[:, 2:]):
        cv2.subtract(lap, rows, dst=lap, dtype=cv2.CV_32F)
    _, lap_std = cv2.meanStdDev(lap)  # one C pass; numpy's var makes four
    return float((lap_std[0, 0] / spread) ** 2)


def _saturated_shares(img: np.ndarray) -> np.ndarray:
    """Share of pixels with a channel at the top of each possible scale (sampled on a grid of
    ~128²): see :class:`PixelFeatures`. One pass: ``v >= 2**s - 1`` exactly when the bit
    length of ``v + 1`` exceeds ``s``, so a histogram of bit lengths gives every scale."""
    step = max(1, round((img.shape[0] * img.shape[1] / THUMBNAIL**2) ** 0.5))
    top = img[::step, ::step].max(axis=2)
    if not top.size:
        return np.zeros(1 if img.dtype.kind == "f" else img.dtype.itemsize * 8 + 1)
    if img.dtype.kind == "f":
        return np.array([np.count_nonzero(top >= 1.0) / top.size])
    bits = img.dtype.itemsize * 8
    lengths = np.frexp(np.maximum(top.astype(np.float64) + 1.0, 0.0))[1]
    counts = np.bincount(lengths.ravel(), minlength=bits + 2)
    at_least = np.cumsum(counts[::-1])[::-1]  # at_least[e]: pixels whose bit length is >= e
    return np.array([at_least[s + 1] / top.size for s in range(bits + 1)])


def _saturated_share(pixels: PixelFeatures, scaling: object) -> float:
    """Share of sampled pixels at the top of the dataset's scale: ``2**depth - 1`` for a bit
    depth, else the dtype's maximum (1.0 for float images)."""
    shares = pixels.saturated
    if np.dtype(pixels.dtype).kind == "f":
        return float(shares[0])
    if isinstance(scaling, int) and not isinstance(scaling, bool):
        return float(shares[scaling]) if scaling < len(shares) else 0.0
    return float(shares[int(np.iinfo(np.dtype(pixels.dtype)).max).bit_length()])


def image_pixel_hash(ref: SampleFiles, settings: FeatureSettings) -> str | None:
    """:func:`pixel_hash` of one image (second pass: only for verified near-duplicate pairs)."""
    try:
        return pixel_hash(read_image(settings.root / ref.image, max_pixels=settings.max_pixels))
    except ImageReadError:
        return None


def verification_thumbnails(unit: np.ndarray, small: np.ndarray | None = None) -> np.ndarray:
    """Grey unit-scale images resampled to ``VERIFY_SIZE``² and stretched each to its own
    min..max in uint8 (1 KB an image): what a candidate near-duplicate pair is compared on. The
    stretch keeps the 8 bits for the picture's own range (correlation is blind to it anyway).
    ``small``: the stack already area-resampled to ``VERIFY_SIZE``², when it is.

    Shapes:
        ``unit`` ``(B, H, W)`` float in [0, 1] -> ``(B, VERIFY_SIZE, VERIFY_SIZE)`` uint8.
    """
    if small is None:
        interpolation = cv2.INTER_AREA if max(unit.shape[1:]) > VERIFY_SIZE else cv2.INTER_LINEAR
        small = np.stack([
            cv2.resize(u.astype(np.float32, copy=False), (VERIFY_SIZE, VERIFY_SIZE),
                       interpolation=interpolation)
            for u in unit
        ]) if len(unit) else np.zeros((0, VERIFY_SIZE, VERIFY_SIZE), np.float32)  # fmt: skip
    lo = small.min(axis=(1, 2)).astype(np.float64)
    hi = small.max(axis=(1, 2)).astype(np.float64)
    with np.errstate(divide="ignore"):
        scale = np.where(hi > lo, 255.0 / (hi - lo), 0.0).astype(np.float32)
    stretched = (small - lo.astype(np.float32)[:, None, None]) * scale[:, None, None]
    return np.round(stretched).astype(np.uint8)


def mask_features(mask: np.ndarray, settings: FeatureSettings) -> dict[str, object]:
    """Content hash and value census of one ``(H, W)`` mask."""
    values, counts = np.unique(mask, return_counts=True)
    known = np.isin(values, [*settings.class_values, settings.ignore_index])
    foreground = (values != settings.ignore_index) & (values != 0) & known
    return {
        "mask_hash": pixel_hash(mask),
        "mask_bad_values": [int(v) for v in values[~known]],
        "mask_bad_pixels": int(counts[~known].sum()),
        "mask_foreground_pixels": int(counts[foreground].sum()),
        "mask_ignored_pixels": int(counts[values == settings.ignore_index].sum()),
        "mask_pixels": int(mask.size),
    }
