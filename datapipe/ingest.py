"""Ingest: list a dataset, decode every file once, and build the manifest and its statistics.

Each sample is probed in a worker process (bytes hashed, pixels decoded, moments taken); an
unreadable file becomes a ``read_error`` string in its row, never an exception that ends the
run; so does a file in a format datapipe does not read (``unsupported format: GIF``), since
every file of a class folder or of ``images/`` is a sample. Files that are no sample (hidden,
beside the layout) are counted in ``stats["not_samples"]`` and logged.

Per-channel mean and std are merged from per-image moments (Chan et al.), so memory does
not grow with the dataset, and are reported after :func:`~datapipe.io.to_unit_float` scaling
with the bit depth resolved once per dtype. Images holding NaN / inf pixels (which clean
excludes) are left out of them and counted (``nonfinite_images``, ``nonfinite_pixels``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datapipe import tasks
from datapipe.checks.features import PixelFeatures, pixel_features
from datapipe.checks.pixel_table import PixelTableWriter
from datapipe.config import DatasetParams
from datapipe.errors import ConfigError, ImageReadError
from datapipe.io.convert import Scaling, infer_bit_depth, to_unit_float, unit_scale
from datapipe.io.image import decode_image, read_bytes, read_mask
from datapipe.manifest import (
    SampleRef,
    assign_folds,
    assign_splits,
    describe_not_samples,
    not_samples,
    sample_id,
    scan,
)
from datapipe.objects import OBJECT_COLUMNS, read_annotations, to_pixels
from datapipe.parallel import parallel_map
from datapipe.stats import Moments

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "sample_id", "image", "label", "label_index", "mask", "split", "fold", "height", "width",
    "channels", "dtype", "max_value", "bytes", "sha256", "read_error",
)  # fmt: skip
SEGMENTATION_COLUMNS = (
    "mask_height", "mask_width", "mask_dtype", "mask_sha256", "mask_read_error", "mask_classes",
)  # fmt: skip


@dataclass
class Probe:
    """What one worker learned about one sample."""

    height: int | None = None
    width: int | None = None
    channels: int | None = None
    dtype: str | None = None
    max_value: float | None = None
    nbytes: int | None = None
    sha256: str | None = None
    read_error: str | None = None
    moments: Moments | None = None
    unit_moments: bool = False  # moments already in [0, 1] units (percentile / float images)
    mask_height: int | None = None
    mask_width: int | None = None
    mask_dtype: str | None = None
    mask_sha256: str | None = None
    mask_read_error: str | None = None
    mask_values: dict[int, int] = field(default_factory=dict)
    mask_border: MaskBorder | None = None
    #: the clean stage's scaling-free measurements (when ingest keeps a pixel table), and the
    #: scaling the image would have alone, which the table writer finishes them for
    pixels: PixelFeatures | None = None
    pixel_scaling: int | str | None = None


@dataclass(frozen=True)
class MaskBorder:
    """The value that covers most of a mask's 1-pixel border (None when none covers half),
    and how much of it lies inside (the centre, 10% of each side, at least a pixel, away from
    the border)."""

    value: int | None
    inside: int  # pixels of ``value`` inside
    inside_total: int  # pixels inside

    @classmethod
    def of(cls, mask: np.ndarray) -> MaskBorder:
        """Shapes: ``mask`` ``(H, W)`` integer values."""
        ring = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
        values, counts = np.unique(ring, return_counts=True)
        value = int(values[counts.argmax()]) if 2 * counts.max() > len(ring) else None
        dy, dx = (max(1, round(0.1 * n)) for n in mask.shape)
        inner = mask[dy:-dy, dx:-dx]
        return cls(value, int((inner == value).sum()), int(inner.size))


#: A mask value looks like void (unlabelled, padding) when it is the most common border value
#: (more than half its pixels) of at least this share of the masks while covering less than
#: VOID_INSIDE_SHARE inside them,
VOID_BORDER_SHARE = 0.5
VOID_INSIDE_SHARE = 0.05
#: ... or when it is in fewer than this share of the masks (in a set of at least VOID_MIN_MASKS).
VOID_IMAGE_SHARE = 0.05
VOID_MIN_MASKS = 20


def void_suspects(probes: Sequence[Probe], values: Sequence[int]) -> dict[int, str]:
    """Mask values among ``values`` that look like a void / unlabelled marker rather than a
    class, each with the reason in words (for a warning that suggests ``ignore_index``)."""
    masks = [p for p in probes if p.mask_values]
    if not masks:
        return {}
    found: dict[int, str] = {}
    borders = [p.mask_border for p in masks if p.mask_border is not None]
    for v in values:
        on_border = [b for b in borders if b.value == v]
        inside = sum(b.inside for b in on_border) / max(1, sum(b.inside_total for b in on_border))
        framing = borders and len(on_border) >= VOID_BORDER_SHARE * len(borders)
        if framing and inside < VOID_INSIDE_SHARE:
            found[v] = (
                f"it covers most of the border of {len(on_border)} of {len(borders)} masks "
                f"but only {100 * inside:.1f}% of the pixels inside them"
            )
            continue
        holding = sum(v in p.mask_values for p in masks)
        if len(masks) >= VOID_MIN_MASKS and holding < VOID_IMAGE_SHARE * len(masks):
            found[v] = f"it is in only {holding} of {len(masks)} masks"
    return found


@dataclass(frozen=True)
class ProbeSettings:
    root: Path
    bit_depth: int | str  # dataset.bit_depth
    percentiles: tuple[float, float]
    max_pixels: int
    mask_colors: dict[int, tuple[int, int, int]] | None
    measure_pixels: bool = False  # the clean stage's pixel features, in this decode pass

    @property
    def scaling(self) -> Scaling:
        """How the moments scale an image: per image for ``percentile``, else later."""
        return "percentile" if self.bit_depth == "percentile" else "auto"


def probe_sample(ref: SampleRef, settings: ProbeSettings) -> Probe:
    """Decode one sample (image, and mask if any) and describe it; never raises for bad data."""
    probe = Probe()
    path = settings.root / ref.image
    try:
        data = read_bytes(path)
        probe.nbytes = len(data)
        probe.sha256 = hashlib.sha256(data).hexdigest()
        img = decode_image(data, path, max_pixels=settings.max_pixels)
    except ImageReadError as exc:
        probe.read_error = exc.reason
    else:
        probe.height, probe.width, probe.channels = img.shape
        probe.dtype = str(img.dtype)
        probe.max_value = float(img.max()) if img.size else 0.0
        if settings.measure_pixels:
            probe.pixels = pixel_features(img)
            probe.pixel_scaling = dtype_scaling(img.dtype, probe.max_value, settings.bit_depth)
        if settings.scaling == "percentile" or img.dtype.kind in "fi":
            img = to_unit_float(img, bit_depth=settings.scaling, percentiles=settings.percentiles)
            probe.unit_moments = True
        probe.moments = Moments.of_image(img)
    if ref.problem is not None:
        probe.mask_read_error = ref.problem
    elif ref.mask is not None:
        _probe_mask(probe, settings.root / ref.mask, settings)
    return probe


def _probe_mask(probe: Probe, path: Path, settings: ProbeSettings) -> None:
    try:
        probe.mask_sha256 = hashlib.sha256(read_bytes(path)).hexdigest()
        mask = read_mask(path, colors=settings.mask_colors, max_pixels=settings.max_pixels)
    except ImageReadError as exc:
        probe.mask_read_error = exc.reason
        return
    probe.mask_height, probe.mask_width = mask.shape
    probe.mask_dtype = str(mask.dtype)
    values, counts = np.unique(mask, return_counts=True)
    probe.mask_values = dict(zip(values.tolist(), counts.tolist(), strict=True))
    if mask.size:
        probe.mask_border = MaskBorder.of(mask)


@dataclass
class IngestResult:
    manifest: pd.DataFrame
    stats: dict[str, Any]
    objects: pd.DataFrame  # objects.parquet: one row per annotated object (empty: no objects)


def ingest(
    dataset: DatasetParams, *, name: str, workers: int, pixels: Path | None = None
) -> IngestResult:
    """Scan, probe and summarise one dataset entry.

    Returns the manifest (one row per sample, columns :data:`MANIFEST_COLUMNS` plus
    :data:`SEGMENTATION_COLUMNS` for segmentation) and the ``stats.json`` content. With
    ``pixels``, the clean stage's pixel measurements are taken in the same decode pass and
    written there (:mod:`datapipe.checks.pixel_table`), row by row in manifest order.
    """
    root = Path(dataset.root)
    layout, refs = scan(
        root,
        task=dataset.task,
        layout=dataset.layout,
        mask_suffix=dataset.mask_suffix,
        classes=dataset.classes,
    )
    log.info("%s: %d samples in layout %r under %s", name, len(refs), layout, root)
    skipped = not_samples(root, layout, refs)
    if text := describe_not_samples(skipped, layout):
        warn = skipped["unused_masks"] or skipped["unreadable_folders"]
        log.log(logging.WARNING if warn else logging.INFO, "%s: not samples: %s", name, text)
    settings = ProbeSettings(
        root=root,
        bit_depth=dataset.bit_depth,
        percentiles=dataset.percentiles,
        max_pixels=dataset.max_pixels,
        mask_colors=dict(dataset.mask_colors) if dataset.mask_colors else None,
        measure_pixels=pixels is not None,
    )
    found = parallel_map(
        functools.partial(probe_sample, settings=settings), refs, workers=workers,
        desc=f"ingest {name}",
    )  # fmt: skip
    if pixels is None:
        probes = list(found)
    else:
        with PixelTableWriter(pixels, percentiles=dataset.percentiles) as table:
            probes = [
                _keep_pixels(table, ref, probe) for ref, probe in zip(refs, found, strict=True)
            ]
    df = _table(refs, probes)
    task = tasks.get(dataset.task)
    targets = task.ingest_targets(df, probes, dataset)
    classes, class_values, strata = targets.classes, targets.class_values, targets.strata
    df["split"] = assign_splits(
        df["sample_id"].tolist(), strata, fractions=dataset.splits.fractions(), seed=dataset.seed
    )
    df["fold"] = assign_folds(df["sample_id"].tolist(), strata, k=dataset.folds, seed=dataset.seed)
    stats = _stats(
        df, probes, dataset, name=name, layout=layout, classes=classes, class_values=class_values
    )
    stats |= targets.stats(df)
    stats["not_samples"] = {kind: len(paths) for kind, paths in skipped.items()}
    objects = targets.objects if targets.objects is not None else empty_objects()
    return IngestResult(
        manifest=df[list(MANIFEST_COLUMNS) + targets.columns], stats=stats, objects=objects
    )


def _keep_pixels(table: PixelTableWriter, ref: SampleRef, probe: Probe) -> Probe:
    """Write the probe's pixel features out and drop them from the probe held in memory."""
    table.add(ref.image, probe.pixels, finish_for=probe.pixel_scaling)
    probe.pixels = None
    return probe


