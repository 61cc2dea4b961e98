from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.errors import ConfigError
from datapipe.manifest import (
    assign_folds,
    assign_splits,
    describe_not_samples,
    detect_layout,
    list_images,
    not_samples,
    sample_id,
    scan,
    split_by_hash,
)

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((4, 4), np.uint8))


# --- layouts ----------------------------------------------------------------------------------


def _file(path: Path, data: bytes = b"not an image") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_class_folders(tmp_path: Path) -> None:
    for rel in ["cat/a.png", "cat/sub/b.tif", "dog/c.jpg", "dog/.hidden/d.png"]:
        _img(tmp_path / rel)
    (tmp_path / "empty").mkdir()
    layout, refs = scan(tmp_path, task="classification")
    assert layout == "folders"
    assert [(r.image, r.label) for r in refs] == [
        ("cat/a.png", "cat"),
        ("cat/sub/b.tif", "cat"),
        ("dog/c.jpg", "dog"),
    ]


def test_every_file_in_a_class_folder_is_a_sample_whatever_its_name(tmp_path: Path) -> None:
    _img(tmp_path / "cat/a.png")
    _img(tmp_path / "dog/b.png")
    for rel in ["cat/anim.gif", "cat/Thumbs.db", "dog/notes.txt", "dog/README"]:
        _file(tmp_path / rel)
    _file(tmp_path / "cat/.DS_Store")
    _, refs = scan(tmp_path, task="classification")
    assert [(r.image, r.label) for r in refs] == [
        ("cat/Thumbs.db", "cat"),
        ("cat/a.png", "cat"),
        ("cat/anim.gif", "cat"),
        ("dog/README", "dog"),
        ("dog/b.png", "dog"),
        ("dog/notes.txt", "dog"),
    ]


def test_a_folder_without_images_gives_rows_but_does_not_make_a_folders_layout(
    tmp_path: Path,
) -> None:
    _file(tmp_path / "notes/README.txt")
    _file(tmp_path / "gifs/a.gif")
    with pytest.raises(ConfigError, match="no classification layout found"):
        detect_layout(tmp_path, "classification")
    with pytest.raises(ConfigError, match="no images found"):
        scan(tmp_path, task="classification", layout="folders")
    _img(tmp_path / "cat/a.png")
    _img(tmp_path / "dog/b.png")
    _, refs = scan(tmp_path, task="classification")
    assert [(r.image, r.label) for r in refs] == [
        ("cat/a.png", "cat"),
        ("dog/b.png", "dog"),
        ("gifs/a.gif", "gifs"),
        ("notes/README.txt", "notes"),
    ]  # labelled by folder; ingest takes as classes only labels with a file that decodes


def test_list_images_keeps_only_image_names_and_skips_hidden_entries(tmp_path: Path) -> None:
    for rel in ["b.PNG", "a-b/x.png", "a/c.tiff", "a/d.gif", ".hidden/e.png", "a/.f.png", "g.txt"]:
        _file(tmp_path / rel)
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a/c.tiff",
        "a-b/x.png",
        "b.PNG",
    ]  # Path order (by parts: "a" < "a-b"), as before, not string order


def test_labels_csv(tmp_path: Path) -> None:
    _img(tmp_path / "imgs/a.png")
    _img(tmp_path / "imgs/b.png")
    (tmp_path / "labels.csv").write_text("image,label\nimgs/a.png,cat\nimgs/b.png,dog\n")
    layout, refs = scan(tmp_path, task="classification")
    assert layout == "labels_csv"
    assert [(r.image, r.label) for r in refs] == [("imgs/a.png", "cat"), ("imgs/b.png", "dog")]


