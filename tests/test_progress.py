from __future__ import annotations

import io

from datapipe.progress import progress


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    items = list(progress(range(5), total=5, desc="ingest demo", every_s=0.0, stream=out))
    lines = out.getvalue().splitlines()
    assert items == [0, 1, 2, 3, 4]
    assert "\r" not in out.getvalue()
    assert len(lines) == 6  # one per item at every_s=0, plus the closing line
    assert lines[-1].startswith("ingest demo: 5/5 (100%)")


def test_only_a_closing_line_for_a_fast_loop() -> None:
    out = io.StringIO()
    list(progress(iter(range(3)), total=None, desc="x", every_s=60.0, stream=out))
    assert out.getvalue().splitlines()[0].startswith("x: 3 ")
