"""Object annotations (detection, instance segmentation): COCO JSON, Pascal VOC XML and YOLO
txt, read into one table with one row per annotated object (:data:`OBJECT_COLUMNS`).

Layouts, found like the other tasks' (:func:`detect_object_layout`; two that fit are refused):

* ``coco``: ``annotations.json``, ``instances_*.json`` or ``annotations/instances_*.json``
  under the root (one file); ``file_name`` is relative to the root or to ``images/``. Boxes
  are ``[x, y, w, h]`` in pixels; ``segmentation`` is a polygon list or an RLE (compressed or
  not); ``iscrowd`` is kept.
* ``voc``: one ``.xml`` per image in ``Annotations/``, the image in ``JPEGImages/`` (or
  ``images/``) by ``<filename>``; ``difficult`` is kept as a flag, boxes are 1-based
  inclusive pixel corners (converted to the 0-based, exclusive corners used here).
* ``yolo``: ``images/**`` with ``labels/**`` of the same relative stem (``.txt``), one object
  per line, ``class cx cy w h`` relative to the image size (or a polygon ``class x1 y1 x2 y2
  ...``, YOLO's segmentation format); class names from ``data.yaml`` (``names:``) or
  ``classes.txt``.

Nothing here reads pixels: YOLO's relative coordinates become pixels in
:func:`to_pixels`, once ingest knows each image's size. A file that does not parse at all is
a :class:`~datapipe.errors.ConfigError` naming it (and the line, for JSON); an entry that does
not make sense (an unknown category, a box that is not four numbers, a line of the wrong
length) is a row whose ``problem`` says what and where, so one bad entry never stops a run.
Object ids are stable: the COCO annotation id, ``<xml>#<k>`` or ``<txt>:<line>``.
"""

from __future__ import annotations

import json
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from datapipe.errors import ConfigError
from datapipe.manifest import is_image_name, list_images, sample_id

ObjectLayout = Literal["coco", "voc", "yolo"]
OBJECT_LAYOUTS: tuple[ObjectLayout, ...] = ("coco", "voc", "yolo")
#: objects.parquet: one row per annotated object. Corners are pixels, 0-based, x1/y1 exclusive
#: (``relative`` rows until :func:`to_pixels`); ``instance_mask`` is COCO's segmentation JSON
#: (polygons or RLE) or ""; ``problem`` says why the entry cannot be used as given ("" when it can).
OBJECT_COLUMNS = (
    "sample_id", "image", "object_id", "class", "class_id", "x0", "y0", "x1", "y1", "area",
    "iscrowd", "difficult", "instance_mask", "relative", "problem",
)  # fmt: skip
COCO_NAMES = ("annotations.json",)
VOC_FOLDERS = ("Annotations",)
VOC_IMAGE_FOLDERS = ("JPEGImages", "images")


@dataclass(frozen=True)
class ImageEntry:
    """One image an annotation source lists (or, for YOLO, finds)."""

    image: str  # relative to the root
    width: int | None = None  # as the annotation declares it (COCO, VOC)
    height: int | None = None
    problem: str = ""  # e.g. listed in annotations.json but not on disk


@dataclass(frozen=True)
class Annotations:
    layout: ObjectLayout
    source: str  # the annotation file or folder, relative to the root
    classes: list[str]  # class_id -> name, in the source's order
    images: list[ImageEntry]
    objects: pd.DataFrame  # OBJECT_COLUMNS


# --- layouts ------------------------------------------------------------------------------------


def _coco_files(root: Path) -> list[Path]:
    found = [root / n for n in COCO_NAMES if (root / n).is_file()]
    found += sorted(root.glob("instances_*.json"))
    if (root / "annotations").is_dir():
        found += sorted((root / "annotations").glob("instances_*.json"))
    return found


