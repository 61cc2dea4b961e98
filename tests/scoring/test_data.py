"""Scoring inputs: mask values -> class indices, nearest resizing, in-memory == streamed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from datapipe.data import ImageSpec, MaskSpec, SampleSpec, load_mask
from datapipe.scoring.data import InMemory, Streaming, make_source


def test_mask_values_map_to_class_indices_and_unknown_values_are_ignored(tmp_path: Path) -> None:
    spec = MaskSpec(class_values=[0, 128, 200], ignore_index=255)
    mask = np.array([[0, 128, 200], [255, 7, 128]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out = load_mask("m.png", spec, tmp_path, size=3)[:2]  # 2x3 -> 3x3 nearest; rows 0..1
    assert out.dtype == np.int16
    assert set(np.unique(load_mask("m.png", spec, tmp_path, size=7)).tolist()) <= {0, 1, 2, 255}
    np.testing.assert_array_equal(out[0], [0, 1, 2])
    assert spec.lut[7] == 255 and spec.lut[255] == 255


def _write_set(root: Path, n: int) -> list[tuple[str, str | None]]:
    rng = np.random.default_rng(0)
    items: list[tuple[str, str | None]] = []
    for i in range(n):
        cv2.imwrite(str(root / f"i{i}.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
        cv2.imwrite(str(root / f"m{i}.png"), rng.integers(0, 3, (20, 30), dtype=np.uint8))
        items.append((f"i{i}.png", f"m{i}.png"))
    return items


def test_streamed_batches_equal_in_memory_batches(tmp_path: Path) -> None:
    items = _write_set(tmp_path, 7)
    spec = SampleSpec(
        image=ImageSpec(tmp_path, {"uint8": 8}, (0.5, 99.5), [0.5] * 3, [0.25] * 3, size=16),
        mask=MaskSpec(class_values=[0, 1, 2], ignore_index=255),
    )
    labels = np.zeros(7, np.int64)
    memory = make_source(items, spec, labels, workers=0, max_bytes=2**30, desc="t")
    stream = make_source(items, spec, labels, workers=0, max_bytes=1, desc="t")
    assert isinstance(memory, InMemory) and isinstance(stream, Streaming)
    order = [np.array([3, 0, 6]), np.array([1, 2, 4, 5])]
    for (i_m, x_m, y_m), (i_s, x_s, y_s) in zip(
        memory.batches(order), stream.batches(order), strict=True
    ):
        np.testing.assert_array_equal(i_m, i_s)
        assert x_m.shape == (len(i_m), 3, 16, 16) and y_m.shape == (len(i_m), 16, 16)
        assert np.array_equal(x_m.numpy(), x_s.numpy()) and np.array_equal(y_m.numpy(), y_s.numpy())
    # normalised with the given mean / std: pixel 255 -> (1 - 0.5) / 0.25 = 2
    assert float(memory.images.float().max()) <= 2.0 + 1e-3
