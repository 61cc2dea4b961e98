"""DataLoader throughput of the training dataset against plain albumentations, and its uint16
path against its uint8 path.

    .venv/bin/python bench/loader_throughput.py [--images 256] [--out-size 224] [--batch 32]
                                                [--workers 2] [--repeats 3]
                                                [--cases classification:256 ...]
                                                [--formats ...] [--baseline-formats ...]
                                                [--cv2-threads N] [--keep-heap]
                                                [--split-images 32] [--quick]

Synthetic 3-channel images (``bench._synth.scene`` plus a tint per mask class) are written to a
temp dir once per size, in several encodings of the same content: 8-bit PNG, 8-bit TIFF and
16-bit TIFF by default (16-bit PNG on request). 16-bit files hold ``v * 257``, so every
encoding decodes to the same float32 unit image. 4-class PNG masks with an ignored border (255)
serve the segmentation cases.

Two datasets run in the same ``DataLoader(batch_size=32, num_workers=2)`` in one process:

* **ours**: ``AugmentedSet`` with ``Augment(build_pipeline(...))`` of the sample training
  pipeline in params.yaml (``train.<task>.augment``): ``read_image``, ``to_unit_float`` at the
  declared bit depth, the pipeline re-seeded per sample from ``(seed, epoch, index)``, area
  resize to ``--out-size``, mean/std normalisation, masks mapped through the class LUT.
* **baseline**: the plain code one would write with albumentations alone, on the same decoded
  images: a minimal Dataset doing ``cv2.imread(IMREAD_UNCHANGED)`` + ``cvtColor(BGR2RGB)``,
  ``astype(float32) / (2**bits - 1)`` (the float32 unit image our set hands to albumentations),
  then one ``A.Compose`` of the *same transforms* followed by ``A.Resize(INTER_AREA)``,
  ``A.Normalize(mean, std, max_pixel_value=1)`` and ``ToTensorV2``; masks read with cv2 and
  used as class indices as stored (the synthetic class values are 0..3). One liberty: it
  re-seeds its Compose per sample with our seed, so both sides draw the same augmentations
  (RandomBrightnessContrast on float32 costs ~13 ms per 512² image when drawn, the flips ~0.2
  ms: unmatched draws alone moved the ratio by 10-20%); the re-seed (~0.1 ms) is then paid on
  both sides. Before timing, both sets are checked to return the same tensors, with and without
  augmentation, so the ratio is the cost of our dataset class and nothing else. The baseline
  runs on ``--baseline-formats`` (PNG u8, TIFF u16); our set also reads TIFF u8, so that uint16
  vs uint8 can be compared in one container.

A pass is a whole epoch as a training loop sees it: non-persistent workers (the DataLoader
default), so it includes forking the 2 workers. Each loader first runs a few samples in this
process (code paths warm before the workers fork) and an untimed warm-up pass of one batch per
worker; then ``--repeats`` rounds alternate the loaders' order. images/s is wall clock (what
training sees), median and min-max over rounds. CPU ms/image counts this process and its
reaped workers (``os.times``, user + system); on a shared machine it is steadier than wall
clock, though not immune to contention. Ratios are medians of per-round ratios, by wall clock
and by CPU time. Goals: ours >= 0.9x the baseline; the uint16 path at most 1.5x slower than the
uint8 path. At the largest size a last table splits one image's CPU time by stage, ours vs the
baseline, in one process with the same augmentation draws on both sides. ``--keep-heap`` stops
glibc returning freed heap to the OS in the workers (``mallopt``, both sides): in fresh workers
a quarter to a third of the CPU time otherwise goes to page faults on re-allocated temporaries.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import tifffile
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._synth import scene
from datapipe.augment import Augment, build_pipeline
from datapipe.config import load_params
from datapipe.data import (
    AugmentedSet,
    ImageSpec,
    MaskSpec,
    SampleSpec,
    index_mask,
    normalise,
    resize_mask,
    sample_seed,
)
from datapipe.io import read_image, to_unit_float

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 4
IGNORE = 255
MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.25, 0.25]


# --- synthetic data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fmt:
    name: str
    folder: str
    suffix: str
    bits: int


FORMATS = {
    f.name: f
    for f in (
        Fmt("PNG u8", "png8", ".png", 8),
        Fmt("PNG u16", "png16", ".png", 16),
        Fmt("TIFF u8", "tif8", ".tif", 8),
        Fmt("TIFF u16", "tif16", ".tif", 16),
    )
}


def _write(path: Path, rgb8: np.ndarray, fmt: Fmt) -> None:
    pixels = rgb8.astype(np.uint16) * 257 if fmt.bits == 16 else rgb8
    if fmt.suffix == ".png":
        cv2.imwrite(str(path), pixels[..., ::-1])
    else:
        tifffile.imwrite(path, pixels, photometric="rgb")


def write_data(root: Path, n: int, size: int, formats: Sequence[Fmt], *, masks: bool) -> None:
    """``n`` images per format (same content in each); 4-class masks with an ignored border."""
    for fmt in formats:
        (root / fmt.folder).mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    tints = rng.uniform(0, 1, (CLASSES, 3))
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(6):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            radius = int(rng.integers(size // 16, size // 4))
            cv2.circle(mask, centre, radius, int(rng.integers(1, CLASSES)), -1)
        rgb = 0.6 * scene(rng, size, 3) + 0.4 * tints[mask]
        rgb8 = np.round(rgb * 255).astype(np.uint8)
        for fmt in formats:
            _write(root / fmt.folder / f"{i:05d}{fmt.suffix}", rgb8, fmt)
        if masks:
            mask[: size // 64 + 1] = IGNORE
            cv2.imwrite(str(root / "masks" / f"{i:05d}.png"), mask)


# --- the two datasets ---------------------------------------------------------------------------


def _spec(root: Path, out_size: int, *, masks: bool) -> SampleSpec:
    image = ImageSpec(
        root=root,
        scaling={"uint8": 8, "uint16": 16},
        percentiles=(0.5, 99.5),
        mean=MEAN,
        std=STD,
        size=out_size,
    )
    mask = MaskSpec(class_values=list(range(CLASSES)), ignore_index=IGNORE) if masks else None
    return SampleSpec(image, mask)


class PlainSet(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """The obvious albumentations Dataset: decode, to unit float, one Compose, tensors.

    One liberty: the Compose is re-seeded per sample with our ``sample_seed``, so both sets
    draw the same augmentations and do the same work (see the module docstring).
    """

    def __init__(
        self,
        items: Sequence[tuple[str, str | None]],
        root: Path,
        labels: np.ndarray,
        transforms: Sequence[Any],
        *,
        out_size: int,
        seed: int = 0,
    ) -> None:
        self.items, self.root, self.labels = list(items), root, labels
        self.seed, self.epoch = seed, 0
        self.compose = A.Compose(
            [
                *transforms,
                A.Resize(out_size, out_size, interpolation=cv2.INTER_AREA),
                A.Normalize(mean=MEAN, std=STD, max_pixel_value=1.0),
                ToTensorV2(),
            ],
            seed=seed,
        )

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image_path, mask_path = self.items[i]
        img = cv2.cvtColor(
            cv2.imread(str(self.root / image_path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB
        )
        img = img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
        self.compose.set_random_seed(sample_seed(self.seed, self.epoch, i))
        if mask_path is None:
            return self.compose(image=img)["image"], torch.tensor(self.labels[i]), i
        mask = cv2.imread(str(self.root / mask_path), cv2.IMREAD_UNCHANGED)
        out = self.compose(image=img, mask=mask)
        return out["image"], out["mask"].long(), i


def _keep_heap() -> None:
    """glibc: serve blocks up to 32 MiB from the heap and never trim it (``mallopt``), so a
    worker stops returning its multi-MB temporaries to the OS and faulting them in again."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD (its maximum on 64-bit)
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD


