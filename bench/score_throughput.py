"""Out-of-fold scoring throughput against a per-sample loop, and segmentation scoring memory.

    .venv/bin/python bench/score_throughput.py [--cls-images 2000] [--cls-size 32] [--epochs 2]
                                               [--folds 5] [--naive-steps 400] [--threads 1]
                                               [--images 10000] [--size 256] [--workers 2]
                                               [--quick] [--skip-classification]
                                               [--skip-segmentation] [--skip-gpu]

1. Classification: ``--cls-images`` synthetic RGB PNG files (5 classes, a class tint over
   ``bench._synth.scene``), ``--folds`` folds, the small CNN, batch 64, ``--epochs`` epochs.
   Ours: ``make_source`` (decoded once, in memory) + ``out_of_fold``. The obvious alternative,
   in the same process with the same model and threads: a per-sample Python loop that reads
   and decodes the file with ``load_image`` at every step and trains on a batch of one (SGD at
   lr / 64), then predicts one sample at a time. The loop is timed on ``--naive-steps`` training
   steps and as many predictions of fold 0 (after 10 untimed warm-up steps; measured before and
   after ours, mean) and extrapolated per sample-pass to the whole run. The same loop over
   the already decoded tensors splits the gain into decoding and batching.
   samples/s = (N x epochs x (folds - 1) training passes + N predictions) / seconds.
   Goal: ours >= 10x the per-sample loop on the CPU.
2. Segmentation memory: ``--images`` RGB PNG images of ``--size``² with 5-class masks (10% carry
   a planted blob of a wrong class), scored in a fresh process: ``make_source`` with the
   default 2 GiB cache budget (the decoded set is larger, so batches stream from disk through
   DataLoader workers), ``out_of_fold`` with 2 folds, 1 epoch and a deliberately cheap model
   (``Conv2d(3, 5, 1)``: this measures memory, not accuracy), a ``ShardWriter`` sink in a temp
   dir, then ``score_segmentation``. Another thread samples VmRSS and Pss (smaps_rollup) of
   the process and all its descendants every 0.2 s. Goal: peak tree RSS < 2 GB while holding
   every float32 probability would take ``N x 5 x size² x 4`` bytes (13.1 GB at 10k x 256²).

3. On CUDA only (a machine without one prints that and skips it): the classification run of
   1. with ``out_of_fold`` on the GPU (bfloat16 autocast, the score stage's default), images/s
   per fold-epoch and the GPU utilisation sampled every 50 ms while it runs
   (``torch.cuda.utilization``, NVML: the share of time a kernel ran), mean and peak.

GB here is 10^9 bytes, MiB 2^20.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._gpu import Utilisation
from bench._synth import scene
from datapipe.config import ScoreParams
from datapipe.data import ImageSpec, MaskSpec, SampleSpec, load_image
from datapipe.models import build_classifier
from datapipe.parallel import parallel_map
from datapipe.scoring.data import InMemory, decoded_bytes, make_source
from datapipe.scoring.oof import TrainSettings, out_of_fold
from datapipe.scoring.segmentation import ShardWriter, score_segmentation

CLASSES = 5
IGNORE = 255
BATCH = 64
WARMUP_STEPS = 10
GB = 1e9
MIB = 2**20


def _spec(root: Path, size: int, *, masks: bool) -> SampleSpec:
    image = ImageSpec(
        root=root,
        scaling={"uint8": 8},
        percentiles=(0.5, 99.5),
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        size=size,
    )
    mask = MaskSpec(class_values=list(range(CLASSES)), ignore_index=IGNORE) if masks else None
    return SampleSpec(image=image, mask=mask)


# --- 1. classification throughput -----------------------------------------------------------


def write_classification(root: Path, n: int, size: int) -> tuple[list[str], np.ndarray]:
    """``n`` RGB PNG files, label ``i % 5``: a texture plus a class tint (learnable)."""
    rng = np.random.default_rng(0)
    tints = rng.uniform(0, 1, (CLASSES, 3))
    paths, labels = [], np.arange(n) % CLASSES
    for i, label in enumerate(labels):
        img = 0.6 * scene(rng, size, 3) + 0.4 * tints[label]
        rel = f"{i:05d}.png"
        cv2.imwrite(str(root / rel), np.round(img * 255).astype(np.uint8)[..., ::-1])
        paths.append(rel)
    return paths, labels


def naive_loop(
    get: Callable[[int], torch.Tensor],
    labels: np.ndarray,
    train: np.ndarray,
    held: np.ndarray,
    make_model: Callable[[], nn.Module],
    settings: TrainSettings,
) -> tuple[float, float]:
    """Seconds per training step and per prediction of a batch-of-one loop."""
    model = make_model()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.recipe.lr / settings.batch_size,
        momentum=0.9,
        nesterov=True,
        weight_decay=settings.recipe.weight_decay,
    )
    loss_fn = nn.CrossEntropyLoss()

    def step(i: int) -> None:
        loss = loss_fn(model(get(i)[None].float()), torch.tensor([int(labels[i])]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for i in train[:WARMUP_STEPS]:
        step(int(i))
    start = time.perf_counter()
    for i in train[WARMUP_STEPS:]:
        step(int(i))
    per_step = (time.perf_counter() - start) / max(1, len(train) - WARMUP_STEPS)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in held:
            model(get(int(i))[None].float()).softmax(1)
    return per_step, (time.perf_counter() - start) / max(1, len(held))


def bench_classification(args: argparse.Namespace) -> None:
    n, size, epochs, folds_k = args.cls_images, args.cls_size, args.epochs, args.folds
    settings = TrainSettings.of(epochs=epochs, batch_size=BATCH, seed=0)
    train_passes, predictions = n * epochs * (folds_k - 1), n
    work = train_passes + predictions

    def make_model() -> nn.Module:
        return build_classifier("small_cnn", in_channels=3, num_classes=CLASSES, image_size=size)

    print(
        f"\n## 1. classification: {n} RGB PNG {size}x{size}, {CLASSES} classes, {folds_k} folds, "
        f"{epochs} epochs, small_cnn, batch {BATCH}, torch threads {torch.get_num_threads()}, "
        f"{args.workers} decode workers\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench_score_cls_") as tmp:
        root = Path(tmp)
        paths, labels = write_classification(root, n, size)
        folds = (np.arange(n) // CLASSES) % folds_k  # every fold holds every class equally
        spec = _spec(root, size, masks=False)
        items: list[tuple[str, str | None]] = [(p, None) for p in paths]
        order = np.random.default_rng(1).permutation(np.flatnonzero(folds != 0))
        train = order[: args.naive_steps + WARMUP_STEPS]
        held = np.flatnonzero(folds == 0)[: args.naive_steps]

        def from_disk(i: int) -> torch.Tensor:
            return torch.from_numpy(load_image(paths[i], spec.image))

        naive: list[tuple[float, float]] = []
        naive.append(naive_loop(from_disk, labels, train, held, make_model, settings))

        start = time.perf_counter()
        source = make_source(
            items, spec, labels, workers=args.workers, max_bytes=2 * 2**30, desc="decode"
        )
        decode_s = time.perf_counter() - start
        assert isinstance(source, InMemory)  # 2000 x 3 x 32² float16 is 12 MB
        oof = out_of_fold(
            source,
            labels,
            folds,
            np.ones(n, bool),
            num_classes=CLASSES,
            make_model=make_model,
            settings=settings,
            desc="bench",
        )
        ours_s = time.perf_counter() - start
        naive.append(naive_loop(from_disk, labels, train, held, make_model, settings))
        images = source.images
        decoded = naive_loop(lambda i: images[i], labels, train, held, make_model, settings)

    step_s, pred_s = np.mean(naive, axis=0)
    naive_s = step_s * train_passes + pred_s * predictions
    decoded_s = decoded[0] * train_passes + decoded[1] * predictions
    acc = np.nanmean(list(oof.fold_accuracy.values()))
    oof_s = ours_s - decode_s
    timed = f"{len(train) - WARMUP_STEPS} steps + {len(held)} predictions of fold 0"
    rows = [
        ("ours: make_source (decode once) + out_of_fold, measured", ours_s),
        ("ours: out_of_fold alone (its share of the above)", oof_s),
        (f"per-sample loop, read + decode every step (from {timed}, mean of 2)", naive_s),
        (f"per-sample loop on the decoded tensors (from {timed})", decoded_s),
    ]
    print("| method | seconds | samples/s |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {work / seconds:.0f} |")
    print(
        f"\nsample-passes: {train_passes} training + {predictions} predictions = {work}; the "
        "loops are extrapolated per sample-pass\n"
        f"per-sample loop: {step_s * 1e3:.2f} ms/step, {pred_s * 1e3:.2f} ms/prediction (runs "
        + ", ".join(f"{s * 1e3:.2f}/{p * 1e3:.2f}" for s, p in naive)
        + f"); on decoded tensors {decoded[0] * 1e3:.2f}/{decoded[1] * 1e3:.2f} ms\n"
        f"ours: decode {decode_s:.1f} s (mostly starting the worker pool), out_of_fold "
        f"{oof_s:.1f} s, OOF accuracy {acc:.3f}\n"
        f"speed-up over the per-sample loop: {naive_s / ours_s:.1f}x end to end, "
        f"{naive_s / oof_s:.1f}x without the decode step; batching alone (decoded tensors vs "
        f"out_of_fold) {decoded_s / oof_s:.1f}x. Goal >= 10x: "
        f"{'met' if naive_s / ours_s >= 10 else 'NOT met'}",
        flush=True,
    )


def bench_gpu(args: argparse.Namespace) -> None:
    """Section 3: out_of_fold on CUDA, its images/s per fold-epoch and the GPU utilisation."""
    if not torch.cuda.is_available():
        print("\n## 3. GPU utilisation: no CUDA device here, not measured\n")
        return
    n, size, epochs, folds_k = args.cls_images, args.cls_size, args.epochs, args.folds
    settings = TrainSettings.of(epochs=epochs, batch_size=BATCH, seed=0, device="cuda")
    print(f"\n## 3. GPU: {torch.cuda.get_device_name()}, the run of 1 on CUDA\n")
    with tempfile.TemporaryDirectory(prefix="bench_score_gpu_") as tmp:
        root = Path(tmp)
        paths, labels = write_classification(root, n, size)
        folds = (np.arange(n) // CLASSES) % folds_k
        source = make_source([(p, None) for p in paths], _spec(root, size, masks=False), labels,
                             workers=args.workers, max_bytes=2 * 2**30, desc="decode")  # fmt: skip

        def run() -> float:
            start = time.perf_counter()
            out_of_fold(source, labels, folds, np.ones(n, bool), num_classes=CLASSES,
                        make_model=lambda: build_classifier("small_cnn", in_channels=3,
                                                            num_classes=CLASSES, image_size=size),
                        settings=settings, desc="bench gpu")  # fmt: skip
            torch.cuda.synchronize()
            return time.perf_counter() - start

        run()  # warm-up: CUDA context, cuDNN autotuning
        with Utilisation(torch.cuda.utilization) as used:
            seconds = run()
    passes = n * epochs * (folds_k - 1)
    print("| device | seconds | images/s per fold-epoch | GPU utilisation mean / peak |")
    print("|---|---|---|---|")
    print(
        f"| {torch.cuda.get_device_name()} | {seconds:.1f} | {passes / seconds:.0f} | "
        f"{used.mean:.0f}% / {used.peak:.0f}% ({len(used.samples)} samples) |",
        flush=True,
    )


# --- 2. segmentation memory -----------------------------------------------------------------


def _palette() -> np.ndarray:
    return np.random.default_rng(7).integers(30, 226, (CLASSES, 3))


def write_segmentation_sample(i: int, *, root: str, size: int) -> int:
    """Image and mask ``i``: circles of classes 1-4 on class 0, a smooth shading, an ignored
    border; every 10th mask has an extra blob of a wrong class that the image lacks."""
    rng = np.random.default_rng((7, i))
    mask = np.zeros((size, size), np.uint8)
    for _ in range(6):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        radius = int(rng.integers(size // 16, size // 4))
        cv2.circle(mask, centre, radius, int(rng.integers(1, CLASSES)), -1)
    ramp = np.linspace(-20, 20, size)
    img = _palette()[mask] + (ramp[:, None] + ramp[None, :] * rng.uniform(-1, 1))[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    if i % 10 == 0:
        centre = (int(rng.integers(size // 4, 3 * size // 4)),) * 2
        wrong = (int(mask[centre[1], centre[0]]) + 1) % CLASSES
        cv2.circle(mask, centre, size // 8, wrong, -1)
    mask[: size // 64 + 1] = IGNORE
    cv2.imwrite(f"{root}/images/{i:05d}.png", img[..., ::-1])
    cv2.imwrite(f"{root}/masks/{i:05d}.png", mask)
    return i


def segmentation_once(root: Path, shards: Path, args: argparse.Namespace) -> dict[str, object]:
    """The measured run (in a fresh process): source, OOF with a shard sink, scoring."""
    torch.set_num_threads(args.threads)
    n = args.images
    items: list[tuple[str, str | None]] = [
        (f"images/{i:05d}.png", f"masks/{i:05d}.png") for i in range(n)
    ]
    spec = _spec(root, args.size, masks=True)
    marks = {"make_source": time.time()}
    source = make_source(
        items,
        spec,
        np.zeros(n, np.int64),
        workers=args.workers,
        max_bytes=int(args.max_cache_gb * 2**30),
        desc="decode",
    )
    marks["out_of_fold"] = time.time()
    fit = ScoreParams().segmentation
    oof = out_of_fold(
        source,
        None,
        np.arange(n) % 2,
        np.ones(n, bool),
        num_classes=CLASSES,
        make_model=lambda: nn.Conv2d(3, CLASSES, 1),
        settings=TrainSettings.of(
            epochs=1, batch_size=fit.batch_size, lr=fit.lr, seed=0, ignore_index=IGNORE
        ),
        desc="bench seg",
        sink=ShardWriter(shards),
    )
    shard_bytes = sum(p.stat().st_size for p in shards.iterdir())
    marks["score_segmentation"] = time.time()
    params = ScoreParams()
    scores = score_segmentation(
        shards,
        num_classes=CLASSES,
        ignore_index=IGNORE,
        issue_fraction=params.seg_issue_fraction,
        hard_pixel_fraction=params.hard_pixel_fraction,
    )
    marks["end"] = time.time()
    flagged = scores.per_image.index[scores.per_image["is_label_issue"]].to_numpy()
    planted = np.arange(0, n, 10)
    return {
        "marks": marks,
        "source": type(source).__name__,
        "batch_size": fit.batch_size,
        "shard_bytes": shard_bytes,
        "shards": len(list(shards.iterdir())),
        "fold_accuracy": list(oof.fold_accuracy.values()),
        "flagged": len(flagged),
        "planted_recall": float(np.isin(planted, flagged).mean()),
        "issue_maps": len(scores.issue_maps),
        "self_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _field_kb(path: str, key: str) -> int:
    try:
        with Path(path).open() as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMonitor(threading.Thread):
    """Samples ``(time, VmRSS bytes, Pss bytes, processes)`` of ``pid`` and its descendants."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree = _descendants(self.pid)
            rss = sum(_field_kb(f"/proc/{p}/status", "VmRSS:") for p in tree)
            pss = sum(_field_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in tree)
            self.samples.append((time.time(), rss * 1024, pss * 1024, len(tree)))
            self.done.wait(self.every_s)


