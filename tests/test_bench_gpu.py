"""The GPU utilisation sampler of bench/score_throughput.py: samples while the block runs and
stops with it; on CUDA, NVML readings in 0-100 that see a busy device."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from bench._gpu import Utilisation


def test_samples_at_the_start_while_running_and_at_the_end_then_stops() -> None:
    counter = itertools.count()
    with Utilisation(lambda: float(next(counter)), interval=0.02) as used:
        assert used.samples == [0.0]
        time.sleep(0.25)
    taken = len(used.samples)
    assert taken >= 5  # the first, several in between, the last
    assert used.samples == [float(i) for i in range(taken)]  # in order, none lost
    assert used.peak == taken - 1
    assert used.mean == pytest.approx((taken - 1) / 2)
    time.sleep(0.1)
    assert len(used.samples) == taken  # the thread has stopped


def test_no_samples_means_nan_not_an_error() -> None:
    used = Utilisation(lambda: 0.0)
    assert used.mean != used.mean and used.peak != used.peak


@pytest.mark.gpu
def test_nvml_sees_a_busy_gpu() -> None:
    x = torch.randn(4096, 4096, device="cuda")
    with Utilisation(torch.cuda.utilization, interval=0.05) as used:
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            x = (x @ x).tanh_()
        torch.cuda.synchronize()
    assert all(0 <= s <= 100 for s in used.samples)
    assert used.peak > 50
