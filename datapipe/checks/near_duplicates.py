"""Near-duplicate search over 64-bit perceptual hashes without comparing all pairs.

Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012): split each hash into ``m`` chunks. If
two hashes differ in at most ``t`` bits, some chunk differs in at most ``t // m`` bits
(pigeonhole), so every pair within ``t`` is found by looking up, for each chunk, the table
entries within ``t // m`` bits of the query's chunk. Chunks are about ``log2(n)`` bits wide, so a
lookup returns O(1) candidates and the search costs O(n * probes) instead of O(n^2). Callers
collapse identical hashes first, so a thousand copies of one picture do not make a million pairs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from datapipe.checks.hashing import HASH_BITS, hamming

_MAX_CHUNK_BITS = 22  # the lookup table has 2**bits + 1 offsets


def near_duplicate_pairs(hashes: np.ndarray, *, max_distance: int) -> np.ndarray:
    """All pairs ``(i, j)``, ``i < j``, of hashes within ``max_distance`` bits (distinct values).

    Pairs of *equal* hashes are not returned: collapse repeats first (``np.unique``).

    Shapes:
        ``hashes`` is ``(N,)`` uint64 of distinct values; returns ``(P, 3)`` int64 rows
        ``(i, j, distance)`` sorted by ``(i, j)``.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"max_distance must be in [0, {HASH_BITS}); got {max_distance}")
    n = len(hashes)
    if n < 2 or max_distance == 0:
        return np.empty((0, 3), np.int64)
    chunks = _chunks(n, max_distance)
    radius = max_distance // len(chunks)  # pigeonhole: some chunk is this close
    found = []
    for shift, bits in chunks:
        found.extend(_probe_chunk(hashes, shift, bits, radius, max_distance))
    if not found:
        return np.empty((0, 3), np.int64)
    return np.unique(np.concatenate(found), axis=0)


def _chunks(n: int, max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of each chunk, for the chunk count with the least estimated work.

    With ``m`` chunks of ``w = 64 / m`` bits and radius ``r = t // m``, a search makes
    ``P = m * sum(C(w, k), k <= r)`` vectorised probes over all ``n`` hashes, and each probe
    yields about ``n * n / 2**w`` candidate pairs to check.
    """
    best: tuple[float, int] | None = None
    # Any m works with radius t // m (if every chunk differed in more, the total would exceed t).
    for m in range(1, HASH_BITS // 8 + 1):
        width = HASH_BITS / m
        if width > _MAX_CHUNK_BITS:
            continue
        probes = m * sum(math.comb(math.ceil(width), k) for k in range(max_distance // m + 1))
        cost = probes * n * (1.0 + n / 2.0**width)
        if best is None or cost < best[0]:
            best = (cost, m)
    m = best[1] if best is not None else HASH_BITS // 8
    edges = np.linspace(0, HASH_BITS, m + 1).round().astype(int)
    return [(int(lo), int(hi - lo)) for lo, hi in itertools.pairwise(edges)]


def _probe_chunk(
    hashes: np.ndarray, shift: int, bits: int, radius: int, max_distance: int
) -> list[np.ndarray]:
    """Pairs within ``max_distance`` whose chunk at ``shift`` differs in ``<= radius`` bits."""
    mask = np.uint64((1 << bits) - 1)
    keys = ((hashes >> np.uint64(shift)) & mask).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros((1 << bits) + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << bits), out=offsets[1:])
    out = []
    for r in range(radius + 1):
        for flip in itertools.combinations(range(bits), r):
            probe = keys ^ sum(1 << b for b in flip)
            start, stop = offsets[probe], offsets[probe + 1]
            counts = stop - start
            total = int(counts.sum())
            if total == 0:
                continue
            query = np.repeat(np.arange(len(hashes)), counts)
            # positions start[q] .. stop[q]-1 of `order`, for every query q, flattened
            within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            other = order[np.repeat(start, counts) + within]
            keep = query < other
            query, other = query[keep], other[keep]
            dist = hamming(hashes[query], hashes[other]).astype(np.int64)
            close = dist <= max_distance
            if close.any():
                out.append(np.stack([query[close], other[close], dist[close]], axis=1))
    return out
