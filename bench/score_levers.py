"""Levers that cut the compute of out-of-fold classification scoring, against the current path.

    .venv/bin/python bench/score_levers.py [--rounds 3] [--rgb-images 1000] [--rgb-size 32]
                                           [--epochs 4] [--fewer 3 2] [--p 0.2] [--seed 0]
                                           [--quick] [--skip-throughput] [--skip-f1]

Levers, each applied to ``datapipe.scoring.oof.out_of_fold`` with ``small_cnn`` (1 torch thread):

(a) ``channels_last``: the model and every batch in ``torch.channels_last``
    (``TrainSettings(channels_last=True)``, what the score stage now uses for classification);
(b) ``bf16``: the forward pass under ``torch.autocast("cpu", torch.bfloat16)``, loss on float
    logits (a model wrapper), alone and with (a);
(c) ``stacked``: the k fold models trained together on each batch: parameters stacked with
    ``torch.func.stack_module_state``, one ``vmap`` over ``functional_call``, every sample's loss
    masked out of its own fold's model (it trains models g != f; model f predicts it held out).
    BatchNorm statistics of model f still see fold f's images (not their labels). Same
    optimiser, param groups, warmup + cosine schedule; one permutation of all samples per epoch;
(d) fewer epochs (``--fewer``) than the label_noise recipe's ``--epochs``.

1. Throughput, interleaved: each round runs every variant once (1 epoch, 5 folds) on (i) the
   1797 sklearn digits at 16x16, 1 channel, batch 64 (label_noise's setting) and (ii)
   ``--rgb-images`` synthetic RGB images (``bench._synth.scene`` + a class tint, 5 classes)
   at ``--rgb-size``, batch 64 (score_throughput's setting), in memory. images/s per fold-epoch
   = training sample-passes (N x (k-1) per epoch) / seconds of the whole run (each fold's
   held-out prediction included). Loading = time inside the source's batch iterator (index the
   in-memory tensor), compute = the rest. Ratio = median over rounds of variant / current in the
   same round. (d) is not timed: its cost is the epoch ratio.
2. Label-issue F1 on label_noise's setting (symmetric noise ``--p``, seed ``--seed``, 16x16,
   batch 64, lr 0.05, wd 5e-4, no flips, ``--epochs``): ``classification_label_issues`` flags
   scored against the flipped labels, plus OOF accuracy and the largest probability change.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._synth import scene
from bench.label_noise import K, folds_for, load, prf, symmetric_noise, write_digits
from datapipe.label_issues import classification_label_issues
from datapipe.models import build_classifier
from datapipe.optim import Schedule, build_optimizer, param_groups
from datapipe.scoring.data import InMemory
from datapipe.scoring.oof import Dynamics, TrainSettings, _batches, _chunks, out_of_fold

FOLDS = 5
BATCH = 64
Run = dict[str, np.ndarray]


class Bf16(nn.Module):
    """(b): the forward pass under CPU bfloat16 autocast; float32 logits out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x).float()


#: variant -> (model wrapper, channels_last: datapipe's TrainSettings field)
WRAP: dict[str, tuple[Callable[[nn.Module], nn.Module], bool]] = {
    "current": (lambda m: m, False),
    "(a) channels_last": (lambda m: m, True),
    "(b) bf16": (Bf16, False),
    "(a+b) channels_last + bf16": (Bf16, True),
}
STACKED = "(c) stacked k models (vmap)"