@dataclass(frozen=True)
class Targets:
    """What a task's module found in the probed samples: the classes (names and the values
    that encode them), the strata splits and folds balance, the manifest columns it added to
    the table, and its part of stats.json from the split table (``stats(table)``)."""

    classes: list[str]
    class_values: list[int]
    strata: list[Any]
    columns: list[str]
    stats: Callable[[pd.DataFrame], dict[str, Any]]
    objects: pd.DataFrame | None = None  # object tasks: OBJECT_COLUMNS, boxes in pixels


def label_targets(df: pd.DataFrame, probes: Sequence[Probe], dataset: DatasetParams) -> Targets:
    """Image labels: the classes (``classes:`` or the labels seen); ``label_index`` added."""
    classes = _label_classes(df, dataset)
    df["label_index"] = df["label"].map({c: i for i, c in enumerate(classes)}).astype("Int64")
    return Targets(
        classes, list(range(len(classes))), df["label"].tolist(), [],
        stats=lambda table: label_stats(table, classes),
    )  # fmt: skip


def mask_targets(df: pd.DataFrame, probes: Sequence[Probe], dataset: DatasetParams) -> Targets:
    """Masks: the classes from the mask values; ``mask_classes`` (and the other mask columns)
    added; strata = the rarest class present in each mask."""
    class_values, classes = _mask_classes(probes, dataset)
    present = [sorted(set(p.mask_values) & set(class_values)) for p in probes]
    df["mask_classes"] = present
    return Targets(
        classes, class_values, _rarest_present(present), list(SEGMENTATION_COLUMNS),
        stats=lambda table: mask_stats(probes, dataset, classes, class_values),
    )  # fmt: skip


