"""torch.distributed for the GPU stages: one process per device under ``torchrun``.

Launched plainly (``python -m stages.score``) everything runs in one process. Launched as
``torchrun --nproc_per_node N -m stages.score ...``, torchrun's environment (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``...) starts a process group: NCCL on GPUs, gloo on
CPUs. Each rank trains on its shard of every epoch (DistributedDataParallel averages the
gradients), predicts its shard of the held-out samples, and the results are gathered; rank 0
alone writes outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from datapipe.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, order: np.ndarray, *, pad: bool) -> np.ndarray:
        """This rank's share of ``order``: every ``world``-th item from ``rank``.

        With ``pad``, the order is first extended by repeating its head so every rank gets the
        same count (DistributedDataParallel needs equal step counts, as DistributedSampler
        does); without it, ranks may differ by one (prediction: nothing counted twice).
        """
        if not self.active:
            return order
        if pad and len(order) % self.world:
            extra = self.world - len(order) % self.world
            order = np.concatenate([order, np.resize(order, extra)])
        return order[self.rank :: self.world]

    def sum_(self, array: np.ndarray) -> np.ndarray:
        """Sum ``array`` over ranks, in place (float64/int64 round trip through a tensor)."""
        if self.active:
            t = torch.from_numpy(np.ascontiguousarray(array))
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            array[...] = t.numpy()
        return array

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_into(self, out: list[Any], rows: Sequence[int], items: Sequence[Any]) -> list[Any]:
        """``out`` with every rank's ``items`` put at its ``rows`` (one gather of both): the
        whole of a sharded result on every rank. ``out`` itself when not distributed."""
        if not self.active:
            return out
        for theirs_rows, theirs in self.gather((list(rows), list(items))):
            for i, one in zip(theirs_rows, theirs, strict=True):
                out[i] = one
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_distributed(device: str, *, key: str = "score.device") -> tuple[Dist, torch.device]:
    """The process group (when under torchrun) and this rank's device.

    ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda``; ``key`` names the param
    in the error when CUDA is asked for but absent.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError(f"{key}: cuda requested but torch sees no CUDA device")
    use_cuda = cuda and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        torch_device = torch.device("cuda", torch.cuda.current_device())
    else:
        torch_device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank), torch_device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
