"""Find the samples under a data root, give them stable ids, and assign splits and folds.

Layouts (``layout: auto`` picks one; a folder that fits two is refused):

* classification ``folders``: ``root/<class>/**/<image>``, the folder name is the label;
* classification ``labels_csv``: ``root/labels.csv`` with columns ``image,label``;
* segmentation ``images_masks``: ``root/images/**`` and ``root/masks/**`` paired by relative
  stem (``images/a/b.png`` with ``masks/a/b<mask_suffix>.tif``);
* segmentation ``pairs_csv``: ``root/pairs.csv`` with columns ``image,mask``.

Paths in the manifest are POSIX paths relative to the root. Nothing under the root is written.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd

from datapipe.errors import ConfigError
from datapipe.io.image import IMAGE_SUFFIXES
from datapipe.io.tables import check_columns

Task = Literal["classification", "segmentation"]
Layout = Literal["folders", "labels_csv", "images_masks", "pairs_csv"]

LABELS_CSV = "labels.csv"
PAIRS_CSV = "pairs.csv"


@dataclass(frozen=True)
class SampleRef:
    """One sample as found on disk, before any pixel is read."""

    image: str
    label: str | None = None
    mask: str | None = None
    problem: str | None = None  # why the sample cannot be used, known from the listing alone


def sample_id(relpath: str) -> str:
    """A stable 16-hex-digit id from a sample's relative path (the same on every machine)."""
    return hashlib.blake2b(relpath.encode("utf-8"), digest_size=8).hexdigest()


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# --- layout detection and scanning ---------------------------------------------------------


def detect_layout(root: Path, task: Task) -> Layout:
    """The layout of ``root`` for ``task``; :class:`ConfigError` when none or two fit."""
    if not root.is_dir():
        raise ConfigError(f"{root}: data root is not a folder")
    if task == "classification":
        class_dirs = _class_dirs(root)
        if (root / LABELS_CSV).is_file():
            listed = {
                str(PurePosixPath(p))
                for p in _read_csv(root / LABELS_CSV, ("image", "label"))["image"]
            }
            unlisted = [
                d.name
                for d in class_dirs
                if any(_rel(p, root) not in listed for p in list_images(d))
            ]
            if unlisted:
                raise ConfigError(
                    f"{root}: ambiguous layout: {LABELS_CSV} and class folders with images it "
                    f"does not list ({', '.join(unlisted[:5])}); set layout: labels_csv or folders"
                )
            return "labels_csv"
        if class_dirs:
            return "folders"
        raise ConfigError(
            f"{root}: no classification layout found: expected class folders "
            f"(root/<class>/*.png) or {LABELS_CSV} (image,label)"
        )
    has_dirs = (root / "images").is_dir() and (root / "masks").is_dir()
    if (root / PAIRS_CSV).is_file():
        if has_dirs:
            listed = set(_read_csv(root / PAIRS_CSV, ("image", "mask"))["image"])
            if any(_rel(p, root) not in listed for p in list_images(root / "images")):
                raise ConfigError(
                    f"{root}: ambiguous layout: {PAIRS_CSV} and images/ with images it does not "
                    "list; set layout: pairs_csv or images_masks"
                )
        return "pairs_csv"
    if has_dirs:
        return "images_masks"
    raise ConfigError(
        f"{root}: no segmentation layout found: expected images/ and masks/ folders "
        f"or {PAIRS_CSV} (image,mask)"
    )


def scan(
    root: Path, *, task: Task, layout: Layout | Literal["auto"] = "auto", mask_suffix: str = ""
) -> tuple[Layout, list[SampleRef]]:
    """List the samples of a dataset; returns the layout used and one ref per sample."""
    resolved: Layout = detect_layout(root, task) if layout == "auto" else layout
    expected = {"folders": "classification", "labels_csv": "classification"}.get(
        resolved, "segmentation"
    )
    if expected != task:
        raise ConfigError(f"layout {resolved!r} is for {expected}, but task is {task!r}")
    match resolved:
        case "folders":
            refs = _scan_folders(root)
        case "labels_csv":
            refs = _scan_labels_csv(root)
        case "images_masks":
            refs = _scan_images_masks(root, mask_suffix)
        case "pairs_csv":
            refs = _scan_pairs_csv(root)
    if not refs:
        raise ConfigError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return resolved, refs


def _class_dirs(root: Path) -> list[Path]:
    return sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and list_images(d)
    )


def _scan_folders(root: Path) -> list[SampleRef]:
    return [
        SampleRef(image=_rel(p, root), label=d.name)
        for d in _class_dirs(root)
        for p in list_images(d)
    ]


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read CSV: {exc}") from None
    check_columns(df, columns, path, error=ConfigError)
    for col in columns:
        empty = df.index[df[col].str.strip() == ""]
        if len(empty):
            raise ConfigError(f"{path}: row {int(empty[0]) + 2}: empty {col!r}")
    dup = df.index[df["image"].duplicated()]
    if len(dup):
        row = int(dup[0])
        raise ConfigError(f"{path}: row {row + 2}: image {df['image'][row]!r} listed twice")
    return df


def _scan_labels_csv(root: Path) -> list[SampleRef]:
    df = _read_csv(root / LABELS_CSV, ("image", "label"))
    return [
        SampleRef(image=str(PurePosixPath(i)), label=str(lab))
        for i, lab in zip(df["image"], df["label"], strict=True)
    ]


