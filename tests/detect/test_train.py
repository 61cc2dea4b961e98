"""The final detector's training: the curriculum paces its images, curation weights draw them,
and Mask R-CNN trains on a set holding an image without objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datapipe.config import DetectionTrainParams
from datapipe.data import ImageSpec, SampleSpec
from datapipe.detect.train import DetectionSet, epoch_batches, epoch_steps, train_detector
from datapipe.loop import RunSettings
from datapipe.models import build_detector
from datapipe.scoring.detection import Boxes


def _set(n: int, *, masks: bool = False, empty: int | None = None) -> DetectionSet:
    rng = np.random.default_rng(0)
    images, targets = [], []
    for _ in range(n):
        image = rng.uniform(0, 0.1, (32, 32, 1)).astype(np.float32)
        image[8:20, 8:20] = 0.9
        mask = np.zeros((1, 32, 32), bool)
        mask[0, 8:20, 8:20] = True
        images.append(image)
        targets.append(Boxes(np.array([[8, 8, 20, 20]], np.float32), np.array([0]),
                             masks=mask if masks else None))  # fmt: skip
    if empty is not None:
        images[empty] = rng.uniform(0, 0.1, (32, 32, 1)).astype(np.float32)
        targets[empty] = Boxes.empty((32, 32) if masks else None)
    difficulty = np.linspace(0, 1, n)  # image i is the i-th easiest
    return DetectionSet([f"s{i}" for i in range(n)], images, targets, np.ones(n), difficulty)


def _spec() -> SampleSpec:
    return SampleSpec(ImageSpec(Path(), {}, (0.0, 100.0), [0.5], [0.25], 32))


def test_the_curriculum_starts_with_the_easiest_images_and_reaches_all() -> None:
    data = _set(12)
    recipe = DetectionTrainParams(
        epochs=4,
        batch_size=4,
        image_size=32,
        curriculum={"pacing": "linear", "start": 0.25, "full_epoch": 2},
    )
    from datapipe.detect.train import detection_curriculum

    sampler = detection_curriculum(data, recipe)
    assert sorted(sampler.epoch_order(0).tolist()) == [0, 1, 2]  # the easiest quarter
    assert sorted(sampler.epoch_order(3).tolist()) == list(range(12))
    assert epoch_steps(data, recipe) == [1, 2, 3, 3]
    plain = DetectionTrainParams(epochs=2, batch_size=4, image_size=32)
    assert epoch_steps(data, plain) == [3, 3]
    data.weights[:6] = 0.0  # dropped images never enter
    assert set(detection_curriculum(data, plain).epoch_order(0).tolist()) == set(range(6, 12))


def test_mask_rcnn_trains_on_a_set_holding_an_image_without_objects() -> None:
    data = _set(6, masks=True, empty=2)
    recipe = DetectionTrainParams(model="maskrcnn_small", epochs=1, batch_size=3, image_size=32)
    batches = list(epoch_batches(data, recipe, _spec(), offset=1)(0))
    empty = [t for _, ys, _ in batches for t in ys if len(t["boxes"]) == 0]
    assert len(empty) == 1 and empty[0]["masks"].shape == (0, 32, 32)
    torch.manual_seed(0)
    model = build_detector("maskrcnn_small", in_channels=1, num_classes=1, min_size=32,
                           max_size=32)  # fmt: skip
    history = train_detector(model, data, recipe, _spec(), RunSettings(torch.device("cpu"), False))
    assert len(history) == 1 and np.isfinite(history[0]["train/loss_mask"])