def object_targets(df: pd.DataFrame, probes: Sequence[Probe], dataset: DatasetParams) -> Targets:
    """Annotated objects (COCO, VOC, YOLO): the classes of the annotation source, the objects
    table in pixels (YOLO's relative boxes scaled by the decoded sizes), ``n_objects`` added;
    strata = the rarest class present in each image, so every class reaches every split."""
    ann = read_annotations(Path(dataset.root), dataset.layout, classes=dataset.classes)  # type: ignore[arg-type]
    sizes = {
        sid: (int(h), int(w))
        for sid, h, w in zip(df["sample_id"], df["height"], df["width"], strict=True)
        if not (pd.isna(h) or pd.isna(w))
    }
    objects = to_pixels(ann.objects, sizes)
    usable = objects[objects["problem"] == ""]
    df["n_objects"] = df["sample_id"].map(usable.groupby("sample_id").size()).fillna(0)
    df["n_objects"] = df["n_objects"].astype(np.int64)
    per_image = usable.groupby("sample_id")["class_id"].agg(lambda c: sorted(set(c)))
    present = [per_image.get(sid, []) for sid in df["sample_id"]]
    classes = list(ann.classes)
    return Targets(
        classes, list(range(len(classes))), _rarest_present(present), ["n_objects"],
        stats=lambda table: object_stats(
            table, usable, classes, problems=len(objects) - len(usable)
        ),
        objects=objects,
    )  # fmt: skip