class TimedSource:
    """An :class:`InMemory` whose batch iterator counts the seconds spent inside it."""

    def __init__(self, inner: InMemory) -> None:
        self.inner, self.seconds = inner, 0.0

    def __len__(self) -> int:
        return len(self.inner)

    def batches(
        self, index_batches: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        it = self.inner.batches(index_batches)
        while True:
            start = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            yield item


def stacked_oof(
    source: TimedSource | InMemory,
    labels: np.ndarray,
    folds: np.ndarray,
    *,
    make_model: Callable[[], nn.Module],
    settings: TrainSettings,
    num_classes: int,
) -> Run:
    """(c): every fold's model trained on each batch at once; probabilities and AUM."""
    fold_ids = sorted(int(f) for f in np.unique(folds))
    models = []
    for f in fold_ids:  # the same initial weights as out_of_fold's models
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed * 1000 + f)
            models.append(make_model())
    template = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    opt = settings.optimisation()
    groups = param_groups(models[0], lr=opt.lr, weight_decay=opt.weight_decay)
    for group in groups:
        group["params"] = [params[name] for name in group["param_names"]]
    optimizer = build_optimizer(groups, name=opt.optimizer)
    n, batch = len(labels), settings.batch_size
    steps = len(_batches(np.arange(n), batch))
    total = steps * settings.epochs
    schedule = Schedule(
        optimizer,
        kind=opt.schedule,
        total=total,
        warmup=min(total, round(opt.warmup_epochs * steps)),
    )
    trains = torch.as_tensor(folds)[None] != torch.as_tensor(fold_ids)[:, None]  # (k, N)
    targets = torch.as_tensor(labels, dtype=torch.long)

    def one(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(template, (p, b), (x,))

    joint = vmap(one, in_dims=(0, 0, None))
    dynamics, step = Dynamics.zeros(n), 0
    template.train()
    for epoch in range(settings.epochs):
        torch.manual_seed(settings.seed * 100_003 + epoch)
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator).numpy()
        for index, x, _ in source.batches(_batches(order, batch)):
            y, mask = targets[index], trains[:, index].float()  # mask (k, B)
            schedule.step(step)
            logits = joint(params, buffers, x.float())  # (k, B, K)
            ce = nn.functional.cross_entropy(
                logits.reshape(-1, num_classes), y.repeat(len(fold_ids)), reduction="none"
            ).view(len(fold_ids), -1)
            loss = ((ce * mask).sum(1) / mask.sum(1).clamp_min(1)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for g in range(len(fold_ids)):
                keep = mask[g].bool().numpy()
                dynamics.add(index[keep], logits[g].detach()[keep], y[keep])
            step += 1
    template.eval()
    probs = np.full((n, num_classes), np.nan, np.float32)
    with torch.no_grad():
        for g, f in enumerate(fold_ids):
            p_g = {k: v[g] for k, v in params.items()}
            b_g = {k: v[g] for k, v in buffers.items()}
            held = _chunks(np.flatnonzero(folds == f), batch * 2)
            for index, x, _ in source.batches(held):
                out = functional_call(template, (p_g, b_g), (x.float(),))
                probs[index] = out.float().softmax(1).numpy()
    return {"probs": probs, **dynamics.summary()}


def run_variant(
    name: str,
    source: TimedSource | InMemory,
    labels: np.ndarray,
    folds: np.ndarray,
    settings: TrainSettings,
    make_model: Callable[[], nn.Module],
    num_classes: int,
) -> Run:
    if name == STACKED:
        return stacked_oof(source, labels, folds, make_model=make_model, settings=settings,
                           num_classes=num_classes)  # fmt: skip
    wrap, channels_last = WRAP[name]
    result = out_of_fold(
        source,  # type: ignore[arg-type]
        labels,
        folds,
        np.ones(len(labels), bool),
        num_classes=num_classes,
        make_model=lambda: wrap(make_model()),
        settings=dataclasses.replace(settings, channels_last=channels_last),
        desc=name,
    )
    assert result.probs is not None and result.dynamics is not None
    return {"probs": result.probs, **result.dynamics.summary()}


def rgb_set(n: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """score_throughput's images, in memory (float16, normalised): texture + class tint."""
    rng = np.random.default_rng(0)
    tints = rng.uniform(0, 1, (5, 3))
    labels = np.arange(n) % 5
    images = np.stack([0.6 * scene(rng, size, 3) + 0.4 * tints[c] for c in labels])
    x = torch.from_numpy(((images - 0.5) / 0.25).transpose(0, 3, 1, 2).astype(np.float16))
    return x.contiguous(), labels


def throughput(
    sets: dict[str, tuple[torch.Tensor, np.ndarray, int]], rounds: int, variants: list[str]
) -> None:
    print("\n## 1. throughput (1 epoch x 5 folds per run, interleaved rounds, 1 torch thread)\n")
    print("| set | variant | images/s per fold-epoch | ratio to current | loading % | compute % |")
    print("|---|---|---|---|---|---|")
    for set_name, (images, labels, size) in sets.items():
        classes = int(labels.max()) + 1
        folds = np.arange(len(labels)) % FOLDS
        settings = TrainSettings.of(epochs=1, batch_size=BATCH, flip=False, seed=0)

        def make_model(c: int = images.shape[1], k: int = classes, s: int = size) -> nn.Module:
            return build_classifier("small_cnn", in_channels=c, num_classes=k, image_size=s)

        target = torch.as_tensor(labels)
        warm = np.arange(min(320, len(labels)))  # oneDNN primitives, allocator: untimed
        for name in variants:
            run_variant(name, InMemory(images[warm], target[warm]), labels[warm],
                        folds[warm], settings, make_model, classes)  # fmt: skip
        passes = len(labels) * (FOLDS - 1)
        rate: dict[str, list[float]] = {v: [] for v in variants}
        load_share: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            for name in variants:
                source = TimedSource(InMemory(images, target))
                start = time.perf_counter()
                run_variant(name, source, labels, folds, settings, make_model, classes)
                seconds = time.perf_counter() - start
                rate[name].append(passes / FOLDS / (seconds / FOLDS))
                load_share[name].append(source.seconds / seconds)
        for name in variants:
            ratio = statistics.median(
                a / b for a, b in zip(rate[name], rate["current"], strict=True)
            )
            share = statistics.median(load_share[name])
            print(
                f"| {set_name} | {name} | {statistics.median(rate[name]):.0f} | {ratio:.2f}x "
                f"| {100 * share:.1f} | {100 * (1 - share):.1f} |",
                flush=True,
            )


def f1_table(images: torch.Tensor, digits_labels: np.ndarray, args: argparse.Namespace) -> None:
    noisy = symmetric_noise(digits_labels, args.p, seed=args.seed)
    truth = noisy != digits_labels
    folds = folds_for(noisy, args.seed)
    print(
        f"\n## 2. label-issue F1: digits 16x16, symmetric {args.p:.0%} noise ({truth.sum()} "
        f"flipped), seed {args.seed}, batch {BATCH}, lr 0.05, wd 5e-4, 5 folds\n"
    )
    print("| variant | epochs | P / R / F1 | OOF acc | max abs dprob vs current | s |")
    print("|---|---|---|---|---|---|")

    def make_model() -> nn.Module:
        return build_classifier("small_cnn", in_channels=1, num_classes=K, image_size=16)

    rows = [(v, args.epochs) for v in [*WRAP, STACKED]] + [("current", e) for e in args.fewer]
    reference: np.ndarray | None = None
    for name, epochs in rows:
        settings = TrainSettings.of(epochs=epochs, batch_size=BATCH, lr=0.05, weight_decay=5e-4,
                                    flip=False, seed=args.seed)  # fmt: skip
        start = time.perf_counter()
        source = InMemory(images, torch.as_tensor(noisy))
        run = run_variant(name, source, noisy, folds, settings, make_model, K)
        seconds = time.perf_counter() - start
        flags = classification_label_issues(noisy, run["probs"], aum=run["aum"])[
            "is_label_issue"
        ].to_numpy()
        if reference is None:
            reference = run["probs"]
        p, r, f = prf(flags, truth)
        acc = (run["probs"].argmax(1) == digits_labels).mean()
        diff = float(np.abs(run["probs"] - reference).max())
        label = name if epochs == args.epochs else f"(d) {epochs} epochs"
        print(f"| {label} | {epochs} | {p:.3f} / {r:.3f} / **{f:.3f}** | {acc:.3f} | "
              f"{diff:.2g} | {seconds:.0f} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rgb-images", type=int, default=1000)
    parser.add_argument("--rgb-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4, help="label_noise's recipe")
    parser.add_argument("--fewer", type=int, nargs="*", default=[3, 2])
    parser.add_argument("--p", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 round, 300 RGB images: smoke")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-f1", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rgb_images, args.fewer = 1, 300, [2]
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread")
    with tempfile.TemporaryDirectory() as tmp:
        digits = write_digits(Path(tmp))
        images = load(Path(tmp), digits, 16)
    if not args.skip_throughput:
        rgb, rgb_labels = rgb_set(args.rgb_images, args.rgb_size)
        sets = {
            "digits 16x16x1": (images, digits.labels, 16),
            f"RGB {args.rgb_size}x{args.rgb_size}x3": (rgb, rgb_labels, args.rgb_size),
        }
        throughput(sets, args.rounds, [*WRAP, STACKED])
    if not args.skip_f1:
        f1_table(images, digits.labels, args)


if __name__ == "__main__":
    main()
