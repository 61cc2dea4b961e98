"""Run by tests/detect/test_train.py under torchrun (2 CPU ranks, gloo): train the final
detector on synthetic squares with ``schedule: plateau`` and save what each rank ends with.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/detect/ddp_train_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from datapipe.config import DetectionTrainParams
from datapipe.data import ImageSpec, SampleSpec
from datapipe.detect.train import DetectionSet, evaluate_detector, train_detector
from datapipe.distributed import init_distributed, shutdown
from datapipe.loop import RunSettings
from datapipe.models import build_detector
from datapipe.scoring.detection import Boxes

N, SIZE = 12, 32


def squares(n: int, seed: int) -> DetectionSet:
    """One bright square per image, at a place and size drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        image = rng.uniform(0, 0.1, (SIZE, SIZE, 1)).astype(np.float32)
        x0, y0 = rng.integers(2, 14, 2)
        side = int(rng.integers(8, 16))
        image[y0 : y0 + side, x0 : x0 + side] = 0.9
        images.append(image)
        targets.append(Boxes(np.array([[x0, y0, x0 + side, y0 + side]], np.float32),
                             np.array([0])))  # fmt: skip
    return DetectionSet([f"s{i}" for i in range(n)], images, targets, np.ones(n))


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    dist, device = init_distributed("cpu", key="train.device")
    recipe = DetectionTrainParams(
        model="fasterrcnn_small", epochs=3, batch_size=2, image_size=SIZE, lr=0.01,
        schedule="plateau", warmup_epochs=0, augment=[], sync_bn=True,
    )  # fmt: skip
    spec = SampleSpec(ImageSpec(Path(), {}, (0.0, 100.0), [0.5], [0.25], SIZE))
    run = RunSettings(device, False, 0, dist)
    train, val = squares(N, 0), squares(5, 1)
    seen: list[int] = []

    def validate(model: torch.nn.Module) -> dict[str, float]:
        scores, _ = evaluate_detector(model, val, spec, recipe, ["square"], run)
        seen.append(len(val))
        return {k: v for k, v in scores.items() if isinstance(v, float)}

    torch.manual_seed(0)
    model = build_detector("fasterrcnn_small", in_channels=1, num_classes=1, min_size=SIZE,
                           max_size=SIZE)  # fmt: skip
    history = train_detector(model, train, recipe, spec, run, validate=validate)
    torch.save({"state": model.state_dict(), "history": history, "world": dist.world,
                "validations": len(seen)}, out / f"rank{dist.rank}.pt")  # fmt: skip
    shutdown()


if __name__ == "__main__":
    main()