def object_stats(
    df: pd.DataFrame, objects: pd.DataFrame, classes: list[str], *, problems: int
) -> dict[str, Any]:
    """stats.json's objects per class (overall and per split), images per class, and the
    count of annotation entries that cannot be used as given."""
    split = objects["sample_id"].map(df.set_index("sample_id")["split"])
    named = objects["class_id"].map(dict(enumerate(classes)))
    by_split = named.groupby(split).value_counts()
    return {
        "object_counts": {c: int((named == c).sum()) for c in classes},
        "object_counts_by_split": {
            s: {c: int(by_split.get((s, c), 0)) for c in classes}
            for s in sorted(df["split"].unique())
        },
        "images_with_class": {
            c: int(objects.loc[named == c, "sample_id"].nunique()) for c in classes
        },
        "images_without_objects": int((df["n_objects"] == 0).sum()),
        "object_problems": problems,
    }


def empty_objects() -> pd.DataFrame:
    """An objects table without rows (what tasks without objects write as objects.parquet)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in OBJECT_COLUMNS})


def label_stats(df: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """stats.json's per-class image counts, overall and per split."""
    counts = df.groupby(["split", "label"]).size()
    return {
        "class_counts": {c: int(df["label"].eq(c).sum()) for c in classes},
        "class_counts_by_split": {
            s: {c: int(counts.get((s, c), 0)) for c in classes}
            for s in sorted(df["split"].unique())
        },
    }


