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
SMOOTH = 0.7  # Gaussian sigma, thumbnail pixels, before comparing
FLAT = 1e-6  # a window whose standard deviation is below this is flat (constant)


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
    thumbs = np.asarray(thumbs)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if thumbs.ndim != 3 or thumbs.shape[1] != thumbs.shape[2]:
        raise ValueError(f"thumbs must be (M, S, S); got {thumbs.shape}")
    side = thumbs.shape[1]
    if not 0 <= max_shift < side // 2:
        raise ValueError(f"max_shift must be in [0, {side // 2}); got {max_shift}")
    out = np.empty(len(pairs), np.float64)
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        used, local = np.unique(chunk, return_inverse=True)
        local = local.reshape(-1, 2)
        smooth = np.stack(
            [cv2.GaussianBlur(t.astype(np.float32), (0, 0), SMOOTH) for t in thumbs[used]]
        )
        out[start : start + len(chunk)] = _best_correlation(smooth, local, max_shift)
    return out


def _best_correlation(smooth: np.ndarray, pairs: np.ndarray, shift: int) -> np.ndarray:
    """:func:`pair_similarity` of ``pairs`` (positions into ``smooth``)."""
    win = smooth.shape[1] - 2 * shift
    n = win * win
    centre, centre_flat = _standardised(smooth[:, shift : shift + win, shift : shift + win])
    centre_sum = centre.sum(axis=(1, 2), dtype=np.float64)
    means, stds, flats = _window_moments(smooth, win)
    first, second = centre[pairs[:, 0]], smooth[pairs[:, 1]]
    a_flat, a_sum, b = centre_flat[pairs[:, 0]], centre_sum[pairs[:, 0]], pairs[:, 1]
    best = np.full(len(pairs), -np.inf)
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            mean, std, b_flat = means[dy, dx][b], stds[dy, dx][b], flats[dy, dx][b]
            dots = np.einsum("pij,pij->p", first, second[:, dy : dy + win, dx : dx + win])
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (dots - mean * a_sum) / (n * std)
            r = np.where(a_flat & b_flat, 1.0, np.where(a_flat | b_flat, 0.0, r))
            best = np.maximum(best, r)
    return np.clip(best, -1.0, 1.0)


def _window_moments(smooth: np.ndarray, win: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and flatness of every image's ``win``-pixel window at each
    offset ``(dy, dx)``, from summed-area tables in float64.

    The tables (OpenCV's ``integral2``) hold each image minus its own mean, so a constant
    image comes out exactly flat;
    a window is flat below ``FLAT`` times the image's largest deviation from its mean (at least
    ``FLAT``), far above what the tables' rounding can leave of a constant window.

    Shapes:
        ``smooth`` ``(M, S, S)``; each result ``(S - win + 1, S - win + 1, M)``.
    """
    offset = smooth.mean(axis=(1, 2), dtype=np.float64)
    x = smooth - offset.astype(smooth.dtype)[:, None, None]
    tol = FLAT * np.maximum(1.0, np.abs(x).max(axis=(1, 2)))
    tables = [cv2.integral2(np.ascontiguousarray(image), sdepth=cv2.CV_64F) for image in x]
    sums, squares = (np.stack([t[k] for t in tables]) for k in (0, 1))
    shifts = x.shape[1] - win + 1
    first, second = (
        np.array([[t[:, dy + win, dx + win] - t[:, dy, dx + win] - t[:, dy + win, dx]
                   + t[:, dy, dx] for dx in range(shifts)] for dy in range(shifts)]) / (win * win)
        for t in (sums, squares)
    )  # fmt: skip
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
