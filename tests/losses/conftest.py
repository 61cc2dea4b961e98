from __future__ import annotations

import pytest
import torch

from ._shared import IGNORE, Batch


@pytest.fixture
def seg() -> Batch:
    """Float64 segmentation logits (2, 3, 4, 5) and a target with 255 in some pixels."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 5), generator=gen)
    target[0, 0] = IGNORE
    target[1, :, 4] = IGNORE
    return logits, target


@pytest.fixture
def cls() -> Batch:
    """Float64 classification logits (6, 4) and class indices."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    return logits, torch.tensor([0, 1, 2, 3, 1, 1])