def _fits(root: Path) -> dict[ObjectLayout, str]:
    """The layouts ``root`` holds, each with the evidence, in words."""
    fits: dict[ObjectLayout, str] = {}
    if files := _coco_files(root):
        fits["coco"] = ", ".join(p.relative_to(root).as_posix() for p in files)
    if (root / "Annotations").is_dir() and any((root / "Annotations").glob("*.xml")):
        fits["voc"] = "Annotations/*.xml"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        fits["yolo"] = "images/ and labels/"
    return fits


def detect_object_layout(root: Path) -> ObjectLayout:
    """The object-annotation layout of ``root``; :class:`ConfigError` when none or two fit."""
    if not root.is_dir():
        raise ConfigError(f"{root}: data root is not a folder")
    fits = _fits(root)
    if len(fits) == 1:
        return next(iter(fits))
    if not fits:
        raise ConfigError(
            f"{root}: no object-annotation layout found: expected annotations.json or "
            "instances_*.json (COCO), Annotations/*.xml (Pascal VOC), or images/ + labels/ "
            "(YOLO)"
        )
    found = "; ".join(f"{k} ({v})" for k, v in fits.items())
    raise ConfigError(f"{root}: ambiguous layout, fits {found}; set layout: to one of them")


def read_annotations(
    root: Path,
    layout: ObjectLayout | Literal["auto"] = "auto",
    *,
    classes: Sequence[str] | None = None,
) -> Annotations:
    """Every image and object of ``root`` (see the module docstring for the layouts).
    ``classes`` (the dataset's ``classes:``) fixes the names and their order for VOC and YOLO;
    names outside it make problem rows."""
    resolved = detect_object_layout(root) if layout == "auto" else layout
    if resolved == "coco":
        files = _coco_files(root)
        if len(files) != 1:
            raise ConfigError(
                f"{root}: expected one COCO annotation file, found "
                f"{[p.relative_to(root).as_posix() for p in files] or 'none'}"
            )
        return _read_coco(root, files[0])
    if resolved == "voc":
        return _read_voc(root, classes)
    if resolved == "yolo":
        return _read_yolo(root, classes)
    raise ConfigError(f"layout: unknown object layout {resolved!r}; expected {OBJECT_LAYOUTS}")


# --- COCO ---------------------------------------------------------------------------------------


def _read_coco(root: Path, path: Path) -> Annotations:
    source = path.relative_to(root).as_posix()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(f"{path}: expected a COCO object with an 'images' list")
    categories = [c for c in data.get("categories", []) if isinstance(c, dict) and "id" in c]
    categories.sort(key=lambda c: c["id"])
    names = [str(c.get("name", c["id"])) for c in categories]
    index = {c["id"]: i for i, c in enumerate(categories)}
    images: list[ImageEntry] = []
    by_id: dict[Any, str] = {}
    for position, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "file_name" not in entry or "id" not in entry:
            where = f"{source} images[{position}]"
            raise ConfigError(f"{where}: expected an object with 'id' and 'file_name'")
    paths = [_coco_image_path(root, str(e["file_name"])) for e in data["images"]]
    # a missing file goes where the others are (under images/ or not): its path reads right
    under_images = sum(p.startswith("images/") for p in paths if (root / p).is_file())
    prefix = "images/" if under_images * 2 > len(paths) else ""
    for entry, image in zip(data["images"], paths, strict=True):
        problem = ""
        if not (root / image).is_file():
            image, problem = prefix + image, f"listed in {source} but not found"
        by_id[entry["id"]] = image
        images.append(
            ImageEntry(image, _int(entry.get("width")), _int(entry.get("height")), problem)
        )
    rows = []
    for position, ann in enumerate(data.get("annotations", [])):
        where = f"{source} annotations[{position}]"
        if not isinstance(ann, dict):
            raise ConfigError(f"{where}: expected an object")
        rows.append(_coco_row(ann, where, by_id, index, names))
    return Annotations("coco", source, names, images, _frame(rows))


def _coco_image_path(root: Path, file_name: str) -> str:
    name = PurePosixPath(file_name.replace("\\", "/")).as_posix().lstrip("/")
    if not (root / name).is_file() and (root / "images" / name).is_file():
        return f"images/{name}"
    return name


