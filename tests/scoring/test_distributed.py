"""Out-of-fold scoring under torchrun: 2 CPU processes on gloo, results gathered on rank 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datapipe.distributed import Dist
from tests.conftest import REPO


def test_shard_pads_for_training_and_splits_exactly_for_prediction() -> None:
    order = np.arange(7)
    ranks = [Dist(rank=r, world=3) for r in range(3)]
    padded = [d.shard(order, pad=True) for d in ranks]
    assert [len(p) for p in padded] == [3, 3, 3]  # equal step counts on every rank
    assert sorted(np.concatenate(padded).tolist()) == [0, 0, 1, 1, 2, 3, 4, 5, 6]
    exact = [d.shard(order, pad=False) for d in ranks]
    assert sorted(np.concatenate(exact).tolist()) == list(range(7))
    assert Dist().shard(order, pad=True) is order


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_score_every_sample(tmp_path: Path) -> None:
    out = tmp_path / "oof.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(REPO / "tests" / "scoring" / "ddp_worker.py"), str(out),
        ],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = np.load(out)
    assert int(result["world"]) == 2
    probs = result["probs"]
    labels = np.arange(120) % 3
    assert np.isfinite(probs).all()  # every row predicted by one rank, gathered on rank 0
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (probs.argmax(1) == labels).mean() >= 0.9
    # dynamics summed over ranks: each sample trained once per epoch in 3 of 4 folds
    assert (result["passes"] == 4 * 3).all()


@pytest.mark.slow
def test_torchrun_deals_detection_folds_to_ranks_and_predicts_as_one_process(
    tmp_path: Path,
) -> None:
    worker = str(REPO / "tests" / "scoring" / "ddp_detect_worker.py")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for command in (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         worker, str(tmp_path / "ddp.pt")],
        [sys.executable, worker, str(tmp_path / "one.pt")],
    ):  # fmt: skip
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                             check=False)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"ddp.rank{r}.pt", weights_only=False) for r in (0, 1)]
    alone = torch.load(tmp_path / "one.rank0.pt", weights_only=False)
    assert [r["folds"] for r in ranks] == [[0, 2], [1]] and alone["folds"] == [0, 1, 2]
    assert sum(len(b) for b in alone["boxes"]) > 0
    for r in ranks:  # each fold's model is seeded by its fold: the same wherever it trains
        for mine, single in zip(r["boxes"] + r["scores"], alone["boxes"] + alone["scores"],
                                strict=True):  # fmt: skip
            np.testing.assert_allclose(mine, single, rtol=1e-5, atol=1e-4)
