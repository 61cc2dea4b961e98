"""``datapipe init``: find a data folder's layout and add its ``datasets:`` entry to params.yaml.

params.yaml is edited by hand, so the entry is inserted as text under ``datasets:`` (after the
last entry, in the file's own indentation) rather than by loading and re-dumping the YAML,
which would drop every comment. The new text is checked before anyone writes it: it must parse,
hold exactly the old content plus the new entry, and pass :func:`datapipe.config.parse_params`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import yaml

from datapipe import tasks
from datapipe.config import DatasetParams, load_yaml, parse_params
from datapipe.errors import ConfigError, DatapipeError, ImageReadError
from datapipe.ingest import MaskBorder, Probe, void_suspects
from datapipe.io import read_image, read_mask
from datapipe.manifest import (
    PAIRS_CSV,
    Layout,
    SampleRef,
    Task,
    describe_not_samples,
    detect_layout,
    is_image_name,
    list_images,
    not_samples,
    scan,
)

InitTask = Task | Literal["auto"]
#: the order ``auto`` tries the tasks in: mask layouts first (their folders look like classes)
TRY_ORDER: tuple[Task, ...] = tuple(
    sorted(tasks.TASKS, key=lambda name: not tasks.get(name).dense)  # type: ignore[arg-type]
)

_TOP_KEY = re.compile(r"^datasets\s*:(?P<rest>.*?)\s*$")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_MASK_SEPARATORS = "_-."


@dataclass(frozen=True)
class Detected:
    """What a data folder holds, found from its listing (segmentation: and a sample of at most
    :data:`VOID_SAMPLE` masks, read for values that look like void)."""

    root: Path
    task: Task
    layout: Layout
    images: int  # samples named like images (.png .jpg .jpeg .bmp .tif .tiff)
    class_counts: dict[str, int]  # classification: images per label; segmentation: empty
    mask_suffix: str = ""
    unpaired: int = 0  # segmentation: images without exactly one mask
    other_files: tuple[str, ...] = ()  # samples not named like images: their bytes decide
    not_samples: str = ""  # files under the root that are no sample, in words
    median_side: int | None = None  # the shorter side of a typical image (a few decoded)
    void_values: tuple[str, ...] = ()  # segmentation: mask values that look like void, why

    def summary(self) -> str:
        """One line: task, layout and counts, then what ingest will report as unreadable."""
        text = f"{self.task}, layout {self.layout}: {self.images} images"
        if self.class_counts:
            shown = ", ".join(f"{k} ({v})" for k, v in list(self.class_counts.items())[:10])
            more = (
                f", ... {len(self.class_counts) - 10} more" if len(self.class_counts) > 10 else ""
            )
            text += f" in {len(self.class_counts)} classes: {shown}{more}"
        if tasks.get(self.task).dense:
            suffix = f" (mask_suffix {self.mask_suffix!r})" if self.mask_suffix else ""
            text += f", {self.images - self.unpaired} with a mask{suffix}"
            text += "; classes come from the mask values at ingest"
        for hint in self.void_values:
            text += f"; {hint}"
        if self.other_files:
            shown = ", ".join(self.other_files[:3]) + (", ..." if len(self.other_files) > 3 else "")
            text += (
                f"; {len(self.other_files)} files not named like images ({shown}): ingest reads "
                "their bytes and reports those it cannot decode"
            )
        if self.not_samples:
            text += f"; not samples: {self.not_samples}"
        return text


# --- detection -----------------------------------------------------------------------------


def detect_dataset(
    root: Path, *, task: InitTask = "auto", mask_suffix: str | None = None
) -> Detected:
    """The task, layout and counts of a data folder.

    ``task="auto"`` tries segmentation, then classification, and refuses a folder that fits
    neither or both (then pass the task). Class folders that are the segmentation layout's own
    ``images/`` and ``masks/`` do not count as a classification fit. ``mask_suffix=None``
    guesses the suffix of ``images_masks`` masks (``a.png`` with ``a_mask.png``) when the
    plain stems do not pair.

    Raises:
        ConfigError: naming the folder and what was expected.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: data root is not a folder")
    if task != "auto":
        return _detect(root, task, mask_suffix)
    fits: list[Detected] = []
    reasons: list[str] = []
    for candidate in TRY_ORDER:
        try:
            fits.append(_detect(root, candidate, mask_suffix))
        except ConfigError as exc:
            reasons.append(f"{candidate}: {str(exc).removeprefix(f'{root}: ')}")
    if len(fits) == 2 and _is_segmentation_folders(fits[1], fits[0]):
        fits = fits[:1]
    if len(fits) == 1 and (near := _near_segmentation(fits[0])):
        dense = TRY_ORDER[0]
        raise ConfigError(
            f"{root}: looks like a {dense} layout ({near}), but "
            f"{reasons[0].removeprefix(f'{dense}: ')}; fix that, or pass --task "
            f"{fits[0].task} if {', '.join(f'{c}/' for c in fits[0].class_counts)} really are "
            "classes"
        )
    if not fits:
        raise ConfigError(f"{root}: no dataset layout found; {'; '.join(reasons)}")
    if len(fits) == 2:
        seg, cls = fits
        raise ConfigError(
            f"{root}: fits both {seg.task} (layout {seg.layout}) and {cls.task} "
            f"(layout {cls.layout}); pass --task {seg.task} or --task {cls.task}"
        )
    return fits[0]


