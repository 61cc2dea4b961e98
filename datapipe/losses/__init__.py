"""Training losses: each a function plus a thin ``nn.Module``, all reduced by one helper.

Cross-entropy (class weights, label smoothing, soft targets, ``ignore_index`` with
``avg_non_ignore``), Dice, softmax and sigmoid focal, one-hot BCE, OHEM masks, class weights
from counts, and :func:`build_loss` for a weighted sum of named terms.
"""

from datapipe.losses.bce import OneHotBCELoss, one_hot_bce
from datapipe.losses.class_weights import class_weights
from datapipe.losses.composite import CompositeLoss
from datapipe.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from datapipe.losses.dice import DiceLoss, dice_loss
from datapipe.losses.factory import build_loss, criterion
from datapipe.losses.focal import FocalLoss, focal_loss
from datapipe.losses.ohem import PixelOhem, SampleOhem, ohem_pixel_mask, ohem_sample_mask
from datapipe.losses.reduction import Reduction, reduce_loss
from datapipe.losses.sigmoid_focal import SigmoidFocalLoss, sigmoid_focal_loss
from datapipe.losses.terms import TERMS

__all__ = [
    "TERMS",
    "CompositeLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "OneHotBCELoss",
    "PixelOhem",
    "Reduction",
    "SampleOhem",
    "SigmoidFocalLoss",
    "build_loss",
    "class_weights",
    "criterion",
    "cross_entropy",
    "dice_loss",
    "focal_loss",
    "ohem_pixel_mask",
    "ohem_sample_mask",
    "one_hot_bce",
    "reduce_loss",
    "sigmoid_focal_loss",
]