@dataclass
class Loader:
    label: str  # "ours" | "baseline"
    fmt: Fmt
    dataset: AugmentedSet | PlainSet
    cv2_threads: int | None
    keep_heap: bool
    wall: list[float] = field(default_factory=list)  # seconds per timed pass
    cpu: list[float] = field(default_factory=list)  # CPU s (main + workers) per timed pass

    def one_pass(
        self, batch: int, workers: int, epoch: int, limit: int | None = None
    ) -> tuple[float, float, int]:
        self.dataset.set_epoch(epoch)
        threads, keep_heap = self.cv2_threads, self.keep_heap

        def init(worker_id: int) -> None:
            if threads is not None:
                cv2.setNumThreads(threads)
            if keep_heap:
                _keep_heap()

        data: Dataset[Any] = self.dataset
        if limit is not None:
            data = Subset(data, range(min(limit, len(self.dataset))))
        loader = DataLoader(data, batch_size=batch, num_workers=workers, worker_init_fn=init)
        t0, wall0 = os.times(), time.perf_counter()
        seen = 0
        for images, _, _ in loader:
            seen += images.shape[0]
        wall = time.perf_counter() - wall0
        del loader  # workers are joined (reaped) at the end of the pass: os.times counts them
        t1 = os.times()
        cpu = sum(t1[:4]) - sum(t0[:4])
        return wall, cpu, seen


