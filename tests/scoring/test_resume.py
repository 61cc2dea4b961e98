"""A score run killed mid-fold resumes at its first unfinished fold, to the same result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

WORKER = Path(__file__).with_name("resume_worker.py")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), *extra],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return err


@pytest.mark.slow
def test_a_score_run_killed_mid_fold_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    _finish(_start(tmp_path / "straight.npz"))
    state = tmp_path / "state"
    proc = _start(tmp_path / "resumed.npz", "--checkpoint", str(state), "--slow")
    deadline = time.monotonic() + 300
    while not (state / "folds.rank0.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # fold 0 done
    time.sleep(0.5)  # inside fold 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "resumed.npz").exists()
    err = _finish(_start(tmp_path / "resumed.npz", "--checkpoint", str(state)))
    assert "resuming after fold(s) [0]" in err
    straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    for key in ("probs", "aum", "passes"):
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)


def test_a_checkpoint_of_other_inputs_is_not_used(tmp_path: Path) -> None:
    from datapipe.scoring.oof import FoldCheckpoint

    FoldCheckpoint(tmp_path, "a").save([0], None, None, {0: 1.0}, {0: 0.1}, None)
    assert FoldCheckpoint(tmp_path, "a").load() is not None
    assert FoldCheckpoint(tmp_path, "b").load() is None  # another fingerprint starts over
    (tmp_path / "folds.rank0.pt").write_bytes(b"cut short")
    assert FoldCheckpoint(tmp_path, "a").load() is None  # a damaged file starts over


def test_a_resumed_shard_writer_drops_the_interrupted_folds_shards(tmp_path: Path) -> None:
    from datapipe.scoring.segmentation import ShardWriter, read_shards

    writer = ShardWriter(tmp_path)
    for i in range(5):
        writer.add(np.array([i]), np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2)))
    other = ShardWriter(tmp_path, rank=1)
    other.add(np.array([9]), np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2)))
    resumed = ShardWriter(tmp_path)
    resumed.truncate(3)  # folds finished before the kill wrote three shards
    resumed.add(np.array([7]), np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2)))
    assert sorted(int(i[0]) for i, _, _ in read_shards(tmp_path)) == [0, 1, 2, 7, 9]
