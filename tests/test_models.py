from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datapipe.errors import ConfigError
from datapipe.models import DETECTORS, build_classifier, build_detector, load_weights


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_any_channel_count_gives_logits_per_class(name: str, channels: int) -> None:
    model = build_classifier(name, in_channels=channels, num_classes=4, image_size=32).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, 32, 32))
    assert out.shape == (2, 4)


def test_resnet_stem_follows_the_input_size() -> None:
    small = build_classifier("resnet18", in_channels=4, num_classes=3, image_size=48)
    large = build_classifier("resnet18", in_channels=4, num_classes=3, image_size=224)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert large.conv1.kernel_size == (7, 7) and large.conv1.in_channels == 4


def test_auto_picks_small_cnn_for_tiny_images() -> None:
    assert (
        type(build_classifier("auto", in_channels=1, num_classes=2, image_size=48)).__name__
        == "SmallCNN"
    )
    assert (
        type(build_classifier("auto", in_channels=1, num_classes=2, image_size=96)).__name__
        == "ResNet"
    )


def test_weights_load_except_layers_of_another_shape(tmp_path: Path) -> None:
    source = build_classifier("resnet18", in_channels=3, num_classes=5, image_size=224)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = build_classifier("resnet18", in_channels=4, num_classes=7, image_size=224)
    skipped = load_weights(target, tmp_path / "w.pt")
    assert set(skipped) == {"conv1.weight", "fc.weight", "fc.bias"}
    assert torch.equal(target.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_missing_weights_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^score.classification.weights: .* not found"):
        build_classifier(
            "small_cnn", in_channels=1, num_classes=2, image_size=32, weights=tmp_path / "none.pt"
        )


@pytest.mark.parametrize("name", ["auto", *DETECTORS])
def test_every_detector_builds_for_any_channel_count(name: str) -> None:
    model = build_detector(name, in_channels=4, num_classes=3, min_size=64, max_size=64)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 4


def test_the_small_detector_trains_and_predicts_on_four_channels() -> None:
    model = build_detector("fcos_small", in_channels=4, num_classes=3, min_size=64, max_size=64)
    images = [torch.rand(4, 64, 80), torch.rand(4, 48, 64)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    targets = [
        {"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([2])},
        empty,
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        found = model(images)
    assert len(found) == 2 and all(f["boxes"].shape[1:] == (4,) for f in found)


def test_an_unknown_detector_names_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown detector 'yolo'; known: \['fasterrcnn_resnet18"
    ):
        build_detector("yolo", in_channels=1, num_classes=2)
