"""Segmentation label quality from out-of-fold pixel probabilities, streamed from disk shards.

cleanlab's segmentation scorers take every pixel probability of the dataset as one array and
know no ``ignore_index``; 10k images of 256² with 5 classes would be 13 GB of float32. Here the
held-out probabilities go to float16 shards on disk (:class:`ShardWriter`) and one streaming
pass over them scores every image, skipping ignored pixels:

1. per class ``c``, the threshold ``t_c`` = mean p(c) over pixels labelled ``c`` (confident
   learning's per-class threshold, Northcutt et al. 2021), and the pixel confusion matrix;
2. per image, a pixel is a *label issue* when the model confidently prefers another class
   (``argmax = j != given`` and ``p(j) >= t_j``); the image's ``issue_fraction`` is the share
   of its labelled pixels that are issues and its ``label_quality`` is ``1 - issue_fraction``.
   The softmin-pooled pixel self-confidence (cleanlab's default image score, temperature 0.1)
   is reported next to it as ``softmin_quality``.

Both come from the same pass: ``t`` is only known at the end, so each image keeps the float16
p(j) of its pixels with ``argmax = j != given``, grouped by ``j`` (2 bytes a disagreeing pixel),
and its issue count is taken once ``t`` is known; the shards of the flagged images are read a
second time for their issue maps. The result is bit for bit the two-pass computation: the
argmax runs on the float16 bit patterns (their order is the values' order for finite
non-negative numbers; other shards take ``np.argmax`` on float32), every float16 -> float32
function goes through a 65,536-entry table computed with the same NumPy function, means are
taken over the same pixels in the same order, and the per-class sums of p are exact in
float64 (multiples of 2^-24). ``tests/scoring/test_segmentation.py`` holds the two-pass
reference.

An image is flagged when its ``issue_fraction`` reaches a threshold: a given number, or by
default (``"auto"``) one calibrated from the dataset's own distribution of issue shares,
:func:`issue_threshold` (a robust outlier rule, median + k·MAD with a floor; its measurement is
there).

Per image and class, the share of labelled pixels the model misses (hard positives) and the
share of the pixels it calls ``c`` that are labelled otherwise (hard negatives, false alarms).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from datapipe.io import atomic_path

SOFTMIN_TEMPERATURE = 0.1
EPS = 1e-12
#: the default flag rule, :func:`issue_threshold`: median + AUTO_K scaled MADs, >= AUTO_FLOOR
AUTO_K = 3.0
AUTO_FLOOR = 0.01
MAD_SCALE = 1.4826  # MAD -> standard deviation of a normal distribution
_F16_INF = 0x7C00  # float16 bit patterns below this are the finite numbers >= +0
#: pixels scored at a time (whole images): small enough to stay in cache, large enough that
#: NumPy's per-call overhead is paid for many pixels
CHUNK_PIXELS = 1 << 18
_HARD_COLUMNS = ["index", "class", "role", "difficulty", "loss", "prob", "pixel_fraction"]


class ShardWriter:
    """A sink for :func:`~datapipe.scoring.oof.out_of_fold`: one ``.npz`` per held-out batch
    with ``index``, ``probs`` (float16) and ``targets`` (int16). Names carry the rank, so ranks
    under torchrun never collide (they must share the directory's file system)."""

    def __init__(self, directory: Path, *, rank: int = 0) -> None:
        self.directory = directory
        self.rank = rank
        self.count = 0
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, index: np.ndarray, probs: np.ndarray, targets: np.ndarray) -> None:
        path = self.directory / f"r{self.rank:03d}_{self.count:06d}.npz"
        with atomic_path(path) as tmp:  # a kill never leaves half a shard
            np.savez(
                tmp, index=index, probs=probs.astype(np.float16), targets=targets.astype(np.int16)
            )
        self.count += 1

    def truncate(self, count: int) -> None:
        """Remove this rank's shards after the first ``count`` and continue from there."""
        for path in self.directory.glob(f"r{self.rank:03d}_*.npz"):
            if int(path.stem.split("_")[1]) >= count:
                path.unlink()
        self.count = count