def build_loaders(
    root: Path,
    n: int,
    task: str,
    out_size: int,
    formats: Sequence[Fmt],
    baseline_formats: Sequence[Fmt],
    augment_spec: Any,
    cv2_threads: int | None,
    keep_heap: bool,
) -> list[Loader]:
    """Ours for every format, the baseline for ``baseline_formats``; each checked and run once
    here, so the workers fork from a process whose code paths are warm."""
    masks = task == "segmentation"
    spec = _spec(root, out_size, masks=masks)
    labels = np.arange(n) % CLASSES
    loaders = []
    for fmt in formats:
        items: list[tuple[str, str | None]] = [
            (f"{fmt.folder}/{i:05d}{fmt.suffix}", f"masks/{i:05d}.png" if masks else None)
            for i in range(n)
        ]
        pipeline = build_pipeline(augment_spec, ignore_index=IGNORE)
        ours = AugmentedSet(items, spec, labels, augment=Augment(pipeline), seed=0)
        loaders.append(Loader("ours", fmt, ours, cv2_threads, keep_heap))
        if fmt in baseline_formats:
            _check_same_output(items, spec, root, labels, out_size, augment_spec, fmt.name)
            # The same transforms, built once more (a Compose holds its transforms' RNG).
            same = build_pipeline(augment_spec, ignore_index=IGNORE).transforms
            plain = PlainSet(items, root, labels, same, out_size=out_size)
            loaders.append(Loader("baseline", fmt, plain, cv2_threads, keep_heap))
    for loader in loaders:
        for i in range(4):
            loader.dataset[i]
    return loaders


def _check_same_output(
    items: list[tuple[str, str | None]],
    spec: SampleSpec,
    root: Path,
    labels: np.ndarray,
    out_size: int,
    augment_spec: Any,
    name: str,
) -> None:
    """Both sets must return the same samples, without augmentation and with it (the same
    draws): the same work, the same result. With augmentation a few mask pixels may differ:
    OpenCV's nearest-neighbour warp rounds some coordinates differently on our int16 class
    masks than on the baseline's uint8 ones (3 of 224² pixels in one sample)."""
    pipeline = build_pipeline(augment_spec, ignore_index=IGNORE)
    same = build_pipeline(augment_spec, ignore_index=IGNORE).transforms
    pairs = [
        (AugmentedSet(items, spec, labels), PlainSet(items, root, labels, [], out_size=out_size)),
        (
            AugmentedSet(items, spec, labels, augment=Augment(pipeline)),
            PlainSet(items, root, labels, same, out_size=out_size),
        ),
    ]
    for tolerance, (ours_set, plain_set) in zip((0.0, 1e-3), pairs, strict=True):
        for i in range(4):
            ours, plain = ours_set[i], plain_set[i]
            diff = float((ours[0] - plain[0]).abs().max())
            differ = float((ours[1] != plain[1]).float().mean())
            if diff > 1e-4 or differ > tolerance:
                raise SystemExit(
                    f"{name}: ours and the baseline disagree on sample {i}: images by up to "
                    f"{diff:.2g}, targets in {differ:.2%} of values"
                )


def measure(loaders: list[Loader], *, batch: int, workers: int, repeats: int, n: int) -> None:
    for loader in loaders:  # warm-up: page cache, forking, one batch per worker
        loader.one_pass(batch, workers, epoch=0, limit=batch * workers)
    for r in range(repeats):
        for loader in loaders[:: 1 if r % 2 == 0 else -1]:
            wall, cpu, seen = loader.one_pass(batch, workers, epoch=r + 1)
            assert seen == n, (seen, n)
            loader.wall.append(wall)
            loader.cpu.append(cpu)


# --- per-stage split (one process) ----------------------------------------------------------


