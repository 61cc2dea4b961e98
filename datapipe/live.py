"""DVCLive for the train stage: one step per epoch, and a run that goes on without it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dvclive import Live

log = logging.getLogger("datapipe")
LogFn = Callable[[int, dict[str, float]], None]


@contextmanager
def live_log(folder: Path, *, enabled: bool = True) -> Iterator[LogFn | None]:
    """An epoch logger writing to DVCLive in ``folder`` (``None`` when not ``enabled``, e.g.
    on ranks other than 0, or when DVCLive cannot start, e.g. in a git repo with no commit
    yet: it asks git for the baseline revision). Training goes on either way."""
    if not enabled:
        yield None
        return
    try:
        live = Live(str(folder), save_dvc_exp=False, dvcyaml=None)
    except Exception as exc:
        log.warning("dvclive could not start (%s); training curves are not logged", exc)
        (folder / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
        yield None
        return

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                live.log_metric(key, value)
        live.next_step()

    try:
        yield log_epoch
    finally:
        live.end()