def _detect(root: Path, task: Task, mask_suffix: str | None) -> Detected:
    layout = detect_layout(root, task)
    suffix = mask_suffix or ""
    if layout == "images_masks" and mask_suffix is None:
        suffix = guess_mask_suffix(root)
    layout, refs = scan(root, task=task, layout=layout, mask_suffix=suffix)
    # No pixel is read here. A CSV names its samples; in a listing layout a file counts as an
    # image by its name, and the rest (a GIF, a README) are samples whose bytes ingest reads,
    # reporting those it cannot decode; they make no class here.
    listed = layout in ("labels_csv", "pairs_csv")
    images = [r for r in refs if listed or is_image_name(r.image)]
    others = tuple(r.image for r in refs if not (listed or is_image_name(r.image)))
    skipped = describe_not_samples(not_samples(root, layout, refs), layout)
    if tasks.get(task).image_labels:
        counts = Counter(str(r.label) for r in images)
        if len(counts) < 2:
            raise ConfigError(
                f"{root}: {task} needs at least 2 classes; found {sorted(counts)} (layout {layout})"
            )
        return Detected(
            root, task, layout, len(images), dict(sorted(counts.items())),
            other_files=others, not_samples=skipped, median_side=_median_side(root, images),
        )  # fmt: skip
    unpaired = sum(r.mask is None for r in images)
    if unpaired == len(images):
        raise ConfigError(
            f"{root}: none of the {len(images)} images has a mask (layout {layout}, "
            f"mask_suffix {suffix!r}); e.g. {_first_problem(images)}"
        )
    return Detected(
        root, task, layout, len(images), {}, suffix, unpaired,
        other_files=others, not_samples=skipped, void_values=void_hints(root, images),
        median_side=_median_side(root, images),
    )  # fmt: skip


#: Masks ``init`` reads (evenly spread over the listing) to spot a void value.
VOID_SAMPLE = 48


def void_hints(root: Path, refs: list[SampleRef]) -> tuple[str, ...]:
    """Mask values of a sample of masks that look like void (ingest's rule,
    :func:`datapipe.ingest.void_suspects`), each as a hint to set ``ignore_index``."""
    paired = [r.mask for r in refs if r.mask]
    count = min(VOID_SAMPLE, len(paired))
    picked = sorted({round(i * (len(paired) - 1) / max(1, count - 1)) for i in range(count)})
    probes = []
    for i in picked:
        try:
            mask = read_mask(root / paired[i])
        except (DatapipeError, OSError, ValueError):
            continue  # colour masks need mask_colors; ingest reports what cannot be read
        values, counts = np.unique(mask, return_counts=True)
        probes.append(Probe(mask_values=dict(zip(values.tolist(), counts.tolist(), strict=True)),
                            mask_border=MaskBorder.of(mask) if mask.size else None))  # fmt: skip
    ignore = DatasetParams.model_fields["ignore_index"].default
    seen = sorted({v for p in probes for v in p.mask_values} - {ignore})
    return tuple(
        f"mask value {v} looks like void ({why}): set ignore_index: {v} if it marks pixels "
        "without a label"
        for v, why in void_suspects(probes, seen).items()
    )


