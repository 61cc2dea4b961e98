"""GPU utilisation while a piece of work runs: a thread samples it every ``interval`` seconds.

``torch.cuda.utilization()`` reads NVML (the ``nvidia-ml-py`` package that CUDA wheels of
torch bring): the share of the last sample period in which a kernel ran on the device, 0-100.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Utilisation:
    """Context manager: ``with Utilisation(read) as u: work()``, then ``u.mean``, ``u.peak``.

    ``read`` returns the utilisation now, in percent (on CUDA: ``torch.cuda.utilization``).
    One sample is taken when the block starts and one when it ends, so a short block still
    has two.
    """

    read: Callable[[], float]
    interval: float = 0.05
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> Utilisation:
        self.samples.append(float(self.read()))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(float(self.read()))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(float(self.read()))

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")

    @property
    def peak(self) -> float:
        return max(self.samples, default=float("nan"))