def mask_stats(
    probes: Sequence[Probe],
    dataset: DatasetParams,
    classes: list[str],
    class_values: list[int],
) -> dict[str, Any]:
    """stats.json's pixel counts per class, ignored and unknown-value pixels, and images per
    class."""
    pixel_counts: Counter[int] = Counter()
    for p in probes:
        pixel_counts.update(p.mask_values)
    known = set(class_values) | {dataset.ignore_index}
    named = list(zip(class_values, classes, strict=True))
    return {
        "ignore_index": dataset.ignore_index,
        "pixel_counts": {n: int(pixel_counts.get(v, 0)) for v, n in named},
        "ignored_pixels": int(pixel_counts.get(dataset.ignore_index, 0)),
        "unknown_value_pixels": {
            str(v): int(n) for v, n in sorted(pixel_counts.items()) if v not in known
        },
        "images_with_class": {n: int(sum(v in p.mask_values for p in probes)) for v, n in named},
    }


def _table(refs: Sequence[SampleRef], probes: Sequence[Probe]) -> pd.DataFrame:
    ids = [sample_id(r.image) for r in refs]
    if len(set(ids)) != len(ids):  # 64-bit hashes: astronomically unlikely, but never silent
        raise ConfigError("two sample paths hash to the same sample_id; please report this")
    df = pd.DataFrame(
        {
            "sample_id": ids,
            "image": [r.image for r in refs],
            "label": [r.label for r in refs],
            "label_index": pd.array([None] * len(refs), dtype="Int64"),
            "mask": [r.mask for r in refs],
            "height": pd.array([p.height for p in probes], dtype="Int64"),
            "width": pd.array([p.width for p in probes], dtype="Int64"),
            "channels": pd.array([p.channels for p in probes], dtype="Int64"),
            "dtype": [p.dtype for p in probes],
            "max_value": [p.max_value for p in probes],
            "bytes": pd.array([p.nbytes for p in probes], dtype="Int64"),
            "sha256": [p.sha256 for p in probes],
            "read_error": [p.read_error for p in probes],
            "mask_height": pd.array([p.mask_height for p in probes], dtype="Int64"),
            "mask_width": pd.array([p.mask_width for p in probes], dtype="Int64"),
            "mask_dtype": [p.mask_dtype for p in probes],
            "mask_sha256": [p.mask_sha256 for p in probes],
            "mask_read_error": [p.mask_read_error for p in probes],
        }
    )
    return df


def _label_classes(df: pd.DataFrame, dataset: DatasetParams) -> list[str]:
    """Classes: from params, or the labels with at least one image that decodes.

    A label whose every file is unreadable (a ``notes/`` folder of text files, a folder of GIFs)
    is no class: its rows keep their label, carry a read_error and get no ``label_index``.
    """
    seen = sorted(set(df.loc[df["read_error"].isna(), "label"].dropna()))
    if dataset.classes is None:
        unread = sorted(set(df["label"].dropna()) - set(seen))
        if unread:
            log.warning(
                "labels %s have no file that decodes and are not taken as classes (their files "
                "are in the manifest with a read_error; set classes: to keep them)",
                unread,
            )
        if len(seen) < 2:
            raise ConfigError(f"{dataset.root}: classification needs >= 2 classes; found {seen}")
        return seen
    unknown = sorted(set(seen) - set(dataset.classes))
    if unknown:
        raise ConfigError(
            f"classes: labels {unknown} in {dataset.root} are not in the classes list "
            f"{dataset.classes}"
        )
    return list(dataset.classes)


