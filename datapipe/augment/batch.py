"""Batch-level training tricks that live in the loader, not in albumentations.

* **mixup / cutmix** with soft targets (Zhang et al. 2018; Yun et al. 2019, as timm's ``Mixup``):
  :func:`draw_mix` draws what to do (``MixDraw``), :func:`apply_mix` does it, purely.
  Cutmix for segmentation pastes the box from the partner's image *and* mask; masks stay
  integer class indices. :func:`mix_batch` applies either with a probability.
* **multi-scale training** (YOLOv3's "random shapes"): :class:`MultiScaleBatchSampler` draws
  one square size per batch (or per ``every`` batches) and yields ``(index, size)`` pairs,
  so the dataset resizes each sample to its batch's size.
* **five-crop / ten-crop** evaluation and TTA: :func:`multi_crop` and :func:`average_crops`.

Pure torch/numpy; randomness is always an argument (a seed or ``np.random.Generator``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np
import torch
from torchvision.transforms.v2 import functional as tvf

MixMode = Literal["mixup", "cutmix"]
CropKind = Literal["five", "ten"]

_CROPS_PER_KIND: dict[str, int] = {"five": 5, "ten": 10}


# --------------------------------------------------------------------------------------------
# targets


def one_hot(labels: torch.Tensor, num_classes: int, *, smoothing: float = 0.0) -> torch.Tensor:
    """Float32 one-hot targets, optionally label-smoothed (timm's convention).

    With smoothing ``s`` the true class gets ``1 - s + s/K`` and every other class ``s/K``,
    so each row still sums to 1.

    Shapes: labels (B,) integer -> (B, K) float32, on ``labels``' device.
    """
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"expected integer labels of shape (B,), got {labels.dtype} {tuple(labels.shape)}"
        )
    if num_classes < 1:
        raise ValueError(f"expected num_classes >= 1, got {num_classes}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"expected 0 <= smoothing < 1, got {smoothing}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"expected labels in [0, {num_classes}), "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    out.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)
    return out


# --------------------------------------------------------------------------------------------
# mixup / cutmix: draw


class Box(NamedTuple):
    """A half-open pixel box ``[top, bottom) x [left, right)``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)


@dataclass(frozen=True)
class MixDraw:
    """What one mixup/cutmix step drew; :func:`apply_mix` does it.

    ``permutation[i]`` is the partner of sample ``i``. ``lam`` is the weight of the sample
    itself: for cutmix it is ``1 - box.area / (H * W)``, the share of its own pixels that
    survive (the box holds the partner's pixels), so labels follow pixels exactly.
    """

    mode: MixMode
    lam: float
    permutation: tuple[int, ...]
    box: Box | None = None


def draw_partners(batch_size: int, *, rng: np.random.Generator) -> tuple[int, ...]:
    """A random cyclic permutation: nobody is its own partner unless ``batch_size == 1``.

    Plain ``randperm`` leaves fixed points (a sample "mixed" with itself, a wasted sample);
    timm's flip needs an even batch. Shuffling the batch and pairing each sample with the
    next one in the shuffled order works for any size, odd included.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    order = rng.permutation(batch_size)
    partners = np.empty(batch_size, dtype=np.int64)
    partners[order] = np.roll(order, -1)
    return tuple(int(p) for p in partners)


def draw_box(height: int, width: int, *, lam: float, rng: np.random.Generator) -> Box:
    """A box covering about ``1 - lam`` of the image, centred uniformly, clipped to it."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, left = cy - cut_h // 2, cx - cut_w // 2
    return Box(
        top=min(max(top, 0), height),
        bottom=min(max(top + cut_h, 0), height),
        left=min(max(left, 0), width),
        right=min(max(left + cut_w, 0), width),
    )


