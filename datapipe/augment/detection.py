"""Train-time augmentation for object tasks: boxes (and instance masks) through the params
pipeline, and detection mixup.

* :func:`build_box_pipeline` builds the same strictly checked ``augment`` list as
  :func:`~datapipe.augment.pipeline.build_pipeline`, with albumentations' ``BboxParams`` (boxes
  clipped, dropped below ``min_visibility`` / ``min_area``), so boxes move with the image. A
  transform that cannot carry boxes (or, with ``masks``, instance masks) is refused when the
  pipeline is built, naming it and its position: in albumentations 2.0 such a transform still
  takes the ``bboxes`` key (it is a ``DualTransform``) but leaves ``Targets.BBOXES`` out of its
  ``_targets`` and raises ``NotImplementedError`` only when a box reaches it.
* :func:`augment_objects` runs it on one image and its objects; ``kept_index`` says which input
  objects came out, so per-object weights and ids follow. :func:`check_box_pipeline` runs each
  transform once on the dataset's channel count (the box counterpart of ``check_pipeline``).
* Detection mixup (Zhang et al. 2019, "Bag of Freebies for Training Object Detection Neural
  Networks"): :func:`draw_box_mix` draws partners and ratios, :func:`mix_detection` blends each
  image with its partner, keeps both box sets and weights each set by its share.

Instance masks follow the geometry with nearest interpolation (the params pipeline's rule) and
their created areas (padding, rotation corners) are background, 0, not ``ignore_index``: an
instance mask has no "unknown" value, and a non-zero fill would invent object pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from albumentations.core.composition import BaseCompose
from albumentations.core.transforms_interface import DualTransform, ImageOnlyTransform
from albumentations.core.type_definitions import Targets

from datapipe.augment.batch import draw_partners
from datapipe.augment.pipeline import Spec, _build, _entry, _first_line, _hwc, _transform_class
from datapipe.errors import ConfigError

#: The label fields every box pipeline carries: the class and the object's input position.
LABEL_FIELDS = ("labels", "object_index")
#: albumentations carries label fields as float32 columns beside the boxes: indices stay exact
#: below 2**24.
_MAX_OBJECTS = 2**24
#: What a detection mixup draw is: ``(partners, lam)``; ``lam[i]`` is image ``i``'s own share.
BoxMixDraw = tuple[tuple[int, ...], np.ndarray]
#: A side shorter than this (pixels) after augmentation is float noise, not an object: a cut
#: exactly on a box's edge leaves albumentations' crops a box ~1e-7 px wide.
_SLIVER = 1e-3
_TARGET_KEYS = frozenset({"boxes", "labels", "masks", "weights"})


# --------------------------------------------------------------------------------------------
# the pipeline


def build_box_pipeline(
    spec: Spec,
    *,
    min_visibility: float = 0.3,
    min_area: float = 1.0,
    masks: bool = False,
    seed: int = 0,
) -> A.Compose:
    """The params pipeline as one ``A.Compose`` that moves pixel boxes with the image.

    Boxes are clipped to the image; a box left with less than ``min_visibility`` of its area
    or under ``min_area`` pixels² is dropped. With ``masks`` every transform must also carry
    instance masks and may not fill created areas with anything but 0.

    Call it through :func:`augment_objects`, which takes pixel boxes and feeds the label
    fields :data:`LABEL_FIELDS`. Inside, boxes are in albumentations' own normalised
    ``x0 y0 x1 y1`` format, normalised here in float64, because albumentations 2.0 normalises
    ``pascal_voc`` pixel boxes in float32 (a flipped 99 of 100 px comes back as 0.999999).
    """
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"expected 0 <= min_visibility <= 1, got {min_visibility}")
    if not min_area >= 0.0:
        raise ValueError(f"expected min_area >= 0 (pixels²), got {min_area}")
    built = _build(spec, ignore_index=0, where="augment")  # instance masks: created areas are 0
    required = (Targets.BBOXES, Targets.MASK) if masks else (Targets.BBOXES,)
    _refuse_unboxable(spec, where="augment", required=required)
    return _compose(built, min_visibility=min_visibility, min_area=min_area, seed=seed)


def _compose(built: list[Any], *, min_visibility: float, min_area: float, seed: int) -> A.Compose:
    params = A.BboxParams(
        format="albumentations",
        label_fields=list(LABEL_FIELDS),
        min_visibility=min_visibility,
        min_area=min_area,
        clip=True,
    )
    with warnings.catch_warnings():  # a colour-only list has no transform that moves boxes
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        return A.Compose(built, bbox_params=params, seed=seed, strict=True)


def _refuse_unboxable(spec: Spec, *, where: str, required: tuple[Targets, ...]) -> None:
    """Walk a spec ``_build`` has accepted; refuse transforms that drop ``required`` targets."""
    for i, item in enumerate(spec):
        name, args = _entry(item, f"{where}[{i}]")
        here = f"{where}[{i}].{name}"
        cls = _transform_class(name, here)
        if issubclass(cls, BaseCompose):
            _refuse_unboxable(args["transforms"], where=f"{here}.transforms", required=required)
            continue
        missing = _missing_targets(cls, required)
        if missing:
            raise ConfigError(
                f"{here}: cannot transform {' or '.join(missing)} (albumentations' {name} "
                "does not support them), so objects would stay put while the image moves; "
                "remove it from an object task's augment list"
            )
        fill = args.get("fill_mask", 0)
        if Targets.MASK in required and np.any(np.asarray(fill) != 0):
            raise ConfigError(
                f"{here}: fill_mask must be 0 for instance masks (created areas are "
                f"background); got {fill!r}"
            )


def _missing_targets(cls: type, required: tuple[Targets, ...]) -> list[str]:
    if issubclass(cls, ImageOnlyTransform):  # moves no pixel: objects stay where they are
        return []
    declared = getattr(cls, "_targets", ())
    declared = declared if isinstance(declared, tuple) else (declared,)
    missing = [t for t in required if t not in declared]
    unimplemented = getattr(cls, "apply_to_bboxes", None) in (None, DualTransform.apply_to_bboxes)
    if Targets.BBOXES in required and Targets.BBOXES not in missing and unimplemented:
        missing.insert(0, Targets.BBOXES)
    return [str(t.value).lower() for t in missing]


def check_box_pipeline(
    spec: Spec, *, channels: int, masks: bool = False, size: tuple[int, int] = (64, 64)
) -> None:
    """Run every transform once (``p`` forced to 1) on a float32 image with ``channels``
    channels, two boxes and (``masks``) their instance masks; a transform that fails or
    warns there is an error naming it (the box counterpart of ``check_pipeline``)."""
    rng = np.random.default_rng(0)
    image = rng.random((*size, channels), dtype=np.float32)
    h, w = size
    boxes = np.array([[0, 0, w / 2, h / 2], [w / 4, h / 4, w, h]], np.float32)
    labels = np.array([0, 1], np.int64)
    object_masks = _box_masks(boxes, size) if masks else None
    build_box_pipeline(spec, masks=masks)  # names and targets first, at their positions
    for i, item in enumerate(spec):
        name, _ = _entry(item, f"augment[{i}]")
        built = _build([item], ignore_index=0, where=f"augment[{i}]", force_p=1.0)
        one = _compose(built, min_visibility=0.0, min_area=0.0, seed=0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                augment_objects(one, image, boxes, labels, object_masks)
        except Exception as exc:
            raise ConfigError(
                f"augment[{i}].{name}: cannot run on {channels}-channel float32 images of "
                f"{h}x{w} with boxes{' and masks' if masks else ''}: {_first_line(exc)}"
            ) from None


def _box_masks(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = np.zeros((len(boxes), *size), bool)
    for m, (x0, y0, x1, y1) in zip(out, boxes.astype(int), strict=True):
        m[y0:y1, x0:x1] = True
    return out


# --------------------------------------------------------------------------------------------
# one image and its objects


class AugmentedObjects(NamedTuple):
    """What :func:`augment_objects` returns (a tuple: unpack it or use the names)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    kept_index: np.ndarray
    masks: np.ndarray | None


