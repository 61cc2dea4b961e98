"""Each fold's held-out detector predictions on disk: written when the fold ends, so they never
share memory with the next fold's training, and a killed score run resumes at its first
unfinished fold (no torch: a fold's file is a plain table)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapipe.io import atomic_path
from datapipe.scoring.detection import Boxes
from datapipe.scoring.masks import RleMasks

log = logging.getLogger("datapipe")


@dataclass(frozen=True)
class HeldOutStore:
    """``directory/held_out.fold<k>.parquet``: one row per predicted box (``image``, the
    position in the scored images; ``x0 y0 x1 y1``; ``label``; ``score``; for instance masks
    the COCO RLE ``counts`` and its ``height`` / ``width``), and in the file's metadata the
    fold's held-out positions (images without predictions included) and ``fingerprint``, the
    inputs and settings the predictions are valid for."""

    directory: Path
    fingerprint: str

    def path(self, fold: int) -> Path:
        return self.directory / f"held_out.fold{fold}.parquet"

    def save(self, fold: int, held: np.ndarray, found: Sequence[Boxes]) -> Path:
        """Write fold ``fold``'s predictions ``found[j]`` of image ``held[j]``, atomically."""
        if len(held) != len(found):
            raise ValueError(f"expected one prediction per held-out image; got {len(found)}")
        boxes = _cat([f.boxes.reshape(-1, 4) for f in found], np.float32).reshape(-1, 4)
        columns: dict[str, pa.Array | np.ndarray] = {
            "image": np.repeat(np.asarray(held, np.int64), [len(f.boxes) for f in found]),
            **{k: boxes[:, j] for j, k in enumerate(("x0", "y0", "x1", "y1"))},
            "label": _cat([f.labels for f in found], np.int64),
            "score": _cat([f.confidences() for f in found], np.float32),
        }
        shapes = {int(i): _mask_shape(f) for i, f in zip(held, found, strict=True)}
        if any(s is not None for s in shapes.values()):
            rles = [r for f in found for r in _rles(f)]
            columns["counts"] = pa.array([r["counts"] for r in rles], pa.binary())
        meta = {"fingerprint": self.fingerprint, "fold": fold, "held": [int(i) for i in held],
                "mask_shapes": shapes}  # fmt: skip
        table = pa.table(columns).replace_schema_metadata({"datapipe": json.dumps(meta)})
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(fold)) as tmp:
            pq.write_table(table, tmp)
        return self.path(fold)

    def load(self, fold: int) -> dict[int, Boxes] | None:
        """Fold ``fold``'s predictions by image position, or None when the file is missing,
        damaged or written for other inputs (the fold is trained again)."""
        try:
            table = pq.read_table(self.path(fold))
            meta = json.loads(table.schema.metadata[b"datapipe"])
        except Exception:  # missing, damaged, or not ours
            return None
        if meta.get("fingerprint") != self.fingerprint or meta.get("fold") != fold:
            return None
        frame = table.to_pandas()
        by_image = dict(tuple(frame.groupby("image", sort=False)))
        out = {}
        for i in meta["held"]:
            rows = by_image.get(i)
            shape = meta["mask_shapes"][str(i)]
            if rows is None:
                out[i] = Boxes.empty()
                if shape is not None:
                    out[i] = Boxes(out[i].boxes, out[i].labels, out[i].scores,
                                   RleMasks((), *shape))  # fmt: skip
                continue
            masks = None if shape is None else RleMasks(
                tuple({"size": list(shape), "counts": c} for c in rows["counts"]), *shape
            )  # fmt: skip
            out[i] = Boxes(rows[["x0", "y0", "x1", "y1"]].to_numpy(np.float32),
                           rows["label"].to_numpy(np.int64), rows["score"].to_numpy(np.float32),
                           masks)  # fmt: skip
        log.info("fold %d: held-out predictions read back from %s", fold, self.path(fold))
        return out

    def clear(self) -> None:
        for path in self.directory.glob("held_out.fold*.parquet"):
            path.unlink(missing_ok=True)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _mask_shape(found: Boxes) -> list[int] | None:
    return None if found.masks is None else [int(found.masks.shape[1]), int(found.masks.shape[2])]


def _rles(found: Boxes) -> tuple[dict, ...]:
    if found.masks is None:
        raise ValueError("every image of a fold needs masks once one has them")
    if isinstance(found.masks, RleMasks):
        return found.masks.rles
    return RleMasks.encode(found.masks).rles