def test_labels_csv_beside_unlisted_class_folders_is_ambiguous(tmp_path: Path) -> None:
    _img(tmp_path / "cat/a.png")
    _img(tmp_path / "cat/b.png")
    (tmp_path / "labels.csv").write_text("image,label\ncat/a.png,cat\n")
    with pytest.raises(ConfigError, match=r"ambiguous layout.*set layout: labels_csv or folders"):
        detect_layout(tmp_path, "classification")


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("img,label\na.png,x\n", r"missing column\(s\) \['image'\]"),
        ("image,label\na.png,x\na.png,y\n", "row 3: image 'a.png' listed twice"),
        ("image,label\na.png,\n", "row 2: empty 'label'"),
    ],
    ids=["missing-column", "duplicate-row", "empty-label"],
)
def test_bad_labels_csv_names_file_and_row(tmp_path: Path, csv: str, message: str) -> None:
    _img(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text(csv)
    with pytest.raises(ConfigError, match=message) as err:
        scan(tmp_path, task="classification", layout="labels_csv")
    assert "labels.csv" in str(err.value)


def test_images_and_masks_pair_by_relative_stem(tmp_path: Path) -> None:
    for rel in [
        "images/a.png",
        "images/sub/b.tif",
        "images/c.png",
        "masks/a_mask.png",
        "masks/sub/b_mask.png",
        "masks/orphan_mask.png",
    ]:
        _img(tmp_path / rel)
    layout, refs = scan(tmp_path, task="segmentation", mask_suffix="_mask")
    assert layout == "images_masks"
    assert [(r.image, r.mask, r.problem is None) for r in refs] == [
        ("images/a.png", "masks/a_mask.png", True),
        ("images/c.png", None, False),
        ("images/sub/b.tif", "masks/sub/b_mask.png", True),
    ]


def test_two_masks_for_one_image_is_a_problem_of_that_sample(tmp_path: Path) -> None:
    for rel in ["images/a.png", "masks/a.png", "masks/a.tif"]:
        _img(tmp_path / rel)
    _, refs = scan(tmp_path, task="segmentation")
    assert refs[0].mask is None
    assert refs[0].problem == "several masks for this image: masks/a.png, masks/a.tif"


def test_images_dir_files_are_samples_and_masks_named_like_images_win(tmp_path: Path) -> None:
    for rel in ["images/a.png", "images/b.png", "images/c.png", "masks/a.png", "masks/b.png"]:
        _img(tmp_path / rel)
    _file(tmp_path / "masks/a.json")  # annotation source beside the mask: not a second mask
    _file(tmp_path / "masks/c.gif")  # the only file of its stem: it is the mask, and unreadable
    _file(tmp_path / "images/Thumbs.db")
    _, refs = scan(tmp_path, task="segmentation")
    assert [(r.image, r.mask, r.problem) for r in refs] == [
        ("images/Thumbs.db", None, "no mask masks/Thumbs.* for this image"),
        ("images/a.png", "masks/a.png", None),
        ("images/b.png", "masks/b.png", None),
        ("images/c.png", "masks/c.gif", None),
    ]


def test_not_samples_of_class_folders(tmp_path: Path) -> None:
    _img(tmp_path / "cat/a.png")
    _img(tmp_path / "dog/b.png")
    _file(tmp_path / "planted.csv")
    _file(tmp_path / ".DS_Store")
    _file(tmp_path / ".git/objects/ab/cdef")  # one hidden entry, not looked into
    _file(tmp_path / "cat/.thumbs/a.png")
    layout, refs = scan(tmp_path, task="classification")
    found = not_samples(tmp_path, layout, refs)
    assert found == {
        "hidden": [".DS_Store", ".git", "cat/.thumbs"],
        "outside": ["planted.csv"],
        "unused_masks": [],
        "unreadable_folders": [],
    }
    assert describe_not_samples(found, layout, shown=2) == (
        "3 hidden (name starts with '.') (.DS_Store, .git, ...); "
        "1 at the root, not in a class folder (planted.csv)"
    )


def test_not_samples_of_images_and_masks(tmp_path: Path) -> None:
    for rel in ["images/a.png", "masks/a.png", "masks/orphan.png"]:
        _img(tmp_path / rel)
    _file(tmp_path / "masks/a.json")
    _file(tmp_path / "docs/howto.md")
    layout, refs = scan(tmp_path, task="segmentation")
    found = not_samples(tmp_path, layout, refs)
    assert (found["unused_masks"], found["outside"]) == (
        ["masks/a.json", "masks/orphan.png"],
        ["docs/howto.md"],
    )


def test_not_samples_of_a_csv_are_the_unlisted_files(tmp_path: Path) -> None:
    for rel in ["imgs/a.png", "imgs/b.png", ".cache/c.png", "imgs/stray.png"]:
        _img(tmp_path / rel)
    (tmp_path / "labels.csv").write_text("image,label\nimgs/a.png,cat\n.cache/c.png,dog\n")
    layout, refs = scan(tmp_path, task="classification", layout="labels_csv")
    found = not_samples(tmp_path, layout, refs)
    # labels.csv is the layout's own file; .cache holds a listed file, so it is not "hidden"
    assert (found["outside"], found["hidden"]) == (["imgs/b.png", "imgs/stray.png"], [])
    assert describe_not_samples(found, layout).startswith("2 not listed in labels.csv (")


def test_pairs_csv(tmp_path: Path) -> None:
    _img(tmp_path / "x/a.png")
    _img(tmp_path / "y/a.png")
    (tmp_path / "pairs.csv").write_text("image,mask\nx/a.png,y/a.png\n")
    layout, refs = scan(tmp_path, task="segmentation")
    assert layout == "pairs_csv" and refs[0].mask == "y/a.png"


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_no_layout_found(tmp_path: Path, task: str) -> None:
    _img(tmp_path / "a.png")
    with pytest.raises(ConfigError, match=r"no .* layout found"):
        scan(tmp_path, task=task)  # type: ignore[arg-type]


def test_layout_for_the_wrong_task(tmp_path: Path) -> None:
    _img(tmp_path / "cat/a.png")
    with pytest.raises(ConfigError, match="layout 'folders' is for classification"):
        scan(tmp_path, task="segmentation", layout="folders")


def test_scan_writes_nothing(tmp_path: Path) -> None:
    _img(tmp_path / "cat/a.png")
    _img(tmp_path / "dog/b.png")
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    scan(tmp_path, task="classification")
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


# --- ids, splits and folds --------------------------------------------------------------------


def test_sample_id_is_stable_and_path_specific() -> None:
    assert sample_id("cat/a.png") == sample_id("cat/a.png")
    assert sample_id("cat/a.png") != sample_id("cat/a.tif")
    assert len(sample_id("x")) == 16
    assert sample_id("cat/a.png") == "cf49457d9055578c"  # the same on every machine and run


def _dataset(n_per_class: list[int]) -> tuple[list[str], list[int]]:
    ids, labels = [], []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            ids.append(sample_id(f"class{c}/img{i}.png"))
            labels.append(c)
    return ids, labels


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(3, 60), min_size=2, max_size=6), st.integers(0, 10_000))
def test_every_class_with_enough_samples_is_in_every_split(sizes: list[int], seed: int) -> None:
    ids, labels = _dataset(sizes)
    splits = assign_splits(ids, labels, fractions=FRACTIONS, seed=seed)
    for c in range(len(sizes)):
        assert {s for s, lab in zip(splits, labels, strict=True) if lab == c} == set(FRACTIONS)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(3, 80), min_size=2, max_size=5),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 4), min_size=1, max_size=20),
)
def test_adding_samples_moves_only_members_of_topped_up_classes(
    sizes: list[int], seed: int, new_labels: list[int]
) -> None:
    ids, labels = _dataset(sizes)
    new_labels = [lab % len(sizes) for lab in new_labels]
    new_ids = [sample_id(f"new/img{i}.png") for i in range(len(new_labels))]
    before = assign_splits(ids, labels, fractions=FRACTIONS, seed=seed)
    after = assign_splits(ids + new_ids, labels + new_labels, fractions=FRACTIONS, seed=seed)

    def topped_up(all_ids: list[str], all_labels: list[int]) -> set[int]:
        which = split_by_hash(all_ids, fractions=FRACTIONS, seed=seed)[0]
        return {
            c
            for c in set(all_labels)
            if len({w for w, lab in zip(which, all_labels, strict=True) if lab == c}) < 3
        }

    allowed = topped_up(ids, labels) | topped_up(ids + new_ids, labels + new_labels)
    moved = {labels[i] for i in range(len(ids)) if before[i] != after[i]}
    assert moved <= allowed