def augment_objects(
    pipeline: A.Compose,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None = None,
    *,
    seed: int | None = None,
) -> AugmentedObjects:
    """Augment one image with its objects through a :func:`build_box_pipeline` pipeline.

    Boxes are clipped to the image first; a box with no area inside it (degenerate, or wholly
    outside) is not augmented and not kept. Boxes come back clipped to the output image, with
    width and height over 1e-3 px (a thinner one is what a cut on its edge leaves).
    ``kept_index[j]`` is the input row of output object ``j`` (ascending), so
    ``weights[kept_index]`` and ``object_ids[kept_index]`` follow; ``labels`` are
    ``labels[kept_index]``. ``seed`` re-seeds the pipeline first (as ``Augment`` does).

    Coordinates are normalised and back in float64, so a flip of float32 boxes gives the
    float32 answer (but for rounding ties, one float32 step); albumentations' own crop and
    affine arithmetic is float32, about 1e-7 of the image size.

    Shapes: image (H, W, C) float32 in [0, 1] -> (H', W', C) float32; boxes (N, 4) pixels
    x0 y0 x1 y1 -> (M, 4) float32; labels (N,) integer -> (M,) int64; kept_index (M,) int64
    in [0, N); masks (N, H, W) bool or None -> (M, H', W') bool or None.
    """
    _check_box_pipeline(pipeline, masks=masks is not None)
    boxes, labels = _check_objects(image, boxes, labels, masks)
    if seed is not None:
        pipeline.set_random_seed(seed)
    return _augment(pipeline, image, boxes, labels, masks)


