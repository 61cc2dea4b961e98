"""Run by tests/test_training.py in a subprocess: train a small classifier on synthetic PNGs,
optionally slowly (so a test can kill it mid-epoch) or under torchrun (2 CPU ranks, gloo).

    python tests/train_worker.py DATA_DIR OUT.pt [--checkpoint PATH] [--slow] [--epochs N]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from datapipe.config import TrainTaskParams
from datapipe.data import AugmentedSet, ImageSpec, SampleSpec
from datapipe.distributed import init_distributed, shutdown
from datapipe.training import RunSettings, TrainInputs, build_model, train_model

N, SIZE = 48, 16


def write_data(root: Path) -> list[tuple[str, str | None]]:
    """Three classes: dark, mid, bright squares with noise; deterministic."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items: list[tuple[str, str | None]] = []
    for i in range(N):
        path = root / f"img{i:03d}.png"
        if not path.exists():
            level = (i % 3) * 90 + 20
            img = np.clip(rng.normal(level, 25, (SIZE, SIZE, 1)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(path), img)
        items.append((path.name, None))
    return items


class SlowSet(AugmentedSet):
    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        return super().__getitem__(key)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # as run_stage does
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist, device = init_distributed("cpu")
    items = write_data(args.data) if dist.is_main else []
    dist.barrier()
    items = write_data(args.data)
    recipe = TrainTaskParams(
        image_size=SIZE, epochs=args.epochs, batch_size=8, lr=0.05, warmup_epochs=0.5,
        augment=[{"HorizontalFlip": {"p": 0.5}}, {"Affine": {"rotate": [-10, 10], "p": 0.5}}],
        mix={"mixup_alpha": 0.2, "prob": 0.5}, ema=0.9, sync_bn=True,
    )  # fmt: skip
    from datapipe.augment import Augment, build_pipeline

    spec = SampleSpec(ImageSpec(args.data, {"uint8": 8}, (0.5, 99.5), [0.5], [0.3], SIZE))
    labels = np.arange(N) % 3
    cls = SlowSet if args.slow else AugmentedSet
    train = cls(
        items, spec, labels, augment=Augment(build_pipeline(recipe.augment, ignore_index=255))
    )
    inputs = TrainInputs(
        task="classification", classes=["a", "b", "c"], train=train,
        val=AugmentedSet(items[:12], spec, labels[:12]), weights=np.ones(N),
        difficulty=np.linspace(0, 1, N), class_counts=np.bincount(labels).astype(float),
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model("classification", recipe, in_channels=1, num_classes=3)
    result = train_model(model, inputs, recipe, RunSettings(device, False, 0, dist),
                         checkpoint=args.checkpoint, fingerprint="test")  # fmt: skip
    uses_sync_bn = any(isinstance(m, torch.nn.SyncBatchNorm) for m in result.model.modules())
    torch.save(
        {"state": result.model.state_dict(), "history": result.history,
         "resumed_from": result.resumed_from, "sync_bn": uses_sync_bn, "world": dist.world},
        args.out.with_name(f"{args.out.stem}.rank{dist.rank}.pt"),
    )  # fmt: skip
    shutdown()


if __name__ == "__main__":
    main()