def _coco_row(
    ann: Mapping[str, Any],
    where: str,
    by_id: Mapping[Any, str],
    index: Mapping[Any, int],
    names: Sequence[str],
) -> dict[str, Any]:
    image = by_id.get(ann.get("image_id"))
    problems = []
    if image is None:
        problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in images")
    category = ann.get("category_id")
    if category not in index:
        problems.append(f"{where}: unknown category_id {category!r}")
    box = ann.get("bbox")
    corners = _xywh(box)
    if corners is None:
        problems.append(f"{where}: bbox {box!r} is not [x, y, w, h]")
    segmentation = ann.get("segmentation")
    return _row(
        image=image or "", object_id=str(ann.get("id", where)),
        class_id=index.get(category, -1), names=names, corners=corners,
        area=_float(ann.get("area")), iscrowd=bool(ann.get("iscrowd", 0)), difficult=False,
        instance_mask=json.dumps(segmentation) if segmentation else "", relative=False,
        problem="; ".join(problems),
    )  # fmt: skip


# --- Pascal VOC -------------------------------------------------------------------------------


def _read_voc(root: Path, classes: Sequence[str] | None) -> Annotations:
    folder = root / "Annotations"
    images: list[ImageEntry] = []
    parsed: list[tuple[str, str, list[_VocObject]]] = []
    for path in sorted(folder.glob("*.xml")):
        source = path.relative_to(root).as_posix()
        try:
            tree = ET.parse(path)
        except ET.ParseError as exc:
            line, column = exc.position
            raise ConfigError(f"{path}: not XML (line {line}, column {column})") from None
        node = tree.getroot()
        image = _voc_image(root, node.findtext("filename"), path.stem)
        size = node.find("size")
        width = _int(size.findtext("width")) if size is not None else None
        height = _int(size.findtext("height")) if size is not None else None
        problem = "" if (root / image).is_file() else f"{source} names an image that is not found"
        images.append(ImageEntry(image, width, height, problem))
        objects = []
        for k, obj in enumerate(node.findall("object")):
            box = obj.find("bndbox")
            corners = _numbers(
                [
                    box.findtext(t) if box is not None else None
                    for t in ("xmin", "ymin", "xmax", "ymax")
                ]
            )
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append(_VocObject(k, (obj.findtext("name") or "").strip(), corners, difficult))
        parsed.append((source, image, objects))
    names = list(classes) if classes is not None else sorted(
        {o.name for _, _, objs in parsed for o in objs if o.name}
    )  # fmt: skip
    index = {n: i for i, n in enumerate(names)}
    rows = []
    for source, image, objects in parsed:
        for o in objects:
            where = f"{source} object {o.k + 1}"
            problems = []
            if o.name not in index:
                problems.append(f"{where}: class {o.name!r} is not one of {names}")
            pixels: tuple[float, float, float, float] | None = None
            if o.corners is None:
                problems.append(f"{where}: bndbox needs xmin, ymin, xmax, ymax numbers")
            else:  # VOC: 1-based, inclusive -> 0-based, exclusive
                x0, y0, x1, y1 = o.corners
                pixels = (x0 - 1.0, y0 - 1.0, x1, y1)
            rows.append(_row(
                image=image, object_id=f"{source}#{o.k}", class_id=index.get(o.name, -1),
                names=names, corners=pixels, area=None, iscrowd=False, difficult=o.difficult,
                instance_mask="", relative=False, problem="; ".join(problems),
            ))  # fmt: skip
    return Annotations("voc", "Annotations", names, images, _frame(rows))


@dataclass(frozen=True)
class _VocObject:
    k: int
    name: str
    corners: list[float] | None
    difficult: bool


def _voc_image(root: Path, filename: str | None, stem: str) -> str:
    for folder in VOC_IMAGE_FOLDERS:
        if filename and (root / folder / filename).is_file():
            return f"{folder}/{filename}"
        if not filename and (hits := sorted((root / folder).glob(f"{stem}.*"))):
            for hit in hits:
                if is_image_name(hit.name):
                    return hit.relative_to(root).as_posix()
    return f"{VOC_IMAGE_FOLDERS[0]}/{filename or stem}"


