"""Decode throughput of ``datapipe.io.read_image`` vs every decoder that could replace it.

    .venv/bin/python bench/io_throughput.py [--files 20] [--rounds 7]

For each format the same files (in the page cache) are decoded by ``read_image`` and, called
directly, by imagecodecs (``tiff_decode`` = libtiff, ``png_decode``, ``jpeg8_decode``), OpenCV
(``imread``: 3-channel files straight to RGB, the rest ``IMREAD_UNCHANGED``), tifffile
(``imread``) and Pillow. "exact" says whether a decoder returns read_image's array bit for bit
(same dtype, same values, same (H, W, C) up to a missing channel axis for grey); a decoder that
cannot read the file is "n/a". Rounds alternate the readers' order; rates are images per
CPU-second of this process (a shared machine's wall clock is noisy), medians over rounds; one
thread. The ratio is the median over rounds of read_image's rate / the fastest exact decoder's
rate in that round: ratios measured interleaved survive a loaded machine, absolute rates do not.
Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # cv2 cannot read zstd TIFF: no log spam
import cv2
import imagecodecs
import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._synth import scene
from datapipe.io import read_image

Reader = Callable[[Path], np.ndarray | None]


def _tiff(**kwargs: object) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, x: np.ndarray) -> None:
        arr = np.round(x * 4095).astype(np.uint16)  # 12-bit data, as microscopes write
        photometric = "rgb" if arr.shape[2] == 3 else "minisblack"
        data = arr[..., 0] if arr.shape[2] == 1 else arr
        tifffile.imwrite(path, data, photometric=photometric, **kwargs)  # type: ignore[arg-type]

    return write


def _cv2(dtype: type, *params: int) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, x: np.ndarray) -> None:
        arr = np.round(x * np.iinfo(dtype).max).astype(dtype)
        cv2.imwrite(str(path), arr[..., ::-1] if arr.shape[2] == 3 else arr[..., 0], list(params))

    return write


@dataclass(frozen=True)
class Case:
    name: str
    suffix: str
    size: int
    channels: int
    write: Callable[[Path, np.ndarray], None]


CASES = [
    Case("TIFF u16 1-ch 512²", ".tif", 512, 1, _tiff()),
    Case("TIFF u16 1-ch 512² LZW", ".tif", 512, 1, _tiff(compression="lzw")),
    Case("TIFF u16 1-ch 512² Deflate", ".tif", 512, 1, _tiff(compression="zlib")),
    Case("TIFF u16 1-ch 512² zstd", ".tif", 512, 1, _tiff(compression="zstd")),
    Case("TIFF u16 3-ch 512²", ".tif", 512, 3, _tiff()),
    Case("TIFF u16 1-ch 2048²", ".tif", 2048, 1, _tiff()),
    Case("TIFF u16 1-ch 2048² LZW", ".tif", 2048, 1, _tiff(compression="lzw")),
    Case("TIFF u16 1-ch 2048² zstd", ".tif", 2048, 1, _tiff(compression="zstd")),
    Case("PNG 8-bit RGB 512²", ".png", 512, 3, _cv2(np.uint8)),
    Case("PNG 16-bit 1-ch 512²", ".png", 512, 1, _cv2(np.uint16)),
    Case("JPEG RGB 512² q90", ".jpg", 512, 3, _cv2(np.uint8, cv2.IMWRITE_JPEG_QUALITY, 90)),
]


def _imagecodecs(path: Path) -> np.ndarray:
    decode = {".tif": imagecodecs.tiff_decode, ".png": imagecodecs.png_decode}
    return decode.get(path.suffix, imagecodecs.jpeg8_decode)(path.read_bytes())


def _cv2_read(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is not None and img.ndim == 3 and img.shape[2] == 3:  # ask for RGB: a fair race
        return cv2.imread(str(path), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH)
    return img


def _tifffile(path: Path) -> np.ndarray | None:
    return tifffile.imread(path) if path.suffix == ".tif" else None


def _pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


READERS: dict[str, Reader] = {
    "read_image": read_image,
    "imagecodecs": _imagecodecs,
    "cv2": _cv2_read,
    "tifffile": _tifffile,
    "PIL": _pil,
}


def _exact(reader: Reader, path: Path, ref: np.ndarray) -> str:
    """``yes``, ``no (why)`` or ``n/a`` (the reader cannot decode this file)."""
    try:
        out = reader(path)
    except Exception:
        return "n/a"
    if out is None:
        return "n/a"
    if out.dtype != ref.dtype:
        return f"no ({out.dtype})"
    if out.shape != ref.shape and out.shape != ref.shape[:2]:
        return f"no ({'x'.join(map(str, out.shape))})"
    if not np.array_equal(out.reshape(ref.shape), ref):
        return "no (BGR)" if np.array_equal(out.reshape(ref.shape)[..., ::-1], ref) else "no"
    return "yes"


def _rate(reader: Reader, files: list[Path]) -> float:
    """Images per CPU-second of this process (steadier than wall time on a shared machine)."""
    start = time.process_time()
    for f in files:
        reader(f)
    return len(files) / max(time.process_time() - start, 1e-9)


def _row(case: Case, files: list[Path], rounds: int) -> str:
    ref = read_image(files[0])
    exact = {k: _exact(r, files[0], ref) for k, r in READERS.items() if k != "read_image"}
    racing = ["read_image"] + [k for k, e in exact.items() if e != "n/a"]
    rates: dict[str, list[float]] = {k: [] for k in racing}
    for key in racing:  # warm the page cache and the code paths
        _rate(READERS[key], files[:2])
    for r in range(rounds):  # alternate the order: drift hits every reader alike
        for key in racing[:: 1 if r % 2 else -1]:
            rates[key].append(_rate(READERS[key], files))
    med = {k: statistics.median(v) for k, v in rates.items()}
    rivals = [k for k in racing[1:] if exact[k] == "yes"]
    best = max(rivals, key=med.__getitem__)
    ratio = statistics.median(o / w for o, w in zip(rates["read_image"], rates[best], strict=True))
    mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
    cells = [
        f"{med[k]:.0f} | {exact[k]}" if k in med else f"– | {exact[k]}" for k in list(READERS)[1:]
    ]
    return (
        f"| {case.name} | {len(files)} | {mb:.2f} | {med['read_image']:.0f} | "
        f"{' | '.join(cells)} | {ratio:.2f}x ({best}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20, help="files per format (2048²: 1/4)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    others = list(READERS)[1:]
    print(
        "| format | files | MB/file | read_image img/s | "
        + " | ".join(f"{k} img/s | exact" for k in others)
        + " | read_image / fastest exact |"
    )
    print("|---" * (5 + 2 * len(others)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            n = args.files if case.size <= 512 else max(4, args.files // 4)
            files = []
            for i in range(n):
                path = Path(tmp) / f"{i}_{case.name.replace(' ', '_')}{case.suffix}"
                case.write(path, scene(rng, case.size, case.channels))
                files.append(path)
            print(_row(case, files, args.rounds), flush=True)


if __name__ == "__main__":
    main()