def bench_segmentation(args: argparse.Namespace) -> None:
    n, size = args.images, args.size
    full_probs = n * CLASSES * size * size * 4
    need = decoded_bytes(n, 3, size, masks=True)
    print(
        f"\n## 2. segmentation memory: {n} RGB PNG {size}x{size}, {CLASSES} classes, 2 folds, "
        f"1 epoch, model Conv2d(3, {CLASSES}, 1) (cheap on purpose: memory, not accuracy), "
        f"torch threads {args.threads}, {args.workers} loader workers, cache budget "
        f"{args.max_cache_gb} GiB vs {need / GB:.2f} GB decoded (images + masks)\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench_score_seg_") as tmp:
        root = Path(tmp) / "data"
        for sub in ("images", "masks"):
            (root / sub).mkdir(parents=True)
        start = time.perf_counter()
        write = functools.partial(write_segmentation_sample, root=str(root), size=size)
        for _ in parallel_map(write, range(n), workers=args.workers, desc="write", chunksize=64):
            pass
        write_s = time.perf_counter() - start
        on_disk = sum(p.stat().st_size for p in root.rglob("*.png"))
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--seg-once", str(root), "--seg-out", str(out)]
        cmd += ["--images", str(n), "--size", str(size), "--threads", str(args.threads)]
        cmd += ["--workers", str(args.workers), "--max-cache-gb", str(args.max_cache_gb)]
        launch = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        monitor = TreeMonitor(proc.pid)
        monitor.start()
        log, _ = proc.communicate()
        exited = time.time()
        monitor.done.set()
        monitor.join()
        if proc.returncode != 0:
            print(log)
            raise SystemExit(f"the measured run failed with exit code {proc.returncode}")
        r = json.loads(out.read_text())
    m = r["marks"]
    phases = [
        ("start-up: interpreter, imports", launch, m["make_source"]),
        ("make_source", m["make_source"], m["out_of_fold"]),
        ("out_of_fold: train, predict, write shards", m["out_of_fold"], m["score_segmentation"]),
        ("score_segmentation: two passes", m["score_segmentation"], m["end"]),
        ("whole process", launch, exited),
    ]
    print("| phase | seconds | peak tree RSS MiB | peak tree PSS MiB | processes |")
    print("|---|---|---|---|---|")
    for label, a, b in phases:
        inside = [s for s in monitor.samples if a <= s[0] <= b + 0.2]
        if not inside:  # shorter than one sampling interval
            print(f"| {label} | {b - a:.1f} | - | - | - |")
            continue
        rss, pss, procs = (max(s[j] for s in inside) for j in (1, 2, 3))
        print(f"| {label} | {b - a:.1f} | {rss / MIB:.0f} | {pss / MIB:.0f} | {procs} |")
    peak_rss = max((s[1] for s in monitor.samples), default=0)
    peak_pss = max((s[2] for s in monitor.samples), default=0)
    print(
        f"\nsource: {r['source']} (batch {r['batch_size']}, predictions in batches of "
        f"{2 * r['batch_size']}); {len(monitor.samples)} samples of the process tree\n"
        f"peak tree RSS {peak_rss / GB:.2f} GB (sum of VmRSS: pages shared between the "
        f"processes count in each), peak tree PSS {peak_pss / GB:.2f} GB; getrusage maxima: "
        f"process {r['self_maxrss'] / GB:.2f} GB, "
        f"largest child {r['children_maxrss'] / GB:.2f} GB\n"
        f"goal < 2 GB: {'met' if peak_rss < 2 * GB else 'NOT met'} by the sum of RSS, "
        f"{'met' if peak_pss < 2 * GB else 'NOT met'} by PSS; holding "
        f"every float32 probability would take {n} x {CLASSES} x {size}² x 4 B = "
        f"{full_probs / GB:.2f} GB\n"
        f"float16 shards on disk: {r['shard_bytes'] / GB:.2f} GB in {r['shards']} files; "
        f"input PNGs {on_disk / GB:.2f} GB, written in {write_s:.1f} s (not in the run)\n"
        f"cheap model: OOF pixel accuracy per fold "
        + ", ".join(f"{a:.3f}" for a in r["fold_accuracy"])
        + f"; {r['flagged']} images flagged, {r['issue_maps']} issue maps kept in memory, "
        f"recall of the {len(range(0, n, 10))} planted wrong blobs {r['planted_recall']:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cls-images", type=int, default=2000)
    parser.add_argument("--cls-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--naive-steps", type=int, default=400)
    parser.add_argument("--images", type=int, default=10_000, help="segmentation images")
    parser.add_argument("--size", type=int, default=256, help="segmentation image size")
    parser.add_argument("--max-cache-gb", type=float, default=ScoreParams().max_cache_gb)
    # One torch thread: on this shared 2-core machine 2 threads made batch-1 steps 5x slower.
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--workers", type=int, default=2, help="decode / DataLoader processes")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--skip-classification", action="store_true")
    parser.add_argument("--skip-segmentation", action="store_true")
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--seg-once", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seg-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seg_once:
        shards = Path(tempfile.mkdtemp(prefix="shards_", dir=args.seg_once.parent))
        try:
            result = segmentation_once(args.seg_once, shards, args)
        finally:
            shutil.rmtree(shards, ignore_errors=True)
        args.seg_out.write_text(json.dumps(result))
        return
    if args.quick:
        args.cls_images, args.cls_size, args.epochs, args.naive_steps = 200, 16, 1, 40
        args.images, args.size, args.max_cache_gb = 200, 64, 0.001  # small, still streamed
    torch.set_num_threads(args.threads)
    glibc = os.environ.get("GLIBC_TUNABLES", "unset")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} CPUs, GLIBC_TUNABLES={glibc}"
    )
    if not args.skip_classification:
        bench_classification(args)
    if not args.skip_segmentation:
        bench_segmentation(args)
    if not args.skip_gpu:
        bench_gpu(args)


if __name__ == "__main__":
    main()