def _check_box_pipeline(pipeline: A.Compose, *, masks: bool) -> None:
    proc = getattr(pipeline, "processors", {}).get("bboxes")
    params = getattr(proc, "params", None)
    fields = tuple(getattr(params, "label_fields", None) or ())
    if fields != LABEL_FIELDS or getattr(params, "format", None) != "albumentations":
        raise ValueError(
            "expected a pipeline from build_box_pipeline (normalised boxes with label fields "
            f"{list(LABEL_FIELDS)}); got bbox params {params!r}"
        )
    if masks:
        leaves = _leaves(pipeline.transforms)
        fills = [
            (type(t).__name__, t.fill_mask)
            for t in leaves
            if np.any(np.asarray(getattr(t, "fill_mask", 0)) != 0)
        ]
        if fills:
            raise ValueError(
                f"expected fill_mask 0 for instance masks (build with masks=True); got {fills}"
            )


def _leaves(transforms: Sequence[Any]) -> list[Any]:
    out = []
    for t in transforms:
        out.extend(_leaves(t.transforms) if isinstance(t, BaseCompose) else [t])
    return out


def _check_objects(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.dtype == np.float32):
        raise ValueError(
            "expected image (H, W, C) float32 in [0, 1] (to_unit_float first), got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
        )
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "fiu":
        raise ValueError(f"expected boxes (N, 4) x0 y0 x1 y1, got {boxes.dtype} {boxes.shape}")
    n = len(boxes)
    if n >= _MAX_OBJECTS:
        raise ValueError(f"expected fewer than {_MAX_OBJECTS} objects per image, got {n}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"expected finite box coordinates, got {boxes[~np.isfinite(boxes)][:3]}")
    reversed_ = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if len(reversed_):
        r = int(reversed_[0])
        raise ValueError(f"expected x0 <= x1 and y0 <= y1 (pixels), got row {r}: {boxes[r]}")
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(f"expected labels ({n},) integer, got {labels.dtype} {labels.shape}")
    if masks is not None and (
        not isinstance(masks, np.ndarray)
        or masks.shape != (n, *image.shape[:2])
        or masks.dtype != np.bool_
    ):
        raise ValueError(
            f"expected masks ({n}, {image.shape[0]}, {image.shape[1]}) bool, got "
            f"{getattr(masks, 'dtype', type(masks).__name__)} {getattr(masks, 'shape', '')}"
        )
    return boxes.astype(np.float32), labels.astype(np.int64)


def _augment(
    pipeline: A.Compose,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None,
) -> AugmentedObjects:
    h, w, channels = image.shape
    clipped = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
    sent = np.flatnonzero(_has_area(clipped, side=0.0))  # albumentations refuses zero-area
    data: dict[str, Any] = {
        "image": image,
        "bboxes": clipped[sent].astype(np.float64) / _frame(h, w),
        "labels": labels[sent],
        "object_index": np.arange(len(sent), dtype=np.int64),
    }
    if masks is not None:
        data["masks"] = list(masks[sent].view(np.uint8))
    out = pipeline(**data)
    out_image = _hwc(out["image"], channels)
    frame = _frame(*out_image.shape[:2])
    out_boxes = (np.asarray(out["bboxes"], np.float64).reshape(-1, 4) * frame).astype(np.float32)
    local = np.asarray(out["object_index"]).astype(np.int64).reshape(-1)
    positive = _has_area(out_boxes, side=_SLIVER)  # with min_area 0, slivers come out
    out_boxes, local = out_boxes[positive], local[positive]
    kept = sent[local]
    out_masks = None
    if masks is not None:
        out_masks = _stack_masks(out["masks"], local, out_image.shape[:2])
    return AugmentedObjects(out_image, out_boxes, labels[kept], kept, out_masks)


def _frame(h: int, w: int) -> np.ndarray:
    return np.array([w, h, w, h], np.float64)


def _has_area(boxes: np.ndarray, *, side: float) -> np.ndarray:
    return np.asarray((boxes[:, 2] - boxes[:, 0] > side) & (boxes[:, 3] - boxes[:, 1] > side))


def _stack_masks(
    masks: Sequence[np.ndarray], rows: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    if len(rows) == 0:
        return np.zeros((0, *size), bool)
    return np.stack([np.asarray(masks[r]).reshape(size) != 0 for r in rows])


# --------------------------------------------------------------------------------------------
# detection mixup


def draw_box_mix(batch_size: int, *, alpha: float, rng: np.random.Generator) -> BoxMixDraw:
    """Draw a partner per image (a cyclic permutation, see ``draw_partners``) and its own
    share ``lam[i] ~ Beta(alpha, alpha)``, one per image. ``alpha == 0`` is the identity draw:
    everyone its own partner with ``lam = 1``, and no random number is used.

    Shapes: -> (partners: ``batch_size`` ints, lam: (batch_size,) float64 in [0, 1]).
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"expected alpha >= 0 (0 = no mixup), got {alpha}")
    if alpha == 0:
        return tuple(range(batch_size)), np.ones(batch_size)
    partners = draw_partners(batch_size, rng=rng)
    return partners, rng.beta(alpha, alpha, size=batch_size)


def mix_detection(
    images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]], draw: BoxMixDraw
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Blend image ``i`` with its partner ``p``: ``lam * image_i + (1 - lam) * image_p`` on a
    canvas of the larger height and width (both zero-padded, top-left aligned, so boxes keep
    their pixels), with both box sets concatenated (own first) and ``weights`` = ``lam`` for
    its own boxes and ``1 - lam`` for the partner's, times any ``weights`` already there.
    Masks (if the targets have them) are padded alike and concatenated, never blended. An
    image that is its own partner comes back unchanged (a copy, its ``lam`` unused) with
    weights (1 if absent).

    ``weights`` is for a loss that reads it (the paper weights each set's loss by its share):
    torchvision's Faster/Mask R-CNN, RetinaNet and FCOS ignore unknown target keys (their
    losses are the same with and without it, tested), so with their own losses every box
    counts fully.

    Shapes: images[i] (C, H_i, W_i) floating; targets[i] "boxes" (N_i, 4) floating x0 y0 x1
    y1 pixels, "labels" (N_i,) integer, optional "masks" (N_i, H_i, W_i), optional "weights"
    (N_i,) -> images (C, max(H_i, H_p), max(W_i, W_p)); targets with N_i + N_p objects and
    "weights" (N_i + N_p,) float32.
    """
    partners, lam = draw
    _check_mix(images, targets, partners, lam)
    out_images, out_targets = [], []
    for i, p in enumerate(partners):
        if p == i:
            out_images.append(images[i].clone())
            out_targets.append(_weighted(targets[i], 1.0))
            continue
        share = float(lam[i])
        out_images.append(_blend(images[i], images[p], share))
        h, w = out_images[-1].shape[1:]
        own, other = _weighted(targets[i], share), _weighted(targets[p], 1.0 - share)
        mixed = {k: torch.cat([own[k], other[k]]) for k in ("boxes", "labels", "weights")}
        if "masks" in own:
            mixed["masks"] = torch.cat([_pad(own["masks"], h, w), _pad(other["masks"], h, w)])
        out_targets.append(mixed)
    return out_images, out_targets


def _check_mix(
    images: Sequence[torch.Tensor],
    targets: Sequence[dict[str, torch.Tensor]],
    partners: tuple[int, ...],
    lam: np.ndarray,
) -> None:
    b = len(images)
    if len(targets) != b or len(partners) != b or np.shape(lam) != (b,):
        raise ValueError(
            f"expected {b} targets, partners and lam (one per image), got {len(targets)}, "
            f"{len(partners)}, {np.shape(lam)}"
        )
    if any(not 0 <= p < b for p in partners):
        raise ValueError(f"expected partners in range({b}), got {partners}")
    if not np.all((np.asarray(lam) >= 0) & (np.asarray(lam) <= 1)):
        raise ValueError(f"expected 0 <= lam <= 1, got {lam}")
    with_masks = {"masks" in t for t in targets}
    if len(with_masks) > 1:
        raise ValueError("expected masks in every target or in none, got a mix")
    for i, (image, t) in enumerate(zip(images, targets, strict=True)):
        _check_one(i, image, t)
        if image.shape[0] != images[partners[i]].shape[0]:
            raise ValueError(
                f"expected image {i} and its partner {partners[i]} to have the same channels, "
                f"got {image.shape[0]} and {images[partners[i]].shape[0]}"
            )


def _check_one(i: int, image: torch.Tensor, target: dict[str, torch.Tensor]) -> None:
    if image.ndim != 3 or not image.dtype.is_floating_point:
        raise ValueError(
            f"expected images[{i}] (C, H, W) floating, got {image.dtype} {tuple(image.shape)}"
        )
    unknown = set(target) - _TARGET_KEYS
    if unknown or not {"boxes", "labels"} <= set(target):
        raise ValueError(
            f"expected targets[{i}] keys boxes, labels and optionally masks, weights; got "
            f"{sorted(target)}"
        )
    n = len(target["boxes"])
    if target["boxes"].shape != (n, 4) or not target["boxes"].dtype.is_floating_point:
        raise ValueError(
            f"expected targets[{i}]['boxes'] (N, 4) floating, got {target['boxes'].dtype} "
            f"{tuple(target['boxes'].shape)}"
        )
    expected = {"labels": (n,), "weights": (n,), "masks": (n, *image.shape[1:])}
    for key, shape in expected.items():
        if key in target and tuple(target[key].shape) != shape:
            raise ValueError(
                f"expected targets[{i}][{key!r}] of shape {shape}, got {tuple(target[key].shape)}"
            )


def _weighted(target: dict[str, torch.Tensor], share: float) -> dict[str, torch.Tensor]:
    boxes = target["boxes"]
    base = target.get("weights")
    if base is None:
        base = torch.ones(len(boxes), device=boxes.device)
    out = {k: v.clone() for k, v in target.items()}
    out["weights"] = (base.to(torch.float32) * share).to(boxes.device)
    return out


def _blend(a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    h, w = max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2])
    dtype = torch.promote_types(a.dtype, b.dtype)
    out = torch.zeros((a.shape[0], h, w), dtype=dtype, device=a.device)
    out[:, : a.shape[1], : a.shape[2]] = lam * a
    out[:, : b.shape[1], : b.shape[2]] += (1.0 - lam) * b.to(a.device)
    return out


def _pad(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    out = masks.new_zeros((masks.shape[0], h, w))
    out[:, : masks.shape[1], : masks.shape[2]] = masks
    return out
