"""Progress for long loops: a tqdm bar on a terminal, plain periodic lines in logs (CI, DVC)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    total: int | None,
    desc: str,
    every_s: float = 15.0,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """Yield from ``iterable`` while showing progress on ``stream`` (stderr by default).

    On a terminal this is a tqdm bar. Elsewhere it prints one line every ``every_s`` seconds
    and one at the end (``ingest shapes_cls: 120/300 (40%) 85.3/s``), because a bar redrawn
    with carriage returns turns into one endless line in a CI log.
    """
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        yield from tqdm(iterable, total=total, desc=desc, file=out, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    count = 0
    for item in iterable:
        yield item
        count += 1
        now = time.monotonic()
        if now - last >= every_s:
            _line(out, desc, count, total, now - start)
            last = now
    _line(out, desc, count, total, time.monotonic() - start)


def _line(out: TextIO, desc: str, count: int, total: int | None, elapsed: float) -> None:
    rate = count / elapsed if elapsed > 0 else 0.0
    share = f" ({100 * count / total:.0f}%)" if total else ""
    of_total = f"/{total}" if total is not None else ""
    print(f"{desc}: {count}{of_total}{share} {rate:.1f}/s {elapsed:.1f}s", file=out, flush=True)
