"""Real-data corpora for whole-pipeline runs (tests/test_realdata_pipeline.py and
bench/realdata_pipeline.py), written into a folder of the caller's choice, never into the
checkout or ../shared.

* :func:`build_digits`: scikit-learn's bundled handwritten digits (1,797 8x8 images, values
  0..16) as a classification ``folders`` dataset, either native 8x8 8-bit PNG (values x15) or
  upscaled to 32x32 16-bit TIFF holding 12-bit values; symmetric label noise is planted by
  moving a file into another class's folder.
* :func:`build_photos`: crops of the photos shipped inside scikit-image's wheel (no download),
  one class per source photo, with planted exact duplicates (other format), near duplicates
  (JPEG q85 re-encode, 1-px shift, brightness change) and dark, blurry and blank copies.
* :func:`build_microscopy`: ``../shared/realdata`` nucseg_20x 16-bit images and their 8-bit
  twins with the 0/255 foreground masks as an ``images_masks`` segmentation dataset, plus the
  3-channel 12-bit bbbc022 Cell Painting crop (a channel-count outlier).

Each builder returns a :class:`Corpus`: the data root, the params.yaml entry and the planted
truth (one row per image it concerns; paths relative to the root), which :func:`write_planted`
saves as a CSV outside the data root.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import tifffile

#: planted photo problems: the check that should name each, in reports/data_issues.csv
PHOTO_KINDS = {
    "exact_tiff": "exact_duplicate",
    "exact_bmp": "exact_duplicate",
    "near_jpeg85": "near_duplicate",
    "near_shift1": "near_duplicate",
    "near_brighter": "near_duplicate",
    "dark": "dark",
    "blurry": "blurry",
    "blank": "blank",
}
#: source photos of scikit-image's wheel (skimage.data function names; all ship offline)
PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text",
    "immunohistochemistry", "hubble_deep_field", "stereo_motorcycle", "retina",
)  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    """``planted``: one row per image with a planted property (columns depend on the corpus;
    always ``image`` relative to ``root`` and ``kind``); ``dataset``: the params.yaml entry."""

    name: str
    root: Path
    planted: pd.DataFrame
    dataset: dict[str, Any]


def write_planted(corpus: Corpus, folder: Path) -> Path:
    """``folder/<name>_planted.csv`` (keep ``folder`` outside the data root)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{corpus.name}_planted.csv"
    corpus.planted.to_csv(path, index=False)
    return path


def _imwrite(path: Path, img: np.ndarray, params: Sequence[int] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, list(params)):
        raise OSError(f"could not write {path}")


# --- digits ---------------------------------------------------------------------------------


def symmetric_noise(labels: np.ndarray, rate: float, *, k: int, seed: int) -> np.ndarray:
    """Each label flips with probability ``rate`` to a uniformly drawn other class of ``k``."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(labels)) < rate
    shift = rng.integers(1, k, len(labels))
    return np.where(flip, (labels + shift) % k, labels)


def build_digits(
    root: Path,
    *,
    variant: Literal["png8", "tiff32"] = "png8",
    noise: float = 0.2,
    seed: int = 0,
    name: str | None = None,
) -> Corpus:
    """scikit-learn's digits under ``root/<given label>/<index>.<ext>``.

    ``png8``: the native 8x8 images, uint8 PNG, values x15 (0..240). ``tiff32``: resized to
    32x32 (cv2 INTER_LINEAR on the 0..16 values), uint16 TIFF scaled to 12 bits (0..4095).
    ``planted``: every image with ``true_label``, ``given_label`` and ``kind`` (``flipped`` or
    ``clean``); a flipped image lies in its given label's folder.
    """
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    data = load_digits()
    labels = data.target.astype(np.int64)
    given = symmetric_noise(labels, noise, k=10, seed=seed)
    rows = []
    for i, (img, true, label) in enumerate(zip(data.images, labels, given, strict=True)):
        if variant == "png8":
            rel = f"{label}/{i:04d}.png"
            _imwrite(root / rel, np.round(img * 15).astype(np.uint8))
        else:
            rel = f"{label}/{i:04d}.tif"
            big = cv2.resize(img.astype(np.float32), (32, 32), interpolation=cv2.INTER_LINEAR)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / rel, np.round(big.clip(0, 16) * (4095 / 16)).astype(np.uint16))
        rows.append(
            {
                "image": rel,
                "kind": "flipped" if label != true else "clean",
                "true_label": str(true),
                "given_label": str(label),
            }
        )
    return Corpus(
        name or f"digits_{variant}",
        root,
        pd.DataFrame(rows),
        {"root": str(root), "task": "classification", "layout": "folders"},
    )


# --- photos ---------------------------------------------------------------------------------


def _photo(name: str) -> np.ndarray:
    """One skimage.data photo as (H, W, 3) uint8 RGB, shorter side at most 400 px."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)
    scale = 400 / min(img.shape[:2])
    if scale < 1:
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box of two ``(y, x, h, w)`` boxes."""
    dy = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dx = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, dy) * max(0, dx)
    return inter / min(a[2] * a[3], b[2] * b[3])


def _crops(
    img: np.ndarray, n: int, rng: np.random.Generator, *, sizes: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` boxes ``(y, x, h, w)`` of varied size, overlapping each other by at most
    20% (so two crops are not near duplicates) and not nearly flat (no natural blanks)."""
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(n * 40):
        if len(boxes) == n:
            break
        h = int(rng.integers(sizes[0], sizes[1] + 1))
        w = int(np.clip(h * rng.uniform(0.75, 1.33), sizes[0], sizes[1]))
        if h + 2 > img.shape[0] or w + 2 > img.shape[1]:
            continue
        box = (
            int(rng.integers(0, img.shape[0] - h - 1)),
            int(rng.integers(0, img.shape[1] - w - 1)),
            h,
            w,
        )
        patch = img[box[0] : box[0] + h, box[1] : box[1] + w]
        if patch.std() < 12 or any(_overlap(box, b) > 0.2 for b in boxes):
            continue
        boxes.append(box)
    return boxes


