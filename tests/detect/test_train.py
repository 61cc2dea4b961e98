"""The final detector's training: the curriculum paces its images, curation weights draw them,
and Mask R-CNN trains on a set holding an image without objects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datapipe.config import DetectionTrainParams
from datapipe.data import ImageSpec, SampleSpec
from datapipe.detect.train import DetectionSet, epoch_batches, epoch_steps, train_detector
from datapipe.loop import RunSettings
from datapipe.models import build_detector
from datapipe.scoring.detection import Boxes
from tests.conftest import REPO


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


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_one_detector_and_step_on_plateau(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("ddp_train_worker.py")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(worker), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    weights = [k for k in ranks[0]["state"] if "running_" not in k and "num_batches" not in k]
    assert len(weights) > 10
    for key in weights:  # DDP keeps the replicas identical (BN statistics stay per rank on CPU)
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
    for r in ranks:  # plateau: validated after every epoch, the same figure on both ranks
        assert r["validations"] == 3
        assert [int(row["epoch"]) for row in r["history"]] == [0, 1, 2]
        assert all("val/map_50" in row for row in r["history"])
    assert [row["val/map_50"] for row in ranks[0]["history"]] == [
        row["val/map_50"] for row in ranks[1]["history"]
    ]


def test_each_rank_takes_its_half_of_every_epoch_and_as_many_batches() -> None:
    from datapipe.distributed import Dist

    data = _set(11)
    recipe = DetectionTrainParams(epochs=2, batch_size=2, image_size=32, augment=[])
    shards = [list(epoch_batches(data, recipe, _spec(), offset=1, dist=Dist(rank, 2))(1))
              for rank in (0, 1)]  # fmt: skip
    rows = [[int(i) for _, _, index in batches for i in index] for batches in shards]
    assert len(shards[0]) == len(shards[1]) == 3  # 11 padded to 12, 6 per rank, batches of 2
    assert set(rows[0]) | set(rows[1]) == set(range(11))
    alone = [int(i) for _, _, index in epoch_batches(data, recipe, _spec(), offset=1)(1)
             for i in index]  # fmt: skip
    assert rows[0] == (alone + alone[:1])[0::2] and rows[1] == (alone + alone[:1])[1::2]
    assert epoch_steps(data, recipe, world=2) == [3, 3]


def test_plateau_lowers_the_detector_lr_when_validation_stalls() -> None:
    data = _set(4)
    recipe = DetectionTrainParams(model="fasterrcnn_small", epochs=5, batch_size=2,
                                  image_size=32, schedule="plateau", warmup_epochs=0,
                                  augment=[], gamma=0.1)  # fmt: skip
    calls: list[bool] = []

    def stalled(model: torch.nn.Module) -> dict[str, float]:
        calls.append(model.training)
        return {"map_50": 0.5}

    torch.manual_seed(0)
    model = build_detector("fasterrcnn_small", in_channels=1, num_classes=1, min_size=32,
                           max_size=32)  # fmt: skip
    history = train_detector(model, data, recipe, _spec(), RunSettings(torch.device("cpu"), False),
                             validate=stalled)  # fmt: skip
    assert len(calls) == 5 and all(row["val/map_50"] == 0.5 for row in history)
    lrs = [row["lr"] for row in history]
    assert lrs[0] == pytest.approx(recipe.lr) and lrs[-1] == pytest.approx(recipe.lr * 0.1)


def test_a_killed_detector_run_resumes_after_its_last_epoch_as_if_uninterrupted(
    tmp_path: Path,
) -> None:
    data = _set(6)
    recipe = DetectionTrainParams(model="fasterrcnn_small", epochs=3, batch_size=2,
                                  image_size=32, augment=[])  # fmt: skip
    run = RunSettings(torch.device("cpu"), False)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_detector("fasterrcnn_small", in_channels=1, num_classes=1, min_size=32,
                              max_size=32)  # fmt: skip

    whole = fresh()
    train_detector(whole, data, recipe, _spec(), run)
    state = tmp_path / "checkpoint.pt"

    class Killed(Exception):
        pass

    def kill(epoch: int, _row: dict[str, float]) -> None:
        if epoch == 1:
            raise Killed  # after epoch 0's checkpoint, before epoch 1's

    with pytest.raises(Killed):
        train_detector(fresh(), data, recipe, _spec(), run, log_epoch=kill, checkpoint=state,
                       fingerprint="a")  # fmt: skip
    logged: list[int] = []
    resumed = fresh()
    history = train_detector(resumed, data, recipe, _spec(), run, checkpoint=state,
                             fingerprint="a", log_epoch=lambda e, _r: logged.append(e))  # fmt: skip
    assert logged == [0, 1, 2] and [int(r["epoch"]) for r in history] == [0, 1, 2]
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    other: list[int] = []  # a checkpoint of other inputs is not resumed: epoch 0 trains
    one = recipe.model_copy(update={"epochs": 1})
    train_detector(fresh(), data, one, _spec(), run, checkpoint=state, fingerprint="b",
                   log_epoch=lambda e, _r: other.append(e))  # fmt: skip
    assert other == [0]
