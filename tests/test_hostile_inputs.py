"""A hostile corpus (issue 15): files, folders, sheets and params a careless or hostile user
makes. Each case ends as one row (``read_error`` / a check) or one line naming the file or key
with exit code 2; never a traceback, never a silent accept."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from datapipe import cli
from datapipe.clean import clean
from datapipe.config import CleanParams, DatasetParams
from datapipe.ingest import ingest


def _png(path: Path, seed: int = 0, shape: tuple[int, ...] = (16, 16, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
    return path


def _mask(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((16, 16), np.uint8)
    mask[2 + seed % 4 : 12, 3:13] = 1
    mask[0:2, :] = 2
    cv2.imwrite(str(path), mask)
    return path


def _cls_root(root: Path, per_class: int = 4) -> Path:
    for c, label in enumerate(("cross", "disc")):
        for i in range(per_class):
            _png(root / label / f"{i}.png", seed=10 * c + i)
    return root


def _seg_root(root: Path, n: int = 5) -> Path:
    for i in range(n):
        _png(root / "images" / f"img_{i:04d}.png", seed=i)
        _mask(root / "masks" / f"img_{i:04d}.png", seed=i)
    return root


def _clean(dataset: DatasetParams, name: str = "hostile"):
    ingested = ingest(dataset, name=name, workers=0)
    return clean(ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0, name=name)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- every file unreadable -------------------------------------------------------------------


def test_a_dataset_whose_every_file_is_unreadable_cleans_to_unreadable_rows(
    tmp_path: Path,
) -> None:
    root = tmp_path / "all_bad"
    for label in ("cross", "disc"):
        (root / label).mkdir(parents=True)
        (root / label / "empty.png").write_bytes(b"")
        (root / label / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = _clean(DatasetParams(root=root, task="classification", classes=["cross", "disc"]))
    m = result.manifest
    assert len(m) == 4
    assert m["excluded"].all()
    assert (m["exclude_reason"] == "unreadable").all()
    assert set(result.issues.loc[result.issues["severity"] != "info", "check"]) == {"unreadable"}


# --- nothing lost: exact duplicates -----------------------------------------------------------


def test_the_good_copy_of_an_exact_duplicate_stays_when_the_first_has_a_bad_mask(
    tmp_path: Path,
) -> None:
    root = _seg_root(tmp_path / "seg", n=6)
    shutil.copy2(root / "images" / "img_0002.png", root / "images" / "img_0001.png")
    (root / "masks" / "img_0001.png").write_bytes(b"")  # the first copy by path: a zero-byte mask
    result = _clean(DatasetParams(root=root, task="segmentation"))
    m = result.manifest.set_index("image")
    assert m.loc["images/img_0001.png", "exclude_reason"] == "exact_duplicate,mask_unreadable"
    assert not m.loc["images/img_0002.png", "excluded"]
    issues = result.issues.set_index(["image", "check"])
    kept = issues.loc[("images/img_0002.png", "exact_duplicate")]
    assert kept["severity"] == "info"
    assert kept["detail"] == (
        "kept: first usable of 2 images with identical pixels "
        "(images/img_0001.png is excluded: mask_unreadable)"
    )
    copy = issues.loc[("images/img_0001.png", "exact_duplicate")]
    assert (copy["severity"], copy["detail"]) == ("warning", "same pixels as images/img_0002.png")


def test_an_exact_duplicate_group_with_no_broken_member_keeps_the_first_by_path(
    tmp_path: Path,
) -> None:
    root = _seg_root(tmp_path / "seg", n=6)
    shutil.copy2(root / "images" / "img_0002.png", root / "images" / "img_0001.png")
    m = _clean(DatasetParams(root=root, task="segmentation")).manifest.set_index("image")
    assert not m.loc["images/img_0001.png", "excluded"]
    assert m.loc["images/img_0002.png", "exclude_reason"] == "exact_duplicate"


# --- abused review sheets ---------------------------------------------------------------------


def _review_run(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "runs" / "pets"
    (run / "reports").mkdir(parents=True)
    pd.DataFrame(
        {"sample_id": ["aa", "bb"], "image": ["cat/a.png", "dog/c.png"],
         "given_label": ["cat", "dog"], "suggested_label": ["dog", "cat"]}
    ).to_csv(run / "reports" / "label_issues.csv", index=False)  # fmt: skip
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    return tmp_path / "runs", reviews


def test_review_export_keeps_the_decision_of_a_sample_listed_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, reviews = _review_run(tmp_path)
    # curate accepts this sheet: the second row of aa has no decision and is ignored
    (reviews / "pets.csv").write_text(
        "sample_id,decision,label,note\naa,drop,,blurred\nbb,,,\naa,,,\n"
    )
    code, out, _ = _cli(
        capsys, "review", "export", "--dataset", "pets", "--runs", str(runs),
        "--reviews", str(reviews),
    )  # fmt: skip
    assert code == 0
    sheet = pd.read_csv(reviews / "pets.csv", dtype=str, keep_default_na=False)
    assert sheet[["sample_id", "decision", "note"]].values.tolist() == [
        ["aa", "drop", "blurred"], ["bb", "", ""]
    ]  # fmt: skip
    assert "2 samples to review (1 already decided)" in out


def test_review_export_refuses_a_sample_decided_twice_naming_both_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, reviews = _review_run(tmp_path)
    before = "sample_id,decision,label,note\naa,drop,,\nbb,,,\naa,keep,,\n"
    (reviews / "pets.csv").write_text(before)
    code, _, err = _cli(
        capsys, "review", "export", "--dataset", "pets", "--runs", str(runs),
        "--reviews", str(reviews),
    )  # fmt: skip
    assert code == 2
    assert _one_error_line(err) == (
        f"error: {reviews / 'pets.csv'} row 4: sample_id 'aa' already decided on row 2; "
        "keep one of the two rows"
    )
    assert (reviews / "pets.csv").read_text() == before


# --- params: one line naming the key, exit 2 (every stage loads them; `datapipe check` too) ----


def _params(tmp_path: Path, text: str) -> Path:
    _cls_root(tmp_path / "data", per_class=2)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _check(capsys: pytest.CaptureFixture[str], params: Path) -> tuple[int, str]:
    code, _, err = _cli(capsys, "check", "--params", str(params))
    return code, _one_error_line(err) if code else err


_DATA = "datasets:\n  d:\n    root: data\n    task: classification\n"
_SEG = "datasets:\n  d:\n    root: data\n    task: segmentation\n"

BAD_PARAMS = {
    "train_loader_workers": (
        _DATA + "train:\n  loader_workers: -2\n",
        "train.loader_workers: Value error, expected 'auto' or an integer >= 0 (got -2)",
    ),
    "score_loader_workers": (
        _DATA + "score:\n  loader_workers: -1\n",
        "score.loader_workers: Value error, expected 'auto' or an integer >= 0 (got -1)",
    ),
    "workers": (
        _DATA + "workers: -3\n",
        "workers: Value error, expected 'auto' or an integer >= 0 (got -3)",
    ),
    "lr_mult_value": (
        _DATA + "train:\n  classification:\n    lr_mult: {head: 0}\n",
        "train.classification.lr_mult.head: Input should be greater than 0",
    ),
    "lr_mult_empty_key": (
        _DATA + "train:\n  classification:\n    lr_mult: {'': 10}\n",
        "train.classification.lr_mult: Value error, expected parameter-name keys (e.g. head), "
        "not an empty one (got {'': 10})",
    ),
    "milestones_negative": (
        _DATA + "train:\n  classification:\n    schedule: step\n    milestones: [-1, 500]\n",
        "train.classification.milestones.0: Input should be greater than or equal to 1",
    ),
    "milestones_beyond_the_last_epoch": (
        _DATA + "train:\n  classification:\n    schedule: step\n    epochs: 20\n"
        "    milestones: [5, 500]\n",
        "train.classification.milestones: Value error, expected epochs before the last "
        "(epochs 20); got 500, which would never apply",
    ),
    "milestones_not_increasing": (
        _DATA + "train:\n  classification:\n    schedule: step\n    milestones: [8, 4]\n",
        "train.classification.milestones: Value error, expected strictly increasing epochs "
        "(got [8, 4])",
    ),
    "milestones_without_step": (
        _DATA + "train:\n  classification:\n    milestones: [4]\n",
        "train.classification.milestones: Value error, milestones are for schedule: step; "
        "got schedule 'cosine'",
    ),
    "multi_scale_zero": (
        _DATA + "train:\n  classification:\n    multi_scale: [0]\n",
        "train.classification.multi_scale.0: Input should be greater than or equal to 8",
    ),
    "multi_scale_empty": (
        _DATA + "train:\n  classification:\n    multi_scale: []\n",
        "train.classification.multi_scale: List should have at least 1 item",
    ),
    "loss_terms_typo": (
        _DATA + "train:\n  segmentation:\n    loss:\n      terms: {loss_ce: 1, loss_dicee: 1}\n",
        "train.segmentation.loss.terms: Value error, unknown loss 'loss_dicee' (did you mean "
        "'loss_dice'?)",
    ),
    "loss_dice_for_classification": (
        _DATA + "train:\n  classification:\n    loss:\n      terms: {loss_dice: 1}\n",
        "train.classification.loss.terms.loss_dice: Dice is a segmentation loss",
    ),
    "segmentation_mixup": (
        _SEG + "train:\n  segmentation:\n    mix: {mixup_alpha: 0.2}\n",
        "train.segmentation.mix.mixup_alpha: mixup is refused for segmentation",
    ),
    "segmentation_mixup_in_a_dataset_recipe": (
        _SEG + "    train: {mix: {mixup_alpha: 0.2}}\n",
        "datasets.d.train.mix.mixup_alpha: mixup is refused for segmentation",
    ),
    "empty_root": (
        "datasets:\n  d:\n    root: ''\n    task: classification\n",
        "datasets.d.root: Value error, expected a folder, not an empty path, which would read "
        "the current folder (write '.' if that is meant) (got '')",
    ),
    "ignore_index_above_16_bit": (
        _SEG + "    ignore_index: 70000\n",
        "datasets.d.ignore_index: Input should be less than or equal to 65535",
    ),
    "ignore_index_negative": (
        _SEG + "    ignore_index: -1\n",
        "datasets.d.ignore_index: Input should be greater than or equal to 0",
    ),
    "mask_colors_on_classification": (
        _DATA + "    mask_colors: {1: [255, 0, 0]}\n",
        "datasets.d.mask_colors: Value error, mask_colors maps mask colours to classes: "
        "segmentation only",
    ),
    "duplicated_key": (
        _DATA + "workers: 2\nclean:\n  z_threshold: 3\nworkers: 0\n",
        "line 8: key 'workers' given twice (first on line 5); YAML would silently keep only the "
        "last: delete one",
    ),
    "duplicated_nested_key": (
        _DATA + "    task: segmentation\n",
        "line 5: key 'task' given twice (first on line 4)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_bad_params_are_one_line_naming_the_key(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_PARAMS[case]
    params = _params(tmp_path, text)
    code, line = _check(capsys, params)
    assert code == 2
    assert line.startswith(f"error: {params}: {message}"), line


def test_config_loss_names_are_the_loss_registry() -> None:
    from datapipe.config import LOSS_TERMS
    from datapipe.losses.terms import TERMS

    assert set(LOSS_TERMS) == set(TERMS)


def test_good_params_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = "    schedule: step\n    epochs: 20\n    milestones: [10, 15]\n    multi_scale: [16]\n"
    params = _params(tmp_path, _DATA + "train:\n  classification:\n" + recipe)
    code, out, err = _cli(capsys, "check", "--params", str(params))
    assert (code, err) == (0, "")
    assert out == (
        f"{params}: 1 dataset(s) OK: params valid, no broken symbolic link DVC would hash\n"
    )


# --- train-time keys known only with the model --------------------------------------------------


def test_an_lr_mult_key_in_no_parameter_name_is_one_line_naming_it() -> None:
    from datapipe.errors import ConfigError
    from datapipe.models import build_classifier, check_lr_mult

    model = build_classifier("small_cnn", in_channels=1, num_classes=2, image_size=32)
    check_lr_mult(model, {"head": 10.0}, key="train.classification.lr_mult")  # a real key
    with pytest.raises(ConfigError) as caught:
        check_lr_mult(model, {"head": 10.0, "hed": 10.0}, key="train.classification.lr_mult")
    assert str(caught.value) == (
        "train.classification.lr_mult.hed: matches no parameter of this model; parameter names "
        "start with ['features', 'head'] (e.g. 'head.bias')"
    )


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_missing_weights_file_names_the_key_it_was_read_from(task: str, tmp_path: Path) -> None:
    from datapipe.errors import ConfigError
    from datapipe.models import build_classifier, build_segmenter

    missing = tmp_path / "none.pt"
    with pytest.raises(ConfigError) as caught:
        if task == "classification":
            build_classifier("small_cnn", in_channels=1, num_classes=2, image_size=32,
                             weights=missing, key="train.classification")  # fmt: skip
        else:
            build_segmenter("unet", in_channels=1, num_classes=2, weights=missing,
                            key="train.segmentation")  # fmt: skip
    assert str(caught.value) == (
        f"train.{task}.weights: {missing} not found (datapipe never downloads weights)"
    )


# --- labels.csv / pairs.csv ---------------------------------------------------------------------


def _labels_csv(root: Path, rows: list[tuple[str, str]]) -> Path:
    for i, (image, _) in enumerate(rows):
        if not image.startswith(("/", "..")):
            _png(root / image, seed=i)
    lines = ["image,label", *(f"{image},{label}" for image, label in rows)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_labels_csv_labels_are_stripped_of_whitespace(tmp_path: Path) -> None:
    from datapipe.manifest import scan

    root = _labels_csv(tmp_path / "d", [("a.png", "cross"), ("b.png", "cross "),
                                        ("c.png", " disc"), ("d.png", "disc")])  # fmt: skip
    _, refs = scan(root, task="classification")
    assert [r.label for r in refs] == ["cross", "cross", "disc", "disc"]


def test_labels_differing_only_in_case_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from datapipe.manifest import scan

    root = _labels_csv(tmp_path / "d", [("a.png", "cross"), ("b.png", "Cross"),
                                        ("c.png", "disc"), ("d.png", "disc")])  # fmt: skip
    with caplog.at_level("WARNING", logger="datapipe.manifest"):
        _, refs = scan(root, task="classification")
    assert sorted({r.label for r in refs}) == ["Cross", "cross", "disc"]  # the data says so
    assert [r.getMessage() for r in caplog.records] == [
        f"{root}: labels ['Cross', 'cross'] differ only in case and are different classes; if "
        "they are one, fix the labels, or list the classes meant in classes:"
    ]


def test_a_classes_entry_settles_labels_differing_in_case(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from datapipe.manifest import scan

    root = _labels_csv(tmp_path / "d", [("a.png", "cross"), ("b.png", "Cross"),
                                        ("c.png", "disc"), ("d.png", "disc")])  # fmt: skip
    with caplog.at_level("WARNING", logger="datapipe.manifest"):
        scan(root, task="classification", classes=["Cross", "cross", "disc"])
    assert caplog.records == []


@pytest.mark.parametrize(
    ("csv", "text", "line", "column", "path"),
    [
        ("labels.csv", "image,label\na.png,cross\n../x.png,disc\n", 3, "image", "../x.png"),
        ("labels.csv", "image,label\na.png,cross\nsub/../../x.png,disc\n", 3, "image",
         "sub/../../x.png"),
        ("labels.csv", "image,label\n/etc/x.png,cross\na.png,disc\n", 2, "image", "/etc/x.png"),
        ("pairs.csv", "image,mask\na.png,../m.png\n", 2, "mask", "../m.png"),
        ("pairs.csv", "image,mask\nC:\\data\\a.png,m.png\n", 2, "image", "C:\\data\\a.png"),
    ],
    ids=["parent", "parent_inside", "absolute", "pairs_mask", "windows_drive"],
)  # fmt: skip
def test_csv_paths_outside_the_root_are_refused(
    tmp_path: Path, csv: str, text: str, line: int, column: str, path: str
) -> None:
    from datapipe.errors import ConfigError
    from datapipe.manifest import scan

    root = tmp_path / "d"
    root.mkdir()
    (root / csv).write_text(text)
    task = "classification" if csv == "labels.csv" else "segmentation"
    with pytest.raises(ConfigError) as caught:
        scan(root, task=task)
    assert str(caught.value) == (
        f"{root / csv}: row {line}: {column} {path!r} is outside the data root; DVC tracks only "
        "the root, so a file outside it would be read without being tracked: copy it into the "
        "root and list it relative to the root"
    )


# --- report.channels beyond the data's (known only from stats.json) ----------------------------


def test_report_channels_beyond_the_datas_is_one_line_at_the_report_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages import report

    params = _params(tmp_path, _DATA + "report:\n  channels: [0, 1, 5]\n")
    run = tmp_path / "runs" / "d"
    run.mkdir(parents=True)
    pd.DataFrame({"sample_id": ["aa"], "image": ["cross/0.png"], "split": ["train"]}).to_parquet(
        run / "clean_manifest.parquet"
    )
    (run / "stats.json").write_text('{"task": "classification", "channels": 3}')
    code = report.main(
        ["--dataset", "d", "--params", str(params), "--runs", str(tmp_path / "runs")]
    )
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        "error: report d: report.channels: [0, 1, 5] needs 6 channels; d's images have 3 "
        "(stats.json), so pick from 0..2"
    )
    assert not (run / "reports" / "report.html").exists()


# --- init on a segmentation layout that does not quite fit -------------------------------------


def test_init_on_pairs_csv_with_unlisted_images_says_it_looks_like_segmentation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _seg_root(tmp_path / "cells", n=3)
    _png(root / "images" / "extra.png", seed=9)  # not listed in pairs.csv
    (root / "pairs.csv").write_text(
        "image,mask\n"
        + "".join(f"images/img_{i:04d}.png,masks/img_{i:04d}.png\n" for i in range(3))
    )
    params = tmp_path / "params.yaml"
    code, out, err = _cli(capsys, "init", str(root), "--params", str(params))
    assert code == 2 and out == ""
    assert _one_error_line(err) == (
        f"error: {root}: looks like a segmentation layout (pairs.csv, images/ and masks/), but "
        f"ambiguous layout: pairs.csv and images/ with images it does not list; set layout: "
        "pairs_csv or images_masks; fix that, or pass --task classification if images/, "
        "masks/ really are classes"
    )
    assert not params.exists()


def test_init_on_images_and_masks_that_never_pair_says_it_looks_like_segmentation(
    tmp_path: Path,
) -> None:
    from datapipe.errors import ConfigError
    from datapipe.init import detect_dataset

    root = tmp_path / "cells"
    _png(root / "images" / "a.png")
    _mask(root / "masks" / "zzz.png")
    with pytest.raises(ConfigError, match=r"looks like a segmentation layout \(images/ and masks/"
                       r"\), but none of the 1 images has a mask"):  # fmt: skip
        detect_dataset(root)
    assert detect_dataset(root, task="classification").class_counts == {"images": 1, "masks": 1}


# --- symbolic links that lead nowhere ------------------------------------------------------------


def _salt_links(root: Path) -> dict[str, str]:
    """A broken link and a link loop in the class folders: path -> what is wrong with it."""
    (root / "cross" / "gone.png").symlink_to("missing.png")
    (root / "disc" / "loop.png").symlink_to("loop.png")
    return {
        "cross/gone.png": "broken symbolic link -> missing.png",
        "disc/loop.png": "symbolic link loop",
    }


def test_broken_links_and_link_loops_are_manifest_rows_with_a_read_error(tmp_path: Path) -> None:
    root = _cls_root(tmp_path / "d")
    bad = _salt_links(root)
    m = ingest(DatasetParams(root=root, task="classification"), name="d", workers=0).manifest
    rows = m.set_index("image").loc[sorted(bad)]
    assert rows["read_error"].notna().all()
    assert len(m) == 8 + len(bad)


def test_a_link_row_says_where_the_link_points(tmp_path: Path) -> None:
    root = _cls_root(tmp_path / "d")
    bad = _salt_links(root)
    m = ingest(DatasetParams(root=root, task="classification"), name="d", workers=0).manifest
    assert m.set_index("image").loc[sorted(bad), "read_error"].to_dict() == bad


def test_check_lists_each_link_that_stops_dvc_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _params(tmp_path, _DATA)
    root = tmp_path / "data"
    _salt_links(root)
    (root / ".cache").mkdir()
    (root / ".cache" / "stale").symlink_to("/nonexistent/x")  # hidden: DVC hashes it too
    code, out, err = _cli(capsys, "check", "--params", str(params))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "error: datasets.d.root data: 3 symbolic link(s) lead nowhere; DVC hashes the whole root "
        "and stops at the first",
        "  data/.cache/stale: broken symbolic link -> /nonexistent/x",
        "  data/cross/gone.png: broken symbolic link -> missing.png",
        "  data/disc/loop.png: symbolic link loop",
        "fix: point each link at an existing file, delete it, or list it in .dvcignore (DVC then "
        "skips it; ingest still lists it as an unreadable sample)",
    ]


# --- through DVC: the salted folder runs, and its data root is untouched ------------------------


def _listing(root: Path) -> list[tuple[str, int, int, str]]:
    """(path, size, mtime, sha256) of every entry under ``root``, links as links (not followed)."""
    out = []
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(here) / name
            info = path.lstat()
            if path.is_symlink():
                digest = hashlib.sha256(str(path.readlink()).encode()).hexdigest()
            elif path.is_dir():
                digest = ""
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out.append((path.relative_to(root).as_posix(), info.st_size, info.st_mtime_ns, digest))
    return sorted(out)


@pytest.mark.slow
def test_dvc_repro_of_a_salted_folder_reports_every_bad_file_and_touches_nothing(
    tmp_path: Path,
) -> None:
    from tests.dvc_harness import CODE, copy_repo, dvc, output, run, set_params

    work = copy_repo(tmp_path / "repo", names=CODE)
    root = _cls_root(work / "data" / "hostile")
    (root / "cross" / "empty.png").write_bytes(b"")
    (root / "cross" / "cut.png").write_bytes((root / "cross" / "0.png").read_bytes()[:40])
    (root / "disc" / "anim.gif").write_bytes(b"GIF89a" + bytes(16))
    (root / "disc" / "notes.txt").write_text("not an image\n")
    shutil.copy2(root / "disc" / "0.png", root / "disc" / "copy.png")
    links = _salt_links(root)
    set_params(
        work,
        {"datasets": {"hostile": {"root": "data/hostile", "task": "classification"}}, "workers": 0},
        replace=["datasets"],
    )
    before = _listing(root)

    check = run([sys.executable, "-m", "datapipe.cli", "check"], work)
    assert check.returncode == 2, output(check)
    assert all(f"data/hostile/{rel}: " in check.stderr for rel in links), output(check)
    stuck = dvc(work, "repro", "clean@hostile")  # what check saves the user from
    assert stuck.returncode != 0 and "Too many levels of symbolic links" in output(stuck)
    (work / ".dvcignore").write_text("".join(f"/data/hostile/{rel}\n" for rel in links))
    check = run([sys.executable, "-m", "datapipe.cli", "check"], work)
    assert check.returncode == 0, output(check)
    assert "(2 listed in .dvcignore: unreadable samples)" in check.stdout

    result = dvc(work, "repro", "clean@hostile")
    assert result.returncode == 0, output(result)
    assert "Traceback" not in output(result)
    clean = pd.read_parquet(work / "runs" / "hostile" / "clean_manifest.parquet").set_index("image")
    unreadable = ["cross/empty.png", "cross/cut.png", "disc/anim.gif", "disc/notes.txt", *links]
    assert (clean.loc[unreadable, "exclude_reason"] == "unreadable").all()
    assert clean.loc["disc/copy.png", "exclude_reason"] == "exact_duplicate"
    assert not clean.loc["disc/0.png", "excluded"]
    assert int((~clean["excluded"]).sum()) == 8
    assert _listing(root) == before


def test_every_stage_refuses_a_train_only_key_before_reading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages import ingest as ingest_stage

    params = _params(tmp_path, _DATA + "train:\n  loader_workers: -2\n")
    runs = tmp_path / "runs"
    code = ingest_stage.main(["--dataset", "d", "--params", str(params), "--runs", str(runs)])
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: ingest d: {params}: train.loader_workers: Value error, expected 'auto' or an "
        "integer >= 0 (got -2)"
    )
    assert not (runs / "d" / "manifest.parquet").exists()
