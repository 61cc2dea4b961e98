"""A synthetic run folder for report tests: images on disk plus every table the report
reads, with known numbers of flagged samples, label issues and hard examples.

``task="detection"`` adds objects.parquet (three boxes per image at known places, the third
with an instance polygon), per-object label issues (wrong class, mislocated, missing in
turn), object hard examples and curated_objects.parquet (:func:`_detection_part`)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from datapipe.config import ReportParams
from datapipe.report.history import key_numbers
from datapipe.report.html import build_report
from datapipe.report.inputs import load_inputs
from datapipe.report.thumbnails import thumbnailer
from datapipe.runs import RunFiles


@dataclass(frozen=True)
class SyntheticRun:
    root: Path  # the data root (images, masks)
    run: Path  # runs/<name>
    name: str
    task: str
    classes: list[str]
    flagged: int  # samples in data_issues
    label_issues: int
    hard_per_class: int  # hard examples per class and role
    groups: int  # duplicate groups

    @property
    def files(self) -> RunFiles:
        return RunFiles.under(self.run)


def texture(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """Smooth blobs plus noise in [0, 1]: compresses like a real photograph or micrograph,
    not like flat synthetic shapes (which would understate a report's size)."""
    coarse = rng.random((max(2, size // 8), max(2, size // 8), channels)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    smooth = smooth.reshape(size, size, channels)
    noisy = 0.8 * smooth + 0.2 * rng.random((size, size, channels), dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0)


def make_run(
    base: Path,
    *,
    task: str = "classification",
    n: int = 40,
    n_classes: int = 3,
    flagged: int = 6,
    label_issues: int = 5,
    hard_per_class: int = 4,
    groups: int = 2,
    pool: int | None = None,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    flat: bool = False,
) -> SyntheticRun:
    """Write a run: ``n`` samples whose images cycle through ``pool`` distinct files (all
    distinct by default); even files are dim 12-bit data in uint16, odd ones uint8
    (``flat``: every file uint8 grey 100, so drawn colours can be read back exactly)."""
    rng = np.random.default_rng(seed)
    name = "synth"
    root, run = base / "data", base / "runs" / name
    (root / "img").mkdir(parents=True)
    (run / "reports").mkdir(parents=True)
    (run / "metrics").mkdir()
    classes = [f"c{k}" for k in range(n_classes)]
    pool = pool or n
    for f in range(pool):
        unit = texture(rng, size, channels)
        pixels = (unit * 4000).astype(np.uint16) if f % 2 == 0 else (unit * 255).astype(np.uint8)
        if flat:
            pixels = np.full((size, size, channels), FLAT_GREY, np.uint8)
        cv2.imwrite(str(root / "img" / f"{f:05d}.png"), pixels[..., ::-1])
    ids = [f"s{i:05d}" for i in range(n)]
    manifest = pd.DataFrame(
        {
            "sample_id": ids,
            "image": [f"img/{i % pool:05d}.png" for i in range(n)],
            "split": [("train", "val", "test")[min(i % 10, 8) // 4] for i in range(n)],
            "fold": [i % 5 for i in range(n)],
            "height": size,
            "width": size,
            "channels": channels,
            "dtype": ["uint16" if (i % pool) % 2 == 0 else "uint8" for i in range(n)],
            "max_value": [4000.0 if (i % pool) % 2 == 0 else 255.0 for i in range(n)],
            "excluded": False,
            "exclude_reason": "",
        }
    )
    if task == "segmentation":
        (root / "mask").mkdir()
        for f in range(pool):
            mask = np.zeros((size, size), np.uint8)
            k = 1 + f % (n_classes - 1)
            mask[size // 4 : size // 2, size // 4 : 3 * size // 4] = k
            mask[:2] = 255
            cv2.imwrite(str(root / "mask" / f"{f:05d}.png"), mask)
        manifest["mask"] = [f"mask/{i % pool:05d}.png" for i in range(n)]
        manifest["mask_classes"] = [[0, 1 + (i % pool) % (n_classes - 1)] for i in range(n)]
    elif task == "classification":
        manifest["label"] = [classes[i % n_classes] for i in range(n)]
    manifest.to_parquet(run / "clean_manifest.parquet")
    quality = np.where(np.arange(n) < flagged + label_issues, 0.05, 0.95)  # tenths 0 and 9
    pd.DataFrame({"sample_id": ids, "label_quality": quality}).to_parquet(run / "scores.parquet")
    stats = {
        "dataset": name, "task": task, "root": str(root), "layout": "folders", "samples": n,
        "readable": n, "read_errors": 0, "channels": channels, "classes": classes,
        "class_values": list(range(n_classes)), "bit_depth": {"uint16": 12, "uint8": 8},
        "mean": [0.5] * channels, "std": [0.25] * channels,
    }  # fmt: skip
    (run / "stats.json").write_text(json.dumps(stats))
    _issues(manifest, flagged, groups).to_csv(run / "reports" / "data_issues.csv", index=False)
    labelled = manifest.iloc[flagged : flagged + label_issues]
    issues = pd.DataFrame(
        {
            "sample_id": labelled["sample_id"],
            "image": labelled["image"],
            "given_label": [classes[0]] * len(labelled),
            "suggested_label": [classes[1]] * len(labelled),
            "label_quality": np.linspace(0.01, 0.3, len(labelled)),
            "reasons": "model_disagrees",
        }
    )
    if task == "segmentation":
        (run / "issue_maps").mkdir()
        for sid in labelled["sample_id"]:
            issue_map = np.zeros((size, size), np.uint8)
            issue_map[: size // 2, : size // 2] = 255
            issue_map[-2:] = 128
            cv2.imwrite(str(run / "issue_maps" / f"{sid}.png"), issue_map)
        issues["issue_fraction"] = 0.25
    issues.to_csv(run / "reports" / "label_issues.csv", index=False)
    _hard(manifest, classes, hard_per_class).to_csv(
        run / "reports" / "hard_examples.csv", index=False
    )
    pd.DataFrame(
        {"sample_id": ids, "action": "keep", "final_label": manifest.get("label")}
    ).to_parquet(run / "curated.parquet")
    pd.DataFrame({"class": classes, "keep": 1, "relabel": 0, "total": 1}).to_csv(
        run / "reports" / "curation_summary.csv", index=False
    )
    for metric, values in {
        "clean": {"samples": n, "flagged_samples": flagged, "by_check": {"dark": flagged}},
        "score": {"label_issues": label_issues, "oof_accuracy": 0.9},
        "curate": {"keep": n, "relabel": 0},
    }.items():
        (run / "metrics" / f"{metric}.json").write_text(json.dumps(values))
    if task == "detection":
        _detection_part(run, manifest, classes, size, flagged, label_issues, hard_per_class)
    return SyntheticRun(
        root=root, run=run, name=name, task=task, classes=classes, flagged=flagged,
        label_issues=label_issues, hard_per_class=hard_per_class, groups=groups,
    )  # fmt: skip


def _issues(manifest: pd.DataFrame, flagged: int, groups: int) -> pd.DataFrame:
    """One 'dark' row per flagged sample; the first also 'blank' (two rows, one card);
    pairs of the last ``2 * groups`` flagged samples are near-duplicate groups."""
    rows = []
    for i in range(flagged):
        sid, image = manifest.at[i, "sample_id"], manifest.at[i, "image"]
        rows.append((sid, image, "dark", "warning", 0.2, "darker than most", None))
        if i == 0:
            rows.append((sid, image, "blank", "error", 0.0, "every pixel is 0.5", None))
        if i >= flagged - 2 * groups:
            group = (i - (flagged - 2 * groups)) // 2
            rows.append((sid, image, "near_duplicate", "warning", 0.4, "looks alike", group))
    return pd.DataFrame(
        rows, columns=["sample_id", "image", "check", "severity", "score", "detail", "group"]
    )


def _hard(manifest: pd.DataFrame, classes: list[str], per: int) -> pd.DataFrame:
    rows = []
    n = len(manifest)
    for k, name in enumerate(classes):
        for role in ("positive", "negative"):
            for j in range(per):
                i = (k * 2 * per + (role == "negative") * per + j) % n
                sid, image = manifest.at[i, "sample_id"], manifest.at[i, "image"]
                rows.append((sid, image, name, role, "hard", 3.0 - j * 0.1, 0.05))
            i = (k + 1) % n
            easy = (manifest.at[i, "sample_id"], manifest.at[i, "image"], name, role, "easy")
            rows.append((*easy, 0.01, 0.99))
    return pd.DataFrame(
        rows, columns=["sample_id", "image", "class", "role", "difficulty", "loss", "prob"]
    )


FLAT_GREY = 100
#: The three objects of every detection image, as shares of its side: (x0, y0, x1, y1).
OBJECT_PLACES = ((0.125, 0.125, 0.375, 0.375), (0.625, 0.125, 0.875, 0.375),
                 (0.125, 0.625, 0.375, 0.875))  # fmt: skip
ISSUE_CYCLE = ("wrong_class", "mislocated", "missing")
NEGATIVE_KINDS = ("background", "wrong_class", "duplicate")


def object_box(i: int, j: int, size: int) -> list[float]:
    """The pixel box of object ``j`` of image ``i`` (object id ``3 * i + j``)."""
    return [share * size for share in OBJECT_PLACES[j]]


def _detection_part(
    run: Path, manifest: pd.DataFrame, classes: list[str], size: int, flagged: int,
    label_issues: int, hard_per_class: int,
) -> None:  # fmt: skip
    """The object tables of a detection run (see the module docstring); replaces the
    image-level label issues and hard examples, and makes the 'dark' checks object checks."""
    rows = []
    for i, (sid, image) in enumerate(zip(manifest["sample_id"], manifest["image"], strict=True)):
        for j in range(3):
            x0, y0, x1, y1 = object_box(i, j, size)
            polygon = json.dumps([[x0, y0, x1, y0, (x0 + x1) / 2, y1]]) if j == 2 else ""
            rows.append({"sample_id": sid, "image": image, "object_id": str(3 * i + j),
                         "class": classes[j % len(classes)], "class_id": j % len(classes),
                         "x0": x0, "y0": y0, "x1": x1, "y1": y1, "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": False, "difficult": False, "instance_mask": polygon,
                         "relative": False, "problem": ""})  # fmt: skip
    objects = pd.DataFrame(rows)
    objects.to_parquet(run / "objects.parquet")
    _object_label_issues(manifest, classes, size, flagged, label_issues).to_csv(
        run / "reports" / "label_issues.csv", index=False
    )
    _object_hard(objects, classes, hard_per_class).to_csv(
        run / "reports" / "hard_examples.csv", index=False
    )
    issues = pd.read_csv(run / "reports" / "data_issues.csv", dtype={"sample_id": str})
    dark = issues["check"] == "dark"
    index = manifest.reset_index().set_index("sample_id")["index"]
    issues["object_id"] = np.where(dark, (3 * issues["sample_id"].map(index)).astype(str), "")
    issues.loc[dark, "check"] = "box_clipped"
    issues.to_csv(run / "reports" / "data_issues.csv", index=False)
    curated = objects[["sample_id", "image", "object_id"]].assign(
        given_class=objects["class"], action="keep", final_class=objects["class"],
        x0=objects["x0"], y0=objects["y0"], x1=objects["x1"], y1=objects["y1"],
        source="policy", reason="",
    )  # fmt: skip
    curated.to_parquet(run / "curated_objects.parquet")
    by_split = {
        split: {c: 3 * int((manifest["split"] == split).sum()) // len(classes) for c in classes}
        for split in ("train", "val", "test")
    }
    stats = json.loads((run / "stats.json").read_text())
    stats |= {
        "layout": "coco",
        "object_counts_by_split": by_split,
        "object_counts": {c: sum(s[c] for s in by_split.values()) for c in classes},
    }
    (run / "stats.json").write_text(json.dumps(stats))
    score = {
        "label_issues": label_issues,
        "oof_map": 0.4,
        "oof_map_50": 0.7,
        "oof_map_large": None,
        "oof_map_per_class": {c: 0.1 * (k + 1) for k, c in enumerate(classes)},
    }
    (run / "metrics" / "score.json").write_text(json.dumps(score))


def _object_label_issues(
    manifest: pd.DataFrame, classes: list[str], size: int, flagged: int, n: int
) -> pd.DataFrame:
    """``n`` rows on the images after the flagged ones, issue kinds in turn (wrong_class on
    object 0, mislocated on object 1 with a box shifted down by a quarter of the side, a
    missing box in the empty bottom-right corner), box scores falling down the file so
    'worst first' reverses it."""
    rows = []
    for r in range(n):
        i = flagged + r
        sid, image = manifest.at[i, "sample_id"], manifest.at[i, "image"]
        kind = ISSUE_CYCLE[r % 3]
        j = {"wrong_class": 0, "mislocated": 1, "missing": -1}[kind]
        given = object_box(i, j, size) if j >= 0 else None
        suggested = {
            "wrong_class": None,
            "mislocated": [v + (size / 4 if k % 2 == 1 else 0) for k, v in enumerate(given or [])],
            "missing": [0.625 * size, 0.625 * size, 0.875 * size, 0.875 * size],
        }[kind]
        rows.append({
            "sample_id": sid, "image": image, "object_id": str(3 * i + j) if j >= 0 else "",
            "issue": kind, "given_class": classes[j % len(classes)] if j >= 0 else "",
            "given_box": json.dumps(given) if given else "",
            "suggested_class": {"wrong_class": classes[1], "mislocated": "",
                                "missing": classes[2 % len(classes)]}[kind],
            "suggested_box": json.dumps(suggested) if suggested else "",
            "box_score": 0.01 + 0.02 * (n - 1 - r), "label_quality": 0.3,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _object_hard(objects: pd.DataFrame, classes: list[str], per: int) -> pd.DataFrame:
    """Per class: ``per`` hard positives (its objects, the first missed), ``per`` hard
    negatives (no object id, kinds in turn) and one easy positive."""
    rows = []
    for name in classes:
        mine = objects[objects["class"] == name].reset_index(drop=True)
        for j in range(per):
            o = mine.iloc[j % len(mine)]
            iou, score = (0.0, np.nan) if j == 0 else (0.3, 0.4)
            rows.append((o["sample_id"], o["image"], o["object_id"], name, "hard_positive", "",
                         1.0 - 0.01 * j, iou, score))  # fmt: skip
            o = mine.iloc[(j + 1) % len(mine)]
            rows.append((o["sample_id"], o["image"], "", name, "hard_negative",
                         NEGATIVE_KINDS[j % 3], 0.9 - 0.01 * j, 0.1, 0.9 - 0.01 * j))  # fmt: skip
        o = mine.iloc[0]
        rows.append((o["sample_id"], o["image"], o["object_id"], name, "easy_positive", "",
                     0.05, 0.95, 0.99))  # fmt: skip
    columns = ["sample_id", "image", "object_id", "class", "role", "kind", "difficulty", "iou",
               "score"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def render(sr: SyntheticRun, options: ReportParams | None = None) -> str:
    """The report page of a synthetic run, built the way the stage builds it."""
    options = options or ReportParams()
    inputs = load_inputs(sr.files, name=sr.name)
    thumbs = thumbnailer(
        sr.root, options, issue_maps=sr.files.issue_maps,
        class_values=inputs.stats.class_values if inputs.kind.dense else [],
        objects=inputs.objects, classes=inputs.classes,
    )  # fmt: skip
    return build_report(
        inputs, options=options, thumbs=thumbs, previous=None, numbers=key_numbers(inputs)
    )


class Page(HTMLParser):
    """Element classes, URL-valued attributes and inline text of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.classes: list[set[str]] = []
        self.urls: list[str] = []
        self.imgs: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.classes.append(set((found.get("class") or "").split()))
        for key in ("src", "href", "action", "poster", "data"):
            if found.get(key) is not None:
                self.urls.append(str(found[key]))
        if tag == "img":
            self.imgs.append(str(found.get("src")))

    def count(self, *classes: str) -> int:
        """Elements that carry every one of ``classes``."""
        return sum(set(classes) <= c for c in self.classes)


def decode_uri(uri: str) -> np.ndarray:
    """A data-URI image back to ``(H, W, 3)`` uint8 RGB."""
    header, _, payload = uri.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ValueError(f"expected a base64 image data URI; got {header[:40]!r}")
    bgr = cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


@pytest.fixture
def cls_run(tmp_path: Path) -> SyntheticRun:
    return make_run(tmp_path)


@pytest.fixture
def seg_run(tmp_path: Path) -> SyntheticRun:
    return make_run(tmp_path, task="segmentation", n_classes=3)


@pytest.fixture
def det_run(tmp_path: Path) -> SyntheticRun:
    return make_run(tmp_path, task="detection", n_classes=3, size=64, flat=True)