def draw_mix(
    batch_size: int,
    *,
    alpha: float,
    mode: MixMode,
    height: int,
    width: int,
    rng: np.random.Generator,
) -> MixDraw:
    """Draw ``lam ~ Beta(alpha, alpha)``, the partners and (cutmix) the box.

    For cutmix ``lam`` is corrected to the area actually kept after clipping the box.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    if not alpha > 0:
        raise ValueError(f"expected alpha > 0, got {alpha}")
    if height < 1 or width < 1:
        raise ValueError(f"expected height, width >= 1, got {height}, {width}")
    if mode not in ("mixup", "cutmix"):
        raise ValueError(f"expected mode 'mixup' or 'cutmix', got {mode!r}")
    lam = float(rng.beta(alpha, alpha))
    permutation = draw_partners(batch_size, rng=rng)
    if mode == "mixup":
        return MixDraw("mixup", lam, permutation)
    box = draw_box(height, width, lam=lam, rng=rng)
    return MixDraw("cutmix", 1.0 - box.area / (height * width), permutation, box)


# --------------------------------------------------------------------------------------------
# mixup / cutmix: apply


def apply_mix(
    images: torch.Tensor,
    targets: torch.Tensor,
    draw: MixDraw,
    *,
    dense: bool = False,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch as ``draw`` says; inputs are not modified.

    Image labels (``dense`` False): ``targets`` are labels (B,) (``num_classes`` needed) or
    soft targets (B, K) (e.g. from :func:`one_hot` with smoothing); returns soft targets
    ``lam * y + (1 - lam) * y[permutation]``. Mixup needs floating images.
    Masks (``dense``): cutmix only (mixup would invent labels); the box is pasted from the
    partner's image and mask alike; masks keep their dtype and values (``ignore_index``
    included).

    Shapes: images (B, C, H, W); targets (B,) int or (B, K) float -> (B, K) float for
    labels, (B, H, W) int -> (B, H, W) same dtype for masks.
    """
    _check_draw(images, draw)
    if dense:
        _check_masks(images, targets)
        if draw.mode != "cutmix":
            raise ValueError(
                f"expected mode 'cutmix' for masks (mixup blends masks), got {draw.mode!r}"
            )
        return _cutmix_images(images, draw), _cutmix_images(targets, draw)
    soft = _soft_targets(targets, batch=images.shape[0], num_classes=num_classes)
    if draw.mode == "mixup" and not images.dtype.is_floating_point:
        raise ValueError(f"expected floating images for mixup, got {images.dtype}")
    return _mix_classification(images, soft, draw)


def _check_draw(images: torch.Tensor, draw: MixDraw) -> None:
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    batch, _, height, width = images.shape
    if sorted(draw.permutation) != list(range(batch)):
        raise ValueError(f"expected a permutation of range({batch}), got {draw.permutation}")
    if not 0.0 <= draw.lam <= 1.0:
        raise ValueError(f"expected 0 <= lam <= 1, got {draw.lam}")
    if draw.mode == "mixup":
        if draw.box is not None:
            raise ValueError(f"expected no box for mixup, got {draw.box}")
        return
    box = draw.box
    if box is None:
        raise ValueError("expected a box for cutmix, got None")
    if not (0 <= box.top <= box.bottom <= height and 0 <= box.left <= box.right <= width):
        raise ValueError(f"expected a box inside {height}x{width}, got {box}")
    kept = 1.0 - box.area / (height * width)
    if not math.isclose(draw.lam, kept, abs_tol=1e-6):
        raise ValueError(
            f"expected cutmix lam = 1 - box area / image area = {kept}, got {draw.lam}"
        )


def _check_masks(images: torch.Tensor, masks: torch.Tensor) -> None:
    batch, _, height, width = images.shape
    if masks.shape != (batch, height, width):
        raise ValueError(
            f"expected masks of shape {(batch, height, width)}, got {tuple(masks.shape)}"
        )
    if masks.dtype.is_floating_point or masks.dtype == torch.bool:
        raise ValueError(f"expected integer class-index masks, got {masks.dtype}")


