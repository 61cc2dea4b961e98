"""Run by tests/scoring/test_distributed.py: out-of-fold detectors on 8 tiny images, 3 folds,
under torchrun (2 CPU ranks on gloo, the folds dealt to the ranks) or in one process; saves
the folds this process trained and every held-out prediction it ends with.

    python tests/scoring/ddp_detect_worker.py OUT.pt
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from datapipe.distributed import init_distributed, shutdown
from datapipe.models import build_detector
from datapipe.scoring.detection import Boxes, detection_out_of_fold
from datapipe.scoring.oof import TrainSettings


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist, _ = init_distributed("cpu")
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(8):
        image = rng.normal(0, 0.1, (1, 48, 48)).astype(np.float32)
        x0, y0 = 6 + 3 * (i % 5), 8 + 2 * (i % 4)
        image[0, y0 : y0 + 18, x0 : x0 + 18] += 2.0
        images.append(image)
        targets.append(Boxes(np.array([[x0, y0, x0 + 18, y0 + 18]], np.float32), np.array([0])))
    trained: list[int] = []
    predictions = detection_out_of_fold(
        images, targets, np.arange(8) % 3,
        make_model=lambda: build_detector(
            "fasterrcnn_small", in_channels=1, num_classes=1, min_size=48, max_size=48
        ),
        settings=TrainSettings.of(epochs=2, batch_size=2, lr=0.01, amp=False),
        on_fold=lambda fold, _train, _held: trained.append(fold),
        dist=dist,
    )  # fmt: skip
    torch.save({"world": dist.world, "folds": trained,
                "boxes": [p.boxes for p in predictions], "scores": [p.scores for p in predictions]},
               out.replace(".pt", f".rank{dist.rank}.pt"))  # fmt: skip
    shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