def read_shards(directory: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(index (B,), probs (B, K, H, W) float16, targets (B, H, W))`` shard by shard."""
    for path in _shard_paths(directory):
        yield _read_shard(path)


def _shard_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("r*_*.npz"))


def _read_shard(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard, each member read straight into its array: ``np.load`` copies twice and
    checks the CRC (3.8x the time; a memory map measured no faster than this). A compressed
    or unusual member goes through ``np.load``'s reader."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
        for info in archive.infolist():
            array = _read_stored_npy(raw, info)
            if array is None:
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            arrays[info.filename.removesuffix(".npy")] = array
    return arrays["index"], arrays["probs"], arrays["targets"]


def _read_stored_npy(raw: io.BufferedReader, info: zipfile.ZipInfo) -> np.ndarray | None:
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    raw.seek(info.header_offset)
    local = raw.read(30)  # the local header: its name and extra field lengths are its own
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    raw.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(raw)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
    else:
        return None
    if fortran or dtype.hasobject:
        return None
    array = np.empty(shape, dtype)
    if raw.readinto(array.reshape(-1).view(np.uint8).data) != array.nbytes:
        raise ValueError(f"expected {array.nbytes} bytes of {info.filename}; the shard is cut")
    return array


@dataclass
class SegmentationScores:
    per_image: pd.DataFrame  # one row per scored sample, indexed by its position
    hard_examples: pd.DataFrame  # index, class, role, difficulty, loss, prob, pixel_fraction
    confusion: np.ndarray  # (K, K) pixel counts, rows = given, columns = predicted
    thresholds: np.ndarray  # (K,) per-class confidence thresholds
    issue_threshold: float  # the issue share at which an image was flagged
    issue_maps: dict[int, np.ndarray] = field(default_factory=dict)  # flagged: uint8 maps


def class_thresholds(
    directory: Path, num_classes: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean self-confidence ``t`` ``(K,)`` and the pixel confusion matrix."""
    scan = _scan(directory, num_classes, ignore_index)
    return scan.thresholds(), scan.confusion


def issue_threshold(
    fractions: np.ndarray, *, k: float = AUTO_K, floor: float = AUTO_FLOOR
) -> float:
    """The issue share from which an image is flagged, calibrated on the dataset's own shares:
    ``max(floor, median + k * 1.4826 * MAD)`` over the finite values of ``fractions``.

    Clean images have a small share of issue pixels (object borders, hard textures) that
    depends on the data and the model, and a corrupted mask stands out against it rather than
    against a fixed number. The median and the median absolute deviation ignore up to half of
    the images being outliers; the floor keeps a near-perfect set (MAD about 0) from flagging
    images over a handful of border pixels.

    Chosen by measurement (``bench/seg_flagging.py --rules``: params.yaml's U-Net recipe,
    folds 3). 144 real 128² DAPI nuclei crops (scored at 64 px, 20 epochs) with 28 planted
    corruptions, 7 each of dilate / erode by 2-3 px, shift by 3-4 px and half the nuclei
    relabelled background, two draws: P / R / F1 0.90 / 0.68 / 0.78 and 0.87 / 0.71 / 0.78,
    where the old fixed share 0.05 had 1.00 / 0.18 / 0.30 and 1.00 / 0.32 / 0.49; recall per
    type dilate 0.43, 0.43 (was 0.14, 0.29), erode 1.00, 1.00 (0.43, 0.29), shift 0.57, 0.43
    (0.00, 0.14), relabel 0.71, 1.00 (0.14, 0.57). ``sample_data/shapes_seg`` (48 px, 30
    epochs): 12 flagged, all 9 corrupted masks among them, P / R / F1 0.75 / 1.00 / 0.86 (0.05:
    0.90 / 1.00 / 0.95). k = 2 flagged more clean images (shapes_seg precision 0.47), k = 4
    lost a quarter of the recall on one nuclei draw (F1 0.64); floors 0.005 and 0.01 flagged
    the same images, 0.02 lost recall. Dilation stays the weak spot, most likely because its
    rim pixels, labelled foreground, count as issues only where p(background) reaches
    background's threshold (mean p over background pixels, close to 1 on sparse nuclei), so
    they rank low whatever the image threshold (not measured per pixel).

    Shapes:
        ``fractions`` ``(N,)`` floats in [0, 1]; NaN (no labelled pixel) is left out.
    """
    f = np.asarray(fractions, np.float64).ravel()
    f = f[np.isfinite(f)]
    if k < 0 or not 0 < floor <= 1:
        raise ValueError(f"expected k >= 0 and 0 < floor <= 1; got k={k}, floor={floor}")
    if not len(f):
        return floor
    median = float(np.median(f))
    mad = float(np.median(np.abs(f - median))) * MAD_SCALE
    return min(1.0, max(floor, median + k * mad))


def score_segmentation(
    directory: Path,
    *,
    num_classes: int,
    ignore_index: int,
    issue_fraction: float | Literal["auto"],
    hard_pixel_fraction: float,
) -> SegmentationScores:
    """One pass over the shards in ``directory``; images whose ``issue_fraction`` reaches
    ``issue_fraction`` (``"auto"``: :func:`issue_threshold` of all images' shares) are flagged
    and get an issue map (0 fine, 128 ignored, 255 issue)."""
    if issue_fraction != "auto" and not 0 < issue_fraction <= 1:
        raise ValueError(f"issue_fraction must be 'auto' or in (0, 1]; got {issue_fraction!r}")
    scan = _scan(directory, num_classes, ignore_index)
    thresholds = scan.thresholds()
    if not any(len(part.index) for part in scan.parts):
        cut = AUTO_FLOOR if issue_fraction == "auto" else float(issue_fraction)
        hard = pd.DataFrame([], columns=_HARD_COLUMNS)
        return SegmentationScores(pd.DataFrame(), hard, scan.confusion, thresholds, cut)
    issues = np.concatenate([part.issue_pixels(thresholds) for part in scan.parts])
    per_image = _per_image_table(scan.parts, issues)
    fractions = per_image["issue_fraction"].to_numpy(np.float64)
    cut = issue_threshold(fractions) if issue_fraction == "auto" else float(issue_fraction)
    per_image["is_label_issue"] = per_image["issue_fraction"] >= cut
    flagged = per_image.index[per_image["is_label_issue"]].to_numpy(np.int64)
    maps = _issue_maps(scan, set(flagged.tolist()), thresholds, ignore_index)
    hard = _hard_table(scan.parts, hard_pixel_fraction)
    return SegmentationScores(per_image, hard, scan.confusion, thresholds, cut, maps)


def _tables() -> dict[str, np.ndarray]:
    """Per float16 bit pattern (65,536 entries): what the scores take of a probability. Rows
    of 8 or 16 bytes go in one gather (viewed as complex)."""
    with np.errstate(all="ignore"):  # NaN patterns (signalling ones too)
        raw = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
        raw64 = raw.astype(np.float64)
        s = np.clip(raw, EPS, 1.0)  # self-confidence
        nlog = -np.log(s)  # a labelled pixel's loss
        alarm = np.clip(raw, 0.0, 1.0 - 1e-7)  # p(c) of a pixel called c but labelled otherwise
        log1p_neg = np.log1p(-alarm)
    s_nlog = np.stack([s, nlog], 1)
    s_nlog_raw = np.concatenate([s_nlog, raw64[:, None].view(np.float32)], 1)
    return {
        "s": s,
        "nlog": nlog,
        "s_nlog": s_nlog.view(np.complex64).ravel(),
        "s_nlog_raw": s_nlog_raw.view(np.complex128).ravel(),  # p in float64: exact sums
        "alarm_log1p": np.stack([alarm, log1p_neg], 1).view(np.complex64).ravel(),
    }


def _rows(table: str | np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``table`` (a name in ``_tables()``) at ``bits`` as ``(n, columns)`` float32."""
    packed = _tables()[table] if isinstance(table, str) else table
    return packed.take(bits).view(np.float32).reshape(len(bits), packed.itemsize // 4)


def _mean32(x: np.ndarray) -> np.float32:
    """``x.mean()`` of float32 ``x`` (the same float32 pairwise sum, divided in float64) without
    its Python overhead (a fifth of the pass at 20 calls an image)."""
    return np.float32(np.float64(np.add.reduce(x)) / len(x))


@dataclass
class _Part:
    """What one shard leaves for the end of the pass. Shapes: B images, K classes."""

    path: Path  # the shard
    offset: int  # its images from here on
    index: np.ndarray  # (B,) int64
    valid: np.ndarray  # (B,) int64 labelled pixels
    image: np.ndarray  # (B, 5) softmin, self-confidence, loss, pixel accuracy, difficulty
    positives: np.ndarray  # (B, K) int64 pixels labelled c
    missed: np.ndarray  # (B, K) int64 of those, predicted otherwise
    called: np.ndarray  # (B, K) int64 pixels predicted c
    false_alarms: np.ndarray  # (B, K) int64 of those, labelled otherwise
    pos_stats: np.ndarray  # (B, K, 2) loss, prob over pixels labelled c
    neg_stats: np.ndarray  # (B, K, 2) loss, prob over false alarms
    off_diagonal: np.ndarray  # (K, K) int64 the shard's confusion without its diagonal
    #: per class j, the float16 p(j) bits of the false alarms of j, image by image
    disagree: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, path: Path, offset: int, index: np.ndarray, k: int) -> _Part:
        b = len(index)

        def counts() -> np.ndarray:
            return np.zeros((b, k), np.int64)

        return cls(
            path, offset, np.asarray(index, np.int64).copy(), np.zeros(b, np.int64),
            image=np.full((b, 5), np.nan), positives=counts(), missed=counts(),
            called=counts(), false_alarms=counts(), pos_stats=np.full((b, k, 2), np.nan),
            neg_stats=np.full((b, k, 2), np.nan), off_diagonal=np.zeros((k, k), np.int64),
        )  # fmt: skip

    def issue_pixels(self, thresholds: np.ndarray) -> np.ndarray:
        """Per image, the disagreeing pixels with ``p(j) >= t_j``: ``(B,)`` int64."""
        out = np.zeros(len(self.index), np.int64)
        for j, bits in self.disagree.items():
            hit = bits.view(np.float16).astype(np.float64) >= thresholds[j]
            out += _segment_sums(hit, self.false_alarms[:, j])
        return out


def _segment_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of ``lengths`` (exact for integers and booleans)."""
    cumulative = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    ends = np.cumsum(lengths)
    return cumulative[ends] - cumulative[ends - lengths]


@dataclass
class _Scan:
    parts: list[_Part]
    conf_sum: np.ndarray  # (K,) float64, sum of p(c) over pixels labelled c
    counts: np.ndarray  # (K,) float64 pixels labelled c
    confusion: np.ndarray  # (K, K) int64

    def thresholds(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.conf_sum / self.counts, 1.0)


def _scan(directory: Path, num_classes: int, ignore_index: int) -> _Scan:
    k = num_classes
    scan = _Scan([], np.zeros(k), np.zeros(k), np.zeros((k, k), np.int64))
    for path in _shard_paths(directory):
        index, probs, targets = _read_shard(path)
        if len(index) != len(probs):
            raise ValueError(f"expected a shard index of {len(probs)} positions; got {len(index)}")
        step = max(1, CHUNK_PIXELS // max(1, int(np.prod(targets.shape[1:]))))
        for start in range(0, len(index), step):  # a few images at a time stay in cache
            part = _Part.empty(path, start, index[start : start + step], k)
            conf_rows = _score_chunk(probs[start : start + step], targets[start : start + step],
                                     part, ignore_index)  # fmt: skip
            for row in conf_rows:  # image by image, as per-image sums: the same rounding
                scan.conf_sum += row
            scan.counts += part.positives.sum(0)
            scan.confusion += part.off_diagonal
            scan.confusion[np.diag_indices(k)] += (part.positives - part.missed).sum(0)
            scan.parts.append(part)
    return scan


@dataclass
class _Pixels:
    """Per pixel of a shard, flattened to ``(B, H*W)``: what every later step reads."""

    valid: np.ndarray  # bool
    given: np.ndarray  # uint8/uint16 class, 0 where ignored
    pred: np.ndarray  # same dtype, first argmax
    p_pred: np.ndarray  # uint16 float16 bits of the max probability
    bits: np.ndarray  # (B, K, H*W) uint16 float16 bits of every probability

    def p_given(self) -> np.ndarray:
        """The float16 bits of p(given): p(argmax) but where the two differ."""
        out = self.p_pred.copy()
        differs = np.flatnonzero(self.pred != self.given)
        k, size = self.bits.shape[1:]
        image = differs // size  # flat (b, c, i) = flat (b, i) + (b (K - 1) + c) size
        flat = differs + (image * (k - 1) + self.given.ravel()[differs]) * size
        out.ravel()[differs] = self.bits.ravel().take(flat)
        return out


def _pixels(probs: np.ndarray, targets: np.ndarray, k: int, ignore_index: int) -> _Pixels:
    if probs.ndim != 4 or probs.shape[1] != k or targets.shape != probs[:, 0].shape:
        raise ValueError(
            f"expected probs (B, K={k}, H, W) and targets (B, H, W); "
            f"got {probs.shape} and {targets.shape}"
        )
    b = probs.shape[0]
    bits = np.ascontiguousarray(probs, np.float16).view(np.uint16).reshape(b, k, -1)
    y = targets.reshape(b, -1)
    if y.dtype.kind not in "iu":
        raise ValueError(f"expected integer targets; got {y.dtype}")
    valid = y != ignore_index
    given_wide = y * valid  # 0 where ignored
    as_unsigned = given_wide.view(f"u{given_wide.itemsize}")  # negative -> huge: one max
    if given_wide.size and int(as_unsigned.max()) >= k:
        bad = y[valid & ((y < 0) | (y >= k))][:5].tolist()
        raise ValueError(
            f"expected targets in [0, {k}) or ignore_index={ignore_index}; got e.g. {bad}"
        )
    dtype = np.uint8 if k <= 256 else np.uint16
    given = given_wide.astype(dtype)
    if bits.size and int(bits.max()) < _F16_INF:  # finite, >= +0: bit order is value order
        pred, p_pred = _argmax_bits(bits, dtype)
    else:
        pred = probs.reshape(b, k, -1).astype(np.float32).argmax(1).astype(dtype)
        p_pred = np.take_along_axis(bits, pred[:, None].astype(np.intp), 1)[:, 0]
    return _Pixels(valid, given, pred, p_pred, bits)


def _argmax_bits(bits: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """First argmax and max over axis 1 of ``(B, K, P)`` uint16, by one compare per class."""
    best = bits[:, 0].copy()
    pred: np.ndarray = np.zeros(best.shape, dtype)
    greater = np.empty(best.shape, bool)
    change: np.ndarray = np.empty(best.shape, dtype)
    for c in range(1, bits.shape[1]):
        np.greater(bits[:, c], best, out=greater)
        mask = greater.view(np.uint8) if dtype is np.uint8 else greater.astype(dtype)
        np.negative(mask, out=mask)  # 0 or all ones
        np.bitwise_xor(pred, dtype(c), out=change)
        change &= mask
        pred ^= change  # pred = c where greater
        np.maximum(best, bits[:, c], out=best)
    return pred, best


def _score_chunk(
    probs: np.ndarray, targets: np.ndarray, part: _Part, ignore_index: int
) -> np.ndarray:
    """Fills ``part`` for these images; returns their sums of p(c) over pixels labelled c
    ``(B, K)``."""
    px = _pixels(probs, targets, part.positives.shape[1], ignore_index)
    part.valid[:] = _row_counts(px.valid)
    p_given = px.p_given()
    for i in np.flatnonzero(part.valid):
        bits = p_given[i] if part.valid[i] == px.valid.shape[1] else p_given[i][px.valid[i]]
        part.image[i, [0, 1, 2, 4]] = _image_scores(bits)
    conf_rows = _positives(px, p_given, part)
    _false_alarms(px, part)
    return conf_rows


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """``np.count_nonzero(mask, axis=1)``, 10x faster: along an axis it casts to int first."""
    return np.array([np.count_nonzero(row) for row in mask], np.int64)


def _image_scores(bits: np.ndarray) -> tuple[float, np.float32, np.float32, np.float32]:
    """softmin, self-confidence, loss and difficulty of an image's labelled pixels' p(given)
    float16 ``bits``, as the float32 computation (pixel order) has them."""
    s, loss, w, sw = _pixel_rows(bits)
    self_confidence = _mean32(s)
    softmin = float(np.add.reduce(sw) / np.add.reduce(w))
    return softmin, self_confidence, _mean32(loss), np.float32(1.0) - self_confidence


def _classes(values: np.ndarray, k: int) -> range | list[int]:
    """The classes to look for in ``values``: one boolean compress per class keeps pixel
    order and beats a stable sort on coherent masks, so beyond 8 classes only those present."""
    return range(k) if k <= 8 else np.flatnonzero(np.bincount(values.ravel(), minlength=k)).tolist()


def _positives(px: _Pixels, p_given: np.ndarray, part: _Part) -> np.ndarray:
    """Per image and class c, over the pixels labelled c in pixel order: their count, mean
    loss and p(c) (float32, as ``mean`` takes them) and the sum of p(c) (exact in float64,
    returned ``(B, K)``)."""
    conf_rows = np.zeros(part.positives.shape)
    for c in _classes(px.given, len(conf_rows[0])):
        is_c = px.given == c
        is_c &= px.valid
        counts = _row_counts(is_c)
        part.positives[:, c] = counts
        rows = _rows("s_nlog_raw", p_given.ravel()[is_c.ravel()])  # image by image
        ends = np.cumsum(counts).tolist()
        for i in np.flatnonzero(counts).tolist():
            seg = rows[ends[i] - counts[i] : ends[i]]
            part.pos_stats[i, c] = _mean32(seg[:, 1]), _mean32(seg[:, 0])
            conf_rows[i, c] = np.add.reduce(seg[:, 2:].view(np.float64)[:, 0])
    return conf_rows


def _false_alarms(px: _Pixels, part: _Part) -> None:
    """Per image: its confusion off the diagonal, from its labelled pixels the model gives to
    another class, and per class j over those predicted j in pixel order, mean -log(1 - p(j))
    and p(j), and their p(j) bits (``part.disagree``)."""
    b, k = part.positives.shape
    disagree = px.pred != px.given
    disagree &= px.valid
    per_image = _row_counts(disagree)
    at = np.flatnonzero(disagree)  # image by image; 1-d: a 2-d mask indexes 5x slower
    pred, p_pred = px.pred.ravel().take(at), px.p_pred.ravel().take(at)
    key = (np.repeat(np.arange(b) * k, per_image) + px.given.ravel().take(at)) * k + pred
    pairs = np.bincount(key, minlength=b * k * k).reshape(b, k, k)
    part.off_diagonal += pairs.sum(0)
    part.missed[:] = pairs.sum(2)
    part.false_alarms[:] = pairs.sum(1)
    part.called[:] = part.positives - part.missed + part.false_alarms
    with np.errstate(invalid="ignore", divide="ignore"):
        part.image[:, 3] = np.where(part.valid > 0, (part.valid - per_image) / part.valid, np.nan)
    for j in _classes(pred, k):
        counts = part.false_alarms[:, j]
        if not counts.any():
            continue
        bits = p_pred[pred == j]
        part.disagree[j] = bits
        rows = _rows("alarm_log1p", bits)
        ends = np.cumsum(counts).tolist()
        for i in np.flatnonzero(counts).tolist():
            seg = rows[ends[i] - counts[i] : ends[i]]
            part.neg_stats[i, j] = -_mean32(seg[:, 1]), _mean32(seg[:, 0])


def _pixel_rows(bits: np.ndarray) -> np.ndarray:
    """Per pixel with float16 ``bits`` of p(given), in pixel order, as ``(4, n)`` float32 rows:
    self-confidence ``s``, ``-log s`` and cleanlab's softmin weight ``w = exp(-(s - min s) /
    T)`` and ``s * w``. Where there are fewer float16 values in range than pixels, these are
    computed once per value and gathered in one go."""
    lo, hi = int(bits.min()), int(bits.max())
    if hi < _F16_INF and 2 * (hi - lo + 1) < len(bits):  # s rises with the bits: min s at lo
        s, nlog = _tables()["s"][lo : hi + 1], _tables()["nlog"][lo : hi + 1]
        w = np.exp(-(s - s[0]) / SOFTMIN_TEMPERATURE)
        table = np.stack([s, nlog, w, s * w], 1).view(np.complex128).ravel()
        return _rows(table, bits - lo).T
    s, nlog = _rows("s_nlog", bits).T
    w = np.exp(-(s - s.min()) / SOFTMIN_TEMPERATURE)
    return np.stack([s, nlog, w, s * w])


# --- tables and maps ---------------------------------------------------------------------------


def _per_image_table(parts: list[_Part], issues: np.ndarray) -> pd.DataFrame:
    valid, image = _joined(parts, "valid"), _joined(parts, "image")
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(valid > 0, issues / np.maximum(valid, 1), 0.0)
    columns = {
        "valid_pixels": valid,
        "issue_pixels": issues.astype(np.int64),
        "issue_fraction": fraction,
        "label_quality": 1.0 - fraction,
        "softmin_quality": image[:, 0],
        "self_confidence": image[:, 1],
        "oof_loss": image[:, 2],
        "pixel_accuracy": image[:, 3],
        "difficulty": image[:, 4],
    }
    index = pd.Index(_joined(parts, "index"), name="index")
    return pd.DataFrame(columns, index=index).sort_index()


def _hard_table(parts: list[_Part], hard_fraction: float) -> pd.DataFrame:
    """Per image (in read order), class and role (positive before negative): one row where
    that class has pixels in that role."""

    def both(positive: str, negative: str) -> np.ndarray:  # (N, K, 2 roles, ...)
        return np.stack([_joined(parts, positive), _joined(parts, negative)], 2)

    size, hits = both("positives", "called"), both("missed", "false_alarms")
    stats = both("pos_stats", "neg_stats")
    keep = np.stack([size[..., 0] > 0, hits[..., 1] > 0], -1)  # negatives: false alarms
    if not keep.any():
        return pd.DataFrame([], columns=_HARD_COLUMNS)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (hits / np.maximum(size, 1))[keep]
    image, cls, role = np.nonzero(keep)  # row-major: image, class, role
    rows = {
        "index": _joined(parts, "index")[image],
        "class": cls.astype(np.int64),
        "role": np.array(["positive", "negative"])[role],
        "difficulty": np.where(share >= hard_fraction, "hard", "easy"),
        "loss": stats[..., 0][keep],
        "prob": stats[..., 1][keep],
        "pixel_fraction": share,
    }
    return pd.DataFrame(rows, columns=_HARD_COLUMNS)


def _joined(parts: list[_Part], name: str) -> np.ndarray:
    return np.concatenate([getattr(p, name) for p in parts])


def _issue_maps(
    scan: _Scan, flagged: set[int], thresholds: np.ndarray, ignore_index: int
) -> dict[int, np.ndarray]:
    """Issue maps (0 fine, 128 ignored, 255 issue) of the flagged images: their shards are
    read again, the others not."""
    maps: dict[int, np.ndarray] = {}
    wanted: dict[Path, list[tuple[int, int]]] = {}  # shard -> (row in the shard, position)
    for part in scan.parts:
        for row, position in enumerate(part.index.tolist()):
            if position in flagged:
                wanted.setdefault(part.path, []).append((part.offset + row, position))
    for path, rows in wanted.items():
        _, probs, targets = _read_shard(path)
        at = [row for row, _ in rows]
        px = _pixels(probs[at], targets[at], len(thresholds), ignore_index)
        p_pred = px.p_pred.view(np.float16).astype(np.float64)
        issues = px.valid & (px.pred != px.given) & (p_pred >= thresholds[px.pred])
        for j, (_, position) in enumerate(rows):
            issue_map = np.where(px.valid[j], 0, 128).astype(np.uint8)
            issue_map[issues[j]] = 255
            maps[position] = issue_map.reshape(targets.shape[1:])
    return maps
