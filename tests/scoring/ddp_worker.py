"""Run by tests/scoring/test_distributed.py under torchrun (2 CPU processes on gloo)."""

from __future__ import annotations

import sys

import numpy as np
import torch

from datapipe.distributed import init_distributed, shutdown
from datapipe.models import build_classifier
from datapipe.scoring.oof import TrainSettings, out_of_fold


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist, device = init_distributed("cpu")
    rng = np.random.default_rng(0)
    n, epochs = 120, 4
    labels = np.arange(n) % 3
    images = torch.tensor(
        labels[:, None, None, None] * 1.0 + rng.normal(0, 0.3, (n, 1, 8, 8)), dtype=torch.float32
    )
    result = out_of_fold(
        images,
        labels,
        np.arange(n) % 4,  # 90 training samples per fold: an even share for each rank
        np.ones(n, bool),
        num_classes=3,
        make_model=lambda: build_classifier(
            "small_cnn", in_channels=1, num_classes=3, image_size=8
        ),
        settings=TrainSettings.of(epochs=epochs, batch_size=16, lr=0.05, device=str(device)),
        dist=dist,
    )
    assert result.probs is not None and result.dynamics is not None
    if dist.is_main:
        np.savez(out, probs=result.probs, passes=result.dynamics.passes, world=dist.world)
    shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
