"""Train-time augmentation declared in params.yaml, built and checked with albumentations.

A pipeline is a list of one-key mappings, transform name -> arguments, in albumentations'
own names and argument names::

    augment:
      - HorizontalFlip: {p: 0.5}
      - Affine: {rotate: [-20, 20], scale: [0.9, 1.1], p: 0.7}
      - OneOf:
          p: 0.3
          transforms:
            - GaussianBlur: {blur_limit: [3, 5]}
            - GaussNoise: {std_range: [0.01, 0.05]}

Three checks keep it honest:

* :func:`validate_spec` (when params load) builds every transform with albumentations'
  ``strict=True``: an unknown transform or argument is an error naming it and its position;
* geometric transforms are built with nearest-neighbour mask interpolation and their created
  border areas (padding, rotation corners) filled with ``ignore_index`` in the mask, so no fake
  label appears; asking for another mask interpolation is an error;
* :func:`check_pipeline` (when the data is known) runs each transform once on a float32 image
  with the dataset's channel count: colour transforms that assume RGB fail there, with the
  transform's name, instead of in a DataLoader worker an hour into training.

Images reach the pipeline as float32 in [0, 1] (``to_unit_float`` first, so uint16 and 12-bit
data are augmented at full precision); normalisation happens after, from ``stats.json``.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.core.composition import BaseCompose

from datapipe.errors import ConfigError
from datapipe.io.atomic import write_text_atomic

#: What a params.yaml pipeline is before building: ``[{name: {arg: value}}, ...]``.
Spec = Sequence[Mapping[str, Mapping[str, Any] | None]]

#: Conversions we own: they would scale or move data a second time.
_OWNED = {
    "Normalize": "normalisation uses the dataset's stats.json after augmentation",
    "ToFloat": "images are already float32 in [0, 1] (to_unit_float)",
    "FromFloat": "images stay float32 in [0, 1] during augmentation",
    "ToTensorV2": "the dataset converts to tensors itself",
}
_NEAREST = (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)


def _transform_class(name: str, where: str) -> type:
    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform | BaseCompose)):
        raise ConfigError(f"{where}: unknown albumentations transform {name!r}")
    if name in _OWNED:
        raise ConfigError(f"{where}: {name} is not allowed here: {_OWNED[name]}")
    if cls is A.Compose:
        raise ConfigError(f"{where}: Compose is implied; list the transforms directly")
    return cls


def _entry(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not (isinstance(item, Mapping) and len(item) == 1):
        raise ConfigError(f"{where}: expected a one-key mapping {{Name: {{args}}}}; got {item!r}")
    ((name, args),) = item.items()
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"{where}: {name}: expected a mapping of arguments; got {args!r}")
    return str(name), dict(args)


def _build(
    spec: Any, *, ignore_index: int, where: str, force_p: float | None = None
) -> list[A.BasicTransform | BaseCompose]:
    if not isinstance(spec, Sequence) or isinstance(spec, str):
        raise ConfigError(f"{where}: expected a list of transforms; got {spec!r}")
    built = []
    for i, item in enumerate(spec):
        name, args = _entry(item, f"{where}[{i}]")
        here = f"{where}[{i}].{name}"
        cls = _transform_class(name, here)
        if force_p is not None:
            args["p"] = force_p
        if issubclass(cls, BaseCompose):
            inner = args.pop("transforms", None)
            if inner is None:
                raise ConfigError(f"{here}: needs a 'transforms' list")
            args["transforms"] = _build(
                inner, ignore_index=ignore_index, where=f"{here}.transforms", force_p=force_p
            )
        else:
            args = _mask_safe(cls, args, ignore_index=ignore_index, where=here)
            if _takes_strict(cls):  # the others refuse unknown arguments by signature
                args["strict"] = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                built.append(cls(**args))
        except (ValueError, TypeError, UserWarning) as exc:
            raise ConfigError(f"{here}: {_first_line(exc)}") from None
    return built


def _takes_strict(cls: type) -> bool:
    params = inspect.signature(cls).parameters.values()
    return any(p.name == "strict" or p.kind is p.VAR_KEYWORD for p in params)


def _mask_safe(cls: type, args: dict[str, Any], *, ignore_index: int, where: str) -> dict[str, Any]:
    fields = getattr(getattr(cls, "InitSchema", None), "model_fields", {})
    if "mask_interpolation" in fields:
        chosen = args.get("mask_interpolation", cv2.INTER_NEAREST)
        if chosen not in _NEAREST:
            raise ConfigError(
                f"{where}: mask_interpolation must be nearest ({cv2.INTER_NEAREST}); got "
                f"{chosen!r}, which would invent labels at class borders"
            )
    if "fill_mask" in fields and "fill_mask" not in args:
        args["fill_mask"] = ignore_index
    return args


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[:3]) if text else type(exc).__name__


def validate_spec(spec: Any, *, where: str = "augment") -> list[dict[str, dict[str, Any] | None]]:
    """Check names and arguments of a params pipeline; return it as plain lists and dicts."""
    _build(spec, ignore_index=255, where=where)
    return [{name: args} for name, args in (_entry(x, where) for x in spec)]


def build_pipeline(spec: Spec, *, ignore_index: int, seed: int = 0) -> A.Compose:
    """The params pipeline as one ``A.Compose`` with mask-safe geometry."""
    return A.Compose(
        _build(spec, ignore_index=ignore_index, where="augment"), seed=seed, strict=True
    )


def check_pipeline(
    spec: Spec, *, channels: int, ignore_index: int, size: tuple[int, int] = (64, 64)
) -> None:
    """Run every transform once (``p`` forced to 1) on a float32 image with ``channels``
    channels of ``size`` and an index mask; a transform that fails or warns there is an
    error naming it (e.g. ColorJitter on 1 or 5 channels)."""
    rng = np.random.default_rng(0)
    image = rng.random((*size, channels), dtype=np.float32)
    mask = rng.integers(0, 3, size).astype(np.int16)
    for i, item in enumerate(spec):
        name, _ = _entry(item, f"augment[{i}]")
        one = A.Compose(
            _build([item], ignore_index=ignore_index, where=f"augment[{i}]", force_p=1.0),
            seed=0,
            strict=True,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                one(image=image, mask=mask)
        except Exception as exc:
            raise ConfigError(
                f"augment[{i}].{name}: cannot run on {channels}-channel float32 images of "
                f"{size[0]}x{size[1]}: {_first_line(exc)}"
            ) from None


@dataclass
class Augment:
    """A picklable ``(image, mask, seed) -> (image, mask)`` for Dataset workers.

    The pipeline is re-seeded per call, so a sample's augmentation depends only on the seed
    the dataset derives from ``(seed, epoch, index)``: identical across worker counts and
    after a resume.

    Shapes:
        ``image`` ``(H, W, C)`` float32 in [0, 1]; ``mask`` ``(H, W)`` int16 class indices
        or None. Outputs may have another ``H, W`` (crops, resizes).
    """

    pipeline: A.Compose

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        self.pipeline.set_random_seed(seed)
        if mask is None:
            out = self.pipeline(image=image)
            return _hwc(out["image"], image.shape[2]), None
        out = self.pipeline(image=image, mask=mask)
        return _hwc(out["image"], image.shape[2]), out["mask"]


def _hwc(image: np.ndarray, channels: int) -> np.ndarray:
    return image.reshape(*image.shape[:2], channels)


def to_dict(pipeline: A.Compose) -> dict[str, Any]:
    """albumentations' own serialisation of the resolved pipeline (every argument filled)."""
    return dict(A.to_dict(pipeline))


def save_pipeline(pipeline: A.Compose, path: Path) -> Path:
    """``augment.json``: albumentations' own serialisation (``A.from_dict`` loads it)."""
    text = json.dumps(to_dict(pipeline), indent=2, default=_jsonable) + "\n"
    return write_text_atomic(path, text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
