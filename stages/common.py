"""What every stage shares: argument parsing, logging, clean one-line errors, a run summary.

Before a stage's body runs, its output folder ``runs/<dataset>/`` is checked (a folder, writable,
with free space: found in a second, not after decoding ten thousand images) and locked for this
stage (``.lock.<stage>``, held until the process ends), so an orphan left by a killed ``dvc``
makes the next run fail with one line instead of racing it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from datapipe.config import DatasetParams, Params, load_params
from datapipe.errors import DatapipeError
from datapipe.io.atomic import remove_stale_temps, write_text_atomic
from datapipe.runs import RunFiles

log = logging.getLogger("datapipe")

#: A stage refuses to start with less free space than this under its output folder.
MIN_FREE_BYTES = 256 << 20


def stage_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, help="a key of datasets: in params.yaml")
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--runs", default="runs", type=Path, help="outputs go to RUNS/<dataset>/")
    return parser.parse_args(argv)


def run_stage(
    name: str,
    body: Callable[[Params, DatasetParams, Path, str], list[Path]],
    argv: Sequence[str] | None = None,
    description: str = "",
) -> int:
    """Run ``body(params, dataset, out_dir, dataset_name)``; DatapipeError -> one line, exit 2.

    An OS error that escapes the body (a disk filled up mid-run) is one line naming the file
    too, with the same exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = stage_args(description or name, argv)
    start = time.monotonic()
    try:
        params = load_params(args.params)
        dataset = params.dataset(args.dataset)
        out_dir = args.runs / args.dataset
        prepare_out_dir(out_dir)
        with stage_lock(out_dir, name, args.dataset):
            remove_stale_temps(out_dir)
            written = body(params, dataset, out_dir, args.dataset)
    except DatapipeError as exc:
        print(f"error: {name} {args.dataset}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {name} {args.dataset}: {_os_error(exc)}", file=sys.stderr)
        return 2
    log.info(
        "%s %s: done in %.1fs; wrote %s",
        name,
        args.dataset,
        time.monotonic() - start,
        ", ".join(str(p) for p in written),
    )
    return 0


def prepare_out_dir(out_dir: Path, *, min_free: int = MIN_FREE_BYTES) -> None:
    """Create ``out_dir`` and check that it is a writable folder with ``min_free`` bytes free.

    Writability is tested for real (a probe file is created and removed): permission bits do
    not tell about read-only mounts, ACLs or root squashing.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DatapipeError(f"{out_dir}: is a file, not a folder; move it away (outputs go here)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".probe-{os.getpid()}"
        probe.write_bytes(b"datapipe")
        probe.unlink()
    except OSError as exc:
        raise DatapipeError(f"cannot write outputs: {_os_error(exc, out_dir)}") from None
    free = shutil.disk_usage(out_dir).free
    if free < min_free:
        raise DatapipeError(
            f"{out_dir}: only {free / 2**20:.0f} MiB free on its disk; a stage needs at least "
            f"{min_free / 2**20:.0f} MiB: free some space or pass --runs elsewhere"
        )


@contextlib.contextmanager
def stage_lock(out_dir: Path, stage: str, dataset: str) -> Iterator[Path]:
    """Hold ``out_dir/.lock.<stage>`` (``flock``) while the stage runs, or fail with one line.

    The lock goes with the process however it ends (a SIGKILL too), so a stale lock file is
    never a problem; what it catches is a run that is still alive. Under torchrun each rank
    locks its own file (``.lock.<stage>.rank<N>`` past rank 0).
    """
    rank = int(os.environ.get("RANK", "0") or 0)
    path = out_dir / (f".lock.{stage}" if rank == 0 else f".lock.{stage}.rank{rank}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise DatapipeError(
                f"another run of stage {stage} for dataset {dataset} is in progress "
                f"(PID {holder}, lock {path}); wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; a killed process releases it the same way


def _os_error(exc: OSError, path: Path | None = None) -> str:
    """``<path>: <reason>`` for an OS error, without Python's ``[Errno N]`` noise."""
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where is not None else reason


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (a killed stage never leaves half a file)."""
    try:
        return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
    except OSError as exc:
        raise DatapipeError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_metrics(
    out: Path, stage: str, metrics: Mapping[str, Any], *, headline: Iterable[str]
) -> list[Path]:
    """``metrics/<stage>.json``: the ``headline`` keys of ``metrics`` that hold a finite number
    (what ``dvc metrics show`` / ``dvc exp show`` tabulate: a few columns per stage, numbers
    only, as DVC parses nothing else); and ``reports/<stage>_metrics.json``: all of
    ``metrics`` (per-class tables, lists, texts), which the report reads.

    A headline key the stage did not produce (the other task's) is left out.
    """
    numbers = {k: metrics[k] for k in headline if k in metrics and is_number(metrics[k])}
    files = RunFiles.under(out)
    return [
        write_json(files.metrics_of(stage), numbers),
        write_json(files.metric_details_of(stage), dict(metrics)),
    ]


def is_number(value: Any) -> bool:
    """A real, finite number (not a bool): what a metrics file may hold."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
