"""Metrics from confusion matrices: known answers, ignore_index, absent classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datapipe.metrics import (
    classification_metrics,
    confusion_matrix,
    confusion_rows,
    segmentation_metrics,
)


def test_confusion_counts_rows_as_targets_and_skips_ignored_pixels() -> None:
    targets = torch.tensor([[0, 1, 255], [2, 2, 1]])
    preds = torch.tensor([[0, 2, 1], [2, 0, 1]])
    cm = confusion_matrix(targets, preds, num_classes=3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])


def test_classification_known_answer() -> None:
    cm = np.array([[3, 1], [2, 4]])  # 7 of 10 right
    m = classification_metrics(cm, ["a", "b"])
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["recall"] == {"a": 0.75, "b": pytest.approx(4 / 6, abs=1e-6)}
    f1_a, f1_b = 2 * 3 / (4 + 5), 2 * 4 / (6 + 5)
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)


def test_segmentation_known_answer_and_absent_class_left_out_of_the_mean() -> None:
    cm = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])  # class 2 never seen nor predicted
    m = segmentation_metrics(cm, ["bg", "cell", "rare"])
    iou_bg, iou_cell = 8 / (10 + 9 - 8), 4 / (5 + 6 - 4)
    assert m["iou"]["bg"] == pytest.approx(iou_bg, abs=1e-6) and m["iou"]["rare"] is None
    assert m["miou"] == pytest.approx((iou_bg + iou_cell) / 2)
    assert m["pixel_accuracy"] == pytest.approx(12 / 15)
    assert m["dice"]["cell"] == pytest.approx(8 / 11, abs=1e-6)


def test_empty_confusion_gives_nan_not_an_error() -> None:
    m = classification_metrics(np.zeros((2, 2), np.int64), ["a", "b"])
    assert math.isnan(m["accuracy"]) and math.isnan(m["macro_f1"])


def test_confusion_rows_keep_the_proportions() -> None:
    rows = confusion_rows(np.array([[300, 100], [0, 600]]), ["a", "b"], max_rows=100)
    assert len(rows) == 100
    assert ((rows["actual"] == "a") & (rows["predicted"] == "b")).sum() == 10
    assert ((rows["actual"] == "b") & (rows["predicted"] == "b")).sum() == 60
    assert not ((rows["actual"] == "b") & (rows["predicted"] == "a")).any()
