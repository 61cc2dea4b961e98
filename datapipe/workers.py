"""Worker processes that die with their parent.

A DataLoader worker (or any forked helper) normally outlives a parent killed with SIGKILL:
nothing runs in the parent to stop it, and it goes on decoding, holding memory and files,
racing the next run. On Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to kill
the worker when its parent goes; elsewhere these functions do nothing.

Use :func:`worker_init_fn` as a DataLoader's ``worker_init_fn`` (it is picklable, so it works
with the ``spawn`` and ``forkserver`` start methods too)::

    DataLoader(ds, num_workers=4, worker_init_fn=worker_init_fn(seed_worker))

Note: the kernel watches the *thread* that created the worker; create DataLoader iterators
from a thread that lives as long as the process (the main thread, as datapipe does).
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(worker_id: int | None = None) -> None:
    """Make this process receive SIGKILL when its parent dies (Linux; a no-op elsewhere).

    ``worker_id`` is ignored: the signature is that of a DataLoader ``worker_init_fn``. If the
    parent is already gone by the time this runs (it died between fork and this call), the
    process kills itself at once.
    """
    if not sys.platform.startswith("linux"):
        return
    before = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    if os.getppid() != before or not _starter_alive():
        os.kill(os.getpid(), signal.SIGKILL)  # the parent died before prctl took effect


def _starter_alive() -> bool:
    """Whether the process that started this one through multiprocessing still runs.

    With ``forkserver`` the kernel's parent is the fork server, not the process that asked for
    the worker; the fork server exits when that one does, so the signal still comes.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return True
    try:
        os.kill(parent.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _init_worker(worker_id: int, then: Callable[[int], None] | None) -> None:
    die_with_parent(worker_id)
    if then is not None:
        then(worker_id)


def worker_init_fn(then: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn``: :func:`die_with_parent`, then ``then(worker_id)``."""
    return functools.partial(_init_worker, then=then)