def _near_segmentation(cls: Detected) -> str:
    """What makes a classification ``folders`` fit look like a segmentation layout that did not
    fit (``pairs.csv``; class folders that are just ``images/`` and ``masks/``), in words;
    ``""`` when nothing does."""
    root = cls.root
    has_csv = (root / PAIRS_CSV).is_file()
    has_dirs = (root / "images").is_dir() and (root / "masks").is_dir()
    if not tasks.get(cls.task).image_labels or cls.layout != "folders":
        return ""
    if not (has_csv or (has_dirs and set(cls.class_counts) <= {"images", "masks"})):
        return ""
    return ", ".join([PAIRS_CSV] * has_csv + ["images/ and masks/"] * has_dirs)


def _first_problem(refs: list[SampleRef]) -> str:
    ref = next(r for r in refs if r.problem)
    return f"{ref.image}: {ref.problem}"


def _is_segmentation_folders(cls: Detected, seg: Detected) -> bool:
    """A classification ``folders`` fit whose class folders are the segmentation layout's."""
    if cls.layout != "folders":
        return False
    if seg.layout == "images_masks":
        own = {"images", "masks"}
    else:
        refs = scan(seg.root, task=seg.task, layout=seg.layout)[1]
        paths = [p for r in refs for p in (r.image, r.mask) if p]
        own = {PurePosixPath(p).parts[0] for p in paths if len(PurePosixPath(p).parts) > 1}
    return set(cls.class_counts) <= own


def guess_mask_suffix(root: Path) -> str:
    """The suffix that pairs most ``masks/<stem><suffix>.*`` with ``images/<stem>.*``.

    Candidates split a mask's stem at a ``_``, ``-`` or ``.``; ``""`` wins ties, so a folder
    that pairs by plain stems keeps them.
    """
    images_dir, masks_dir = root / "images", root / "masks"
    stems = {p.relative_to(images_dir).with_suffix("").as_posix() for p in list_images(images_dir)}
    votes: Counter[str] = Counter()
    for path in list_images(masks_dir):
        mask_stem = path.relative_to(masks_dir).with_suffix("").as_posix()
        if mask_stem in stems:
            votes[""] += 1
            continue
        for i, char in enumerate(mask_stem):
            if char in _MASK_SEPARATORS and mask_stem[:i] in stems:
                votes[mask_stem[i:]] += 1
    if not votes:
        return ""
    best, count = max(votes.items(), key=lambda kv: (kv[1], kv[0] == ""))
    return best if count > votes[""] else ""


# --- the params entry ----------------------------------------------------------------------


def default_name(root: Path) -> str:
    """A dataset name from the folder's name: letters, digits, ``_``, ``.``, ``-``."""
    name = _NAME_CHARS.sub("_", Path(root).resolve().name).strip("_.-")
    return name or "dataset"


def root_text(root: Path, base: Path) -> str:
    """``root`` as params.yaml should hold it: relative to ``base`` (the folder of params.yaml,
    where DVC runs) when inside it, absolute otherwise; POSIX separators."""
    resolved, base = Path(root).resolve(), Path(base).resolve()
    try:
        return resolved.relative_to(base).as_posix() or "."
    except ValueError:
        return resolved.as_posix()


def dataset_entry(detected: Detected, *, root: str) -> dict[str, Any]:
    """The ``datasets.<name>`` mapping: root, task, the layout found (pinned) and recipe sizes
    that fit the folder (:func:`suggested_recipes`)."""
    entry: dict[str, Any] = {"root": root, "task": detected.task, "layout": detected.layout}
    if detected.mask_suffix:
        entry["mask_suffix"] = detected.mask_suffix
    entry.update(suggested_recipes(detected))
    return entry


#: Images decoded to find a typical size (spread over the listing).
SIZE_PROBES = 32


