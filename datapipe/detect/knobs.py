"""The detector knobs of ``train|score.<task>.detector`` turned into torchvision arguments.

Anchors (sizes and aspect ratios per feature level), the RPN's and the box head's IoU
thresholds and sampler sizes, the test-time score / NMS thresholds, and label smoothing on the
box classifier. ``rpn_pre_nms_top_n`` / ``rpn_post_nms_top_n`` set torchvision's train and
test values at once. Names follow torchvision's two-stage detectors (``rpn_*``, ``box_*``); for the
one-stage ones (RetinaNet, FCOS) ``box_score_thresh`` / ``box_nms_thresh`` are their
``score_thresh`` / ``nms_thresh`` and RetinaNet's matcher takes ``box_fg_iou_thresh`` /
``box_bg_iou_thresh``; a knob a family does not have is refused with its key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from datapipe.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

_RESNET_RETINA = tuple(
    (x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512)
)
#: Each detector's own anchors: sizes per feature level (``anchor_sizes`` needs one list for
#: each level) and aspect ratios per level, as ``datapipe.models`` / torchvision build them.
ANCHORS: dict[str, tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]] = {
    "fasterrcnn_small": (((8, 16), (24, 48)), (1.0,)),
    "maskrcnn_small": (((8, 16), (24, 48)), (1.0,)),
    "fcos_small": (((8,), (16,)), (1.0,)),
    "fasterrcnn_resnet18_fpn": (((32,), (64,), (128,), (256,), (512,)), (0.5, 1.0, 2.0)),
    "maskrcnn_resnet18_fpn": (((32,), (64,), (128,), (256,), (512,)), (0.5, 1.0, 2.0)),
    "retinanet_resnet18_fpn": (_RESNET_RETINA, (0.5, 1.0, 2.0)),
    "fcos_resnet18_fpn": (((8,), (16,), (32,), (64,), (128,)), (1.0,)),
    "fasterrcnn_mobilenet_v3_fpn": (((32, 64, 128, 256, 512),) * 3, (0.5, 1.0, 2.0)),
}
#: The two-stage knobs, named as torchvision's FasterRCNN / MaskRCNN take them.
RCNN_KNOBS = (
    "rpn_pre_nms_top_n", "rpn_post_nms_top_n", "rpn_nms_thresh", "rpn_fg_iou_thresh",
    "rpn_bg_iou_thresh", "rpn_batch_size_per_image", "rpn_positive_fraction",
    "box_score_thresh", "box_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh",
    "box_batch_size_per_image", "box_positive_fraction",
)  # fmt: skip
#: One knob, torchvision's train and test arguments (proposals kept before / after NMS).
SPLIT_KNOBS = ("rpn_pre_nms_top_n", "rpn_post_nms_top_n")
#: One-stage detectors: our name -> theirs.
ONE_STAGE_KNOBS = {
    "retinanet": {"box_score_thresh": "score_thresh", "box_nms_thresh": "nms_thresh",
                  "box_fg_iou_thresh": "fg_iou_thresh", "box_bg_iou_thresh": "bg_iou_thresh"},
    "fcos": {"box_score_thresh": "score_thresh", "box_nms_thresh": "nms_thresh"},
}  # fmt: skip


def family(name: str) -> str:
    """``rcnn``, ``retinanet`` or ``fcos``."""
    return "retinanet" if name.startswith("retinanet") else "fcos" if "fcos" in name else "rcnn"


def head_kwargs(name: str, options: Mapping[str, Any], key: str) -> dict[str, Any]:
    """torchvision keyword arguments for the set ``options`` (``None`` = the model's own)."""
    chosen = {k: v for k, v in options.items() if v is not None}
    kind = family(name)
    if kind == "rcnn":
        unknown = sorted(set(chosen) - set(RCNN_KNOBS))
        rename = {k: k for k in RCNN_KNOBS}
    else:
        rename = ONE_STAGE_KNOBS[kind]
        unknown = sorted(set(chosen) - set(rename))
    if unknown:
        raise ConfigError(
            f"{key}.detector.{unknown[0]}: {name} has no such knob ({kind} takes {sorted(rename)})"
        )
    out = {rename[k]: v for k, v in chosen.items() if k not in SPLIT_KNOBS}
    for k in SPLIT_KNOBS:
        if k in chosen:
            out |= {f"{k}_train": chosen[k], f"{k}_test": chosen[k]}
    return out


def anchor_generator(
    name: str,
    sizes: Sequence[Sequence[int]] | None,
    ratios: Sequence[Sequence[float]] | None,
    key: str,
) -> Any:
    """An ``AnchorGenerator`` for ``sizes`` / ``ratios`` per level (one ratio list = every
    level; ``None`` = the model's own), or ``None`` when neither is set."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if sizes is None and ratios is None:
        return None
    per_level = anchor_layout(name, sizes, ratios, key)
    return AnchorGenerator(*(tuple(map(tuple, part)) for part in per_level))


def anchor_layout(
    name: str,
    sizes: Sequence[Sequence[int]] | None,
    ratios: Sequence[Sequence[float]] | None,
    key: str,
) -> tuple[list[list[int]], list[list[float]]]:
    """Sizes and ratios for each of ``name``'s feature levels, checked (no torch needed, so
    the params check runs it too)."""
    own_sizes, own_ratios = ANCHORS[name]
    levels = len(own_sizes)
    level_sizes = [[int(v) for v in s] for s in (sizes or own_sizes)]
    if len(level_sizes) != levels:
        raise ConfigError(
            f"{key}.detector.anchor_sizes: {name} has {levels} feature levels; got "
            f"{len(level_sizes)} lists of sizes"
        )
    level_ratios = [[float(v) for v in r] for r in (ratios or [own_ratios])]
    if len(level_ratios) == 1:
        level_ratios = level_ratios * levels
    if len(level_ratios) != levels:
        raise ConfigError(
            f"{key}.detector.aspect_ratios: one list for every level, or {levels} lists; got "
            f"{len(level_ratios)}"
        )
    per_location = {len(s) * len(r) for s, r in zip(level_sizes, level_ratios, strict=True)}
    if len(per_location) > 1:
        raise ConfigError(
            f"{key}.detector.anchor_sizes: every level needs the same number of anchors "
            f"(sizes x ratios; the head is shared across levels); got {sorted(per_location)}"
        )
    if family(name) == "fcos" and per_location != {1}:
        raise ConfigError(f"{key}.detector.anchor_sizes: FCOS takes one size and ratio per level")
    return level_sizes, level_ratios


def set_rpn_anchors(model: nn.Module, anchors: Any) -> None:
    """Give a built R-CNN ``anchors``, with an RPN head predicting that many per location."""
    from torchvision.models.detection.rpn import RPNHead

    rpn: Any = model.rpn
    rpn.anchor_generator = anchors
    n = anchors.num_anchors_per_location()[0]
    if rpn.head.cls_logits.out_channels != n:
        rpn.head = RPNHead(rpn.head.cls_logits.in_channels, n, conv_depth=len(rpn.head.conv))


def smooth_box_classifier(model: nn.Module, smoothing: float) -> None:
    """Label smoothing on an R-CNN's box classifier, exactly ``F.cross_entropy(...,
    label_smoothing=smoothing)`` over the sampled proposals: torchvision's ``loss_classifier``
    (plain cross-entropy, mean over proposals) becomes ``(1 - e) * CE + e * mean(-log p)``,
    the uniform term taken from the class logits the box predictor returned in that forward.
    Two forward hooks, so the model's class and ``state_dict`` are unchanged."""
    if smoothing <= 0:
        return
    heads: Any = getattr(model, "roi_heads", None)
    if heads is None:
        raise ConfigError("loss.label_smoothing: only the R-CNN detectors have a softmax box "
                          "classifier (RetinaNet and FCOS use sigmoid focal loss)")  # fmt: skip
    heads.box_predictor.register_forward_hook(_keep_uniform_ce)
    heads.register_forward_hook(partial(_smoothed_losses, smoothing=smoothing))


def _keep_uniform_ce(module: nn.Module, _args: Any, output: Any) -> None:
    import torch.nn.functional as F

    if module.training:
        logits = output[0]
        module.uniform_ce = -F.log_softmax(logits.float(), dim=-1).mean()


def _smoothed_losses(module: nn.Module, _args: Any, output: Any, *, smoothing: float) -> Any:
    result, losses = output
    predictor: Any = module.box_predictor
    uniform: torch.Tensor | None = getattr(predictor, "uniform_ce", None)
    if module.training and uniform is not None and "loss_classifier" in losses:
        losses = dict(losses)
        losses["loss_classifier"] = (1 - smoothing) * losses["loss_classifier"] + (
            smoothing * uniform
        )
        predictor.uniform_ce = None
    return result, losses