# --- YOLO ---------------------------------------------------------------------------------------


def yolo_class_names(root: Path) -> list[str] | None:
    """Class names from ``data.yaml`` (``names:`` list or ``{id: name}``) or ``classes.txt``."""
    if (root / "data.yaml").is_file():
        try:
            data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{root / 'data.yaml'}: not YAML ({exc})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise ConfigError(f"{root / 'data.yaml'}: expected names: a list or {{id: name}}")
    if (root / "classes.txt").is_file():
        lines = (root / "classes.txt").read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return None


def _read_yolo(root: Path, classes: Sequence[str] | None) -> Annotations:
    names = list(classes) if classes is not None else yolo_class_names(root)
    images = [ImageEntry(p.relative_to(root).as_posix()) for p in list_images(root / "images")]
    rows = []
    seen_ids: set[int] = set()
    for entry in images:
        rel = PurePosixPath(entry.image).relative_to("images")
        label = root / "labels" / rel.with_suffix(".txt")
        if not label.is_file():
            continue  # an image without a label file has no objects (reported by clean)
        source = label.relative_to(root).as_posix()
        for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                row = _yolo_row(line, f"{source}:{number}", entry.image, names)
                seen_ids.add(row["class_id"])
                rows.append(row)
    if names is None:  # no names file: the ids are the names
        top = max((i for i in seen_ids if i >= 0), default=-1)
        names = [str(i) for i in range(top + 1)]
        for row in rows:
            row["class"] = str(row["class_id"]) if row["class_id"] >= 0 else ""
    return Annotations("yolo", "labels", names, images, _frame(rows))


def _yolo_row(line: str, where: str, image: str, names: Sequence[str] | None) -> dict[str, Any]:
    parts = line.split()
    values = _numbers(parts[1:])
    class_id = int(parts[0]) if parts[0].isdigit() else -1
    problems = []
    if class_id < 0 or (names is not None and class_id >= len(names)):
        problems.append(
            f"{where}: class {parts[0]!r} is not an index into the {len(names or [])} names"
        )
        class_id = -1
    corners, segmentation = None, ""
    if values is None:
        problems.append(f"{where}: expected numbers, got {line.strip()!r}")
    elif len(values) == 4:
        cx, cy, w, h = values
        corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon, YOLO's segmentation format
        xs, ys = values[0::2], values[1::2]
        corners = (min(xs), min(ys), max(xs), max(ys))
        segmentation = json.dumps([values])
    else:
        problems.append(
            f"{where}: expected 'class cx cy w h' or a polygon, got {len(parts)} values"
        )
    return _row(
        image=image, object_id=where, class_id=class_id, names=names or [], corners=corners,
        area=None, iscrowd=False, difficult=False, instance_mask=segmentation, relative=True,
        problem="; ".join(problems),
    )  # fmt: skip