def _planted_copy(
    kind: str, photo: np.ndarray, box: tuple[int, int, int, int], base: np.ndarray
) -> tuple[np.ndarray, str, Sequence[int]]:
    """What a planted copy of ``base`` (BGR) holds: (pixels, file extension, cv2 params)."""
    y, x, h, w = box
    match kind:
        case "exact_tiff":
            return base, ".tif", ()
        case "exact_bmp":
            return base, ".bmp", ()
        case "near_jpeg85":
            return base, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 85)
        case "near_shift1":
            return np.ascontiguousarray(photo[y + 1 : y + 1 + h, x + 1 : x + 1 + w]), ".png", ()
        case "near_brighter":
            return cv2.convertScaleAbs(base, alpha=1.0, beta=25), ".png", ()
        case "dark":
            return cv2.convertScaleAbs(base, alpha=0.15), ".png", ()
        case "blurry":
            return cv2.GaussianBlur(base, (0, 0), sigmaX=3.0), ".png", ()
        case "blank":
            colour = base.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
            return np.broadcast_to(colour, base.shape).copy(), ".png", ()
    raise ValueError(f"unknown planted kind {kind!r}; expected one of {sorted(PHOTO_KINDS)}")


def build_photos(
    root: Path,
    *,
    crops_per_photo: int = 24,
    planted_per_kind: int = 6,
    jpeg_share: float = 0.25,
    sizes: tuple[int, int] = (56, 112),
    seed: int = 0,
    name: str = "photos",
) -> Corpus:
    """Crops of the skimage.data photos under ``root/<photo>/<photo>_<k>.<png|jpg>`` (a quarter
    JPEG q95), plus ``planted_per_kind`` copies of each :data:`PHOTO_KINDS` kind next to its
    base crop (a PNG crop, a different base for every copy).

    ``planted``: one row per planted copy: ``image``, ``kind``, ``check`` (what should flag
    it), ``source`` (the base crop it was made from).
    """
    rng = np.random.default_rng(seed)
    bases: list[tuple[str, np.ndarray, tuple[int, int, int, int], str]] = []
    for photo_name in PHOTOS:
        photo = cv2.cvtColor(_photo(photo_name), cv2.COLOR_RGB2BGR)
        for k, box in enumerate(_crops(photo, crops_per_photo, rng, sizes=sizes)):
            y, x, h, w = box
            patch = np.ascontiguousarray(photo[y : y + h, x : x + w])
            if rng.random() < jpeg_share:
                _imwrite(root / photo_name / f"{photo_name}_{k:02d}.jpg", patch,
                         (cv2.IMWRITE_JPEG_QUALITY, 95))  # fmt: skip
                continue
            rel = f"{photo_name}/{photo_name}_{k:02d}.png"
            _imwrite(root / rel, patch)
            bases.append((rel, photo, box, photo_name))
    order = rng.permutation(len(bases))
    needed = planted_per_kind * len(PHOTO_KINDS)
    if needed > len(bases):
        raise ValueError(f"{needed} planted copies need as many PNG crops; got {len(bases)}")
    rows = []
    for j, kind in enumerate(k for k in PHOTO_KINDS for _ in range(planted_per_kind)):
        rel, photo, box, photo_name = bases[order[j]]
        base = cv2.imread(str(root / rel), cv2.IMREAD_UNCHANGED)
        pixels, ext, params = _planted_copy(kind, photo, box, base)
        copy = f"{Path(rel).with_suffix('')}_{kind}{ext}"
        if ext == ".tif":
            (root / copy).parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / copy, cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
        else:
            _imwrite(root / copy, pixels, params)
        rows.append({"image": copy, "kind": kind, "check": PHOTO_KINDS[kind], "source": rel})
    return Corpus(
        name,
        root,
        pd.DataFrame(rows),
        {"root": str(root), "task": "classification", "layout": "folders"},
    )


# --- microscopy -----------------------------------------------------------------------------


