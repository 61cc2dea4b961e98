"""Model factory: torchvision backbones for any channel count, random init or local weights.

Nothing is downloaded: a model starts from random weights, or from a weights file the user
names (a ``state_dict`` saved with ``torch.save``). Backbones take any number of input
channels (grey, RGB, 4+ channel microscopy) by building their first convolution for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

from datapipe.errors import ConfigError

ModelName = Literal["auto", "small_cnn", "resnet18", "resnet34", "resnet50"]
SegmenterName = Literal["auto", "unet", "lraspp_mobilenet_v3", "deeplabv3_mobilenet_v3"]
#: Images at most this many pixels on a side use a small-input stem (3x3 conv, no max-pool).
SMALL_INPUT = 64


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks and global pooling: a fast baseline for tiny images."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, out in enumerate((width, width * 2, width * 4, width * 4)):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _resnet(factory: Callable[..., nn.Module]) -> Callable[[int, int, bool], nn.Module]:
    def build(in_channels: int, num_classes: int, small_input: bool) -> nn.Module:
        model = factory(weights=None, num_classes=num_classes)
        if small_input:  # CIFAR-style stem: keep resolution on 32-64 px images
            model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        elif in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        head = model.fc
        assert isinstance(head, nn.Linear)  # torchvision's ResNet: internal invariant
        head.weight.data.mul_(0.1)  # calmer first steps from random init
        return model

    return build


_CLASSIFIERS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "small_cnn": lambda c, k, _small: SmallCNN(c, k),
    "resnet18": _resnet(resnet18),
    "resnet34": _resnet(resnet34),
    "resnet50": _resnet(resnet50),
}


def resolve_model_name(name: ModelName, image_size: int) -> str:
    """``auto``: the small CNN for images up to ``SMALL_INPUT`` px, ResNet-18 above."""
    if name != "auto":
        return name
    return "small_cnn" if image_size <= SMALL_INPUT else "resnet18"


def build_classifier(
    name: ModelName,
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    weights: str | Path | None = None,
    key: str = "score.classification",
) -> nn.Module:
    """A classifier for ``(B, in_channels, image_size, image_size)`` input.

    ``weights`` is a local ``state_dict`` file; keys must match except for layers whose shape
    differs (first conv for another channel count, head for another class count), which stay
    randomly initialised. ``key`` is the params section the model and weights were read from
    (``train.classification``, ``datasets.cells.train``): errors name ``<key>.weights``.
    """
    if in_channels < 1 or num_classes < 2:
        raise ValueError(
            f"need in_channels >= 1 and num_classes >= 2; got {in_channels}, {num_classes}"
        )
    resolved = resolve_model_name(name, image_size)
    if resolved not in _CLASSIFIERS:
        raise ConfigError(f"{key}.model: unknown model {name!r}; known: {sorted(_CLASSIFIERS)}")
    model = _CLASSIFIERS[resolved](in_channels, num_classes, image_size <= SMALL_INPUT)
    if weights is not None:
        load_weights(model, Path(weights), key=f"{key}.weights")
    return model


def load_weights(model: nn.Module, path: Path, *, key: str = "weights") -> list[str]:
    """Load a local ``state_dict``; returns the keys skipped for a shape mismatch. Errors name
    ``key``, the params key the path was read from."""
    if not path.is_file():
        raise ConfigError(f"{key}: {path} not found (datapipe never downloads weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{key}: cannot load {path}: {exc}") from None
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ConfigError(f"{key}: {path} has keys this model lacks, e.g. {unknown[:3]}")
    skipped = [k for k, v in state.items() if own[k].shape != v.shape]
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped


# --- segmentation ---------------------------------------------------------------------------


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al., 2015): ``depth`` poolings, skip connections,
    bilinear upsampling. Any input size works; odd sizes are padded inside and cropped back."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 3):
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_conv_block(in_channels, widths[0])]
            + [_conv_block(widths[i], widths[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [_conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        x = nn.functional.pad(x, (0, -w % m, 0, -h % m))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear")
            x = block(torch.cat([x, skip], 1))
        return self.head(x)[..., :h, :w]


class _OutOnly(nn.Module):
    """torchvision's segmentation models return ``{"out": logits, ...}``; keep the logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)["out"]
        return out