def test_hash_split_of_a_sample_ignores_every_other_sample() -> None:
    ids, _ = _dataset([40, 40])
    alone = [split_by_hash([i], fractions=FRACTIONS, seed=3)[0][0] for i in ids]
    together = split_by_hash(ids, fractions=FRACTIONS, seed=3)[0]
    assert list(together) == alone


def test_splits_are_deterministic_and_seed_dependent() -> None:
    ids, labels = _dataset([50, 50])
    a = assign_splits(ids, labels, fractions=FRACTIONS, seed=1)
    assert list(a) == list(assign_splits(ids, labels, fractions=FRACTIONS, seed=1))
    assert list(a) != list(assign_splits(ids, labels, fractions=FRACTIONS, seed=2))


def test_split_proportions_are_stratified() -> None:
    ids, labels = _dataset([2000, 500])
    splits = assign_splits(ids, labels, fractions=FRACTIONS, seed=0)
    for c, n in ((0, 2000), (1, 500)):
        counts = Counter(s for s, lab in zip(splits, labels, strict=True) if lab == c)
        for name, frac in FRACTIONS.items():
            # binomial: 4 standard deviations
            assert abs(counts[name] / n - frac) < 4 * np.sqrt(frac * (1 - frac) / n)


def test_zero_fraction_split_gets_no_samples() -> None:
    ids, labels = _dataset([30, 30])
    splits = assign_splits(ids, labels, fractions={"train": 0.8, "val": 0.2, "test": 0.0}, seed=0)
    assert set(splits) == {"train", "val"}


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(2, 7), st.integers(0, 1000)
)
def test_folds_partition_and_stratify(sizes: list[int], k: int, seed: int) -> None:
    ids, labels = _dataset(sizes)
    folds = assign_folds(ids, labels, k=k, seed=seed)
    assert folds.shape == (len(ids),) and set(folds.tolist()) <= set(range(k))
    for c, n in enumerate(sizes):
        per_fold = np.bincount(folds[np.asarray(labels) == c], minlength=k)
        assert per_fold.max() - per_fold.min() <= 1  # each class dealt evenly
        if n >= k:
            assert (per_fold > 0).all()
    totals = np.bincount(folds, minlength=k)
    assert totals.max() - totals.min() <= 1
    assert list(folds) == list(assign_folds(ids, labels, k=k, seed=seed))
