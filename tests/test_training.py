"""The train loop: it learns, a killed run resumes to the same weights, DDP with SyncBN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datapipe.distributed import Dist
from datapipe.training import use_sync_bn
from tests.conftest import REPO

WORKER = REPO / "tests" / "train_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _train(data: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(data), str(out), *extra],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err


def test_training_learns_and_logs_every_term(tmp_path: Path) -> None:
    _finish(_train(tmp_path, tmp_path / "a.pt"))
    result = torch.load(tmp_path / "a.rank0.pt", weights_only=False)
    history = result["history"]
    assert [int(r["epoch"]) for r in history] == [0, 1, 2, 3]
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert history[-1]["val/accuracy"] >= 0.9  # three brightness levels: easy
    assert {"train/loss_ce", "lr", "train/grad_norm", "val/macro_f1"} <= set(history[-1])
    assert history[0]["lr"] < history[1]["lr"] or history[0]["lr"] < 0.05  # warmup first


@pytest.mark.parametrize(
    ("wanted", "world", "device", "expected"),
    [(True, 2, "cuda", True), (True, 2, "cpu", False), (True, 1, "cuda", False),
     (False, 2, "cuda", False)],
)  # fmt: skip
def test_sync_bn_only_across_cuda_ranks(
    wanted: bool, world: int, device: str, expected: bool
) -> None:
    assert use_sync_bn(wanted, Dist(rank=1, world=world), torch.device(device)) is expected


@pytest.mark.gpu
def test_sync_bn_conversion_replaces_every_batch_norm() -> None:
    from datapipe.config import TrainTaskParams
    from datapipe.training import build_model

    model = build_model("segmentation", TrainTaskParams(), in_channels=3, num_classes=2)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.cuda())
    kinds = {
        type(m) for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
    }
    assert kinds == {torch.nn.SyncBatchNorm}


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _finish(_train(data, tmp_path / "straight.pt"))
    checkpoint = tmp_path / "state" / "checkpoint.pt"
    proc = _train(data, tmp_path / "resumed.pt", "--checkpoint", str(checkpoint), "--slow")
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:  # epoch 0 saved
        time.sleep(0.05)
    time.sleep(0.3)  # well inside epoch 1 (48 samples x 20 ms)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "resumed.rank0.pt").exists()
    err = _finish(_train(data, tmp_path / "resumed.pt", "--checkpoint", str(checkpoint)))
    assert "resuming from epoch" in err  # a resumed run says so
    straight = torch.load(tmp_path / "straight.rank0.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed.rank0.pt", weights_only=False)
    assert resumed["resumed_from"] is not None and resumed["resumed_from"] >= 1
    assert straight["state"].keys() == resumed["state"].keys()
    for key, value in straight["state"].items():
        assert torch.equal(value, resumed["state"][key]), key
    assert [r["train/loss"] for r in resumed["history"]] == [
        r["train/loss"] for r in straight["history"]
    ]


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_one_model(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(tmp_path), str(tmp_path / "ddp.pt"), "--epochs", "3"],
        env=ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"ddp.rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert not any(r["sync_bn"] for r in ranks)  # torch's SyncBatchNorm is CUDA-only
    weights = [k for k in ranks[0]["state"] if "running_" not in k and "num_batches" not in k]
    assert len(weights) > 4
    for key in weights:  # DDP keeps the replicas' weights identical (BN statistics are per rank)
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
    assert ranks[0]["history"][-1]["val/accuracy"] >= 0.8
    # each rank trained on its half of every epoch
    assert ranks[0]["history"][0]["samples"] == 24
