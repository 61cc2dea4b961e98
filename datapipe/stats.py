"""Streaming per-channel moments: merge per-image (count, mean, M2) without holding pixels.

An image is read in row blocks of about a million values: each block's mean comes from
OpenCV (exact sums for integers, float64 for floats), its deviations from that mean are taken
in float32 and their squares summed in float64, and the blocks are merged with Chan's formula.
Memory is one float32 block, never a float64 copy of the image; pixels holding NaN or inf are
left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Values (rows x width x channels) per block of :meth:`Moments.of_image`.
BLOCK_VALUES = 1 << 20
#: Channels OpenCV's mean / meanStdDev take at once.
_CV_CHANNELS = 4
#: dtypes OpenCV reads as they are; others (bool, uint32, int64, float16) are converted per block.
_CV_DTYPES = frozenset(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "i4", "f4", "f8"))


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations per channel (Chan et al.'s parallel form).

    Merging two sets is exact up to float64 rounding and does not suffer the cancellation of
    ``E[x^2] - E[x]^2`` on 16-bit data. ``count`` is the number of pixels taken; ``nonfinite``
    the number left out because one of their channels held NaN or inf.

    Shapes:
        ``mean`` and ``m2`` are ``(C,)`` float64.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray
    nonfinite: int = 0

    @classmethod
    def empty(cls, channels: int) -> Moments:
        return cls(0, np.zeros(channels), np.zeros(channels))

    @classmethod
    def of_image(cls, img: np.ndarray) -> Moments:
        """Moments of an ``(H, W, C)`` image, per channel, in its own units, over finite pixels.

        A pixel with NaN or inf in any channel is left out of every channel (so all channels
        share one count) and counted in ``nonfinite``. Streams in blocks of
        :data:`BLOCK_VALUES` values; exact to float32 rounding of each value's deviation from
        its block's mean (exact for 8- and 16-bit integers).
        """
        if img.ndim != 3:
            raise ValueError(f"expected an (H, W, C) image; got shape {img.shape}")
        height, width, channels = img.shape
        rows = max(1, BLOCK_VALUES // max(1, width * channels))
        total = cls.empty(channels)
        for start in range(0, height, rows):
            total = total.merge(_block_moments(img[start : start + rows]))
        return total

    def scaled(self, factor: float) -> Moments:
        """The moments of ``factor * x``."""
        return Moments(self.count, self.mean * factor, self.m2 * factor**2, self.nonfinite)

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self if other.nonfinite == 0 else self._plus_nonfinite(other.nonfinite)
        if self.count == 0:
            return other if self.nonfinite == 0 else other._plus_nonfinite(self.nonfinite)
        if self.mean.shape != other.mean.shape:
            raise ValueError(
                f"cannot merge moments of {self.mean.shape[0]} and {other.mean.shape[0]} channels"
            )
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return Moments(n, mean, m2, self.nonfinite + other.nonfinite)

    def _plus_nonfinite(self, n: int) -> Moments:
        return Moments(self.count, self.mean, self.m2, self.nonfinite + n)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel (0 where there are no pixels)."""
        if self.count == 0:
            return np.zeros_like(self.mean)
        return np.sqrt(self.m2 / self.count)


def _block_moments(block: np.ndarray) -> Moments:
    """Moments of a few rows of an image (at most :data:`BLOCK_VALUES` values)."""
    height, width, channels = block.shape
    if block.dtype not in _CV_DTYPES:  # a block-sized copy, never the whole image
        wide = block.dtype.kind in "iu" and block.dtype.itemsize > 2
        block = block.astype(np.float64 if wide or block.dtype.itemsize > 4 else np.float32)
    mask = _finite_pixels(block)
    count = height * width if mask is None else int(np.count_nonzero(mask))
    nonfinite = height * width - count
    if count == 0:
        return Moments(0, np.zeros(channels), np.zeros(channels), nonfinite)
    means, m2s = [], []
    for first in range(0, channels, _CV_CHANNELS):
        part = block[:, :, first : first + _CV_CHANNELS]
        if channels > _CV_CHANNELS:
            part = np.ascontiguousarray(part)
        mean, m2 = _part_moments(part, mask, count)
        means.append(mean)
        m2s.append(m2)
    return Moments(count, np.concatenate(means), np.concatenate(m2s), nonfinite)


def _part_moments(
    part: np.ndarray, mask: np.ndarray | None, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and M2 of up to four channels: float32 deviations from a centre near the mean.

    The centre is OpenCV's mean rounded to an integer for integer data (the deviations are then
    exact integers) or to float32 for floats; their own mean and spread (float64 sums) finish
    the job without the cancellation of ``E[x^2] - E[x]^2``.
    """
    k = part.shape[2]
    rough = np.asarray(cv2.mean(part, mask=mask)[:k])
    centre = np.round(rough) if part.dtype.kind in "iu" else rough.astype(np.float32)
    deviation = cv2.subtract(part, tuple(centre.tolist()) + (0.0,) * (4 - k), dtype=cv2.CV_32F)
    dev_mean, dev_std = cv2.meanStdDev(deviation, mask=mask)
    mean = centre.astype(np.float64) + dev_mean.ravel()
    return mean, dev_std.ravel() ** 2 * count


def _finite_pixels(block: np.ndarray) -> np.ndarray | None:
    """``None`` when every value is finite, else a uint8 ``(h, w)`` mask of all-finite pixels."""
    if block.dtype.kind != "f":
        return None
    flat = block.reshape(block.shape[0], -1)
    if flat.dtype.itemsize >= 4 and cv2.checkRange(flat, quiet=True)[0]:
        return None
    finite = np.isfinite(block).all(axis=2)
    return None if finite.all() else finite.view(np.uint8)