def _mobilenet_seg(factory: Callable[..., nn.Module]) -> Callable[[int, int], nn.Module]:
    def build(in_channels: int, num_classes: int) -> nn.Module:
        model = factory(weights=None, weights_backbone=None, num_classes=num_classes)
        if in_channels != 3:  # the MobileNetV3 stem: Conv2dNormActivation -> its Conv2d
            stem = model.get_submodule("backbone.0")
            assert isinstance(stem, nn.Sequential)  # torchvision's Conv2dNormActivation
            old = stem[0]
            assert isinstance(old, nn.Conv2d)
            stem[0] = nn.Conv2d(in_channels, old.out_channels, 3, stride=2, padding=1, bias=False)
        return _OutOnly(model)

    return build


_SEGMENTERS: dict[str, Callable[[int, int], nn.Module]] = {
    "unet": lambda c, k: UNet(c, k),
    "lraspp_mobilenet_v3": _mobilenet_seg(lraspp_mobilenet_v3_large),
    "deeplabv3_mobilenet_v3": _mobilenet_seg(deeplabv3_mobilenet_v3_large),
}


def build_segmenter(
    name: SegmenterName | str,
    *,
    in_channels: int,
    num_classes: int,
    weights: str | Path | None = None,
    key: str = "score.segmentation",
) -> nn.Module:
    """A model mapping ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)``.

    ``auto`` is the small U-Net, which trains from scratch on a CPU; the MobileNetV3 models
    (LR-ASPP, DeepLabV3) suit larger images, ideally from a local weights file. ``key``: as
    for :func:`build_classifier`.
    """
    if in_channels < 1 or num_classes < 2:
        raise ValueError(
            f"need in_channels >= 1 and num_classes >= 2; got {in_channels}, {num_classes}"
        )
    resolved = "unet" if name == "auto" else name
    if resolved not in _SEGMENTERS:
        raise ConfigError(f"{key}.model: unknown model {name!r}; known: {sorted(_SEGMENTERS)}")
    model = _SEGMENTERS[resolved](in_channels, num_classes)
    if weights is not None:
        load_weights(model, Path(weights), key=f"{key}.weights")
    return model


def check_lr_mult(model: nn.Module, lr_mult: Mapping[str, float], *, key: str) -> None:
    """Refuse an ``lr_mult`` key (params ``key``, e.g. ``train.classification.lr_mult``) that is
    in no parameter name of ``model``: known only once the model is built, so the train stage
    calls this before its first epoch. The names are what ``named_parameters`` gives."""
    names = [name for name, _ in model.named_parameters()]
    for part in lr_mult:
        if not any(part in name for name in names):
            heads = sorted({name.split(".")[0] for name in names})
            raise ConfigError(
                f"{key}.{part}: matches no parameter of this model; parameter names start with "
                f"{heads} (e.g. {names[-1]!r})"
            )


# --- detectors (torchvision's, random init) ---------------------------------------------------

DETECTORS = ("fasterrcnn_resnet18_fpn", "retinanet_resnet18_fpn", "fcos_resnet18_fpn",
             "fasterrcnn_mobilenet_v3_fpn", "maskrcnn_resnet18_fpn", "fcos_small",
             "fasterrcnn_small", "maskrcnn_small")  # fmt: skip


