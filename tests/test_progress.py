from __future__ import annotations

import io

import pytest

from datapipe.progress import duration, line, pace, progress


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    items = list(
        progress(range(5), total=5, desc="ingest demo", unit="image", every_s=0.0, stream=out)
    )
    lines = out.getvalue().splitlines()
    assert items == [0, 1, 2, 3, 4]
    assert "\r" not in out.getvalue()
    assert len(lines) == 6  # one per item at every_s=0, plus the closing line
    assert lines[-1].startswith("ingest demo: image 5/5 (100%), ")
    assert "done in " in lines[-1]


def test_only_a_closing_line_for_a_fast_loop() -> None:
    out = io.StringIO()
    list(progress(iter(range(3)), total=None, desc="x", every_s=60.0, stream=out))
    assert out.getvalue().splitlines()[0].startswith("x: item 3, ")


@pytest.mark.parametrize(
    ("count", "total", "elapsed", "done", "expected"),
    [
        (12, 80, 37.2, False, "score c: fold-epoch 12/80 (15%), 3.1 s each, ETA 3 min 31 s"),
        (40, 80, 4.0, False, "score c: fold-epoch 40/80 (50%), 10 fold-epoch/s, ETA 4.0 s"),
        (80, 80, 248.0, True, "score c: fold-epoch 80/80 (100%), 3.1 s each, done in 4 min 8 s"),
        (0, 80, 0.0, False, "score c: fold-epoch 0/80 (0%)"),
        (0, 0, 0.0, True, "score c: fold-epoch 0/0, done in 0.0 s"),
    ],
    ids=["slow-steps-eta", "fast-steps-rate", "closing-line", "nothing-yet", "empty"],
)
def test_a_line_names_its_unit_pace_and_time_left(
    count: int, total: int, elapsed: float, done: bool, expected: str
) -> None:
    assert line("score c", "fold-epoch", count, total, elapsed, done=done) == expected


def test_never_a_bare_rate() -> None:
    assert "0.0/s" not in line("x", "batch", 0, 10, 5.0)
    assert pace(600.0, "batch") == "600.0 s each"
    assert pace(0.0001, "sample") == "10000 sample/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (42.4, "42 s"), (211.0, "3 min 31 s"), (1500.0, "25 min"),
     (3900.0, "1 h 05 min")],
    ids=["sub-second", "seconds", "minutes-seconds", "minutes", "hours"],
)  # fmt: skip
def test_durations_read_like_a_person_says_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text
