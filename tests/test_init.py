"""datapipe.init: layout detection for `datapipe init` and the text edit of params.yaml."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datapipe.config import parse_params
from datapipe.errors import ConfigError
from datapipe.init import (
    add_dataset,
    dataset_entry,
    default_name,
    detect_dataset,
    guess_mask_suffix,
    root_text,
)

PARAMS = """\
# One entry per dataset.
datasets:
  shapes:                # the sample
    root: sample_data/shapes_cls
    task: classification
  # old:
  #   root: gone

workers: auto   # decode processes

# thresholds
clean:
  z_threshold: 4.0
"""

ENTRY = {"root": "data/cells", "task": "segmentation", "layout": "images_masks"}


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((4, 4), np.uint8))


def _tree(root: Path, rels: list[str]) -> Path:
    for rel in rels:
        _img(root / rel)
    return root


# --- detection -----------------------------------------------------------------------------


def test_class_folders_give_classification_with_counts(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["cat/a.png", "cat/b.png", "dog/c.png"])
    found = detect_dataset(root)
    assert (found.task, found.layout, found.images) == ("classification", "folders", 3)
    assert found.class_counts == {"cat": 2, "dog": 1}


def test_images_and_masks_are_segmentation_not_two_classes(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["images/a.png", "images/b.png", "masks/a.png", "masks/b.png"])
    found = detect_dataset(root)
    assert (found.task, found.layout, found.images, found.unpaired) == (
        "segmentation", "images_masks", 2, 0,
    )  # fmt: skip


def test_pairs_csv_folders_do_not_count_as_classes(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["img/a.png", "lbl/a.png", "img/b.png", "lbl/b.png"])
    (root / "pairs.csv").write_text("image,mask\nimg/a.png,lbl/a.png\nimg/b.png,lbl/b.png\n")
    assert detect_dataset(root).layout == "pairs_csv"


def test_a_folder_fitting_both_tasks_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["images/a.png", "masks/a.png"])
    (root / "labels.csv").write_text("image,label\nimages/a.png,cat\nmasks/a.png,dog\n")
    with pytest.raises(ConfigError, match=r"fits both segmentation .* pass --task"):
        detect_dataset(root)
    assert detect_dataset(root, task="classification").layout == "labels_csv"


def test_a_folder_fitting_neither_names_both_expectations(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["a.png", "b.png"])
    with pytest.raises(ConfigError, match=r"segmentation: .*images/ and masks/.*classification: "):
        detect_dataset(root)


def test_one_class_folder_is_not_a_classification_dataset(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["cat/a.png"])
    with pytest.raises(ConfigError, match="at least 2 classes; found \\['cat'\\]"):
        detect_dataset(root, task="classification")


def test_mask_suffix_is_guessed_from_the_names(tmp_path: Path) -> None:
    root = _tree(
        tmp_path, ["images/a.png", "images/b_1.png", "masks/a_mask.png", "masks/b_1_mask.png"]
    )
    assert guess_mask_suffix(root) == "_mask"
    found = detect_dataset(root)
    assert (found.mask_suffix, found.unpaired) == ("_mask", 0)
    assert dataset_entry(found, root="x")["mask_suffix"] == "_mask"


def test_plain_stems_win_a_suffix_tie(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["images/a.png", "images/a_x.png", "masks/a.png", "masks/a_x.png"])
    assert guess_mask_suffix(root) == ""


def test_segmentation_without_any_pair_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["images/a.png", "masks/zzz.png"])
    with pytest.raises(ConfigError, match="none of the 1 images has a mask"):
        detect_dataset(root, task="segmentation")


def _file(path: Path, data: bytes = b"GIF89a" + bytes(16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_files_not_named_like_images_are_not_counted_and_make_no_class(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["cat/a.png", "cat/b.png", "dog/c.png"])
    for rel in ["cat/placeholder.gif", "notes/README.txt", ".DS_Store", "planted.csv"]:
        _file(root / rel)
    found = detect_dataset(root)
    assert (found.layout, found.images, found.class_counts) == ("folders", 3, {"cat": 2, "dog": 1})
    assert found.other_files == ("cat/placeholder.gif", "notes/README.txt")
    assert found.summary() == (
        "classification, layout folders: 3 images in 2 classes: cat (2), dog (1)"
        "; 2 files not named like images (cat/placeholder.gif, notes/README.txt): ingest reads "
        "their bytes and reports those it cannot decode"
        "; not samples: 1 hidden (name starts with '.') (.DS_Store)"
        "; 1 at the root, not in a class folder (planted.csv)"
    )


def test_a_non_image_under_images_is_not_an_unpaired_image(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["images/a.png", "masks/a.png"])
    _file(root / "images/Thumbs.db")
    found = detect_dataset(root)
    assert (found.layout, found.images, found.unpaired) == ("images_masks", 1, 0)
    assert found.other_files == ("images/Thumbs.db",)


def test_a_clean_folder_has_nothing_to_add_to_its_summary(tmp_path: Path) -> None:
    root = _tree(tmp_path, ["cat/a.png", "dog/b.png"])
    assert detect_dataset(root).summary() == (
        "classification, layout folders: 2 images in 2 classes: cat (1), dog (1)"
    )


# --- names and roots -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "name"),
    [("cells", "cells"), ("My Cells (v2)", "My_Cells_v2"), ("__", "dataset")],
    ids=["plain", "spaces", "empty"],
)
def test_default_name(tmp_path: Path, folder: str, name: str) -> None:
    assert default_name(tmp_path / folder) == name


def test_root_is_relative_inside_the_project_and_absolute_outside(tmp_path: Path) -> None:
    project = tmp_path / "project"
    assert root_text(project / "data" / "cells", project) == "data/cells"
    assert root_text(tmp_path / "elsewhere", project) == (tmp_path / "elsewhere").as_posix()


# --- params text ---------------------------------------------------------------------------


def test_entry_goes_under_datasets_and_keeps_every_comment() -> None:
    out = add_dataset(PARAMS, "cells", ENTRY, comment="datapipe init: 2 images")
    assert out == PARAMS.replace(
        "  # old:\n",
        "  cells:  # datapipe init: 2 images\n"
        "    root: data/cells\n"
        "    task: segmentation\n"
        "    layout: images_masks\n"
        "  # old:\n",
    )
    params = parse_params(yaml.safe_load(out))
    assert params.dataset("cells").root == Path("data/cells")
    assert params.dataset("cells").layout == "images_masks"


def test_existing_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"datasets\.shapes already exists"):
        add_dataset(PARAMS, "shapes", ENTRY)


def test_invalid_result_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"datasets\.cells\.bit_dept: unknown key"):
        add_dataset(PARAMS, "cells", {**ENTRY, "bit_dept": 12})


def test_the_files_own_indentation_is_followed() -> None:
    text = "datasets:\n    a:\n        root: x\n        task: segmentation\nworkers: 2\n"
    out = add_dataset(text, "b", {"root": "y", "task": "classification"})
    assert out.splitlines()[4:7] == ["    b:", "        root: y", "        task: classification"]


def test_datasets_key_is_added_when_missing() -> None:
    out = add_dataset("# settings\nworkers: 2\n", "a", {"root": "x", "task": "segmentation"})
    assert out == "# settings\nworkers: 2\n\ndatasets:\n  a:\n    root: x\n    task: segmentation\n"


def test_names_and_paths_yaml_would_misread_are_quoted() -> None:
    out = add_dataset("", "2024", {"root": "d: #1", "task": "segmentation"})
    assert yaml.safe_load(out) == {"datasets": {"2024": {"root": "d: #1", "task": "segmentation"}}}


def test_flow_style_datasets_is_refused() -> None:
    with pytest.raises(ConfigError, match="flow style"):
        add_dataset("datasets: {a: {root: x, task: segmentation}}\n", "b", ENTRY)


def test_empty_flow_mapping_becomes_a_block() -> None:
    out = add_dataset("datasets: {}  # none yet\nworkers: 2\n", "a", ENTRY)
    assert out.splitlines()[:2] == ["datasets:  # none yet", "  a:"]
    assert out.endswith("workers: 2\n")


@pytest.mark.parametrize(
    ("shape", "count", "expected"),
    [
        ((104, 120), 40, {"score": {"image_size": 104, "batch_size": 32},
                          "train": {"image_size": 104, "batch_size": 32, "epochs": 30}}),
        ((8, 8), 2200, {"score": {"image_size": 16, "batch_size": 64},
                        "train": {"image_size": 16, "batch_size": 64, "epochs": 20}}),
        ((600, 800), 40, {"score": {"image_size": 224, "batch_size": 32},
                          "train": {"image_size": 224, "batch_size": 32, "epochs": 30}}),
    ],
    ids=["typical-side", "tiny-many", "large"],
)  # fmt: skip
def test_init_writes_recipe_sizes_that_fit_the_folder(
    tmp_path: Path, shape: tuple[int, int], count: int, expected: dict
) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = tmp_path / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), rng.integers(0, 255, shape, np.uint8))
    entry = dataset_entry(detect_dataset(tmp_path, task="classification"), root=str(tmp_path))
    assert {k: entry[k] for k in ("score", "train")} == expected
    parse_params({"datasets": {"new": entry}})  # a valid recipe


def test_init_without_a_decodable_image_writes_no_recipe(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "x.png").write_bytes(b"not a png at all")
    entry = dataset_entry(detect_dataset(tmp_path, task="classification"), root=str(tmp_path))
    assert "score" not in entry and "train" not in entry