class _SmallBackbone(nn.Module):
    """Conv blocks of stride 2 each (conv-BN-ReLU twice), ``widths[i]`` channels in block
    ``i``, returning the maps of the blocks in ``keep`` as ``"0"``, ``"1"``, ... (block ``i``
    has stride ``2 ** (i + 1)``): the backbone of the ``*_small`` detectors, small enough to
    train out of fold on a CPU. The kept maps share one width (the detector heads are shared
    across levels)."""

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...] = (32, 32, 64, 64),
        keep: tuple[int, ...] = (2, 3),
    ) -> None:
        super().__init__()
        if len({widths[i] for i in keep}) != 1:
            raise ValueError(f"kept blocks {keep} must share a width; got widths {widths}")
        blocks, cin = [], in_channels
        for w in widths[: max(keep) + 1]:
            blocks.append(nn.Sequential(
                nn.Conv2d(cin, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                nn.ReLU(inplace=True), nn.Conv2d(w, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            ))  # fmt: skip
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.keep = keep
        self.out_channels = widths[keep[0]]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.keep:
                out[str(len(out))] = x
        return out


def _small_detector(
    name: str, in_channels: int, num_classes: int, common: dict[str, Any], anchors: Any = None
) -> nn.Module:
    """The CPU detectors, for objects of ~8-64 px at the detector's input size.

    ``fasterrcnn_small``: Faster R-CNN on the stride-4 and stride-8 maps of a 24-48-48
    backbone (about 0.1 GFLOP per 128 px image), a lean RPN (anchors 8-48 px) and a 5x5 RoI
    box head of width 128 pooled from the stride-4 map, which keeps 9 px objects apart. Its
    softmax scores reach the 0.95 that cleanlab's overlooked and swap scores ask of a
    prediction. ``fcos_small``: FCOS with a two-conv head on the stride-8 and stride-16 maps of
    a 32-32-64-64 backbone; faster to converge, but its scores (classification times
    centerness) rarely pass 0.95.
    """
    from torchvision.models.detection import FCOS, FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.ops import MultiScaleRoIAlign

    if name == "fcos_small":  # one anchor point per location, anchor size = stride
        backbone = _SmallBackbone(in_channels, (32, 32, 64, 64), keep=(2, 3))
        anchors = anchors or AnchorGenerator(sizes=((8,), (16,)), aspect_ratios=((1.0,), (1.0,)))
        head = FCOSHead(backbone.out_channels, 1, num_classes, num_convs=2)
        return FCOS(backbone, num_classes, anchor_generator=anchors, head=head, **common)
    backbone = _SmallBackbone(in_channels, (24, 48, 48), keep=(1, 2))
    width = backbone.out_channels
    common["box_detections_per_img"] = common.pop("detections_per_img")
    anchors = anchors or AnchorGenerator(sizes=((8, 16), (24, 48)), aspect_ratios=((1.0,),) * 2)
    if name == "maskrcnn_small":  # the same, plus a 2-conv mask head on 10x10 RoIs
        from torchvision.models.detection import MaskRCNN
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        common |= {
            "mask_roi_pool": MultiScaleRoIAlign(["0"], output_size=10, sampling_ratio=1),
            "mask_head": MaskRCNNHeads(width, [width, width], 1),
            "mask_predictor": MaskRCNNPredictor(width, width, num_classes + 1),
        }
    factory = MaskRCNN if name == "maskrcnn_small" else FasterRCNN
    # 200 proposals after NMS, train and test: dense images (40+ nuclei in a 128 px crop) need
    # them; 50 capped the held-out mAP@0.5 on real nuclei at 0.55 (0.63 with 200)
    lean = {"rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 200,
            "rpn_pre_nms_top_n_test": 600, "rpn_post_nms_top_n_test": 200,
            "rpn_batch_size_per_image": 128, "box_batch_size_per_image": 64}  # fmt: skip
    return factory(
        backbone, None, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=5, sampling_ratio=1),
        box_head=TwoMLPHead(width * 25, 128), box_predictor=FastRCNNPredictor(128, num_classes + 1),
        **(lean | common),
    )  # fmt: skip


def build_detector(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    min_size: int | tuple[int, ...] = 800,
    max_size: int = 1333,
    detections_per_img: int = 100,
    anchor_sizes: Sequence[Sequence[int]] | None = None,
    aspect_ratios: Sequence[Sequence[float]] | None = None,
    options: Mapping[str, Any] | None = None,
    label_smoothing: float = 0.0,
    weights: str | Path | None = None,
    key: str = "score.detection",
) -> nn.Module:
    """A torchvision detector for ``num_classes`` object classes (background is added for the
    R-CNNs), its backbone's stem built for ``in_channels``; inputs are already normalised
    (datapipe's per-channel mean / std), so the detector's own normalisation is the identity.
    ``min_size`` a tuple: one is drawn per batch in training (multi-scale). ``anchor_sizes``
    / ``aspect_ratios`` per feature level, ``options`` (RPN / box thresholds and sampler
    sizes) and ``label_smoothing`` on the box classifier: ``datapipe.detect.knobs``.

    ``auto`` is Faster R-CNN on a ResNet-18 FPN, small enough to train out of fold on a CPU.
    Long by design: five torchvision families share one stem and normalisation setup.
    """
    from torchvision.models.detection import (
        FCOS,
        FasterRCNN,
        MaskRCNN,
        RetinaNet,
        fasterrcnn_mobilenet_v3_large_fpn,
    )
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from datapipe.detect import knobs

    resolved = "fasterrcnn_resnet18_fpn" if name == "auto" else name
    if resolved not in DETECTORS:
        raise ConfigError(f"{key}.model: unknown detector {name!r}; known: {list(DETECTORS)}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(
            f"need in_channels >= 1 and num_classes >= 1; got {in_channels}, {num_classes}"
        )
    common = {
        "min_size": min_size, "max_size": max_size, "image_mean": [0.0] * in_channels,
        "image_std": [1.0] * in_channels, "detections_per_img": detections_per_img,
    } | knobs.head_kwargs(resolved, options or {}, key)  # fmt: skip
    anchors = knobs.anchor_generator(resolved, anchor_sizes, aspect_ratios, key)
    model: nn.Module
    if resolved in ("fcos_small", "fasterrcnn_small", "maskrcnn_small"):
        model = _small_detector(resolved, in_channels, num_classes, common, anchors)
    elif resolved == "fasterrcnn_mobilenet_v3_fpn":
        common["box_detections_per_img"] = common.pop("detections_per_img")
        model = fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes + 1, **common
        )
        stem: Any = model.backbone.body["0"]  # type: ignore[union-attr,index]
        stem[0] = nn.Conv2d(in_channels, stem[0].out_channels, 3, stride=2, padding=1, bias=False)
    else:
        retina = resolved.startswith(("retinanet", "fcos"))
        backbone = resnet_fpn_backbone(
            backbone_name="resnet18", weights=None, trainable_layers=5,
            returned_layers=[2, 3, 4] if retina else None,
            extra_blocks=LastLevelP6P7(256, 256) if retina else None,
        )  # fmt: skip
        backbone.body.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        if resolved.startswith("retinanet"):
            model = RetinaNet(backbone, num_classes, anchor_generator=anchors, **common)
        elif resolved.startswith("fcos"):
            model = FCOS(backbone, num_classes, anchor_generator=anchors, **common)
        else:
            common["box_detections_per_img"] = common.pop("detections_per_img")
            factory = MaskRCNN if resolved.startswith("maskrcnn") else FasterRCNN
            model = factory(backbone, num_classes + 1, **common)
    if anchors is not None and knobs.family(resolved) == "rcnn":
        knobs.set_rpn_anchors(model, anchors)  # the mobilenet builder fixes its own anchors
    knobs.smooth_box_classifier(model, label_smoothing)
    if weights is not None:
        load_weights(model, Path(weights), key=f"{key}.weights")
    return model