def _soft_targets(targets: torch.Tensor, *, batch: int, num_classes: int | None) -> torch.Tensor:
    if targets.ndim == 1 and not targets.dtype.is_floating_point:
        if num_classes is None:
            raise ValueError("expected num_classes for integer labels, got None")
        soft = one_hot(targets, num_classes)
    elif targets.ndim == 2 and targets.dtype.is_floating_point:
        if num_classes is not None and targets.shape[1] != num_classes:
            raise ValueError(
                f"expected soft targets (B, {num_classes}), got {tuple(targets.shape)}"
            )
        soft = targets
    else:
        raise ValueError(
            "expected labels (B,) integer or soft targets (B, K) float, "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    if soft.shape[0] != batch:
        raise ValueError(f"expected {batch} targets (one per image), got {soft.shape[0]}")
    return soft


def _is_identity(permutation: tuple[int, ...]) -> bool:
    return all(i == p for i, p in enumerate(permutation))


def _mix_classification(
    images: torch.Tensor, soft: torch.Tensor, draw: MixDraw
) -> tuple[torch.Tensor, torch.Tensor]:
    if _is_identity(draw.permutation):  # everyone is their own partner: exactly a no-op
        return images.clone(), soft.clone()
    perm = torch.tensor(draw.permutation, device=soft.device)
    mixed = draw.lam * soft + (1.0 - draw.lam) * soft[perm]
    if draw.mode == "cutmix":
        return _cutmix_images(images, draw), mixed
    perm = perm.to(images.device)
    return draw.lam * images + (1.0 - draw.lam) * images[perm], mixed


def _cutmix_images(tensor: torch.Tensor, draw: MixDraw) -> torch.Tensor:
    """Paste ``draw.box`` of each partner into a copy; works for (B, C, H, W) and (B, H, W)."""
    out = tensor.clone()
    box = draw.box
    if box is None or box.area == 0 or _is_identity(draw.permutation):
        return out
    perm = torch.tensor(draw.permutation, device=tensor.device)
    rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
    out[..., rows, cols] = tensor[perm][..., rows, cols]
    return out


# --------------------------------------------------------------------------------------------
# mixup / cutmix: policy and collate


@dataclass(frozen=True)
class MixPolicy:
    """When and how to mix (timm's ``Mixup`` knobs).

    With probability ``prob`` a batch is mixed; if both alphas are > 0, cutmix is chosen with
    probability ``switch_prob`` and mixup otherwise; an alpha of 0 turns that mode off.
    """

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(
                f"expected alphas >= 0, got mixup_alpha={self.mixup_alpha}, "
                f"cutmix_alpha={self.cutmix_alpha}"
            )
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("expected mixup_alpha > 0 or cutmix_alpha > 0, got both 0")
        for name in ("prob", "switch_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"expected 0 <= {name} <= 1, got {value}")


def draw_policy(
    batch_size: int, *, height: int, width: int, policy: MixPolicy, rng: np.random.Generator
) -> MixDraw | None:
    """Draw whether to mix (``None``: leave the batch alone), which mode, and its draw."""
    if rng.random() >= policy.prob:
        return None
    if policy.mixup_alpha > 0 and policy.cutmix_alpha > 0:
        mode: MixMode = "cutmix" if rng.random() < policy.switch_prob else "mixup"
    else:
        mode = "cutmix" if policy.cutmix_alpha > 0 else "mixup"
    alpha = policy.cutmix_alpha if mode == "cutmix" else policy.mixup_alpha
    return draw_mix(batch_size, alpha=alpha, mode=mode, height=height, width=width, rng=rng)


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    dense: bool = False,
    policy: MixPolicy,
    rng: np.random.Generator,
    num_classes: int | None = None,
    smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw with ``policy`` and apply. Classification targets come back soft (B, K) even for
    batches left unmixed, so the loss sees one format; ``smoothing`` applies to integer labels.

    Shapes: as :func:`apply_mix`.
    """
    if dense and policy.mixup_alpha > 0:
        raise ValueError(
            f"expected mixup_alpha = 0 for masks (cutmix only), got {policy.mixup_alpha}"
        )
    if dense and smoothing:
        raise ValueError(f"expected smoothing = 0 for masks, got {smoothing}")
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    if not dense and targets.ndim == 1 and not targets.dtype.is_floating_point:
        if num_classes is None:
            raise ValueError("expected num_classes for integer labels, got None")
        targets = one_hot(targets, num_classes, smoothing=smoothing)
    batch, _, height, width = images.shape
    draw = draw_policy(batch, height=height, width=width, policy=policy, rng=rng)
    if draw is None:  # not this batch: the identity draw still validates and converts targets
        draw = MixDraw("cutmix", 1.0, tuple(range(batch)), Box(0, 0, 0, 0))
    return apply_mix(images, targets, draw, dense=dense, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# multi-scale training


def size_range(low: int, high: int, step: int) -> list[int]:
    """Sizes ``low, low + step, ..., high``; ``step`` is the network stride, so ``low`` and
    ``high`` must be multiples of it (YOLOv3: ``size_range(320, 608, 32)``, 10 sizes)."""
    if step < 1:
        raise ValueError(f"expected step >= 1, got {step}")
    if not 0 < low <= high:
        raise ValueError(f"expected 0 < low <= high, got low={low}, high={high}")
    if low % step or high % step:
        raise ValueError(f"expected low and high multiples of step={step}, got {low}, {high}")
    return list(range(low, high + 1, step))


def draw_batch_sizes(
    num_batches: int, *, sizes: Sequence[int], every: int, seed: int, epoch: int
) -> list[int]:
    """One size per batch for one epoch, changing every ``every`` batches.

    Sizes are drawn in shuffled rounds (each round is a permutation of ``sizes``), so every
    size appears once per ``len(sizes)`` draws; the stream depends only on ``(seed, epoch)``,
    so all DDP ranks agree.
    """
    if num_batches < 0:
        raise ValueError(f"expected num_batches >= 0, got {num_batches}")
    if every < 1:
        raise ValueError(f"expected every >= 1, got {every}")
    if not sizes:
        raise ValueError("expected a non-empty list of sizes, got []")
    rng = np.random.default_rng([seed, epoch])
    n_draws = -(-num_batches // every)
    rounds = -(-n_draws // len(sizes))
    draws = [sizes[int(i)] for _ in range(rounds) for i in rng.permutation(len(sizes))]
    return [int(draws[b // every]) for b in range(num_batches)]


class _SizedIterable(Sized, Iterable[int], Protocol):
    pass


class MultiScaleBatchSampler:
    """A batch sampler for multi-scale ("random shapes") training.

    Groups the indices of ``sampler`` (a ``Sampler[int]`` or a sequence of indices, taken in
    order) into batches and yields each batch as ``[(index, size), ...]`` with one square
    ``size`` per batch from ``sizes`` (see :func:`draw_batch_sizes`). Use it as
    ``DataLoader(dataset, batch_sampler=...)``; the dataset's ``__getitem__`` receives
    ``(index, size)`` and resizes the sample to ``size``. :meth:`set_epoch` reseeds the sizes
    and is forwarded to ``sampler`` (e.g. ``DistributedSampler``).

    Shapes: each batch is a list of ``batch_size`` (fewer for the last, unless
    ``drop_last``) ``(int, int)`` pairs.
    """

    def __init__(
        self,
        sampler: _SizedIterable,
        *,
        batch_size: int,
        sizes: Sequence[int],
        every: int = 1,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        if every < 1:
            raise ValueError(f"expected every >= 1, got {every}")
        if not sizes or any(not isinstance(s, int | np.integer) or s < 1 for s in sizes):
            raise ValueError(f"expected a non-empty list of positive int sizes, got {sizes}")
        if seed < 0:
            raise ValueError(f"expected seed >= 0, got {seed}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.sizes = [int(s) for s in sizes]
        self.every = every
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        set_inner = getattr(self.sampler, "set_epoch", None)
        if callable(set_inner):
            set_inner(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        sizes = draw_batch_sizes(
            len(self), sizes=self.sizes, every=self.every, seed=self.seed, epoch=self.epoch
        )
        batch: list[int] = []
        produced = 0
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield [(i, sizes[produced]) for i in batch]
                produced, batch = produced + 1, []
        if batch and not self.drop_last:
            yield [(i, sizes[produced]) for i in batch]


# --------------------------------------------------------------------------------------------
# five-crop / ten-crop evaluation


def crops_per_image(kind: CropKind) -> int:
    """5 for ``"five"``, 10 for ``"ten"``."""
    if kind not in _CROPS_PER_KIND:
        raise ValueError(f"expected kind 'five' or 'ten', got {kind!r}")
    return _CROPS_PER_KIND[kind]


def multi_crop(
    images: torch.Tensor,
    *,
    size: int | tuple[int, int],
    kind: CropKind,
    vertical_flip: bool = False,
) -> torch.Tensor:
    """Five crops (four corners and centre) or ten (those plus those of the flipped image),
    laid out image-major: row ``b * K + k`` is crop ``k`` of image ``b``, in torchvision's
    order (top-left, top-right, bottom-left, bottom-right, centre; then the same of the
    horizontally, or with ``vertical_flip`` vertically, flipped image).

    Shapes: images (B, C, H, W) -> (B * K, C, h, w), K = 5 or 10.
    """
    k = crops_per_image(kind)
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    if not (0 < h <= images.shape[2] and 0 < w <= images.shape[3]):
        raise ValueError(
            f"expected a crop size within the image {tuple(images.shape[2:])}, got {(h, w)}"
        )
    if kind == "five":
        crops = tvf.five_crop(images, [h, w])
    else:
        crops = tvf.ten_crop(images, [h, w], vertical_flip=vertical_flip)
    stacked: torch.Tensor = torch.stack(list(crops), dim=1)  # (B, K, C, h, w)
    return stacked.reshape(images.shape[0] * k, images.shape[1], h, w)


def average_crops(outputs: torch.Tensor, *, num_crops: int) -> torch.Tensor:
    """Average the per-crop outputs back to one per image (mean over each image's K rows).

    Pass probabilities (softmax / sigmoid), not logits: the mean of probabilities is the
    ensemble prediction. For classification (or any per-image output); per-pixel outputs of
    different crops cover different regions and cannot be averaged back by this helper.

    Shapes: outputs (B * K, ...) float -> (B, ...).
    """
    if num_crops < 1:
        raise ValueError(f"expected num_crops >= 1, got {num_crops}")
    if outputs.ndim < 1 or outputs.shape[0] % num_crops:
        raise ValueError(
            f"expected outputs (B * {num_crops}, ...), got shape {tuple(outputs.shape)}"
        )
    if not outputs.dtype.is_floating_point:
        raise ValueError(f"expected floating outputs (probabilities), got {outputs.dtype}")
    return outputs.reshape(-1, num_crops, *outputs.shape[1:]).mean(dim=1)