def _scan_pairs_csv(root: Path) -> list[SampleRef]:
    df = _read_csv(root / PAIRS_CSV, ("image", "mask"))
    return [
        SampleRef(image=str(PurePosixPath(i)), mask=str(PurePosixPath(m)))
        for i, m in zip(df["image"], df["mask"], strict=True)
    ]


def _scan_images_masks(root: Path, mask_suffix: str) -> list[SampleRef]:
    masks_dir = root / "masks"
    by_stem: dict[str, list[str]] = defaultdict(list)
    for p in list_images(masks_dir):
        stem = p.relative_to(masks_dir).with_suffix("").as_posix()
        if mask_suffix and stem.endswith(mask_suffix):
            stem = stem[: -len(mask_suffix)]
        by_stem[stem].append(_rel(p, root))
    refs = []
    for p in list_images(root / "images"):
        stem = p.relative_to(root / "images").with_suffix("").as_posix()
        found = by_stem.get(stem, [])
        problem = None
        if not found:
            problem = f"no mask masks/{stem}{mask_suffix}.* for this image"
        elif len(found) > 1:
            problem = f"several masks for this image: {', '.join(found)}"
        refs.append(
            SampleRef(
                image=_rel(p, root), mask=found[0] if len(found) == 1 else None, problem=problem
            )
        )
    return refs


# --- splits and folds ----------------------------------------------------------------------


def stable_uniform(keys: Sequence[str], *, seed: int, salt: str) -> np.ndarray:
    """One number in ``[0, 1)`` per key from a hash of ``(seed, salt, key)``: no RNG state."""
    out = np.empty(len(keys), dtype=np.float64)
    prefix = f"{seed}:{salt}:".encode()
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(prefix + key.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def split_by_hash(
    ids: Sequence[str], *, fractions: Mapping[str, float], seed: int
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Each id's split from its own hash alone: ``u = stable_uniform(id)`` falls in a share.

    Returns ``(which, u, names, edges)``: split index per id, the hash values, the split names
    with non-zero fractions, and the upper edge of each split's share of ``[0, 1)``.
    """
    names = [name for name, frac in fractions.items() if frac > 0]
    edges = np.cumsum([fractions[n] for n in names])
    edges[-1] = 1.0
    u = stable_uniform(ids, seed=seed, salt="split")
    which = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    return which, u, names, edges


def assign_splits(
    ids: Sequence[str],
    strata: Sequence[Hashable],
    *,
    fractions: Mapping[str, float],
    seed: int,
) -> np.ndarray:
    """Assign each sample a split from a hash of its id, so adding samples moves no other.

    Sample ``i`` goes to the split whose share of ``[0, 1)`` (laid out in ``fractions`` order,
    widths = fractions) holds ``u_i = stable_uniform(id_i)`` (:func:`split_by_hash`):
    proportions hold in expectation within every stratum, and a sample's split depends on its
    id alone. One exception keeps every class in every split: when a stratum with at least as
    many samples as there are splits leaves a split empty, its sample whose ``u`` lies nearest
    that split's share (taken from a split that keeps at least one) is moved there. Only members
    of such topped-up strata can move when samples are added (no rule can promise both
    properties for tiny classes: three samples must fill three splits whichever three they are).

    Returns:
        array of split names, same order as ``ids``.
    """
    if len(ids) != len(strata):
        raise ValueError(f"ids and strata must have equal length; got {len(ids)} and {len(strata)}")
    which, u, names, edges = split_by_hash(ids, fractions=fractions, seed=seed)
    lows = np.concatenate([[0.0], edges[:-1]])
    for members in _group(strata).values():
        if len(members) < len(names):
            continue
        for s in range(len(names)):
            if np.any(which[members] == s):
                continue
            counts = np.bincount(which[members], minlength=len(names))
            donors = members[counts[which[members]] > 1]
            distance = np.maximum(lows[s] - u[donors], u[donors] - edges[s]).clip(min=0)
            which[donors[np.argmin(distance)]] = s
    return np.array(names, dtype=object)[which]


def assign_folds(
    ids: Sequence[str], strata: Sequence[Hashable], *, k: int, seed: int
) -> np.ndarray:
    """Stratified folds: within each stratum, samples in hash order are dealt round-robin.

    Every stratum with ``>= k`` samples has members in every fold, fold sizes differ by at most
    one per stratum, and the deal continues across strata so total fold sizes stay balanced.
    Unlike splits, folds may change when samples are added (scores are recomputed anyway).
    """
    if k < 2:
        raise ValueError(f"k must be >= 2; got {k}")
    v = stable_uniform(ids, seed=seed, salt="fold")
    folds = np.empty(len(ids), dtype=np.int64)
    offset = 0
    groups = _group(strata)
    for key in sorted(groups, key=repr):
        members = groups[key]
        ordered = members[np.argsort(v[members], kind="stable")]
        folds[ordered] = (offset + np.arange(len(ordered))) % k
        offset += len(ordered)
    return folds


def _group(strata: Sequence[Hashable]) -> dict[Hashable, np.ndarray]:
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        groups[s].append(i)
    return {key: np.asarray(idx, dtype=np.int64) for key, idx in groups.items()}
