"""The `datapipe` command: help, exit codes, and what each command writes or prints."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from datapipe import cli
from datapipe.config import load_params
from datapipe.curate import validate_review
from datapipe.review import read_sheet

PARAMS = """\
# datasets: one entry each
datasets:
  shapes:   # the sample
    root: sample_data/shapes_cls
    task: classification

workers: 0   # in-process
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["inspect"], ["init"], ["check"], ["review"], ["review", "export"],
     ["review", "import"], ["report"]],
    ids=["datapipe", "inspect", "init", "check", "review", "export", "import", "report"],
)  # fmt: skip
def test_help_exits_0_with_examples(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"datapipe {' '.join(argv)}".strip() in out


# --- inspect -------------------------------------------------------------------------------


def test_inspect_json_reports_12_bit_in_uint16(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = np.zeros((8, 8), np.uint16)
    img[0, 0] = 4000
    tifffile.imwrite(tmp_path / "a.tif", img)
    code, out, _ = _run(capsys, "inspect", "--json", str(tmp_path / "a.tif"))
    assert code == 0
    [entry] = json.loads(out)
    assert (entry["dtype"], entry["shape"], entry["bit_depth"]) == ("uint16", [8, 8, 1], 12)
    assert entry["header"]["compression"] == "NONE"


def test_inspect_bad_path_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code, out, err = _run(capsys, "inspect", str(tmp_path / "bad.png"), str(tmp_path / "ok.png"))
    assert code == 1
    assert err.splitlines() == [
        f"{tmp_path / 'bad.png'}: cannot read: unsupported format: text/plain"
    ]
    assert out.startswith(f"{tmp_path / 'ok.png'}\n")  # the good file is still shown


def test_inspect_folder_prints_a_summary_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 6), 9, np.uint8))
    code, out, _ = _run(capsys, "inspect", "--limit", "2", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{tmp_path}/: 3 images, 2 inspected (spread evenly)"
    assert lines[2].split() == ["2", "uint8", "4", "x", "6", "x", "1", "8", "9", "..", "9", "png"]


def test_inspect_realdata_imagej_tiff_has_3_channels(
    realdata: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "inspect", str(realdata / "bbbc022" / "IXMtest_A02_s9.tif"))
    assert code == 0
    assert "  channels     3\n" in out
    assert "  bit depth    12 (max 4095 in uint16)\n" in out


# --- init ----------------------------------------------------------------------------------


def _classes_dataset(root: Path) -> Path:
    for rel in ["cat/a.png", "cat/b.png", "dog/c.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.zeros((4, 4), np.uint8))
    return root


def test_init_writes_an_entry_load_params_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    data = _classes_dataset(tmp_path / "data" / "pets")
    code, out, _ = _run(capsys, "init", str(data), "--params", str(params))
    assert code == 0
    text = params.read_text()
    assert text.startswith(PARAMS.split("\n\n")[0])  # comments and the old entry, as they were
    assert "# datasets: one entry each" in text and "workers: 0   # in-process" in text
    loaded = load_params(params)
    assert loaded.dataset("pets").root == Path("data/pets")
    assert (loaded.dataset("pets").task, loaded.dataset("pets").layout) == (
        "classification", "folders",
    )  # fmt: skip
    assert "classification, layout folders: 3 images in 2 classes: cat (2), dog (1)" in out
    assert "next: dvc repro" in out


def test_init_refuses_an_existing_name_and_leaves_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    data = _classes_dataset(tmp_path / "pets")
    code, _, err = _run(capsys, "init", str(data), "--name", "shapes", "--params", str(params))
    assert code == 2
    assert err.startswith(f"error: {params}: datasets.shapes already exists")
    assert params.read_text() == PARAMS


def test_init_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    data = _classes_dataset(tmp_path / "pets")
    code, out, _ = _run(capsys, "init", str(data), "--params", str(params), "--dry-run")
    assert code == 0
    assert "  pets:  # datapipe init: 3 images, 2 classes\n    root: pets\n" in out
    assert params.read_text() == PARAMS


# --- review import -------------------------------------------------------------------------


def _run_dir(runs: Path) -> Path:
    run = runs / "pets"
    run.mkdir(parents=True)
    manifest = pd.DataFrame({"sample_id": ["aa", "bb"], "image": ["cat/a.png", "dog/c.png"]})
    manifest.to_parquet(run / "manifest.parquet")
    manifest.assign(given_label=["cat", "dog"]).to_parquet(run / "scores.parquet")
    stats = {"classes": ["cat", "dog"], "task": "classification", "root": "data/pets"}
    (run / "stats.json").write_text(json.dumps(stats))
    return run


def test_review_import_maps_image_paths_to_sample_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_dir(tmp_path / "runs")
    sheet = tmp_path / "done.csv"
    sheet.write_text("image,decision,label,note\ndog/c.png,relabel,cat,wrong folder\n")
    code, out, _ = _run(
        capsys, "review", "import", str(sheet), "--dataset", "pets",
        "--runs", str(tmp_path / "runs"), "--reviews", str(tmp_path / "reviews"),
    )  # fmt: skip
    assert code == 0
    review = pd.read_csv(tmp_path / "reviews" / "pets.csv", dtype=str, keep_default_na=False)
    assert review[["sample_id", "decision", "label", "note", "image"]].values.tolist() == [
        ["bb", "relabel", "cat", "wrong folder", "dog/c.png"]
    ]
    assert "imported 1 decisions" in out and "(1 new, 0 changed" in out


def test_review_import_error_names_file_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_dir(tmp_path / "runs")
    sheet = tmp_path / "done.csv"
    sheet.write_text("sample_id,decision\naa,keep\nbb,maybe\n")
    code, _, err = _run(
        capsys, "review", "import", str(sheet), "--dataset", "pets",
        "--runs", str(tmp_path / "runs"), "--reviews", str(tmp_path / "reviews"),
    )  # fmt: skip
    assert code == 2
    assert err.startswith(f"error: {sheet} row 3: decision 'maybe'")
    assert not (tmp_path / "reviews" / "pets.csv").exists()


def test_review_round_trip_keeps_numeric_class_names_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Classes 0-9 (a digits folder): export writes 7, not 7.0; curate and import accept the
    edited sheet."""
    classes = [str(i) for i in range(10)]
    run = tmp_path / "runs" / "digits"
    (run / "reports").mkdir(parents=True)
    ids = ["s0", "s1", "s2"]
    pd.DataFrame({
        "sample_id": ids, "image": [f"{c}/x.png" for c in "317"], "given_label": [3, 1, 7],
        "suggested_label": ["7", "4", ""], "label_quality": [0.1, 0.2, 0.3],
        "reasons": "oof_disagrees",
    }).to_csv(run / "reports" / "label_issues.csv", index=False)  # fmt: skip
    manifest = pd.DataFrame({"sample_id": ids, "image": [f"{c}/x.png" for c in "317"]})
    manifest.to_parquet(run / "manifest.parquet")
    manifest.assign(given_label=["3", "1", "7"]).to_parquet(run / "scores.parquet")
    stats = {"classes": classes, "task": "classification", "root": "data/digits"}
    (run / "stats.json").write_text(json.dumps(stats))
    folders = ("--runs", str(tmp_path / "runs"), "--reviews", str(tmp_path / "reviews"))

    assert _run(capsys, "review", "export", "--dataset", "digits", *folders)[0] == 0
    sheet_path = tmp_path / "reviews" / "digits.csv"
    sheet = read_sheet(sheet_path)
    assert sheet[["given_label", "label"]].values.tolist() == [["3", "7"], ["1", "4"], ["7", ""]]
    sheet.loc[0, "decision"] = "relabel"  # to the pre-filled suggestion, 7
    sheet.loc[2, ["decision", "label"]] = ["relabel", "0"]
    sheet.to_csv(sheet_path, index=False)
    decided = validate_review(read_sheet(sheet_path), sample_ids=ids, classes=classes,
                              task="classification", name=str(sheet_path))  # fmt: skip
    assert decided[["sample_id", "label"]].values.tolist() == [["s0", "7"], ["s2", "0"]]

    done = tmp_path / "done.csv"
    done.write_text("sample_id,decision,label\ns1,relabel,9\n")
    code, _, err = _run(capsys, "review", "import", str(done), "--dataset", "digits", *folders)
    assert code == 0, err
    merged = read_sheet(sheet_path)
    assert merged[["sample_id", "decision", "label"]].values.tolist() == [
        ["s0", "relabel", "7"], ["s1", "relabel", "9"], ["s2", "relabel", "0"],
    ]  # fmt: skip


# --- report --------------------------------------------------------------------------------


def _pets_params(tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text("datasets:\n  pets: {root: data/pets, task: classification}\n")
    return params


def test_report_missing_suggests_dvc_repro(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "report", "--dataset", "pets", "--runs", str(tmp_path),
                          "--params", str(_pets_params(tmp_path)))  # fmt: skip
    assert code == 1 and out == ""
    assert "no report yet; build it with: dvc repro report@pets" in err


def test_report_of_an_unknown_dataset_is_an_error_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _pets_params(tmp_path)
    code, out, err = _run(capsys, "report", "--dataset", "nope", "--runs", str(tmp_path),
                          "--params", str(params))  # fmt: skip
    assert (code, out) == (2, "")
    assert err == f"error: unknown dataset 'nope'; {params} has ['pets']\n"


def test_report_without_params_knows_datasets_by_their_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("report", "--runs", str(tmp_path), "--params", str(tmp_path / "none.yaml"))
    (tmp_path / "pets").mkdir()
    assert _run(capsys, *argv, "--dataset", "pets")[0] == 1  # known, no report yet
    code, _, err = _run(capsys, *argv, "--dataset", "nope")
    assert code == 2 and err.startswith("error: unknown dataset 'nope'")


def test_report_prints_the_path_and_opens_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "pets" / "reports" / "report.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    opened: list[str] = []
    monkeypatch.setattr(cli.webbrowser, "open", lambda url: opened.append(url) or True)
    code, out, _ = _run(capsys, "report", "--dataset", "pets", "--runs", str(tmp_path), "--open",
                        "--params", str(_pets_params(tmp_path)))  # fmt: skip
    assert code == 0 and out == f"{page}\n"
    assert opened == [page.resolve().as_uri()]
