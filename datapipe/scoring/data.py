"""Samples as normalised tensors for the scoring models, decoded once or streamed from disk.

Decoding is :meth:`datapipe.data.SampleSpec.decode` (the one decode path of scoring,
training and evaluation): unit float at the dataset's bit depth, area resize to a square,
stats.json normalisation; masks as class indices resized nearest-neighbour.

When the decoded set fits in ``max_cache_gb`` it is decoded once, in worker processes, into one
float16 tensor (k folds x E epochs then decode nothing again); otherwise each batch is decoded
by DataLoader workers from disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datapipe.data import Item, SampleSpec, swappable_loader
from datapipe.progress import progress
from datapipe.workers import worker_init_fn


class Source(Protocol):
    """Batches of ``(index, images (B, C, S, S) float, targets)`` for given index batches.

    Targets are ``(B,)`` class labels for classification, ``(B, S, S)`` masks for segmentation.
    """

    def __len__(self) -> int: ...

    def batches(
        self, index_batches: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]: ...


class InMemory:
    """Decoded images in one float16 tensor; targets alongside."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self, index_batches: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        for index in index_batches:
            t = torch.from_numpy(index)
            yield index, self.images[t], self.targets[t]


class _DiskSet(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    def __init__(self, items: Sequence[Item], spec: SampleSpec, labels: np.ndarray) -> None:
        self.items, self.spec, self.labels = items, spec, labels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image, mask = self.spec.decode(self.items[i])
        target = torch.from_numpy(mask) if mask is not None else torch.tensor(self.labels[i])
        return torch.from_numpy(image), target, i


class Streaming:
    """Decode every batch from disk in DataLoader workers; memory stays at a few batches."""

    def __init__(
        self,
        items: Sequence[Item],
        spec: SampleSpec,
        labels: np.ndarray,
        *,
        workers: int,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = _DiskSet(items, spec, labels)
        self._loader, self._sampler = swappable_loader(
            self.dataset, workers=workers, pin_memory=pin_memory
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(
        self, index_batches: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        self._sampler.batches = [b.tolist() for b in index_batches]
        for images, targets, index in self._loader:
            yield index.numpy(), images, targets


def decoded_bytes(n: int, channels: int, size: int, *, masks: bool) -> int:
    return n * size * size * (channels * 2 + (2 if masks else 0))


def make_source(
    items: Sequence[Item],
    spec: SampleSpec,
    labels: np.ndarray,
    *,
    workers: int,
    max_bytes: int,
    loader_workers: int | None = None,
    pin_memory: bool = False,
    desc: str,
) -> Source:
    """In memory when the decoded set fits in ``max_bytes``, else streamed from disk.

    ``workers`` processes decode the in-memory set; ``loader_workers`` (default ``workers``)
    DataLoader processes decode the streamed batches.

    ``labels`` ``(N,)`` are the classification targets (ignored for segmentation, whose
    targets are the masks).
    """
    channels = len(spec.image.mean)
    need = decoded_bytes(len(items), channels, spec.image.size, masks=spec.mask is not None)
    if need > max_bytes:
        n = workers if loader_workers is None else loader_workers
        return Streaming(items, spec, labels, workers=n, pin_memory=pin_memory)
    # decode straight into preallocated tensors (no list of arrays + stacked copy), with
    # DataLoader workers forked from this process (a process pool would re-import torch)
    size = spec.image.size
    images = torch.empty((len(items), channels, size, size), dtype=torch.float16)
    masks = torch.empty((len(items), size, size), dtype=torch.int16) if spec.mask else None
    loader = DataLoader(
        _DiskSet(items, spec, labels),
        batch_size=64,
        num_workers=workers if len(items) > 64 else 0,
        prefetch_factor=2 if workers and len(items) > 64 else None,
        worker_init_fn=worker_init_fn(),
    )
    for x, y, index in progress(loader, total=len(loader), desc=desc, unit="batch"):
        images[index] = x
        if masks is not None:
            masks[index] = y
    if masks is None:
        return InMemory(images, torch.as_tensor(np.asarray(labels), dtype=torch.long))
    return InMemory(images, masks)