def _median_side(root: Path, images: list[SampleRef]) -> int | None:
    """The median shorter side of up to ``SIZE_PROBES`` images spread over ``images``."""
    step = max(1, len(images) // SIZE_PROBES)
    sides = []
    for ref in images[::step][:SIZE_PROBES]:
        try:
            img = read_image(root / ref.image)
        except ImageReadError:  # reported by ingest; the size comes from the others
            continue
        sides.append(min(img.shape[:2]))
    return int(np.median(sides)) if sides else None


def suggested_recipes(detected: Detected) -> dict[str, dict[str, int]]:
    """``score`` / ``train`` recipe sizes for this folder, so a first run starts sensibly:
    image and batch size from the typical shorter side, train epochs from the sample count
    (each task module's ``suggested_recipe`` says its rule). Scoring keeps its task's short
    training: models that train long memorise wrong labels and hide them.

    Empty when no image could be decoded (the task's defaults apply).
    """
    if detected.median_side is None:
        return {}
    sizes = tasks.get(detected.task).suggested_recipe(
        median_side=detected.median_side, samples=detected.images
    )
    return {
        "score": {k: sizes[k] for k in ("image_size", "batch_size")},
        "train": {k: sizes[k] for k in ("image_size", "batch_size", "epochs")},
    }


def add_dataset(
    text: str,
    name: str,
    entry: Mapping[str, Any],
    *,
    comment: str = "",
    source: str = "params.yaml",
) -> str:
    """``text`` (a params.yaml) with ``datasets.<name>: entry`` added, everything else as is.

    Raises:
        ConfigError: ``name`` exists, ``datasets:`` is not a block mapping, or the result is
            not valid params (the message names the key).
    """
    before = _load(text, source)
    if not isinstance(before, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    datasets = before.get("datasets")
    if isinstance(datasets, dict) and name in {str(k) for k in datasets}:
        existing = datasets.get(name)
        where = f" (root {existing.get('root')})" if isinstance(existing, dict) else ""
        raise ConfigError(f"{source}: datasets.{name} already exists{where}; pick another --name")
    after_text = _insert_entry(text, name, dict(entry), comment=comment, source=source)
    after = _load(after_text, source)
    expected = {**before, "datasets": {**(datasets or {}), name: dict(entry)}}
    if after != expected:  # a guard on the text surgery: nothing but the entry may change
        raise ConfigError(
            f"{source}: could not add datasets.{name} without changing other keys; add it by hand"
        )
    parse_params(after, source=f"{source} with datasets.{name} added")
    return after_text


def _load(text: str, source: str) -> Any:
    return load_yaml(text, source=source) if text.strip() else {}


def _insert_entry(text: str, name: str, entry: dict[str, Any], *, comment: str, source: str) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    found = [(i, m) for i, line in enumerate(lines) if (m := _TOP_KEY.match(line))]
    if not found:
        block = _entry_lines(name, entry, indent=2, step=2, comment=comment)
        gap = [""] if lines and lines[-1].strip() else []
        return newline.join([*lines, *gap, "datasets:", *block]) + newline
    header, match = found[0]
    rest = _strip_comment(match["rest"])
    if rest == "{}":
        lines[header] = "datasets:" + lines[header][lines[header].index("{}") + 2 :]
    elif rest:
        raise ConfigError(
            f"{source}: datasets: is written in flow style ({rest[:40]}); write it as a block "
            "(one key per line) or add the entry by hand"
        )
    end, indent, step = _block_shape(lines, header)
    block = _entry_lines(name, entry, indent=indent, step=step, comment=comment)
    out = [*lines[:end], *block, *lines[end:]]
    return newline.join(out) + newline


def _strip_comment(rest: str) -> str:
    rest = rest.strip()
    return "" if rest.startswith("#") else re.sub(r"\s+#.*$", "", rest)


def _block_shape(lines: list[str], header: int) -> tuple[int, int, int]:
    """Where the ``datasets:`` block's last content line ends, its entries' indent and step."""
    end, indent, child = header + 1, 0, 0
    for i in range(header + 1, len(lines)):
        line = lines[i]
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(line) - len(stripped)
        if depth == 0:
            break
        end = i + 1
        if not indent:
            indent = depth
        elif not child and depth > indent:
            child = depth
    indent = indent or 2
    return end, indent, (child - indent) if child else 2


def _entry_lines(
    name: str, entry: dict[str, Any], *, indent: int, step: int, comment: str
) -> list[str]:
    pad = " " * indent
    head = f"{pad}{_scalar(name)}:" + (f"  # {comment}" if comment else "")
    body = yaml.safe_dump(entry, sort_keys=False, default_flow_style=False, indent=step)
    return [head, *(pad + " " * step + line for line in body.splitlines())]


def _scalar(value: str) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return dumped.removesuffix("\n...\n").strip()
