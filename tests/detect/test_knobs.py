"""Detector knobs: anchors per level, RPN / box thresholds and samplers, box-classifier label
smoothing, and the params check that refuses a knob the chosen model does not have."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from datapipe.config import DetectorParams, load_params
from datapipe.errors import ConfigError
from datapipe.models import build_detector


def _scene(seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 64, 64, generator=g)
    boxes = torch.tensor([[8.0, 8.0, 24.0, 24.0], [30.0, 34.0, 52.0, 58.0]])
    return [image], [{"boxes": boxes, "labels": torch.tensor([1, 2])}]


def test_label_smoothing_matches_cross_entropy_over_the_sampled_proposals() -> None:
    """The smoothed ``loss_classifier`` equals ``F.cross_entropy(logits, labels,
    label_smoothing=0.2)`` on the very logits and sampled labels of that forward."""
    torch.manual_seed(0)
    plain = build_detector("fasterrcnn_small", in_channels=1, num_classes=2, min_size=64,
                           max_size=64)  # fmt: skip
    smooth = build_detector("fasterrcnn_small", in_channels=1, num_classes=2, min_size=64,
                            max_size=64, label_smoothing=0.2)  # fmt: skip
    smooth.load_state_dict(plain.state_dict())  # the same keys: the hooks add no state
    seen: dict[str, torch.Tensor] = {}
    smooth.roi_heads.select_training_samples = _wrapped(  # type: ignore[method-assign]
        smooth.roi_heads.select_training_samples, seen
    )
    smooth.roi_heads.box_predictor.register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("logits", out[0])
    )
    images, targets = _scene()
    plain.train(), smooth.train()
    torch.manual_seed(1)
    got = smooth(images, targets)["loss_classifier"]
    expected = F.cross_entropy(seen["logits"], seen["labels"], label_smoothing=0.2)
    torch.testing.assert_close(got, expected)
    torch.manual_seed(1)
    unsmoothed = plain(images, targets)["loss_classifier"]
    torch.testing.assert_close(unsmoothed, F.cross_entropy(seen["logits"], seen["labels"]))
    assert abs(got.item() - unsmoothed.item()) > 1e-4


def _wrapped(fn, seen):  # type: ignore[no-untyped-def]
    """``select_training_samples`` -> (proposals, matched idxs, labels, targets): keep labels."""

    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = fn(*args, **kwargs)
        seen["labels"] = torch.cat(out[2])
        return out

    return call


def test_label_smoothing_survives_a_deep_copy_and_leaves_inference_alone() -> None:
    torch.manual_seed(0)
    model = build_detector("fasterrcnn_small", in_channels=1, num_classes=2, min_size=64,
                           max_size=64, label_smoothing=0.3)  # fmt: skip
    twin = copy.deepcopy(model)  # the EMA / final copy the trainer keeps
    images, targets = _scene()
    torch.manual_seed(3)
    a = model.train()(images, targets)["loss_classifier"]
    torch.manual_seed(3)
    b = twin.train()(images, targets)["loss_classifier"]
    torch.testing.assert_close(a, b)
    model.eval()
    with torch.no_grad():
        found = model(images)[0]
    assert set(found) == {"boxes", "labels", "scores"}


def test_label_smoothing_is_refused_for_one_stage_detectors() -> None:
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_detector("fcos_small", in_channels=1, num_classes=2, min_size=64, max_size=64,
                       label_smoothing=0.1)  # fmt: skip


def test_anchor_sizes_and_ratios_per_level_reach_the_rpn() -> None:
    model = build_detector(
        "fasterrcnn_small", in_channels=1, num_classes=2, min_size=64, max_size=64,
        anchor_sizes=[[4, 8, 16], [24, 48, 96]], aspect_ratios=[[0.5, 1.0]],
    )  # fmt: skip
    gen = model.rpn.anchor_generator
    assert gen.sizes == ((4, 8, 16), (24, 48, 96))
    assert gen.aspect_ratios == ((0.5, 1.0), (0.5, 1.0))
    assert model.rpn.head.cls_logits.out_channels == 6
    assert model.rpn.head.bbox_pred.out_channels == 24
    images, targets = _scene()
    losses = model.train()(images, targets)
    assert torch.isfinite(torch.stack(list(losses.values()))).all()


def test_anchors_on_a_resnet_fpn_replace_the_rpn_head() -> None:
    model = build_detector(
        "fasterrcnn_resnet18_fpn", in_channels=2, num_classes=2, min_size=64, max_size=64,
        anchor_sizes=[[16, 24], [32, 48], [64, 96], [128, 192], [256, 384]],
    )  # fmt: skip
    assert model.rpn.head.cls_logits.out_channels == 6  # 2 sizes x the 3 default ratios
    model.eval()
    with torch.no_grad():
        model([torch.rand(2, 64, 64)])


@pytest.mark.parametrize(
    ("name", "sizes", "ratios", "match"),
    [
        ("fasterrcnn_small", [[8], [16], [32]], None, "2 feature levels"),
        ("fasterrcnn_small", [[8, 16], [24]], None, "same number of anchors"),
        ("fasterrcnn_small", None, [[1.0], [1.0], [1.0]], "one list for every level"),
        ("fcos_small", [[8, 12], [16, 24]], None, "FCOS takes one size"),
    ],
)
def test_anchor_layouts_a_model_cannot_take_are_refused_with_the_key(
    name: str, sizes: list | None, ratios: list | None, match: str
) -> None:
    with pytest.raises(ConfigError, match=rf"train\.detection\.detector\..*{match}"):
        build_detector(name, in_channels=1, num_classes=2, anchor_sizes=sizes,
                       aspect_ratios=ratios, key="train.detection")  # fmt: skip


def test_thresholds_and_sampler_sizes_reach_each_family() -> None:
    rcnn = build_detector(
        "fasterrcnn_small", in_channels=1, num_classes=2, min_size=64, max_size=64,
        options={"box_score_thresh": 0.3, "box_nms_thresh": 0.4, "rpn_fg_iou_thresh": 0.6,
                 "box_batch_size_per_image": 48, "rpn_batch_size_per_image": 100},
    )  # fmt: skip
    assert rcnn.roi_heads.score_thresh == 0.3
    assert rcnn.roi_heads.nms_thresh == 0.4
    assert rcnn.roi_heads.fg_bg_sampler.batch_size_per_image == 48
    assert rcnn.rpn.fg_bg_sampler.batch_size_per_image == 100
    assert rcnn.rpn.proposal_matcher.high_threshold == 0.6
    assert rcnn.rpn._pre_nms_top_n["training"] == 600  # the small model's lean RPN is kept
    knobs = {"rpn_post_nms_top_n": 400, "rpn_pre_nms_top_n": 900}
    dense = build_detector("fasterrcnn_small", in_channels=1, num_classes=2, options=knobs)
    assert dense.rpn._post_nms_top_n == {"training": 400, "testing": 400}
    assert dense.rpn._pre_nms_top_n == {"training": 900, "testing": 900}
    fcos = build_detector("fcos_small", in_channels=1, num_classes=2,
                          options={"box_score_thresh": 0.35})  # fmt: skip
    assert fcos.score_thresh == 0.35
    with pytest.raises(ConfigError, match=r"score\.detection\.detector\.rpn_nms_thresh"):
        build_detector("fcos_small", in_channels=1, num_classes=2,
                       options={"rpn_nms_thresh": 0.5})  # fmt: skip


def test_detector_params_check_thresholds_and_name_torchvision_options() -> None:
    knobs = DetectorParams(box_score_thresh=0.2, rpn_batch_size_per_image=64)
    assert knobs.head_options() == {"box_score_thresh": 0.2, "rpn_batch_size_per_image": 64}
    with pytest.raises(ValueError, match=r"box_bg_iou_thresh 0\.6 is above box_fg_iou_thresh"):
        DetectorParams(box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.6)
    with pytest.raises(ValueError, match=r"anchor_sizes\[1\]"):
        DetectorParams(anchor_sizes=[[8], []])


@pytest.mark.parametrize(
    ("recipe", "match"),
    [
        ({"model": "fcos_small", "loss": {"label_smoothing": 0.1}}, "loss.label_smoothing"),
        ({"model": "fcos_small", "detector": {"rpn_nms_thresh": 0.5}}, "rpn_nms_thresh"),
        ({"detector": {"anchor_sizes": [[8], [16], [32]]}}, "anchor_sizes: fasterrcnn_small"),
        ({"loss": {"label_smoothing": 0.1, "focal_gamma": 1.0}}, "leave loss"),
    ],
)
def test_params_refuse_detector_knobs_the_model_lacks(
    tmp_path: Path, recipe: dict, match: str
) -> None:
    """Caught when params.yaml loads (no torch), naming the dataset's key."""
    params = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    params["datasets"] = {"boxes": {"root": "data", "task": "detection", "train": recipe}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=rf"datasets\.boxes\.train\..*{match}"):
        load_params(path)


def test_params_accept_label_smoothing_and_knobs_on_the_default_detector(tmp_path: Path) -> None:
    params = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    params["datasets"] = {"boxes": {"root": "data", "task": "detection", "train": {
        "loss": {"label_smoothing": 0.1},
        "detector": {"anchor_sizes": [[6, 12], [24, 48]], "box_score_thresh": 0.1},
    }}}  # fmt: skip
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    recipe = load_params(path).train_recipe("boxes")
    assert recipe.loss.label_smoothing == 0.1
    assert recipe.detector.anchor_sizes == [[6, 12], [24, 48]]
