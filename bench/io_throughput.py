"""Decode throughput of ``datapipe.io.read_image`` vs the raw libraries, side by side.

    .venv/bin/python bench/io_throughput.py [--files 40] [--rounds 5]

For each format, the same files (in the page cache) are decoded by ``read_image``, by the
library it wraps called directly (tifffile.imread for TIFF, cv2.imread(IMREAD_UNCHANGED) for
PNG/JPEG, which returns BGR), and by Pillow for comparison. Rounds alternate the order of the
readers; rates are images per CPU-second of the process (a shared machine's wall clock is
noisy), medians over rounds; the ratio is the median of per-round ratios; one thread.
Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._synth import scene
from datapipe.io import read_image

Reader = Callable[[Path], np.ndarray]


def _tiff(bits: int, **kwargs: object) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, x: np.ndarray) -> None:
        arr = np.round(x * (2**bits - 1)).astype(np.uint16)
        tifffile.imwrite(path, arr[..., 0] if arr.shape[2] == 1 else arr, **kwargs)  # type: ignore[arg-type]

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
    raw: str  # the library read_image wraps for this format


CASES = [
    Case("TIFF uint16 1-ch 512²", ".tif", 512, 1, _tiff(12), "tifffile"),
    Case("TIFF uint16 1-ch 2048²", ".tif", 2048, 1, _tiff(12), "tifffile"),
    Case(
        "TIFF uint16 1-ch 512² Deflate", ".tif", 512, 1, _tiff(12, compression="zlib"), "tifffile"
    ),
    Case("TIFF uint16 3-ch 512²", ".tif", 512, 3, _tiff(16, photometric="rgb"), "tifffile"),
    Case("PNG 16-bit 1-ch 512²", ".png", 512, 1, _cv2(np.uint16), "cv2"),
    Case("PNG 8-bit RGB 512²", ".png", 512, 3, _cv2(np.uint8), "cv2"),
    Case("JPEG RGB 512²", ".jpg", 512, 3, _cv2(np.uint8, cv2.IMWRITE_JPEG_QUALITY, 90), "cv2"),
]

RAW: dict[str, Reader] = {
    "tifffile": lambda p: tifffile.imread(p),
    "cv2": lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED),
}


def _pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _rate(reader: Reader, files: list[Path]) -> float:
    """Images per CPU-second of this process (steadier than wall time on a shared machine)."""
    start = time.process_time()
    for f in files:
        reader(f)
    return len(files) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40, help="files per format (2048²: 1/4)")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    print(
        "| format | files | MB/file | read_image img/s | MB/s | raw library img/s | ratio | "
        "PIL img/s | PIL keeps dtype |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            name, raw_name = case.name, case.raw
            n = args.files if case.size <= 512 else max(4, args.files // 4)
            files = []
            for i in range(n):
                path = Path(tmp) / f"{i}_{name.replace(' ', '_')}{case.suffix}"
                case.write(path, scene(rng, case.size, case.channels))
                files.append(path)
            mb = sum(f.stat().st_size for f in files) / n / 1e6
            ours = read_image(files[0])
            raw = RAW[raw_name](files[0])
            assert ours.dtype == raw.dtype and ours.size == raw.size, name
            pil_img = _pil(files[0])
            readers: dict[str, Reader] = {"ours": read_image, "raw": RAW[raw_name], "pil": _pil}
            rates: dict[str, list[float]] = {k: [] for k in readers}
            for reader in readers.values():  # warm the page cache and the code paths
                _rate(reader, files[:2])
            for r in range(args.rounds):  # alternate the order: drift hits both sides alike
                for key in list(readers)[:: 1 if r % 2 else -1]:
                    rates[key].append(_rate(readers[key], files))
            med = {k: statistics.median(v) for k, v in rates.items()}
            pil_keeps = "yes" if pil_img.dtype == ours.dtype else f"no ({pil_img.dtype})"
            ratio = statistics.median(
                o / w for o, w in zip(rates["ours"], rates["raw"], strict=True)
            )
            print(
                f"| {name} | {n} | {mb:.2f} | {med['ours']:.0f} | {med['ours'] * mb:.0f} | "
                f"{med['raw']:.0f} ({raw_name}) | {ratio:.2f}x | "
                f"{med['pil']:.0f} | {pil_keeps} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