class _Clock:
    """CPU milliseconds per stage: ``clock("decode", fn, *args)`` runs and times ``fn(*args)``
    (CPU time: other jobs on a shared machine do not count)."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    def __call__(self, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.process_time()
        out = fn(*args)
        self.ms.setdefault(key, []).append((time.process_time() - start) * 1e3)
        return out


@dataclass
class _Split:
    """What one stage-split item needs: the recipe of both sides and a clock each."""

    root: Path
    spec: SampleSpec
    fmt: Fmt
    augment: Augment
    plain_augment: A.Compose
    plain_tail: A.Compose
    ours: _Clock
    base: _Clock


def _ours_item(s: _Split, i: int, seed: int) -> np.ndarray:
    """Sample ``i`` the way ``AugmentedSet.__getitem__`` makes it, stage by stage."""
    c, spec, size = s.ours, s.spec, s.spec.image.size
    img = c("decode", read_image, s.root / s.fmt.folder / f"{i:05d}{s.fmt.suffix}")
    unit = c("to float32 unit", partial(to_unit_float, bit_depth=s.fmt.bits), img)
    mask = None
    if spec.mask is not None:
        mask = c("mask: decode (+ class LUT)", index_mask, f"masks/{i:05d}.png", spec.mask, s.root)
    unit, mask = c("augment", s.augment, unit, mask, seed)
    c("resize + normalise + tensor", lambda: torch.from_numpy(normalise(unit, spec.image, size)))
    if mask is not None:
        c(
            "mask: resize + tensor",
            lambda: torch.from_numpy(resize_mask(mask, size).astype(np.int64)),
        )
    return unit


def _plain_item(s: _Split, i: int, seed: int) -> np.ndarray:
    """Sample ``i`` the way ``PlainSet.__getitem__`` makes it, stage by stage."""
    c = s.base
    path = str(s.root / s.fmt.folder / f"{i:05d}{s.fmt.suffix}")
    img = c(
        "decode", lambda: cv2.cvtColor(cv2.imread(path, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    )
    unit = c(
        "to float32 unit", lambda: img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    )
    kw: dict[str, np.ndarray] = {}
    if s.spec.mask is not None:
        mask_path = str(s.root / f"masks/{i:05d}.png")
        kw["mask"] = c("mask: decode (+ class LUT)", cv2.imread, mask_path, cv2.IMREAD_UNCHANGED)

    def augment() -> dict[str, Any]:
        s.plain_augment.set_random_seed(seed)  # as PlainSet does: the same draws as ours
        out: dict[str, Any] = s.plain_augment(image=unit, **kw)
        return out

    out = c("augment", augment)
    tensors = c("resize + normalise + tensor", lambda: s.plain_tail(**out))
    if s.spec.mask is not None:
        c("mask: resize + tensor", lambda: tensors["mask"].long())
    augmented: np.ndarray = out["image"]
    return augmented


def stage_split(root: Path, task: str, out_size: int, fmt: Fmt, spec_list: Any, k: int) -> None:
    """Mean CPU ms per image and stage, ours vs the baseline, on ``k`` images, one process.

    Both re-seed their pipeline with the same sample seed, so both draw the same augmentations
    and do the same work; the augmented images are checked to agree.
    """
    tail = [
        A.Resize(out_size, out_size, interpolation=cv2.INTER_AREA),
        A.Normalize(mean=MEAN, std=STD, max_pixel_value=1.0),
        ToTensorV2(),
    ]
    split = _Split(
        root,
        _spec(root, out_size, masks=task == "segmentation"),
        fmt,
        Augment(build_pipeline(spec_list, ignore_index=IGNORE)),
        A.Compose(build_pipeline(spec_list, ignore_index=IGNORE).transforms, seed=0),
        A.Compose(tail),
        _Clock(),
        _Clock(),
    )
    for epoch in range(2):  # the first round warms up and is dropped
        split.ours.ms.clear()
        split.base.ms.clear()
        for i in range(k):
            seed = sample_seed(0, epoch, i)
            if i % 2:  # alternate who goes first: the second reuses memory the first freed
                plain, ours = _plain_item(split, i, seed), _ours_item(split, i, seed)
            else:
                ours, plain = _ours_item(split, i, seed), _plain_item(split, i, seed)
            if not np.allclose(ours, plain, atol=1e-5):
                raise SystemExit(f"stage split: {fmt.name} image {i}: the two draws differ")
    print(f"\n### where one image's time goes: {task}, {fmt.name}, one process, {k} images\n")
    print("| stage | ours CPU ms | baseline CPU ms |")
    print("|---|---|---|")
    totals = [0.0, 0.0]
    for key, ours_ms in split.ours.ms.items():
        a, b = statistics.mean(ours_ms), statistics.mean(split.base.ms[key])
        totals = [totals[0] + a, totals[1] + b]
        print(f"| {key} | {a:.2f} | {b:.2f} |")
    print(f"| total | {totals[0]:.2f} | {totals[1]:.2f} |")
    note = "; the baseline resizes its mask inside its Compose" if split.spec.mask else ""
    print(f"\nmeans after a warm-up round, both sides drawing the same augmentations{note}")
    sys.stdout.flush()


# --- report -------------------------------------------------------------------------------------


def _rate(loader: Loader, n: int) -> tuple[float, float, float, float]:
    rates = [n / w for w in loader.wall]
    cpu_ms = [c / n * 1e3 for c in loader.cpu]
    return statistics.median(rates), min(rates), max(rates), statistics.median(cpu_ms)


def _ratio(a: Loader, b: Loader, attr: str) -> tuple[float, float, float]:
    """Median (min, max) of per-round ``b / a`` seconds, i.e. rate(a) / rate(b)."""
    ratios = [y / x for x, y in zip(getattr(a, attr), getattr(b, attr), strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def _met(wall: bool, cpu: bool) -> str:
    return {True: "met", False: "NOT met"}[wall] + (
        "" if wall == cpu else f" (by CPU: {'met' if cpu else 'NOT met'})"
    )


def report(case: str, loaders: list[Loader], n: int, fmts: Sequence[Fmt]) -> list[str]:
    """Print the two tables of a case; return its rows of the summary table."""
    by = {(lo.label, lo.fmt.name): lo for lo in loaders}
    print(f"\n### {case}: ours vs albumentations alone (goal >= 0.9x)\n")
    print(
        "| format | ours img/s (min-max) | baseline img/s (min-max) | ours / baseline "
        "(min-max) | ours / baseline by CPU | ours CPU ms/img | baseline CPU ms/img | goal |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for fmt in fmts:
        if ("baseline", fmt.name) not in by:
            continue
        ours, base = by[("ours", fmt.name)], by[("baseline", fmt.name)]
        o, b = _rate(ours, n), _rate(base, n)
        r, r_lo, r_hi = _ratio(ours, base, "wall")
        rc = _ratio(ours, base, "cpu")[0]
        met = _met(r >= 0.9, rc >= 0.9)
        print(
            f"| {fmt.name} | {o[0]:.0f} ({o[1]:.0f}-{o[2]:.0f}) | {b[0]:.0f} "
            f"({b[1]:.0f}-{b[2]:.0f}) | {r:.2f}x ({r_lo:.2f}-{r_hi:.2f}) | {rc:.2f}x | "
            f"{o[3]:.1f} | {b[3]:.1f} | {met} |"
        )
        summary.append(
            f"| {case} | ours / baseline, {fmt.name} | {r:.2f}x ({r_lo:.2f}-{r_hi:.2f}) | "
            f"{rc:.2f}x | >= 0.9x | {met} |"
        )
    pairs = [("PNG u8", "TIFF u16"), ("TIFF u8", "TIFF u16"), ("PNG u8", "PNG u16")]
    pairs = [(a, b) for a, b in pairs if ("ours", a) in by and ("ours", b) in by]
    if pairs:
        print(f"\n### {case}: our uint16 path vs our uint8 path (goal: at most 1.5x slower)\n")
        print(
            "| uint8 | uint16 | uint8 img/s | uint16 img/s | uint16 time / uint8 time "
            "(min-max) | by CPU | goal |"
        )
        print("|---|---|---|---|---|---|---|")
    for a, b in pairs:
        u8, u16 = by[("ours", a)], by[("ours", b)]
        r, r_lo, r_hi = _ratio(u16, u8, "wall")
        slower, lo, hi = 1 / r, 1 / r_hi, 1 / r_lo
        slower_cpu = 1 / _ratio(u16, u8, "cpu")[0]
        met = _met(slower <= 1.5, slower_cpu <= 1.5)
        print(
            f"| {a} | {b} | {_rate(u8, n)[0]:.0f} | {_rate(u16, n)[0]:.0f} | {slower:.2f}x "
            f"({lo:.2f}-{hi:.2f}) | {slower_cpu:.2f}x | {met} |"
        )
        summary.append(
            f"| {case} | uint16 / uint8 time, {b} vs {a} | {slower:.2f}x ({lo:.2f}-{hi:.2f}) | "
            f"{slower_cpu:.2f}x | <= 1.5x | {met} |"
        )
    sys.stdout.flush()
    return summary


def _images_for(size: int, images: int) -> int:
    """``--images`` at up to 256², half that above (a pass stays ~1-2 s)."""
    return images if size <= 256 else max(images // 2, 1)


def _parse_case(case: str) -> tuple[str, int]:
    task, _, size = case.partition(":")
    if task not in ("classification", "segmentation") or not size.isdigit():
        raise SystemExit(f"expected task:size, task classification or segmentation; got {case!r}")
    return task, int(size)


def run_size(
    size: int, tasks: Sequence[str], args: argparse.Namespace, params: Any, largest: bool
) -> list[str]:
    """Write the images of one size once (with masks), then measure every task on them."""
    n = _images_for(size, args.images)
    fmts = [FORMATS[f] for f in dict.fromkeys(args.formats + args.baseline_formats)]
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_data(root, n, size, fmts, masks=True)
        print(f"\n{n} images of {size}² per format written in {time.perf_counter() - start:.1f} s")
        summary = []
        for task in tasks:
            spec_list = getattr(params.train, task).augment
            names = ", ".join(next(iter(t)) for t in spec_list)
            label = f"{task} {size}² -> {args.out_size}²"
            loaders = build_loaders(
                root,
                n,
                task,
                args.out_size,
                fmts,
                [FORMATS[f] for f in args.baseline_formats],
                spec_list,
                args.cv2_threads,
                args.keep_heap,
            )
            start = time.perf_counter()
            measure(loaders, batch=args.batch, workers=args.workers, repeats=args.repeats, n=n)
            print(
                f"\n## {label}: {n} images, train.{task}.augment ({names}); measured in "
                f"{time.perf_counter() - start:.1f} s; load average {_load()}"
            )
            summary += report(label, loaders, n, fmts)
            if largest and args.split_images:
                for name in ("PNG u8", "TIFF u16"):
                    if name in args.formats:
                        k = min(args.split_images, n)
                        stage_split(root, task, args.out_size, FORMATS[name], spec_list, k)
    return summary


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=256, help="images per format at <= 256² (half above)"
    )
    parser.add_argument("--out-size", type=int, default=224, help="spec.image.size")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per loader")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["classification:256", "classification:512", "segmentation:512"],
        help="task:size, task classification or segmentation",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        default=["PNG u8", "TIFF u8", "TIFF u16"],
        choices=list(FORMATS),
        help="formats read by our set (also: PNG u16)",
    )
    parser.add_argument(
        "--baseline-formats",
        nargs="+",
        default=["PNG u8", "TIFF u16"],
        choices=list(FORMATS),
        help="formats also read by the baseline",
    )
    parser.add_argument(
        "--cv2-threads",
        type=int,
        default=None,
        help="cv2.setNumThreads in the workers and here (default: OpenCV's own)",
    )
    parser.add_argument(
        "--keep-heap",
        action="store_true",
        help="mallopt in each worker: no mmap/trim churn of glibc's heap (both sides)",
    )
    parser.add_argument(
        "--split-images", type=int, default=32, help="per-stage table at the largest size; 0: none"
    )
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run")
    args = parser.parse_args()
    if args.quick:
        args.images, args.split_images = 64, 0
        args.cases = ["classification:256", "segmentation:256"]
        args.formats = args.baseline_formats = ["PNG u8", "TIFF u16"]
    args.formats = list(dict.fromkeys(args.formats + args.baseline_formats))
    cases = [_parse_case(c) for c in args.cases]
    torch.set_num_threads(1)
    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    params = load_params(ROOT / "params.yaml")
    print("command: .venv/bin/python bench/loader_throughput.py " + " ".join(sys.argv[1:]))
    print(
        f"torch {torch.__version__}, albumentations {A.__version__}, OpenCV {cv2.__version__}; "
        f"{os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}, OpenCV threads "
        f"{cv2.getNumThreads()}; batch {args.batch}, {args.workers} workers, {args.repeats} timed "
        f"passes per loader after a one-batch-per-worker warm-up; GLIBC_TUNABLES="
        f"{os.environ.get('GLIBC_TUNABLES', 'unset')}; mallopt in workers: "
        f"{'yes' if args.keep_heap else 'no'}; load average {_load()}",
        flush=True,
    )
    start = time.perf_counter()
    sizes = list(dict.fromkeys(size for _, size in cases))
    summary = []
    for size in sizes:
        tasks = [task for task, s in cases if s == size]
        summary += run_size(size, tasks, args, params, largest=size == max(sizes))
    print(
        "\n## summary\n\n| case | measure | wall clock, median (min-max) | by CPU time | goal "
        "| |\n|---|---|---|---|---|---|"
    )
    print("\n".join(summary))
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average after {_load()}")


if __name__ == "__main__":
    main()
