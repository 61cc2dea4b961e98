"""Drawing objects on thumbnails, known answers: where a box lands in the cell, solid, thick
and dashed outlines in the class colour, instance masks as translucent fills, box parsing and
the per-image object lookup."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as coco_mask

from datapipe.report.boxes import (
    MASK_ALPHA,
    RIM_RGB,
    UNKNOWN_RGB,
    ImageObjects,
    Marks,
    ObjectIndex,
    Placement,
    cell_rect,
    class_colour,
    draw_objects,
    instance_pixels,
    outline,
    parse_box,
)
from datapipe.report.render import PALETTE, placement

GREY = 100
SQUARE = Placement(top=0, left=0, height=96, width=96, image_h=128, image_w=128)


def _cell() -> np.ndarray:
    return np.full((96, 96, 3), GREY, np.uint8)


def _objects(*boxes: tuple[list[float], int], masks: tuple[str, ...] = ()) -> ImageObjects:
    return ImageObjects(
        ids=tuple(str(k) for k in range(len(boxes))),
        boxes=np.array([b for b, _ in boxes], np.float64).reshape(-1, 4),
        classes=np.array([c for _, c in boxes], np.int64),
        masks=masks or ("",) * len(boxes),
    )


@pytest.mark.parametrize(
    ("box", "place", "rect"),
    [
        ([0, 0, 128, 128], SQUARE, (0, 0, 95, 95)),
        ([32, 16, 64, 48], SQUARE, (24, 12, 47, 35)),
        ([40, 10, 40, 30], SQUARE, (30, 7, 30, 22)),  # zero width: still a line
        ([100, 100, 200, 200], SQUARE, (75, 75, 95, 95)),  # clipped to the image
        ([138, 60, 160, 80], SQUARE, None),  # wholly outside
        ([float("nan"), 0, 10, 10], SQUARE, None),
        ([0, 0, 128, 64], Placement(24, 0, 48, 96, 64, 128), (0, 24, 95, 71)),  # wide image
    ],
    ids=["whole", "inner", "degenerate", "clipped", "outside", "nan", "letterboxed"],
)
def test_cell_rect_maps_image_pixels_into_the_fitted_cell(
    box: list[float], place: Placement, rect: tuple[int, int, int, int] | None
) -> None:
    assert cell_rect(box, place) == rect


def test_placement_is_where_fit_puts_the_picture() -> None:
    assert placement(64, 128, 96) == (24, 0, 48, 96)
    assert placement(128, 128, 96) == (0, 0, 96, 96)


def test_outline_rings_and_dashes() -> None:
    ys, xs = outline((0, 0, 11, 11))
    assert len(set(zip(ys.tolist(), xs.tolist(), strict=True))) == 44  # a 12 x 12 ring
    ys, xs = outline((0, 0, 11, 11), dash=3)
    top = sorted({x for y, x in zip(ys.tolist(), xs.tolist(), strict=True) if y == 0})
    assert top == [0, 1, 2, 6, 7, 8, 11]  # three on, three off from the corner; 11: a corner
    ys, xs = outline((0, 0, 11, 11), thickness=2)
    assert (1, 5) in set(zip(ys.tolist(), xs.tolist(), strict=True))  # the second ring
    assert (2, 5) not in set(zip(ys.tolist(), xs.tolist(), strict=True))


def test_a_given_box_is_a_one_pixel_line_in_its_class_colour() -> None:
    out = draw_objects(_cell(), SQUARE, _objects(([32, 16, 64, 48], 1)))
    colour = PALETTE[1].tolist()
    assert out[20, 24].tolist() == colour  # left edge
    assert out[35, 40].tolist() == colour  # bottom edge
    assert out[20, 25].tolist() == [GREY] * 3  # inside: untouched
    assert out[20, 23].tolist() == [GREY] * 3  # outside: untouched


def test_a_flagged_box_is_thick_inside_a_white_rim() -> None:
    objects = _objects(([32, 16, 64, 48], 0), ([80, 80, 120, 120], 2))
    out = draw_objects(_cell(), SQUARE, objects, Marks(flagged=("0",)))
    assert out[20, 24].tolist() == out[20, 25].tolist() == PALETTE[0].tolist()
    assert out[20, 23].tolist() == list(RIM_RGB)
    assert out[20, 26].tolist() == [GREY] * 3
    assert out[70, 60].tolist() == PALETTE[2].tolist()  # the other box: thin, its own colour
    assert out[70, 61].tolist() == [GREY] * 3


def test_a_suggested_box_is_dashed_in_its_class_colour() -> None:
    out = draw_objects(_cell(), SQUARE, _objects(), Marks(suggested=((32, 16, 64, 48, 2),)))
    colour = PALETTE[2].tolist()
    column = [out[y, 24].tolist() == colour for y in range(12, 24)]
    assert column == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
    assert out[14, 25].tolist() == colour  # two pixels thick
    unknown = draw_objects(_cell(), SQUARE, _objects(), Marks(suggested=((32, 16, 64, 48, -1),)))
    assert unknown[12, 24].tolist() == list(UNKNOWN_RGB)


def _blend(colour: np.ndarray) -> list[int]:
    return np.floor((1 - MASK_ALPHA) * GREY + MASK_ALPHA * colour + 0.5).astype(int).tolist()


def test_an_instance_polygon_is_a_translucent_fill_of_its_class_colour() -> None:
    polygon = json.dumps([[32, 64, 96, 64, 96, 128, 32, 128]])  # the lower middle, x 32-96
    objects = _objects(([32, 64, 96, 128], 1), masks=(polygon,))
    out = draw_objects(_cell(), SQUARE, objects)
    assert out[70, 48].tolist() == _blend(PALETTE[1])
    assert out[30, 48].tolist() == [GREY] * 3  # above the mask
    assert out[70, 10].tolist() == [GREY] * 3  # left of it


def test_an_rle_instance_mask_is_decoded_at_the_image_size_and_shrunk() -> None:
    full = np.zeros((128, 128), np.uint8)
    full[:, :64] = 1  # the left half
    rle = coco_mask.encode(np.asfortranarray(full))
    text = json.dumps({"size": rle["size"], "counts": rle["counts"].decode("ascii")})
    mask = instance_pixels(text, SQUARE)
    assert mask is not None and mask.shape == (96, 96)
    assert mask[:, :48].all() and not mask[:, 48:].any()


@pytest.mark.parametrize(
    "segmentation", ["", "[[1, 2]]", "not json", '{"size": [5, 5], "counts": "x"}'],
    ids=["empty", "two-points", "not-json", "wrong-size-rle"],
)  # fmt: skip
def test_an_invalid_instance_mask_is_left_out(segmentation: str) -> None:
    assert instance_pixels(segmentation, SQUARE) is None
    objects = _objects(([32, 16, 64, 48], 1), masks=(segmentation,))
    out = draw_objects(_cell(), SQUARE, objects)
    assert out[30, 40].tolist() == [GREY] * 3  # no fill, the box still drawn
    assert out[20, 24].tolist() == PALETTE[1].tolist()


@pytest.mark.parametrize(
    ("value", "box"),
    [
        ("[73.6, 77.4, 83.7, 87.5]", (73.6, 77.4, 83.7, 87.5)),
        ([1, 2, 3, 4], (1.0, 2.0, 3.0, 4.0)),
        ("", None),
        (float("nan"), None),
        ("[1, 2, 3]", None),
        ("[1, 2, NaN, 4]", None),
        ("[1, 2, 3, 4", None),
    ],
    ids=["text", "list", "empty", "nan-cell", "three", "nan-corner", "broken"],
)
def test_parse_box(value: object, box: tuple[float, ...] | None) -> None:
    assert parse_box(value) == box


def test_class_colours_follow_the_palette_and_unknown_is_grey() -> None:
    assert class_colour(0) == tuple(PALETTE[0].tolist())
    assert class_colour(len(PALETTE) + 2) == tuple(PALETTE[2].tolist())
    assert class_colour(-1) == UNKNOWN_RGB


def test_object_index_gives_each_images_objects_in_annotation_order() -> None:
    objects = pd.DataFrame(
        {
            "sample_id": ["b", "a", "b", "c"],
            "object_id": ["5", "1", "2", "9"],
            "class": ["dog", "cat", "", "cat"],
            "x0": [1.0, 2.0, 3.0, 0.1],
            "y0": 0.0, "x1": 10.0, "y1": 10.0,
            "instance_mask": ["", "[[0, 0, 1, 0, 1, 1]]", None, ""],
            "relative": [False, False, False, True],  # c's box is still relative: left out
        }
    )  # fmt: skip
    index = ObjectIndex(objects, ["cat", "dog"])
    b = index.of("b")
    assert b.ids == ("5", "2")
    assert b.classes.tolist() == [1, -1]  # an unknown class is grey
    assert b.boxes[:, 0].tolist() == [1.0, 3.0]
    assert b.masks == ("", "")
    assert index.of("a").masks == ("[[0, 0, 1, 0, 1, 1]]",)
    assert index.of("c").ids == () and index.of("zzz").ids == ()
