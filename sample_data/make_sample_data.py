"""Regenerate the committed sample datasets byte for byte from a seed.

    python sample_data/make_sample_data.py [--out sample_data] [--seed 2026]

Two small sets that exercise every reader and every problem the pipeline must find:

* ``shapes_cls``: 5 classes of grey shapes on textured, noisy backgrounds, 48 x 48, stored as
  8-bit PNG, JPEG, and 16-bit PNG / uint16 TIFF holding 12-bit values; folder-per-class layout.
* ``shapes_seg``: RGB scenes of discs, squares and triangles, 64-128 px, with VOC-style
  ignore bands (255) around object edges; images as 8-bit PNG, 16-bit PNG and uint16 TIFF
  (interleaved and planar), masks as 8-bit PNG, palette PNG and uint16 TIFF.

Each set's ``planted.csv`` lists the problems planted in it (``image``, ``problem``,
``true_label``, ``detail``): flipped labels / corrupted masks for the score stage, and
truncated, empty, duplicated, mismatched and blank files for the clean stage.
Images are hard on purpose (low contrast, noise, blur, clutter): no model should be 100% right.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

CLS_CLASSES = ("disk", "square", "triangle", "cross", "ring")
CLS_PER_CLASS = 120
CLS_SIZE = 48
CLS_FLIP_FRACTION = 0.08
# Difficulty, as uniform ranges. Tuned with the score recipe (small_cnn at 24 px, 16 epochs,
# batch 16): 5-fold out-of-fold accuracy about 0.96 against the true labels, so a small model
# trained from scratch finds the flipped labels, yet some shapes still fool it. The background
# texture also keeps unrelated images' perceptual hashes apart (weaker texture or bigger shapes
# make dozens of false near-duplicates).
CLS_BACKGROUND = (0.15, 0.45)  # mean grey level
CLS_TEXTURE = (0.05, 0.11)  # amplitude of the low-frequency background
CLS_MAX_CLUTTER = 1  # faint strokes per image, 0 to this
CLS_RADIUS = (9.0, 15.0)  # px
CLS_CONTRAST = (0.25, 0.5)  # shape above background; never inverted
CLS_BLUR = (0.0, 1.0)  # Gaussian sigma, px; below 0.3 no blur
CLS_NOISE = (0.02, 0.06)  # std of white noise

SEG_CLASSES = ("background", "disk", "square", "triangle")
SEG_IMAGES = 100
SEG_SIZES = (64, 96, 128)
IGNORE = 255

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 6]
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 90]

Planted = list[dict[str, str]]


# --- drawing --------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Low-frequency texture in about [-1, 1]."""
    small = rng.standard_normal((max(2, shape[0] // 8), max(2, shape[1] // 8)))
    big = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return big * scale


def _shape_mask(kind: str, size: int, rng: np.random.Generator, *, radius: float,
                center: tuple[float, float]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape, drawn at 4x and averaged down."""
    s = 4
    canvas = np.zeros((size * s, size * s), np.uint8)
    cx, cy, r = center[0] * s, center[1] * s, radius * s
    angle = rng.uniform(0, 2 * np.pi)

    def poly(n: int, rad: float, phase: float) -> np.ndarray:
        t = phase + np.arange(n) * 2 * np.pi / n
        return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1).round().astype(np.int32)

    if kind == "disk":
        cv2.circle(canvas, (round(cx), round(cy)), round(r), 255, -1)
    elif kind == "ring":
        cv2.circle(canvas, (round(cx), round(cy)), round(r * 0.8), 255, max(2, round(r * 0.4)))
    elif kind == "square":
        cv2.fillPoly(canvas, [poly(4, r * 1.2, angle)], 255)
    elif kind == "triangle":
        cv2.fillPoly(canvas, [poly(3, r * 1.3, angle)], 255)
    elif kind == "cross":
        for a in (angle, angle + np.pi / 2):
            dx, dy = np.cos(a) * r, np.sin(a) * r
            nx, ny = -np.sin(a) * r * 0.3, np.cos(a) * r * 0.3
            pts = np.array([[cx - dx - nx, cy - dy - ny], [cx + dx - nx, cy + dy - ny],
                            [cx + dx + nx, cy + dy + ny], [cx - dx + nx, cy - dy + ny]])
            cv2.fillPoly(canvas, [pts.round().astype(np.int32)], 255)
    else:
        raise ValueError(kind)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64) / 255


def draw_cls(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One grey 48 x 48 classification image in [0, 1]: a bright shape on a textured background."""
    n = CLS_SIZE
    img = rng.uniform(*CLS_BACKGROUND) + _smooth_noise(rng, (n, n), rng.uniform(*CLS_TEXTURE))
    for _ in range(rng.integers(0, CLS_MAX_CLUTTER + 1)):  # clutter: a faint stroke
        p1 = tuple(int(v) for v in rng.integers(0, n, 2))
        p2 = tuple(int(v) for v in rng.integers(0, n, 2))
        layer = np.zeros((n, n), np.float64)
        cv2.line(layer, p1, p2, 1.0, int(rng.integers(1, 3)))
        img += layer * rng.uniform(-0.15, 0.15)
    radius = rng.uniform(*CLS_RADIUS)
    center = (rng.uniform(radius + 2, n - radius - 2), rng.uniform(radius + 2, n - radius - 2))
    contrast = rng.uniform(*CLS_CONTRAST)
    img += contrast * _shape_mask(kind, n, rng, radius=radius, center=center)
    sigma = rng.uniform(*CLS_BLUR)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(*CLS_NOISE), img.shape)
    return np.clip(img, 0, 1)


def draw_seg(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One RGB scene in [0, 1] and its uint8 mask (0 background, 1..3 shapes, 255 ignore)."""
    base = rng.uniform(0.2, 0.6, 3)
    img = base + np.stack([_smooth_noise(rng, (size, size), 0.08) for _ in range(3)], -1)
    mask = np.zeros((size, size), np.uint8)
    hues = {1: np.array([0.8, 0.3, 0.3]), 2: np.array([0.3, 0.7, 0.3]), 3: np.array([0.3, 0.4, 0.8])}
    for _ in range(rng.integers(1, 5)):
        cls = int(rng.integers(1, 4))
        radius = rng.uniform(size * 0.07, size * 0.18)
        center = (rng.uniform(radius, size - radius), rng.uniform(radius, size - radius))
        cover = _shape_mask(SEG_CLASSES[cls], size, rng, radius=radius, center=center)
        colour = np.clip(hues[cls] + rng.normal(0, 0.08, 3), 0, 1)
        alpha = cover[..., None] * rng.uniform(0.6, 0.95)  # learnable at 48 px from scratch
        img = img * (1 - alpha) + colour * alpha
        mask[cover >= 0.5] = cls
    if rng.random() < 0.5:  # VOC-style "don't care" band on object edges
        edges = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        mask[edges] = IGNORE
    if rng.random() < 0.15:  # an unlabelled patch
        y, x = rng.integers(0, size // 2, 2)
        mask[y : y + size // 6, x : x + size // 6] = IGNORE
    sigma = rng.uniform(0, 1.2)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(0.02, 0.08), img.shape)
    return np.clip(img, 0, 1), mask


# --- writing --------------------------------------------------------------------------------


def q8(x: np.ndarray) -> np.ndarray:
    return np.round(x * 255).astype(np.uint8)


def q12(x: np.ndarray) -> np.ndarray:
    return np.round(x * 4095).astype(np.uint16)


def q16(x: np.ndarray) -> np.ndarray:
    return np.round(x * 65535).astype(np.uint16)


def png_bytes(arr: np.ndarray) -> bytes:
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, PNG_PARAMS)
    assert ok
    return buf.tobytes()


def jpeg_bytes(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", arr, JPEG_PARAMS)
    assert ok
    return buf.tobytes()


def tiff_bytes(arr: np.ndarray, *, planar: bool = False, compression: str | None = None) -> bytes:
    out = io.BytesIO()
    if planar:
        tifffile.imwrite(out, np.moveaxis(arr, -1, 0), photometric="rgb",
                         planarconfig="separate", compression=compression)
    else:
        photometric = "rgb" if arr.ndim == 3 else "minisblack"
        tifffile.imwrite(out, arr, photometric=photometric, compression=compression)
    return out.getvalue()


def palette_png_bytes(mask: np.ndarray) -> bytes:
    im = Image.fromarray(mask)  # mode L; putpalette turns it into P
    palette = [0, 0, 0, 200, 60, 60, 60, 180, 60, 60, 90, 210] + [0, 0, 0] * 251
    palette[IGNORE * 3 : IGNORE * 3 + 3] = [255, 255, 255]
    im.putpalette(palette)
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_planted(path: Path, rows: Planted) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "problem", "true_label", "detail"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: (r["problem"], r["image"])))


# --- classification set --------------------------------------------------------------------


@dataclass
class ClsImage:
    name: str
    true: str
    pixels: np.ndarray  # float [0, 1]
    fmt: str  # png8 | png16 | tif16 | jpg


CLS_ENCODERS: dict[str, tuple[str, Callable[[np.ndarray], bytes]]] = {
    "png8": (".png", lambda x: png_bytes(q8(x))),
    "jpg": (".jpg", lambda x: jpeg_bytes(q8(x))),
    "png16": (".png", lambda x: png_bytes(q12(x))),
    "tif16": (".tif", lambda x: tiff_bytes(q12(x), compression="zlib")),
}


def make_cls(out: Path, rng: np.random.Generator) -> None:
    fmts = rng.choice(["png8", "png8", "png8", "png8", "jpg", "png16", "png16", "tif16",
                       "tif16", "tif16"], size=CLS_PER_CLASS * len(CLS_CLASSES))
    images = [
        ClsImage(f"img_{i:04d}", kind, draw_cls(kind, rng), str(fmts[i]))
        for i, kind in enumerate(k for k in CLS_CLASSES for _ in range(CLS_PER_CLASS))
    ]
    order = rng.permutation(len(images))
    n_flip = round(CLS_FLIP_FRACTION * len(images))
    flipped = {int(i) for i in order[:n_flip]}
    sources = [int(i) for i in order[n_flip:]]  # clean images the planted files derive from
    planted: Planted = []
    folder = {}
    for i, im in enumerate(images):
        folder[im.name] = im.true
        if i in flipped:
            others = [c for c in CLS_CLASSES if c != im.true]
            folder[im.name] = str(rng.choice(others))
            planted.append(_row(f"{folder[im.name]}/{im.name}{CLS_ENCODERS[im.fmt][0]}",
                                "label_flip", im.true, f"drawn as {im.true}, filed under "
                                f"{folder[im.name]}"))
    for im in images:
        suffix, enc = CLS_ENCODERS[im.fmt]
        write(out / folder[im.name] / f"{im.name}{suffix}", enc(im.pixels))

    def pick(fmt: str) -> ClsImage:
        for j in sources:
            if images[j].fmt == fmt:
                sources.remove(j)
                return images[j]
        raise RuntimeError(fmt)

    def path_of(im: ClsImage) -> str:
        return f"{im.true}/{im.name}{CLS_ENCODERS[im.fmt][0]}"

    # Files that cannot be decoded.
    for fmt, problem, keep in (("png8", "truncated", 0.6), ("jpg", "truncated", 0.7),
                               ("tif16", "truncated", 0.5), ("png16", "zero_byte", 0.0)):
        im = pick(fmt)
        suffix, enc = CLS_ENCODERS[fmt]
        data = enc(im.pixels)
        rel = f"{im.true}/x_{problem}_{fmt}{suffix}"
        write(out / rel, data[: int(len(data) * keep)])
        planted.append(_row(rel, problem, im.true, f"{keep:.0%} of a valid {fmt} file"))
    # Duplicates of every kind.
    im = pick("png8")
    rel = f"{im.true}/x_copy_of_{im.name}.png"
    shutil.copyfile(out / path_of(im), out / rel)
    planted.append(_row(rel, "exact_duplicate", im.true, f"byte copy of {path_of(im)}"))
    im = pick("tif16")
    rel = f"{im.true}/x_png_of_{im.name}.png"
    write(out / rel, png_bytes(q12(im.pixels)))
    planted.append(_row(rel, "cross_format_duplicate", im.true,
                        f"pixels of {path_of(im)} saved as 16-bit PNG"))
    im = pick("png8")
    rel = f"{im.true}/x_near_{im.name}.png"
    near = np.clip(np.roll(im.pixels, 1, axis=1) + rng.normal(0, 0.01, im.pixels.shape), 0, 1)
    write(out / rel, png_bytes(q8(near)))
    planted.append(_row(rel, "near_duplicate", im.true,
                        f"{path_of(im)} shifted 1 px with faint noise"))
    im = pick("png8")
    other = str(rng.choice([c for c in CLS_CLASSES if c != im.true]))
    rel = f"{other}/x_conflict_{im.name}.png"
    shutil.copyfile(out / path_of(im), out / rel)
    planted.append(_row(rel, "conflicting_label_duplicate", im.true,
                        f"byte copy of {path_of(im)} filed under {other}"))
    im = pick("png16")
    rel = f"{im.true}/x_8bit_twin_{im.name}.png"
    write(out / rel, png_bytes((q12(im.pixels) >> 4).astype(np.uint8)))
    planted.append(_row(rel, "bit_depth_twin", im.true,
                        f"8-bit copy (value >> 4) of 12-bit {path_of(im)}"))
    kind = str(rng.choice(CLS_CLASSES))
    rel = f"{kind}/x_blank.png"
    write(out / rel, png_bytes(np.full((CLS_SIZE, CLS_SIZE), 97, np.uint8)))
    planted.append(_row(rel, "blank", "", "constant value 97"))
    write_planted(out / "planted.csv", planted)


# --- segmentation set ----------------------------------------------------------------------


@dataclass
class SegImage:
    name: str
    pixels: np.ndarray
    mask: np.ndarray
    fmt: str  # png8 | png16 | tif16 | tif16p
    mask_fmt: str  # png | pal | tif


SEG_ENCODERS: dict[str, tuple[str, Callable[[np.ndarray], bytes]]] = {
    "png8": (".png", lambda x: png_bytes(q8(x))),
    "png16": (".png", lambda x: png_bytes(q16(x))),
    "tif16": (".tif", lambda x: tiff_bytes(q16(x), compression="zlib")),
    "tif16p": (".tif", lambda x: tiff_bytes(q16(x), planar=True, compression="zlib")),
}
MASK_ENCODERS: dict[str, tuple[str, Callable[[np.ndarray], bytes]]] = {
    "png": (".png", png_bytes),
    "pal": (".png", palette_png_bytes),
    "tif": (".tif", lambda m: tiff_bytes(m.astype(np.uint16), compression="zlib")),
}


def _write_seg(out: Path, name: str, pixels: np.ndarray, mask: np.ndarray, fmt: str,
               mask_fmt: str) -> str:
    suffix, enc = SEG_ENCODERS[fmt]
    write(out / "images" / f"{name}{suffix}", enc(pixels))
    msuffix, menc = MASK_ENCODERS[mask_fmt]
    write(out / "masks" / f"{name}{msuffix}", menc(mask))
    return f"images/{name}{suffix}"


def make_seg(out: Path, rng: np.random.Generator) -> None:
    fmts = rng.choice(["png8", "png8", "png16", "tif16", "tif16p"], size=SEG_IMAGES)
    mask_fmts = rng.choice(["png"] * 8 + ["pal", "tif"], size=SEG_IMAGES)
    images = []
    for i in range(SEG_IMAGES):
        pixels, mask = draw_seg(int(rng.choice(SEG_SIZES)), rng)
        images.append(SegImage(f"img_{i:04d}", pixels, mask, str(fmts[i]), str(mask_fmts[i])))
    order = [int(i) for i in rng.permutation(SEG_IMAGES)]
    planted: Planted = []

    def corrupt(im: SegImage, problem: str) -> np.ndarray:
        m = im.mask
        if problem == "mask_shifted":
            return np.roll(m, (int(rng.integers(6, 11)), int(rng.integers(6, 11))), axis=(0, 1))
        if problem == "mask_eroded":
            eroded = cv2.erode(np.where(m == IGNORE, 0, m), np.ones((7, 7), np.uint8))
            return np.where(m == IGNORE, IGNORE, eroded).astype(np.uint8)
        present = [c for c in (1, 2, 3) if (m == c).any()]
        src = present[0]
        dst = [c for c in (1, 2, 3) if c != src][int(rng.integers(0, 2))]
        return np.where(m == src, dst, m).astype(np.uint8)

    for problem in ("mask_shifted", "mask_eroded", "mask_wrong_class"):
        for _ in range(3):
            im = images[order.pop()]
            bad = corrupt(im, problem)
            planted.append(_row(f"images/{im.name}{SEG_ENCODERS[im.fmt][0]}", problem, "",
                                f"mask {problem.removeprefix('mask_').replace('_', ' ')}; "
                                f"{int((bad != im.mask).sum())} pixels differ"))
            im.mask = bad
    for im in images:
        _write_seg(out, im.name, im.pixels, im.mask, im.fmt, im.mask_fmt)

    def pick(fmt: str) -> SegImage:
        for j in order:
            if images[j].fmt == fmt:
                order.remove(j)
                return images[j]
        raise RuntimeError(fmt)

    im = pick("png8")
    rel = _write_seg(out, "x_truncated", im.pixels, im.mask, "png8", "png")
    data = (out / rel).read_bytes()
    (out / rel).write_bytes(data[: len(data) // 2])
    planted.append(_row(rel, "truncated", "", "50% of a valid 8-bit PNG"))
    im = pick("tif16")
    rel = _write_seg(out, "x_zero_byte", im.pixels, im.mask, "tif16", "png")
    (out / rel).write_bytes(b"")
    planted.append(_row(rel, "zero_byte", "", "empty TIFF; its mask is fine"))
    im = pick("png8")
    rel = _write_seg(out, f"x_copy_of_{im.name}", im.pixels, im.mask, "png8", "png")
    planted.append(_row(rel, "exact_duplicate", "", f"same bytes as images/{im.name}.png"))
    im = pick("png16")
    rel = _write_seg(out, f"x_tif_of_{im.name}", im.pixels, im.mask, "tif16", "png")
    planted.append(_row(rel, "cross_format_duplicate", "",
                        f"pixels of images/{im.name}.png saved as uint16 TIFF"))
    im = pick("png8")
    near = np.clip(im.pixels * 1.03 + rng.normal(0, 0.005, im.pixels.shape), 0, 1)
    rel = _write_seg(out, f"x_near_{im.name}", near, im.mask, "png8", "png")
    planted.append(_row(rel, "near_duplicate", "", f"images/{im.name}.png 3% brighter + noise"))
    im = pick("png8")
    cycled = np.where((im.mask > 0) & (im.mask != IGNORE), im.mask % 3 + 1, im.mask)
    rel = _write_seg(out, f"x_conflict_{im.name}", im.pixels, cycled.astype(np.uint8), "png8", "png")
    planted.append(_row(rel, "conflicting_label_duplicate", "",
                        f"pixels of images/{im.name}.png; classes cycled 1->2->3->1 in its mask"))
    # Fresh scenes, so each of these files has exactly one problem (no duplicate as well).
    pixels, mask = draw_seg(96, rng)
    small = cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0]), interpolation=cv2.INTER_NEAREST)
    rel = _write_seg(out, "x_wrong_size_mask", pixels, small, "png8", "png")
    planted.append(_row(rel, "wrong_size_mask", "",
                        f"image {mask.shape[1]}x{mask.shape[0]}, mask "
                        f"{small.shape[1]}x{small.shape[0]}"))
    pixels, mask = draw_seg(96, rng)
    bad_value = mask.copy()
    bad_value[:8, :8] = 7
    rel = _write_seg(out, "x_bad_mask_value", pixels, bad_value, "png8", "png")
    planted.append(_row(rel, "bad_mask_value", "", "8x8 corner of value 7 (classes are 0-3)"))
    rel = _write_seg(out, "x_blank", np.full((96, 96, 3), 0.4), np.zeros((96, 96), np.uint8),
                     "png8", "png")
    planted.append(_row(rel, "blank", "", "constant RGB 102"))
    im = pick("tif16")
    rel = _write_seg(out, f"x_8bit_twin_{im.name}", im.pixels, im.mask, "png8", "png")
    write(out / rel, png_bytes((q16(im.pixels) >> 8).astype(np.uint8)))
    planted.append(_row(rel, "bit_depth_twin", "",
                        f"8-bit copy (value >> 8) of 16-bit images/{im.name}.tif"))
    write_planted(out / "planted.csv", planted)


def _row(image: str, problem: str, true_label: str, detail: str) -> dict[str, str]:
    return {"image": image, "problem": problem, "true_label": true_label, "detail": detail}


def generate(out: Path, seed: int = 2026) -> None:
    """Write ``out/shapes_cls`` and ``out/shapes_seg`` (replacing them) from ``seed``."""
    for name, make, offset in (("shapes_cls", make_cls, 0), ("shapes_seg", make_seg, 1)):
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        make(target, np.random.default_rng([seed, offset]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    generate(args.out, args.seed)


if __name__ == "__main__":
    main()
