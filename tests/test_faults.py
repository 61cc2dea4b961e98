"""Hostile input and faults (issue 15): each case reproduced, then the behaviour it must have.

Output folders that cannot take outputs, damaged tables, non-finite pixels, corrupt JPEGs that
libjpeg decodes with only a warning, decompression bombs, writes cut short, a second run of a
stage racing an orphan, and DataLoader workers outliving their parent.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from datapipe.config import DatasetParams, Params
from datapipe.errors import DatapipeError, ImageReadError
from datapipe.ingest import ingest
from datapipe.io import read_image, read_table, write_table
from datapipe.io.atomic import TEMP_PREFIX, atomic_path, remove_stale_temps
from datapipe.stats import Moments
from stages import common
from stages.common import run_stage, stage_lock, write_json
from tests.conftest import REPO, SAMPLE_DATA

DATASET = "shapes_cls"

Body = Callable[[Params, DatasetParams, Path, str], list[Path]]


# --- the stage's output folder --------------------------------------------------------------


def _spy() -> tuple[Body, list[Path]]:
    called: list[Path] = []

    def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
        called.append(out)
        return []

    return body, called


def _run(runs: Path, body: Body, name: str = "ingest") -> int:
    argv = ["--dataset", DATASET, "--params", str(REPO / "params.yaml"), "--runs", str(runs)]
    return run_stage(name, body, argv)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_runs_dataset_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / DATASET).write_text("not a folder")
    body, called = _spy()
    assert _run(tmp_path / "runs", body) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"error: ingest {DATASET}: {tmp_path / 'runs' / DATASET}: is a file, not a folder; "
        "move it away (outputs go here)"
    )
    assert called == []


def test_runs_folder_under_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    body, called = _spy()
    assert _run(tmp_path / "runs", body) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: ingest {DATASET}: cannot write outputs: {tmp_path / 'runs'}")
    assert called == []


def test_read_only_runs_folder_fails_in_one_line_before_the_body_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs" / DATASET
    out.mkdir(parents=True)
    if os.geteuid() == 0:  # root writes through permission bits: fail the way EROFS would
        real = Path.write_bytes

        def read_only(self: Path, data: bytes) -> int:  # type: ignore[override]
            if self.parent == out:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", read_only)
        reason = os.strerror(errno.EROFS)
    else:
        out.chmod(0o555)
        reason = os.strerror(errno.EACCES)
    body, called = _spy()
    try:
        assert _run(tmp_path / "runs", body) == 2
    finally:
        out.chmod(0o755)
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: ingest {DATASET}: cannot write outputs: {out}")
    assert line.endswith(reason)
    assert called == []  # found before decoding a single image


def test_full_disk_fails_in_one_line_before_the_body_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.shutil, "disk_usage", lambda _: type("U", (), {"free": 10 << 20})())
    body, called = _spy()
    assert _run(tmp_path / "runs", body) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"error: ingest {DATASET}: {tmp_path / 'runs' / DATASET}: only 10 MiB free on its disk; "
        "a stage needs at least 256 MiB: free some space or pass --runs elsewhere"
    )
    assert called == []


def test_os_error_inside_a_stage_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "runs" / DATASET / "scores.parquet"

    def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    assert _run(tmp_path / "runs", body) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"error: ingest {DATASET}: {target}: {os.strerror(errno.ENOSPC)}"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_truncated_table_is_one_error_naming_the_path(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"manifest{suffix}"
    write_table(pd.DataFrame({"sample_id": range(500), "image": ["a.png"] * 500}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if suffix == ".parquet" else b"")
    with pytest.raises(DatapipeError) as err:
        read_table(path, required=["sample_id"])
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read table (")
    assert message.endswith(
        "the file is damaged (a write cut short?): re-run the stage that writes it"
    )
    assert "\n" not in message


def test_truncated_manifest_fails_the_clean_stage_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages import clean as clean_stage

    out = tmp_path / "runs" / DATASET
    out.mkdir(parents=True)
    (out / "manifest.parquet").write_bytes(b"PAR1\x15\x04\x15")  # a write cut short
    argv = ["--dataset", DATASET, "--params", str(REPO / "params.yaml"), "--runs", str(out.parent)]
    assert clean_stage.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: clean {DATASET}: {out / 'manifest.parquet'}: cannot read table")


# --- non-finite pixels and streaming statistics -------------------------------------------


def test_moments_leave_out_non_finite_pixels_and_count_them() -> None:
    img = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    img[1, 0, 2] = np.nan
    img[3, 1, 0] = np.inf
    m = Moments.of_image(img)
    finite = img.reshape(-1, 3)[np.isfinite(img.reshape(-1, 3)).all(axis=1)].astype(np.float64)
    assert (m.count, m.nonfinite) == (6, 2)
    np.testing.assert_allclose(m.mean, finite.mean(axis=0), rtol=1e-7)
    np.testing.assert_allclose(m.std, finite.std(axis=0), rtol=1e-6)


def test_one_nan_pixel_in_one_float_tiff_leaves_stats_finite(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = {}
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            img = rng.random((16, 16), dtype=np.float32)
            images[f"{label}/{i}.tif"] = img
            tifffile.imwrite(tmp_path / label / f"{i}.tif", img)
    bad = images["a/0.tif"].copy()
    bad[5, 7] = np.nan
    tifffile.imwrite(tmp_path / "a" / "0.tif", bad)
    stats = ingest(DatasetParams(root=tmp_path, task="classification"), name="nan", workers=0).stats
    good = np.concatenate([v.ravel() for k, v in images.items() if k != "a/0.tif"])
    assert np.isfinite(stats["mean"]).all() and np.isfinite(stats["std"]).all()
    np.testing.assert_allclose(stats["mean"], [good.astype(np.float64).mean()], rtol=1e-6)
    np.testing.assert_allclose(stats["std"], [good.astype(np.float64).std()], rtol=1e-5)
    assert (stats["nonfinite_images"], stats["nonfinite_pixels"]) == (1, 1)
    assert stats["pixels"] == good.size
    json.dumps(stats, allow_nan=False)  # stats.json holds no NaN


def test_moments_make_no_float64_copy_of_the_image() -> None:
    img = np.random.default_rng(0).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        Moments.of_image(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < img.nbytes // 2  # a float64 copy would be 8 x img.nbytes


# --- corrupt JPEGs ------------------------------------------------------------------------

SAMPLE_JPEG = SAMPLE_DATA / "shapes_cls" / "cross" / "img_0091.jpg"


def _photo_jpeg() -> bytes:
    y, x = np.mgrid[0:256, 0:256]
    img = np.stack([(x + y) % 256, (2 * x) % 256, 128 + 100 * np.sin(x / 9.0)], axis=-1)
    noise = np.random.default_rng(0).normal(0, 10, img.shape)
    pixels = np.clip(img + noise, 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _extraneous_bytes(data: bytes) -> bytes:
    return data[:-2] + bytes(21) + b"\xff\xd9"  # the entropy decoder takes one as padding


def _zeroed_mid_file(data: bytes) -> bytes:
    # 40 zeroed bytes in the scan of a committed sample: libjpeg desyncs and only warns.
    out = bytearray(data)
    out[508:548] = bytes(40)
    return bytes(out)


def _half_with_end_marker(data: bytes) -> bytes:
    return data[: len(data) // 2] + b"\xff\xd9"


@pytest.mark.parametrize(
    ("damage", "source", "reason"),
    [
        (_extraneous_bytes, _photo_jpeg, "corrupt JPEG: 20 extraneous bytes before marker 0xd9"),
        (
            _zeroed_mid_file,
            SAMPLE_JPEG.read_bytes,
            "corrupt JPEG: 15 extraneous bytes before marker 0xd9",
        ),
        (_half_with_end_marker, _photo_jpeg, "corrupt JPEG: premature end of data segment"),
    ],
    ids=["extraneous_bytes", "zeroed_40_bytes", "cut_in_half_with_end_marker"],
)
def test_corrupt_jpeg_that_libjpeg_decodes_with_a_warning_is_a_read_error(
    tmp_path: Path, damage: Callable[[bytes], bytes], source: Callable[[], bytes], reason: str
) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(damage(source()))
    assert cv2.imread(str(path)) is not None  # what OpenCV does: pixels, and a warning
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert err.value.reason == reason


# --- decompression bombs ------------------------------------------------------------------


def test_tiff_bomb_of_64_uint16_planes_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tif"  # 2 GiB declared, a few KB on disk (sparse)
    tifffile.imwrite(path, shape=(64, 4096, 4096), dtype="uint16", photometric="minisblack")
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert err.value.reason == (
        "4096x4096x64 x 2 bytes decodes to 2.0 GiB, over the 1.0 GiB budget of "
        "max_pixels=268,435,456 (4 bytes per pixel; decompression-bomb guard)"
    )


def _png_declaring(width: int, height: int, *, bit_depth: int, color_type: int) -> bytes:
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, color_type])
    data[16:26] = ihdr
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_png_bomb_of_16384_squared_16_bit_rgb_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(16384, 16384, bit_depth=16, color_type=2))
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert err.value.reason.startswith("16384x16384x3 x 2 bytes decodes to 1.5 GiB, over the 1.0")


@pytest.mark.parametrize(("max_pixels", "refused"), [(1 << 18, True), (1 << 19, False)])
def test_decoded_bytes_budget_is_four_bytes_per_max_pixel(
    tmp_path: Path, max_pixels: int, refused: bool
) -> None:
    path = tmp_path / "planes.tif"  # 128 x 128 x 64 uint16 = 2 MiB, 16 K pixels
    tifffile.imwrite(path, np.ones((64, 128, 128), np.uint16), photometric="minisblack")
    if refused:
        with pytest.raises(ImageReadError, match=r"decodes to 2\.0 MiB, over the 1\.0 MiB budget"):
            read_image(path, max_pixels=max_pixels)
    else:
        assert read_image(path, max_pixels=max_pixels).shape == (128, 128, 64)


# --- atomic writes ------------------------------------------------------------------------


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"{TEMP_PREFIX}*"))


def test_a_table_write_cut_short_leaves_the_old_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scores.parquet"
    old = pd.DataFrame({"sample_id": [1, 2, 3]})
    write_table(old, path)

    def killed(self: pd.DataFrame, target: Path, **kwargs: object) -> None:
        Path(target).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(pd.DataFrame, "to_parquet", killed)
    with pytest.raises(KeyboardInterrupt):
        write_table(pd.DataFrame({"sample_id": range(10)}), path)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(read_table(path), old)
    assert _temps(tmp_path) == []


def test_a_json_write_cut_short_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metrics" / "clean.json"
    write_json(path, {"excluded": 1})
    real = Path.write_text

    def killed(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"excluded": 2, "kept": 10})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"excluded": 1}
    assert _temps(tmp_path) == []


def test_atomic_path_keeps_the_suffix_writers_look_at(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "shard.npz") as tmp:
        np.savez(tmp, x=np.arange(3))  # np.savez adds .npz to a name without it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.npz"]
    np.testing.assert_array_equal(np.load(tmp_path / "shard.npz")["x"], np.arange(3))


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = tmp_path / "oof" / f"{TEMP_PREFIX}{dead}-abcd-r000.npz"
    live = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-abcd-scores.parquet"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    assert remove_stale_temps(tmp_path) == [stale]
    assert _temps(tmp_path) == [live]


# --- one run of a stage at a time ----------------------------------------------------------


def test_a_second_run_of_a_stage_fails_in_one_line_naming_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / DATASET
    out.mkdir(parents=True)
    body, called = _spy()
    with stage_lock(out, "score", DATASET):  # the orphan of a killed dvc, still running
        assert _run(tmp_path / "runs", body, name="score") == 2
        assert _run(tmp_path / "runs", body, name="clean") == 0  # another stage: no conflict
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"error: score {DATASET}: another run of stage score for dataset {DATASET} is in "
        f"progress (PID {os.getpid()}, lock {out / '.lock.score'}); wait for it to finish or "
        "stop it"
    )
    assert called == [out]  # only the clean run
    assert _run(tmp_path / "runs", body, name="score") == 0  # the lock went with its holder


def test_the_stage_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({str(tmp_path / '.lock.score')!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, str(os.getpid()).encode())
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    with (
        pytest.raises(DatapipeError, match=f"in progress \\(PID {holder.pid},"),
        stage_lock(tmp_path, "score", DATASET),
    ):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with stage_lock(tmp_path, "score", DATASET) as lock:
        assert lock.read_text().strip() == str(os.getpid())


# --- DataLoader workers die with their parent ---------------------------------------------

_PARENT = """
import os, sys, time
sys.path.insert(0, {repo!r})
from datapipe.workers import die_with_parent
ready_r, ready_w = os.pipe()
child = os.fork()
if child == 0:
    {child_setup}
    os.write(ready_w, b"1")
    time.sleep(60)
    os._exit(0)
os.read(ready_r, 1)
print(child, flush=True)
time.sleep(60)
"""


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "gone"
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
@pytest.mark.parametrize(("setup", "dies"), [("die_with_parent(0)", True), ("pass", False)])
def test_a_worker_dies_when_its_parent_is_killed(setup: str, dies: bool) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(repo=str(REPO), child_setup=setup)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())  # printed once the child has run its setup
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while _state(child) not in ("gone", "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert (_state(child) in ("gone", "Z", "X")) == dies
    finally:
        if _state(child) not in ("gone", "Z", "X"):
            os.kill(child, signal.SIGKILL)
