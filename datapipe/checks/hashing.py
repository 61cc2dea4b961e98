"""Image fingerprints: an exact hash of decoded pixels and a 64-bit perceptual hash.

The pixel hash sees through containers: the same picture saved as PNG and as TIFF, or 8-bit
values stored in a 16-bit file, hash alike. The perceptual hash (pHash: signs of the low
frequencies of a 32 x 32 DCT against their median) is computed on float pixels, so it is blind
to bit depth and to global brightness / contrast changes: an 8-bit twin of a 16-bit image lands
within a few bits of it.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

HASH_BITS = 64
_DCT_SIZE = 32
_LOW = 8  # the 8 x 8 lowest frequencies make the 64 bits
_BIT_WEIGHTS = (1 << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


def pixel_hash(img: np.ndarray) -> str:
    """Hex digest of the pixel values and shape, independent of the integer container size."""
    arr = img
    if arr.dtype.kind in "ui" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        for small in (np.uint8, np.uint16):
            info = np.iinfo(small)
            if lo >= info.min and hi <= info.max:
                arr = arr.astype(small, copy=False)
                break
    digest = hashlib.sha256()  # hardware-accelerated on current CPUs: ~2x blake2b here
    digest.update(np.asarray(arr.shape, np.int64).tobytes())
    digest.update(arr.dtype.str.encode())
    digest.update(np.ascontiguousarray(arr).data)
    return digest.hexdigest()


def perceptual_hash(grey: np.ndarray) -> int:
    """64-bit pHash of a grey float image in [0, 1].

    Shapes:
        ``grey`` is ``(H, W)`` or ``(H, W, 1)`` float; returns an int in ``[0, 2**64)``.
    """
    return int(hashes_of_dct_inputs(dct_input(grey.reshape(grey.shape[:2]))[None])[0])


def dct_input(grey: np.ndarray) -> np.ndarray:
    """The ``(32, 32)`` float32 picture a pHash is the DCT of: ``grey`` area-resampled."""
    grey = grey.astype(np.float32, copy=False)
    return cv2.resize(grey, (_DCT_SIZE, _DCT_SIZE), interpolation=cv2.INTER_AREA)


def hashes_of_dct_inputs(small: np.ndarray) -> np.ndarray:
    """The pHashes of a stack of :func:`dct_input` pictures: the signs of each one's 8 x 8
    lowest DCT frequencies against their median, as 64 bits.

    Shapes:
        ``(B, 32, 32)`` float32 -> ``(B,)`` uint64.
    """
    low = np.zeros((len(small), HASH_BITS), np.float32)
    for i, picture in enumerate(small):
        low[i] = cv2.dct(picture)[:_LOW, :_LOW].ravel()
    ordered = np.sort(low, axis=1)  # np.median costs ~30x more on 64 values
    half = HASH_BITS // 2
    median = 0.5 * (ordered[:, half - 1] + ordered[:, half])
    bits = (low > median[:, None]).astype(np.uint64)
    return (bits * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance between 64-bit hashes (vectorised)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
