"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every output is written to a temporary file in the destination's own folder (same file system,
so the rename is atomic) and moved onto the destination with :func:`os.replace` only once the
writer has returned. A process killed mid-write leaves the old output (or none) plus a
``.tmp-<pid>-…`` file that :func:`remove_stale_temps` clears at the next stage start.

The temporary name *ends with* the destination's name, so writers that look at the suffix
(``np.savez`` adds ``.npz`` otherwise, pandas infers ``.csv.gz`` compression, ``cv2.imwrite``
picks the format) behave as they would on the real path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it goes.

    Example::

        with atomic_path(out / "model.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """``Path.write_text`` through :func:`atomic_path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """``Path.write_bytes`` through :func:`atomic_path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files under ``folder`` left by writers that no longer run.

    A temporary file names its writer's PID; files of a live process (another stage writing
    into the same folder right now) are kept. Returns the paths removed.
    """
    removed: list[Path] = []
    for tmp in Path(folder).rglob(f"{TEMP_PREFIX}*"):
        pid_text = tmp.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)) or not tmp.is_file():
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that PID
        return True
    return True
