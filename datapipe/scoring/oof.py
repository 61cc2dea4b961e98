"""Out-of-fold training and prediction for classification, with training dynamics.

For fold k, a fresh model trains on every other fold and predicts fold k, so each sample's
probabilities come from a model that never saw it. While the models train, every forward pass
over a training sample records the probability of its given label and its margin; over all
(fold, epoch) passes these give Dataset Cartography's confidence / variability / correctness
(Swayamdipta et al., 2020) and the area under the margin, AUM (Pleiss et al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from datapipe.progress import progress


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    flip: bool = True
    seed: int = 0
    device: str = "cpu"


@dataclass
class Dynamics:
    """Running sums per sample over every training pass that saw it."""

    passes: np.ndarray  # (N,) int
    prob_sum: np.ndarray  # (N,) sum of p(given label)
    prob_sq_sum: np.ndarray
    margin_sum: np.ndarray  # sum of logit[given] - max other logit
    correct: np.ndarray  # (N,) passes where the argmax was the given label

    @classmethod
    def zeros(cls, n: int) -> Dynamics:
        return cls(np.zeros(n, np.int64), *(np.zeros(n) for _ in range(4)))

    def add(self, index: np.ndarray, logits: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.no_grad():
            logits = logits.float()
            prob = logits.softmax(1).gather(1, labels[:, None])[:, 0]
            given = logits.gather(1, labels[:, None])[:, 0]
            others = logits.scatter(1, labels[:, None], float("-inf")).max(1).values
            margin, hit = given - others, logits.argmax(1) == labels
        np.add.at(self.passes, index, 1)
        p = prob.cpu().numpy().astype(np.float64)
        np.add.at(self.prob_sum, index, p)
        np.add.at(self.prob_sq_sum, index, p**2)
        np.add.at(self.margin_sum, index, margin.cpu().numpy())
        np.add.at(self.correct, index, hit.cpu().numpy())

    def summary(self) -> dict[str, np.ndarray]:
        """confidence, variability, correctness (cartography) and aum; NaN where never seen."""
        n = np.where(self.passes > 0, self.passes, np.nan)
        confidence = self.prob_sum / n
        variability = np.sqrt(np.maximum(self.prob_sq_sum / n - confidence**2, 0.0))
        return {
            "confidence": confidence,
            "variability": variability,
            "correctness": self.correct / n,
            "aum": self.margin_sum / n,
        }


@dataclass
class OOFResult:
    probs: np.ndarray  # (N, K) float32, NaN rows for samples left out
    dynamics: Dynamics
    fold_accuracy: dict[int, float]


def lr_at(step: int, *, total: int, warmup: int, base: float) -> float:
    """Linear warmup from ``base / warmup`` (step 0 already trains), then cosine to 0."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


def out_of_fold(
    images: torch.Tensor,
    labels: np.ndarray,
    folds: np.ndarray,
    include: np.ndarray,
    *,
    num_classes: int,
    make_model: Callable[[], nn.Module],
    settings: TrainSettings,
    desc: str = "score",
) -> OOFResult:
    """Train one model per fold on the other folds; predict the held-out fold.

    Shapes:
        ``images`` ``(N, C, H, W)``; ``labels``, ``folds``, ``include`` ``(N,)``. Samples with
        ``include`` False neither train nor get probabilities.
    """
    n = len(labels)
    if not (len(images) == len(folds) == len(include) == n):
        raise ValueError(
            f"images, labels, folds, include must have equal length; got "
            f"{len(images)}, {n}, {len(folds)}, {len(include)}"
        )
    device = torch.device(settings.device)
    probs = np.full((n, num_classes), np.nan, np.float32)
    dynamics = Dynamics.zeros(n)
    accuracy: dict[int, float] = {}
    y_all = torch.as_tensor(labels, dtype=torch.long)
    fold_ids = sorted(int(f) for f in np.unique(folds[include]))
    for k in progress(fold_ids, total=len(fold_ids), desc=desc, every_s=0.0):
        train = np.flatnonzero(include & (folds != k))
        held = np.flatnonzero(include & (folds == k))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed * 1000 + k)
            model = make_model().to(device)
        _train(model, images, y_all, train, dynamics, settings, fold=k)
        probs[held] = _predict(model, images, held, settings)
        accuracy[k] = (
            float((probs[held].argmax(1) == labels[held]).mean()) if len(held) else math.nan
        )
    return OOFResult(probs=probs, dynamics=dynamics, fold_accuracy=accuracy)


def _train(
    model: nn.Module,
    images: torch.Tensor,
    y_all: torch.Tensor,
    train: np.ndarray,
    dynamics: Dynamics,
    settings: TrainSettings,
    *,
    fold: int,
) -> None:
    device = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # norms and biases
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = max(1, len(_batches(train, settings.batch_size)))
    total = steps_per_epoch * settings.epochs
    warmup = round(settings.warmup_epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    step = 0
    for epoch in range(settings.epochs):
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + fold * 1009 + epoch)
        order = train[torch.randperm(len(train), generator=generator).numpy()]
        for index in _batches(order, settings.batch_size):
            x = images[index].to(device, torch.float32, non_blocking=True)
            if settings.flip:
                flips = torch.rand(2, generator=generator)
                if flips[0] < 0.5:
                    x = x.flip(3)
                if flips[1] < 0.5:
                    x = x.flip(2)
            y = y_all[index].to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total=total, warmup=warmup, base=settings.lr)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            dynamics.add(index, logits.detach(), y)
            step += 1


def _batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive batches of ``size``; a last batch of one joins the one before (BatchNorm
    cannot train on a single sample), so every sample trains once per epoch."""
    cuts = list(range(size, len(order), size))
    if cuts and len(order) - cuts[-1] == 1:
        cuts.pop()
    return np.split(order, cuts)


def _predict(
    model: nn.Module, images: torch.Tensor, index: np.ndarray, settings: TrainSettings
) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(index), settings.batch_size * 2):
            batch = images[index[start : start + settings.batch_size * 2]]
            out.append(model(batch.to(device, torch.float32)).float().softmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)
