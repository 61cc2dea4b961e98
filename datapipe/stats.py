"""Streaming per-channel moments: merge per-image (count, mean, M2) without holding pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations per channel (Chan et al.'s parallel form).

    Merging two sets is exact up to float64 rounding and does not suffer the cancellation of
    ``E[x^2] - E[x]^2`` on 16-bit data.

    Shapes:
        ``mean`` and ``m2`` are ``(C,)`` float64.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> Moments:
        return cls(0, np.zeros(channels), np.zeros(channels))

    @classmethod
    def of_image(cls, img: np.ndarray) -> Moments:
        """Moments of an ``(H, W, C)`` image, per channel, in its own units."""
        flat = img.reshape(-1, img.shape[-1]).astype(np.float64)
        mean = flat.mean(axis=0) if len(flat) else np.zeros(img.shape[-1])
        m2 = ((flat - mean) ** 2).sum(axis=0)
        return cls(len(flat), mean, m2)

    def scaled(self, factor: float) -> Moments:
        """The moments of ``factor * x``."""
        return Moments(self.count, self.mean * factor, self.m2 * factor**2)

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        if self.mean.shape != other.mean.shape:
            raise ValueError(
                f"cannot merge moments of {self.mean.shape[0]} and {other.mean.shape[0]} channels"
            )
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return Moments(n, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel (0 where there are no pixels)."""
        if self.count == 0:
            return np.zeros_like(self.mean)
        return np.sqrt(self.m2 / self.count)