def to_pixels(objects: pd.DataFrame, sizes: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    """``objects`` with relative rows (YOLO) scaled to pixels by their image's ``(height,
    width)`` (``sizes`` keyed by sample id); rows of an image of unknown size stay relative."""
    out = objects.copy()
    hw = np.array([sizes.get(s, (np.nan, np.nan)) for s in out["sample_id"]], np.float64).reshape(
        -1, 2
    )
    scale = out["relative"].to_numpy(bool) & np.isfinite(hw[:, 0])
    for column, axis in (("x0", 1), ("x1", 1), ("y0", 0), ("y1", 0)):
        out.loc[scale, column] = out.loc[scale, column].to_numpy() * hw[scale, axis]
    masks = out["instance_mask"].tolist()
    for i in np.flatnonzero(scale).tolist():
        if masks[i]:
            h, w = hw[i]
            polygons = [[v * (w, h)[k % 2] for k, v in enumerate(p)] for p in json.loads(masks[i])]
            masks[i] = json.dumps(polygons)
    out["instance_mask"] = masks
    out.loc[scale, "relative"] = False
    return _with_area(out)


# --- box geometry (numpy: the clean stage imports no torch) ---------------------------------


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Areas of intersection, ``(len(a), len(b))``, of ``x0 y0 x1 y1`` boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(hi - lo, 0, None), axis=2)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU, ``(len(a), len(b))``, of ``x0 y0 x1 y1`` boxes (0 where both are empty)."""
    inter = box_intersection(a, b)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# --- instance masks -----------------------------------------------------------------------------


def decode_instance_mask(segmentation: str, height: int, width: int) -> np.ndarray:
    """The ``(height, width)`` bool mask of an object's COCO segmentation (polygons, RLE with
    list counts, or compressed RLE), through pycocotools; :class:`ValueError` when invalid."""
    from pycocotools import mask as coco_mask

    try:
        value = json.loads(segmentation)
        if isinstance(value, list):
            polygons = [p for p in value if isinstance(p, list) and len(p) >= 6]
            if not polygons or any(len(p) % 2 for p in polygons):
                raise ValueError("polygons need at least 3 (x, y) points each")
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        elif isinstance(value, dict) and "counts" in value and "size" in value:
            if list(value["size"]) != [height, width]:
                raise ValueError(f"RLE size {value['size']} is not the image's {[height, width]}")
            counts = value["counts"]
            rle = (
                coco_mask.frPyObjects(value, height, width)
                if isinstance(counts, list)
                else {"size": value["size"], "counts": counts.encode()}
            )
        else:
            raise ValueError("expected polygons or an RLE {size, counts}")
        with warnings.catch_warnings():  # pycocotools' own NumPy 2 copy= notice
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            return coco_mask.decode(rle).astype(bool)
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a COCO segmentation ({exc})") from None


# --- rows -------------------------------------------------------------------------------------


def _row(
    *,
    image: str,
    object_id: str,
    class_id: int,
    names: Sequence[str],
    corners: tuple[float, float, float, float] | None,
    area: float | None,
    iscrowd: bool,
    difficult: bool,
    instance_mask: str,
    relative: bool,
    problem: str,
) -> dict[str, Any]:
    x0, y0, x1, y1 = corners if corners is not None else (math.nan,) * 4
    return {
        "sample_id": sample_id(image) if image else "", "image": image, "object_id": object_id,
        "class": names[class_id] if 0 <= class_id < len(names) else "", "class_id": class_id,
        "x0": x0, "y0": y0, "x1": x1, "y1": y1, "area": math.nan if area is None else area,
        "iscrowd": iscrowd, "difficult": difficult, "instance_mask": instance_mask,
        "relative": relative, "problem": problem,
    }  # fmt: skip


def _frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(OBJECT_COLUMNS))
    frame = frame.astype(
        {"class_id": np.int64, "iscrowd": bool, "difficult": bool, "relative": bool}
    )
    for column in ("x0", "y0", "x1", "y1", "area"):
        frame[column] = frame[column].astype(np.float64)
    return _with_area(frame)


def _with_area(frame: pd.DataFrame) -> pd.DataFrame:
    """Box area where the source gives none (COCO's own area, the mask's, is kept)."""
    box = (frame["x1"] - frame["x0"]).clip(lower=0) * (frame["y1"] - frame["y0"]).clip(lower=0)
    fill = frame["area"].isna() & ~frame["relative"]
    frame.loc[fill, "area"] = box[fill]
    return frame


def _xywh(box: Any) -> tuple[float, float, float, float] | None:
    values = _numbers(box) if isinstance(box, list | tuple) and len(box) == 4 else None
    if values is None:
        return None
    x, y, w, h = values
    return (x, y, x + w, y + h)


def _numbers(values: Sequence[Any]) -> list[float] | None:
    """Every value as a finite float, or None when one is not."""
    out = [_float(v) for v in values]
    return None if any(v is None for v in out) else [v for v in out if v is not None]


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number.is_integer() else None
