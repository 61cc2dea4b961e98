"""Object annotations: COCO, VOC and YOLO read into one table, with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from datapipe.errors import ConfigError
from datapipe.manifest import sample_id
from datapipe.objects import (
    OBJECT_COLUMNS,
    decode_instance_mask,
    detect_object_layout,
    read_annotations,
    to_pixels,
)


def _image(path: Path, height: int = 40, width: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((height, width), np.uint8))


def _coco(root: Path, **extra: object) -> Path:
    _image(root / "images" / "a.png")
    _image(root / "images" / "b.png")
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 60, "height": 40},
            {"id": 2, "file_name": "b.png", "width": 60, "height": 40},
            {"id": 3, "file_name": "gone.png", "width": 60, "height": 40},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "area": 150.0,
             "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"id": 13, "image_id": 2, "category_id": 99, "bbox": [1, 1, 2, 2]},
            {"id": 14, "image_id": 2, "category_id": 3, "bbox": [1, 2]},
        ],
        **extra,
    }  # fmt: skip
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def test_coco_boxes_classes_and_problems(tmp_path: Path) -> None:
    ann = read_annotations(_coco(tmp_path))
    assert ann.layout == "coco" and ann.classes == ["dog", "cat"]  # sorted by category id
    o = ann.objects.set_index("object_id")
    assert list(ann.objects.columns) == list(OBJECT_COLUMNS)
    assert o.loc["11", ["x0", "y0", "x1", "y1"]].tolist() == [10, 5, 30, 15]
    assert o.loc["11", "class"] == "cat" and o.loc["11", "class_id"] == 1
    assert o.loc["11", "area"] == 150.0  # COCO's own area kept
    assert o.loc["12", "iscrowd"] and o.loc["12", "area"] == 25.0  # box area when none given
    assert o.loc["11", "image"] == "images/a.png"
    assert o.loc["11", "sample_id"] == sample_id("images/a.png")
    assert "unknown category_id 99" in o.loc["13", "problem"]
    assert "bbox [1, 2] is not [x, y, w, h]" in o.loc["14", "problem"]
    assert o.loc["11", "problem"] == "" and o.loc["12", "problem"] == ""
    missing = [e for e in ann.images if e.problem]
    assert [e.image for e in missing] == ["images/gone.png"]  # where the others are
    assert "listed in annotations.json but not found" in missing[0].problem


def test_coco_that_does_not_parse_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text('{"images": [\n{"id": 1,, }]}')
    with pytest.raises(ConfigError, match=r"annotations.json: not JSON \(line 2"):
        read_annotations(tmp_path)


def test_voc_corners_are_zero_based_exclusive_and_difficult_is_kept(tmp_path: Path) -> None:
    _image(tmp_path / "JPEGImages" / "x.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><size><width>60</width><height>40</height>"
        "</size><object><name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name>bird</name><bndbox><xmin>5</xmin><ymin>a</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bndbox></object></annotation>"
    )
    ann = read_annotations(tmp_path)
    assert ann.layout == "voc" and ann.classes == ["bird", "dog"]
    first, second = ann.objects.itertuples()
    assert (first.x0, first.y0, first.x1, first.y1) == (0.0, 0.0, 10.0, 20.0)
    assert first.difficult and first.object_id == "Annotations/x.xml#0"
    assert first.image == "JPEGImages/x.jpg" and ann.images[0].width == 60
    assert "object 2: bndbox needs xmin" in second.problem


def test_voc_xml_that_does_not_parse_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "bad.xml").write_text("<annotation>\n<object></annotation>")
    with pytest.raises(ConfigError, match=r"bad.xml: not XML \(line 2"):
        read_annotations(tmp_path)


def test_yolo_relative_boxes_and_polygons_become_pixels(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "sub" / "y.png", height=40, width=60)
    _image(tmp_path / "images" / "empty.png")
    (tmp_path / "labels" / "sub").mkdir(parents=True)
    (tmp_path / "labels" / "sub" / "y.txt").write_text(
        "1 0.5 0.5 0.5 0.25\n\n0 0.1 0.1 0.5 0.1 0.5 0.5\n3 0.5 0.5 0.1 0.1\n0 0.5 0.5\n"
    )
    (tmp_path / "data.yaml").write_text("names: {0: car, 1: person}\n")
    ann = read_annotations(tmp_path)
    assert ann.layout == "yolo" and ann.classes == ["car", "person"]
    assert len(ann.images) == 2  # the image without a label file is listed (no objects)
    objects = to_pixels(ann.objects, {sample_id("images/sub/y.png"): (40, 60)})
    box, polygon, unknown, short = objects.itertuples()
    assert (box.x0, box.y0, box.x1, box.y1) == (15.0, 15.0, 45.0, 25.0)
    assert objects["class"].tolist()[:2] == ["person", "car"]
    assert box.object_id == "labels/sub/y.txt:1" and box.area == 300.0
    assert (polygon.x0, polygon.y0, polygon.x1, polygon.y1) == pytest.approx((6, 4, 30, 20))
    assert json.loads(polygon.instance_mask) == [pytest.approx([6, 4, 30, 4, 30, 20])]
    assert "class '3' is not an index" in unknown.problem
    assert "got 3 values" in short.problem and short.object_id == "labels/sub/y.txt:5"
    assert not objects["relative"].any()


def test_ambiguous_and_missing_layouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no object-annotation layout"):
        detect_object_layout(tmp_path)
    _coco(tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(ConfigError, match=r"ambiguous layout, fits coco .*yolo"):
        detect_object_layout(tmp_path)
    assert read_annotations(tmp_path, "coco").layout == "coco"  # naming it settles it


def test_instance_masks_decode_from_polygons_and_both_rles() -> None:
    polygon = json.dumps([[2, 2, 8, 2, 8, 6, 2, 6]])
    mask = decode_instance_mask(polygon, 10, 12)
    assert mask.shape == (10, 12) and mask.dtype == bool
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2, 7, 2, 5)  # pixel centres inside
    truth = np.zeros((10, 12), np.uint8, order="F")
    truth[1:4, 5:9] = 1
    compressed = coco_mask.encode(truth)
    text = json.dumps({"size": [10, 12], "counts": compressed["counts"].decode()})
    np.testing.assert_array_equal(decode_instance_mask(text, 10, 12), truth.astype(bool))
    column_major = truth.flatten(order="F")
    runs, value, count = [], 0, 0
    for v in column_major:
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    runs.append(count)
    listed = json.dumps({"size": [10, 12], "counts": runs})
    np.testing.assert_array_equal(decode_instance_mask(listed, 10, 12), truth.astype(bool))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps([[1, 2, 3, 4]]), "at least 3"),
        (json.dumps({"size": [5, 5], "counts": [25]}), "RLE size"),
        ("{", "not a COCO segmentation"),
        (json.dumps("x"), "expected polygons or an RLE"),
    ],
)
def test_invalid_instance_masks_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_instance_mask(text, 10, 12)
