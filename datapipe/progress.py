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
    unit: str = "item",
    every_s: float = 15.0,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """Yield from ``iterable`` while showing progress on ``stream`` (stderr by default).

    On a terminal this is a tqdm bar. Elsewhere it prints one line every ``every_s`` seconds
    and one at the end, because a bar redrawn with carriage returns turns into one endless line
    in a CI log. Each line names its ``unit`` and, while the total is known and not reached, the
    time left: ``score cells: fold-epoch 12/80 (15%), 3.1 s each, ETA 3 min 31 s``; the last one
    says how long it all took.
    """
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        yield from tqdm(iterable, total=total, desc=desc, unit=unit, file=out, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    count = 0
    for item in iterable:
        yield item
        count += 1
        now = time.monotonic()
        if now - last >= every_s:
            print(line(desc, unit, count, total, now - start), file=out, flush=True)
            last = now
    print(line(desc, unit, count, total, time.monotonic() - start, done=True), file=out, flush=True)


def line(
    desc: str, unit: str, count: int, total: int | None, elapsed: float, *, done: bool = False
) -> str:
    """One progress line: ``desc: unit count/total (share), pace, ETA ...`` (see progress)."""
    of_total = f"/{total}" if total is not None else ""
    share = f" ({100 * count / total:.0f}%)" if total else ""
    parts = [f"{desc}: {unit} {count}{of_total}{share}"]
    if count > 0 and elapsed > 0:
        parts.append(pace(elapsed / count, unit))
    if done:
        parts.append(f"done in {duration(elapsed)}")
    elif total is not None and count > 0 and elapsed > 0 and count < total:
        parts.append(f"ETA {duration(elapsed / count * (total - count))}")
    return ", ".join(parts)


def pace(seconds_each: float, unit: str) -> str:
    """``3.1 s each`` for slow steps, ``85 sample/s`` for fast ones (never a bare ``/s``)."""
    if seconds_each >= 1.0:
        return f"{seconds_each:.1f} s each"
    rate = 1.0 / seconds_each
    return f"{rate:.3g} {unit}/s" if rate < 1000 else f"{rate:.0f} {unit}/s"


def duration(seconds: float) -> str:
    """A time span for people: ``0.4 s``, ``42 s``, ``3 min 31 s``, ``1 h 05 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s < 600 else f"{round(s / 60)} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
