"""The second look at a candidate near-duplicate pair: do the pixels agree, not just the hash?

A 64-bit perceptual hash is a coarse summary. On photos two different pictures almost never
land within a few bits of each other, but on small, centred, low-entropy images (digits,
characters, icons, cells) almost every image has a hash neighbour within 8 bits, and a hash
alone calls two different handwritten 3s "the same picture". Each candidate pair is therefore
compared on the pixels: the normalised cross-correlation (Pearson's r) of the two images'
unit-scale grey thumbnails, taken at the best of the small shifts up to ``max_shift`` thumbnail
pixels (so a copy moved by a pixel still matches), after a light Gaussian blur (sigma
``SMOOTH`` thumbnail pixels): a 1-px shift of a 64-px crop is half a thumbnail pixel, which no
integer shift aligns, and on fine texture (text, tissue) it decorrelated 2 of 10 planted copies
of real photo crops; with the blur all 10 match while scikit-learn's digits still give no false
pair. r is blind to brightness and contrast (gain and offset) and so to bit depth: an 8-bit twin
of a 16-bit image scores ~1.
"""

from __future__ import annotations

import cv2
import numpy as np

_CHUNK = 4096  # pairs compared at once: bounds the temporaries to a few MB
_QUERY_BLOCK = 32  # queries whose shifted centres are placed at once (~1 MB at 32 px)
SMOOTH = 0.7  # Gaussian sigma, thumbnail pixels, before comparing
FLAT = 1e-6  # below this standard deviation (for a window: x its image's scale) it is flat


def pair_similarity(thumbs: np.ndarray, pairs: np.ndarray, *, max_shift: int = 1) -> np.ndarray:
    """Best normalised correlation, over shifts of up to ``max_shift`` pixels, of each pair.

    The first image's central window (``max_shift`` pixels in from every side) is correlated
    with every equally large window of the second. A flat window correlates with nothing (0),
    unless both are flat (1: the same constant picture up to gain and offset).

    Each image's windows are summarised once per chunk of pairs, not once per pair it is in:
    the central window standardised, and the mean and spread of every shifted window, so a
    pair costs only its dot products. ``r = (sum(a * w) - mean(w) * sum(a)) / (n * std(w))``
    for the standardised centre ``a`` and a raw window ``w`` of ``n`` pixels.

    Shapes:
        ``thumbs`` ``(M, S, S)`` float; ``pairs`` ``(P, 2)`` int positions into ``thumbs``;
        returns ``(P,)`` float64 in ``[-1, 1]``.
    """
    thumbs = _checked(thumbs, max_shift)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), np.float64)
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        used, local = np.unique(chunk, return_inverse=True)
        local = local.reshape(-1, 2)
        windows = _Windows(thumbs[used], max_shift)
        out[start : start + len(chunk)] = windows.pairs(local[:, 0], local[:, 1])
    return out