def build_microscopy(
    root: Path,
    realdata: Path,
    *,
    bbbc022: bool = True,
    ignore_index: int = 254,
    folds: int = 3,
    name: str = "nucseg",
) -> Corpus:
    """nucseg_20x as ``images_masks`` segmentation: ``images/16bit/<organ>.tif`` (uint16) and
    ``images/8bit/<organ>.tif`` (their uint8 twins), each paired with a copy of the 0/255
    ``mask_binary`` PNG under ``masks/``; with ``bbbc022``, the 3-channel uint16 (12-bit)
    Cell Painting crop and an Otsu foreground mask of its first channel.

    The masks' foreground value is 255, datapipe's default ``ignore_index``: the entry sets
    ``ignore_index`` to a value no mask holds, so the classes are the values 0 and 255.
    ``planted``: one row per image: ``kind`` (``twin_16bit`` / ``twin_8bit`` / ``channels``),
    ``twin`` (the other bit depth's image).
    """
    nuc = realdata / "nucseg_20x"
    rows = []
    for src in sorted((nuc / "images_16bit").glob("*.tif")):
        for depth, other in (("16bit", "8bit"), ("8bit", "16bit")):
            image = f"images/{depth}/{src.name}"
            (root / image).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(nuc / f"images_{depth}" / src.name, root / image)
            mask = root / "masks" / depth / f"{src.stem}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(nuc / "mask_binary" / f"{src.stem}.png", mask)
            rows.append(
                {"image": image, "kind": f"twin_{depth}", "twin": f"images/{other}/{src.name}"}
            )
    if bbbc022:
        src = realdata / "bbbc022" / "IXMtest_A02_s9.tif"
        image = f"images/bbbc022/{src.name}"
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / image)
        first = tifffile.imread(src)[0]  # (C, H, W) as stored: channel-first ImageJ hyperstack
        scaled = cv2.normalize(first, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        _, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        _imwrite(root / "masks" / "bbbc022" / f"{src.stem}.png", mask)
        rows.append({"image": image, "kind": "channels", "twin": ""})
    entry = {
        "root": str(root),
        "task": "segmentation",
        "layout": "images_masks",
        "ignore_index": ignore_index,
        "folds": folds,
    }
    return Corpus(name, root, pd.DataFrame(rows), entry)


# --- grading: what the test asserts and the benchmark prints --------------------------------


def flags_by_check(issues: pd.DataFrame) -> dict[str, int]:
    """Images flagged per check (info rows, e.g. the kept copy of a duplicate, left out)."""
    flagged = issues[issues["severity"] != "info"]
    return flagged.groupby("check")["image"].nunique().sort_values(ascending=False).to_dict()


def largest_group(clean: pd.DataFrame) -> int:
    """Members of the largest duplicate group of a clean manifest (0 without groups)."""
    sizes = clean["group"].dropna().value_counts()
    return int(sizes.max()) if len(sizes) else 0


def label_issue_prf(scores: pd.DataFrame, planted: pd.DataFrame) -> dict[str, float]:
    """Precision, recall, F1 of ``scores.is_label_issue`` against the planted flips (joined
    on the image path; an unscored image counts as not flagged), with the counts."""
    joined = scores.merge(planted, on="image", how="left", validate="1:1")
    if joined["kind"].isna().any():
        raise ValueError(f"{int(joined['kind'].isna().sum())} scored images are not planted rows")
    flagged = joined["is_label_issue"].fillna(False).astype(bool).to_numpy()
    truth = (joined["kind"] == "flipped").to_numpy()
    hit = int((flagged & truth).sum())
    precision = hit / max(1, int(flagged.sum()))
    recall = hit / max(1, int(truth.sum()))
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if hit else 0.0,
        "flagged": int(flagged.sum()),
        "flipped": int(truth.sum()),
        "found": hit,
        "unscored": int((~joined["scored"].astype(bool)).sum()),
    }


def planted_found(issues: pd.DataFrame, planted: pd.DataFrame) -> pd.DataFrame:
    """``planted`` plus ``found``: its image has a row of its ``check`` in data_issues."""
    named = set(zip(issues["image"], issues["check"], strict=True))
    found = [(i, c) in named for i, c in zip(planted["image"], planted["check"], strict=True)]
    return planted.assign(found=found)


def grouped_with(clean: pd.DataFrame, images: pd.Series, others: pd.Series) -> pd.Series:
    """Whether each of ``images`` is in the same duplicate group as the matching ``others``."""
    group = clean.set_index("image")["group"]
    a = group.reindex(images.to_numpy()).to_numpy()
    b = group.reindex(others.to_numpy()).to_numpy()
    return pd.Series(
        [not (pd.isna(x) or pd.isna(y)) and x == y for x, y in zip(a, b, strict=True)],
        index=images.index,
    )


__all__ = [
    "PHOTOS",
    "PHOTO_KINDS",
    "Corpus",
    "build_digits",
    "build_microscopy",
    "build_photos",
    "flags_by_check",
    "grouped_with",
    "label_issue_prf",
    "largest_group",
    "planted_found",
    "symmetric_noise",
    "write_planted",
]
