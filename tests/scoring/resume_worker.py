"""Run by tests/scoring/test_resume.py in a subprocess: out-of-fold scoring of a small
synthetic set with a fold checkpoint, optionally slowly (so a test can kill it mid-fold).

    python tests/scoring/resume_worker.py OUT.npz [--checkpoint DIR] [--slow]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datapipe.models import build_classifier
from datapipe.scoring.oof import FoldCheckpoint, TrainSettings, out_of_fold

N, FOLDS = 72, 3


class Slow(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.03)
        out: torch.Tensor = self.inner(x)
        return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 3
    images = torch.tensor(
        labels[:, None, None, None] * 1.0 + rng.normal(0, 0.8, (N, 1, 8, 8)), dtype=torch.float32
    )

    def make_model() -> nn.Module:
        model = build_classifier("small_cnn", in_channels=1, num_classes=3, image_size=8)
        return Slow(model) if args.slow else model

    result = out_of_fold(
        images,
        labels,
        np.arange(N) % FOLDS,
        np.ones(N, bool),
        num_classes=3,
        make_model=make_model,
        settings=TrainSettings.of(epochs=4, batch_size=8, lr=0.05),
        checkpoint=FoldCheckpoint(args.checkpoint, "test") if args.checkpoint else None,
    )
    assert result.probs is not None and result.dynamics is not None
    dyn = result.dynamics
    np.savez(args.out, probs=result.probs, aum=dyn.summary()["aum"], passes=dyn.passes)


if __name__ == "__main__":
    main()