def _mask_classes(probes: Sequence[Probe], dataset: DatasetParams) -> tuple[list[int], list[str]]:
    """Class values and names: from params, or mask values seen in enough masks."""
    if dataset.classes is not None:
        return list(range(len(dataset.classes))), list(dataset.classes)
    in_masks: Counter[int] = Counter()
    for p in probes:
        in_masks.update(v for v in p.mask_values if v != dataset.ignore_index)
    values = sorted(v for v, n in in_masks.items() if n >= dataset.min_class_images)
    rare = sorted(v for v, n in in_masks.items() if n < dataset.min_class_images)
    if rare:
        log.warning(
            "mask values %s appear in fewer than %d masks and are not taken as classes "
            "(set classes: to override)",
            rare,
            dataset.min_class_images,
        )
    if len(values) < 2:
        raise ConfigError(
            f"{dataset.root}: segmentation needs >= 2 classes in masks; found {values}"
        )
    for value, why in void_suspects(probes, values).items():
        log.warning(
            "mask value %d is taken as a class, but looks like void (unlabelled): %s; if it "
            "marks pixels without a label, set ignore_index: %d (or list classes:)",
            value, why, value,
        )  # fmt: skip
    return values, [str(v) for v in values]


def _rarest_present(present: Sequence[Sequence[int]]) -> list[Any]:
    """Stratum of each image: its class present in the fewest images (``-1`` when none)."""
    images_with: Counter[int] = Counter(v for classes in present for v in classes)
    return [min(c, key=lambda v: (images_with[v], v)) if c else -1 for c in present]


def _stats(
    df: pd.DataFrame,
    probes: Sequence[Probe],
    dataset: DatasetParams,
    *,
    name: str,
    layout: str,
    classes: list[str],
    class_values: list[int],
) -> dict[str, Any]:
    readable = df["read_error"].isna()
    channel_counts = Counter(df.loc[readable, "channels"].dropna().astype(int).tolist())
    channels = channel_counts.most_common(1)[0][0] if channel_counts else None
    bit_depths = _resolve_bit_depths(df[readable], dataset.bit_depth)
    total = Moments.empty(channels or 0)
    nonfinite = [p.moments.nonfinite for p in probes if p.moments and p.moments.nonfinite]
    for p in probes:
        # An image with NaN / inf pixels is excluded by clean (check nonfinite): leave it out.
        if p.moments is None or p.channels != channels or p.moments.nonfinite:
            continue
        scale = 1.0 if p.unit_moments else unit_scale(int(bit_depths[str(p.dtype)]))
        total = total.merge(p.moments.scaled(scale))
    stats: dict[str, Any] = {
        "dataset": name,
        "task": dataset.task,
        "root": str(dataset.root),
        "layout": layout,
        "samples": len(df),
        "readable": int(readable.sum()),
        "read_errors": int((~readable).sum()),
        "channels": channels,
        "channel_counts": {str(k): v for k, v in sorted(channel_counts.items())},
        "dtypes": dict(Counter(df.loc[readable, "dtype"]).most_common()),
        "bit_depth": bit_depths,
        "mean": total.mean.tolist(),
        "std": total.std.tolist(),
        "pixels": int(total.count),
        "nonfinite_images": len(nonfinite),
        "nonfinite_pixels": int(sum(nonfinite)),
        "classes": classes,
        "class_values": class_values,
        "splits": {s: int(n) for s, n in df["split"].value_counts().sort_index().items()},
        "folds": {str(f): int(n) for f, n in df["fold"].value_counts().sort_index().items()},
    }
    return stats


def _resolve_bit_depths(readable: pd.DataFrame, param: int | str) -> dict[str, int | str]:
    """Scaling per dtype: ``auto`` becomes the depth that holds that dtype's maximum."""
    return {
        str(dtype): dtype_scaling(str(dtype), float(group["max_value"].max()), param)
        for dtype, group in readable.groupby("dtype")
    }


def dtype_scaling(dtype: np.dtype | str, max_value: float, param: int | str) -> int | str:
    """The scaling of images of ``dtype`` whose largest value is ``max_value`` under
    ``dataset.bit_depth = param`` (``"float"`` for float images)."""
    dt = np.dtype(str(dtype))
    if dt.kind == "f":
        return "float"
    if param == "percentile" or dt.kind == "i":
        return "percentile"
    if param == "auto":
        return infer_bit_depth(max_value, dt)
    return 8 if dt.itemsize == 1 else int(param)