def neighbour_similarity(
    thumbs: np.ndarray, queries: np.ndarray, neighbours: np.ndarray, *, max_shift: int = 1
) -> np.ndarray:
    """:func:`pair_similarity` of each query with each of its neighbours, the pairs
    ``(queries[i], neighbours[i, j])``: the same values, but a query's dot products with all its
    neighbours at every shift are one matrix product (its centre window at each shift on a
    blank thumbnail, against the neighbours' thumbnails), not one product per pair and shift.

    Shapes:
        ``queries`` ``(Q,)`` and ``neighbours`` ``(Q, k)`` int positions into ``thumbs``;
        returns ``(Q, k)`` float64.
    """
    thumbs = _checked(thumbs, max_shift)
    queries = np.asarray(queries, np.int64).ravel()
    neighbours = np.asarray(neighbours, np.int64).reshape(len(queries), -1)
    out = np.empty(neighbours.shape, np.float64)
    step = max(1, _CHUNK // max(1, neighbours.shape[1]))
    for start in range(0, len(queries), step):
        q, nb = queries[start : start + step], neighbours[start : start + step]
        used, local = np.unique(np.concatenate([q, nb.ravel()]), return_inverse=True)
        windows = _Windows(thumbs[used], max_shift)
        found = windows.neighbours(local[: len(q)], local[len(q) :].reshape(nb.shape))
        out[start : start + len(q)] = found
    return out


def _checked(thumbs: np.ndarray, max_shift: int) -> np.ndarray:
    thumbs = np.asarray(thumbs)
    if thumbs.ndim != 3 or thumbs.shape[1] != thumbs.shape[2]:
        raise ValueError(f"thumbs must be (M, S, S); got {thumbs.shape}")
    side = thumbs.shape[1]
    if not 0 <= max_shift < side // 2:
        raise ValueError(f"max_shift must be in [0, {side // 2}); got {max_shift}")
    return thumbs


class _Windows:
    """A chunk's thumbnails, blurred and summarised once: each one's standardised centre window
    (with its sum and flatness), and the mean, spread and flatness of its window at every
    shift."""

    def __init__(self, thumbs: np.ndarray, shift: int) -> None:
        self.smooth = np.stack(
            [cv2.GaussianBlur(t.astype(np.float32), (0, 0), SMOOTH) for t in thumbs]
        )
        self.shift, self.win = shift, self.smooth.shape[1] - 2 * shift
        centre = self.smooth[:, shift : shift + self.win, shift : shift + self.win]
        self.centre, self.centre_flat = _standardised(centre)
        self.centre_sum = self.centre.sum(axis=(1, 2), dtype=np.float64)
        self.mean, self.std, self.flat = _window_moments(self.smooth, self.win)

    def _offsets(self) -> list[tuple[int, int]]:
        return [(dy, dx) for dy in range(2 * self.shift + 1) for dx in range(2 * self.shift + 1)]

    def _r(self, dots: np.ndarray, a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> np.ndarray:
        """Correlation of centres ``a`` with the windows at ``(dy, dx)`` of ``b`` (positions,
        broadcast with ``dots``), from their dot products."""
        mean, std, b_flat = self.mean[dy, dx][b], self.std[dy, dx][b], self.flat[dy, dx][b]
        a_flat = self.centre_flat[a]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (dots - mean * self.centre_sum[a]) / (self.win * self.win * std)
        return np.where(a_flat & b_flat, 1.0, np.where(a_flat | b_flat, 0.0, r))

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The best correlation of each pair ``(a[p], b[p])``: ``(P,)``."""
        first, second, win = self.centre[a], self.smooth[b], self.win
        best = np.full(len(a), -np.inf)
        for dy, dx in self._offsets():
            dots = np.einsum("pij,pij->p", first, second[:, dy : dy + win, dx : dx + win])
            best = np.maximum(best, self._r(dots, a, b, dy, dx))
        return np.clip(best, -1.0, 1.0)

    def neighbours(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The best correlation of each ``a[i]`` with each ``b[i, j]``: ``(Q, k)``."""
        offsets, win, side = self._offsets(), self.win, self.smooth.shape[1]
        # blocks of queries keep the placed centres in cache; outside the window they stay 0
        placed = np.zeros((min(len(a), _QUERY_BLOCK), len(offsets), side, side), np.float32)
        dots = np.empty((len(a), len(offsets), b.shape[1]), np.float32)
        for start in range(0, len(a), _QUERY_BLOCK):
            block = slice(start, start + _QUERY_BLOCK)
            centres, here = self.centre[a[block]], placed[: len(a[block])]
            for s, (dy, dx) in enumerate(offsets):
                here[:, s, dy : dy + win, dx : dx + win] = centres
            thumbs = self.smooth[b[block]].reshape(len(centres), -1, side * side)
            np.matmul(here.reshape(len(centres), len(offsets), -1), thumbs.transpose(0, 2, 1),
                      out=dots[block])  # fmt: skip
        best = np.full(b.shape, -np.inf)
        for s, (dy, dx) in enumerate(offsets):
            best = np.maximum(best, self._r(dots[:, s], a[:, None], b, dy, dx))
        return np.clip(best, -1.0, 1.0)


def _window_moments(smooth: np.ndarray, win: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and flatness of every image's ``win``-pixel window at each
    offset ``(dy, dx)``, from window sums of the pixels and their squares in float64.

    The sums are two matrix products with a 0/1 matrix that selects each offset's rows and
    columns (``rows @ image @ rows.T``), taken over each image minus its own mean, so a
    constant image comes out exactly flat; a window is flat below ``FLAT`` times the image's
    largest deviation from its mean (at least ``FLAT``), far above what rounding can leave of
    a constant window.

    Shapes:
        ``smooth`` ``(M, S, S)``; each result ``(S - win + 1, S - win + 1, M)``.
    """
    count, side = smooth.shape[0], smooth.shape[1]
    offset = smooth.mean(axis=(1, 2), dtype=np.float64)
    x = smooth.astype(np.float64) - offset[:, None, None]
    tol = FLAT * np.maximum(1.0, np.abs(x).max(axis=(1, 2)))
    shifts = side - win + 1
    rows = np.zeros((shifts, side))
    for d in range(shifts):
        rows[d, d : d + win] = 1.0

    def window_sums(values: np.ndarray) -> np.ndarray:  # (shifts, shifts, M)
        across = (values.reshape(count * side, side) @ rows.T).reshape(count, side, shifts)
        both = rows @ across.transpose(1, 0, 2).reshape(side, count * shifts)
        return both.reshape(shifts, count, shifts).transpose(0, 2, 1) / (win * win)

    first, second = window_sums(x), window_sums(x * x)
    std = np.sqrt(np.maximum(second - first * first, 0.0))
    return first + offset, std, std < tol


def _standardised(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each ``(S, S)`` window minus its mean, over its standard deviation (flat ones: zeros),
    and which are flat."""
    centred = windows - windows.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt((centred * centred).mean(axis=(1, 2)))
    flat = std < FLAT
    scale = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, std)).astype(np.float32)
    return centred * scale[:, None, None], flat
