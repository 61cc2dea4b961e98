"""Instance masks through the object path: targets decode their masks, a box in place whose
mask is drawn elsewhere is a mask issue, and Mask R-CNN trains (GPU: with AMP)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from datapipe.detect.score import MASK_ISSUE_IOU, mask_issues
from datapipe.detect.targets import ImageObjects, image_objects, instance_mask, resize_masks
from datapipe.scoring.detection import Boxes


def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_targets_carry_decoded_masks_and_the_box_when_none_is_given() -> None:
    polygon = json.dumps([[2, 2, 8, 2, 8, 8, 2, 8]])
    objects = pd.DataFrame([
        {"sample_id": "a", "object_id": "1", "class": "disk", "x0": 2, "y0": 2, "x1": 8,
         "y1": 8, "problem": "", "relative": False, "iscrowd": False, "instance_mask": polygon},
        {"sample_id": "a", "object_id": "2", "class": "disk", "x0": 0, "y0": 0, "x1": 4,
         "y1": 3, "problem": "", "relative": False, "iscrowd": False, "instance_mask": ""},
    ])  # fmt: skip
    got = image_objects(objects, ["a"], [(10, 12)], classes=["disk"], masks=True)
    masks = got.targets[0].masks
    assert masks is not None and masks.shape == (2, 10, 12)
    assert masks[0, 4, 4] and not masks[0, 9, 11]
    np.testing.assert_array_equal(masks[1], _square(10, 12, 0, 3, 0, 4))


def test_an_undecodable_mask_falls_back_to_the_filled_box() -> None:
    np.testing.assert_array_equal(
        instance_mask("{not json", np.array([1, 1, 3, 2.0]), 4, 4), _square(4, 4, 1, 2, 1, 3)
    )


def test_resize_masks_keeps_booleans_and_boxes() -> None:
    found = Boxes(np.array([[0, 0, 4, 4]], np.float32), np.array([0]),
                  masks=_square(4, 4, 0, 2, 0, 2)[None])  # fmt: skip
    out = resize_masks(found, 8, 8)
    assert out.masks is not None and out.masks.dtype == bool
    assert out.masks[0].sum() == 16 and out.boxes is found.boxes


def test_a_found_box_with_a_mask_elsewhere_is_a_mask_issue() -> None:
    box = np.array([[0, 0, 10, 10]], np.float32)
    given = ImageObjects(
        [Boxes(box, np.array([0]), masks=_square(10, 10, 0, 10, 0, 3)[None]),
         Boxes(box, np.array([0]), masks=_square(10, 10, 0, 10, 0, 10)[None])],
        [["left-strip"], ["full"]],
    )  # fmt: skip
    found = [Boxes(box, np.array([0]), np.array([0.9], np.float32),
                   _square(10, 10, 0, 10, 0, 10)[None]) for _ in range(2)]  # fmt: skip
    rows = mask_issues(given, found, np.array(["disk"], dtype=object))
    assert [r["object_id"] for r in rows] == ["left-strip"]
    assert rows[0]["issue"] == "mask_mismatch"
    assert rows[0]["box_score"] == pytest.approx(0.3) and rows[0]["box_score"] < MASK_ISSUE_IOU


def _maskrcnn_step_losses(device: str, steps: int, amp: bool) -> list[float]:
    from datapipe.models import build_detector

    torch.manual_seed(0)
    model = build_detector("maskrcnn_resnet18_fpn", in_channels=1, num_classes=2, min_size=64,
                           max_size=64).to(device).train()  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.zeros(1, 64, 64, device=device)
    x[:, 10:30, 10:30] = 2.0
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8, device=device)
    mask[:, 10:30, 10:30] = 1
    target = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]], device=device),
              "labels": torch.tensor([1], device=device), "masks": mask}  # fmt: skip
    losses = []
    for _ in range(steps):
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            total = sum(model([x], [target]).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    return losses


def test_maskrcnn_takes_masks_and_its_loss_falls_on_cpu() -> None:
    losses = _maskrcnn_step_losses("cpu", 4, amp=False)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.gpu
def test_maskrcnn_trains_with_amp_on_cuda() -> None:
    losses = _maskrcnn_step_losses("cuda", 20, amp=True)
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5])
