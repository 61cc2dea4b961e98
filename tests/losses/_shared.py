"""Constants shared by the loss tests (fixtures live in conftest.py)."""

from __future__ import annotations

import torch

IGNORE = 255
Batch = tuple[torch.Tensor, torch.Tensor]
