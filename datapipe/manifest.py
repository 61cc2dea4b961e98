"""Find the samples under a data root, give them stable ids, and assign splits and folds.

Layouts (``layout: auto`` picks one; a folder that fits two is refused):

* classification ``folders``: ``root/<class>/**/<image>``, the folder name is the label;
* classification ``labels_csv``: ``root/labels.csv`` with columns ``image,label``;
* segmentation ``images_masks``: ``root/images/**`` and ``root/masks/**`` paired by relative
  stem (``images/a/b.png`` with ``masks/a/b<mask_suffix>.tif``);
* segmentation ``pairs_csv``: ``root/pairs.csv`` with columns ``image,mask``.

Paths in the manifest are POSIX paths relative to the root. Nothing under the root is written.

Nothing a listing layout finds is dropped for its name: every file in a class folder, and every
file under ``images/``, is a sample, whatever its suffix; one that is not an image datapipe reads
(a GIF, an HTML page saved as ``.png``, a ``Thumbs.db``) gets its ``read_error`` at ingest, from
its first bytes. What is not a sample is counted by :func:`not_samples`: hidden entries (names
starting with ``.``, skipped as before), the layout's own CSV, files a layout does not look at
(at the root beside the class folders, outside ``images/`` and ``masks/``, not listed in the
CSV) and files under ``masks/`` that are no image's mask. Suffixes still decide two things that
must be known from the listing alone: which folders show a ``folders`` layout (a folder with at
least one ``.png .jpg .jpeg .bmp .tif .tiff`` file) and which of two same-stem files under
``masks/`` is the mask. Which labels become classes is decided at ingest, from what decodes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import posixpath
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
import pandas as pd

from datapipe import tasks
from datapipe.errors import ConfigError
from datapipe.io.image import IMAGE_SUFFIXES, link_problem
from datapipe.io.tables import check_columns
from datapipe.tasks import Task

Layout = Literal["folders", "labels_csv", "images_masks", "pairs_csv", "coco", "voc", "yolo"]

log = logging.getLogger(__name__)

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


def is_image_name(path: str | PurePath) -> bool:
    """Whether a file's suffix is one of :data:`IMAGE_SUFFIXES` (its bytes decide at ingest)."""
    return PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class Listing:
    """What a recursive listing of a folder found, each part sorted.

    ``files``: every regular file (a link to a file counts; links to folders are not followed;
    a link that resolves to nothing, broken or a loop, counts too: it is a sample whose
    ``read_error`` says so) outside hidden entries; ``hidden``: the entries skipped because
    their name starts with ``.`` (a hidden folder is one entry, not looked into);
    ``unreadable``: folders the OS would not list.
    """

    files: list[Path]
    hidden: list[Path]
    unreadable: list[Path]


def list_folder(folder: Path) -> Listing:
    """List ``folder`` recursively; a missing folder lists as empty."""
    files: list[Path] = []
    hidden: list[Path] = []
    unreadable: list[Path] = []
    stack = [folder]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            unreadable.append(here)
            continue
        for entry in entries:
            path = here / entry.name
            if entry.name.startswith("."):
                hidden.append(path)
            elif entry.is_dir(follow_symlinks=False):
                stack.append(path)
            elif entry.is_symlink() and link_problem(path) is not None:
                files.append(path)  # listed, so it is a row that says what is wrong
            elif entry.is_file():
                files.append(path)
    return Listing(sorted(files), sorted(hidden), sorted(unreadable))


def broken_links(root: Path) -> list[tuple[str, str]]:
    """Every symbolic link under ``root`` that resolves to nothing, hidden entries included (DVC
    hashes those too): ``(POSIX path relative to root, what is wrong)``, sorted. Links to
    folders are not followed."""
    found = []
    for here, _, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(here) / name
            if (problem := link_problem(path)) is not None:
                found.append((_rel(path, root), problem))
    return sorted(found)


