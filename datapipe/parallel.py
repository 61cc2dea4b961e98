"""A process pool map with progress, in input order: decoding is CPU-bound, threads won't do."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from datapipe.progress import progress

T = TypeVar("T")
R = TypeVar("R")


#: Fewer items than this are mapped in this process: starting a pool (the fork server is a
#: fresh interpreter that imports the decoders, ~1 s of CPU) costs more than a handful of
#: images take (bench/stage_startup.py, 10 images: ingest 2.9 -> 1.7 s of wall, its process
#: tree's peak RSS 444 -> 156 MB).
MIN_POOL_ITEMS = 16


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    desc: str,
    chunksize: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes (``0`` or ``1``, or fewer than
    :data:`MIN_POOL_ITEMS` items: in this process).

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one) and
    should turn expected per-item failures into values: one bad item must not end the map.
    Workers are forked from a fork server that has imported the decoders once (a new pool then
    starts in ~0.05 s instead of ~1.5 s with ``spawn``), and never from this process, so a parent
    that has started threads (torch, OpenCV) is safe.
    """
    if workers <= 1 or len(items) < MIN_POOL_ITEMS:
        yield from progress(map(fn, items), total=len(items), desc=desc, unit="sample")
        return
    if chunksize is None:
        chunksize = max(1, min(32, len(items) // (workers * 8)))
    context = _context()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from progress(
            pool.map(fn, items, chunksize=chunksize), total=len(items), desc=desc, unit="sample"
        )


_PRELOAD = ["datapipe.ingest", "datapipe.checks.features"]


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context