def list_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursive, hidden entries skipped), sorted."""
    return list_folder(folder).files


def list_images(folder: Path) -> list[Path]:
    """Files under ``folder`` named like images (:func:`is_image_name`), sorted."""
    return [p for p in list_files(folder) if is_image_name(p)]


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# --- layout detection and scanning ---------------------------------------------------------


def detect_layout(root: Path, task: Task) -> Layout:
    """The layout of ``root`` for ``task`` (its module decides among its layouts);
    :class:`ConfigError` when none or two fit."""
    if not root.is_dir():
        raise ConfigError(f"{root}: data root is not a folder")
    return tasks.get(task).detect_layout(root)  # type: ignore[return-value]


def detect_labelled_layout(root: Path) -> Layout:
    """Class folders or ``labels.csv`` (image labels)."""
    class_dirs = _class_dirs(root)
    if (root / LABELS_CSV).is_file():
        listed = {
            str(PurePosixPath(p)) for p in _read_csv(root / LABELS_CSV, ("image", "label"))["image"]
        }
        unlisted = [
            d.name for d in class_dirs if any(_rel(p, root) not in listed for p in list_images(d))
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


def detect_paired_layout(root: Path) -> Layout:
    """``images/`` + ``masks/`` or ``pairs.csv`` (image, mask pairs)."""
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
    root: Path,
    *,
    task: Task,
    layout: Layout | Literal["auto"] = "auto",
    mask_suffix: str = "",
    classes: Sequence[str] | None = None,
) -> tuple[Layout, list[SampleRef]]:
    """List the samples of a dataset; returns the layout used and one ref per sample.

    Labels that differ only in case (``cross``, ``Cross``) stay different classes, with a
    warning unless ``classes`` (the dataset's ``classes:`` entry) says which are meant.
    """
    resolved: Layout = detect_layout(root, task) if layout == "auto" else layout
    owners = [t.name for t in tasks.of_layout(resolved)]
    if task not in owners:
        raise ConfigError(f"layout {resolved!r} is for {' or '.join(owners)}, but task is {task!r}")
    match resolved:
        case "folders":
            refs = _scan_folders(root)
        case "labels_csv":
            refs = _scan_labels_csv(root)
        case "images_masks":
            refs = _scan_images_masks(root, mask_suffix)
        case "pairs_csv":
            refs = _scan_pairs_csv(root)
        case "coco" | "voc" | "yolo":
            refs = _scan_objects(root, resolved, classes)
    listed = resolved in ("labels_csv", "pairs_csv", "coco", "voc")
    if not (refs if listed else any(is_image_name(r.image) for r in refs)):
        raise ConfigError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if classes is None:
        for twins in case_twins([r.label for r in refs if r.label is not None]):
            log.warning(
                "%s: labels %s differ only in case and are different classes; if they are one, "
                "fix the labels, or list the classes meant in classes:",
                root,
                twins,
            )
    return resolved, refs


def case_twins(labels: Sequence[str]) -> list[list[str]]:
    """Groups of distinct labels equal but for case (``[["Cross", "cross"]]``), sorted."""
    by_fold: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        by_fold[label.casefold()].add(label)
    return sorted(sorted(group) for group in by_fold.values() if len(group) > 1)


def _top_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _class_dirs(root: Path) -> list[Path]:
    """Top-level folders holding at least one file named like an image: a ``folders`` layout."""
    return [d for d in _top_dirs(root) if list_images(d)]


def _scan_folders(root: Path) -> list[SampleRef]:
    # Every file of every top-level folder, labelled with the folder's name: a `notes/` folder
    # of text files gives rows too, whose read_error shows; ingest takes as classes only labels
    # with an image that decodes, so such a folder is no class.
    return [
        SampleRef(image=_rel(p, root), label=d.name) for d in _top_dirs(root) for p in list_files(d)
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
    for col in (c for c in columns if c in PATH_COLUMNS):
        outside = df.index[df[col].map(is_outside_root)]
        if len(outside):
            row = int(outside[0])
            raise ConfigError(
                f"{path}: row {row + 2}: {col} {df[col][row]!r} is outside the data root; DVC "
                "tracks only the root, so a file outside it would be read without being "
                "tracked: copy it into the root and list it relative to the root"
            )
    dup = df.index[df["image"].duplicated()]
    if len(dup):
        row = int(dup[0])
        raise ConfigError(f"{path}: row {row + 2}: image {df['image'][row]!r} listed twice")
    return df


#: Columns of a layout CSV that hold paths relative to the root.
PATH_COLUMNS = ("image", "mask")


def is_outside_root(path: str) -> bool:
    """Whether a CSV path leaves the root: absolute (``/x``, ``C:/x``, a UNC path) or leading
    out through ``..`` once normalised (``a/../../x``); backslashes count as separators."""
    text = path.strip().replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(text).drive:
        return True
    return posixpath.normpath(text).split("/")[0] == ".."


def _scan_labels_csv(root: Path) -> list[SampleRef]:
    df = _read_csv(root / LABELS_CSV, ("image", "label"))
    df["label"] = df["label"].str.strip()  # "cross " is the class "cross"
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


def _scan_objects(root: Path, layout: Layout, classes: Sequence[str] | None) -> list[SampleRef]:
    """One ref per image an object-annotation source lists (COCO, VOC) or finds (YOLO)."""
    from datapipe.objects import read_annotations  # it builds on this module

    return [SampleRef(e.image) for e in read_annotations(root, layout, classes=classes).images]  # type: ignore[arg-type]


def _scan_images_masks(root: Path, mask_suffix: str) -> list[SampleRef]:
    masks_dir = root / "masks"
    by_stem: dict[str, list[str]] = defaultdict(list)
    for p in list_files(masks_dir):
        stem = p.relative_to(masks_dir).with_suffix("").as_posix()
        if mask_suffix and stem.endswith(mask_suffix):
            stem = stem[: -len(mask_suffix)]
        by_stem[stem].append(_rel(p, root))
    refs = []
    for p in list_files(root / "images"):
        stem = p.relative_to(root / "images").with_suffix("").as_posix()
        found = by_stem.get(stem, [])
        # A mask named like an image wins over other files of its stem (a.png beside a.json);
        # a lone masks/a.gif is the mask, and its read error is the sample's mask problem.
        found = [m for m in found if is_image_name(m)] or found
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


# --- what is not a sample -----------------------------------------------------------------

#: Keys of :func:`not_samples`: hidden entries; files the layout does not look at; files under
#: ``masks/`` that are no image's mask (``images_masks``); folders the OS would not list.
NOT_SAMPLE_KINDS = ("hidden", "outside", "unused_masks", "unreadable_folders")

#: What ``outside`` means, per layout.
OUTSIDE: dict[Layout, str] = {
    "folders": "at the root, not in a class folder",
    "labels_csv": f"not listed in {LABELS_CSV}",
    "images_masks": "outside images/ and masks/",
    "pairs_csv": f"not listed in {PAIRS_CSV}",
    "coco": "not an image the COCO annotations list",
    "voc": "not an image an Annotations/*.xml names",
    "yolo": "outside images/ and not a labels/ file",
}
#: an object layout's own annotation files (not samples, not counted as outside)
_ANNOTATION_FILES: dict[str, tuple[str, ...]] = {
    "coco": ("*.json",),
    "voc": ("Annotations/*", "ImageSets/*"),
    "yolo": ("labels/*", "*.yaml", "classes.txt"),
}
_NOT_SAMPLE_TEXT = {
    "hidden": "hidden (name starts with '.')",
    "unused_masks": "under masks/ and no image's mask",
    "unreadable_folders": "folders the OS would not list",
}


def not_samples(root: Path, layout: Layout, refs: Sequence[SampleRef]) -> dict[str, list[str]]:
    """Entries under ``root`` that are no sample's image or mask, by kind.

    One (maybe empty) list per kind of :data:`NOT_SAMPLE_KINDS`; paths are POSIX, relative to
    ``root``, sorted. The layout's own CSV is not counted; neither is a hidden entry that holds
    a file the CSV lists.
    """
    listing = list_folder(root)
    used = {p for r in refs for p in (r.image, r.mask) if p}
    holds_used = used | {str(parent) for p in used for parent in PurePosixPath(p).parents}
    own = {"labels_csv": LABELS_CSV, "pairs_csv": PAIRS_CSV}.get(layout)
    out: dict[str, list[str]] = {kind: [] for kind in NOT_SAMPLE_KINDS}
    for path in listing.files:
        rel = _rel(path, root)
        if rel in used or rel == own or _is_annotation(rel, layout):
            continue
        kind = (
            "unused_masks" if layout == "images_masks" and rel.startswith("masks/") else "outside"
        )
        out[kind].append(rel)
    out["hidden"] = [
        rel for rel in (_rel(p, root) for p in listing.hidden) if rel not in holds_used
    ]
    out["unreadable_folders"] = [_rel(p, root) for p in listing.unreadable]
    return out


def _is_annotation(rel: str, layout: Layout) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in _ANNOTATION_FILES.get(layout, ()))


def describe_not_samples(
    found: Mapping[str, Sequence[str]], layout: Layout, *, shown: int = 3
) -> str:
    """``found`` (from :func:`not_samples`) in words: count and first paths per kind, or ``""``."""
    parts = []
    for kind, paths in found.items():
        if paths:
            what = OUTSIDE[layout] if kind == "outside" else _NOT_SAMPLE_TEXT[kind]
            more = ", ..." if len(paths) > shown else ""
            parts.append(f"{len(paths)} {what} ({', '.join(paths[:shown])}{more})")
    return "; ".join(parts)


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
