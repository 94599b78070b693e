"""Every command's outputs when the disk fills up: each runs for real in a subprocess
under a file size limit (RLIMIT_FSIZE, as `ulimit -f`: write() fails with EFBIG, as it
fails with ENOSPC on a full disk) that stops it part way. It must exit 1 with one
``Error:`` line naming the file and the fix, no traceback, nothing half-written under a
final name, earlier outputs untouched; a rerun with the limit lifted completes (resuming
where the command can). `rsgan translate`'s own outputs: tests/test_io.py and
tests/reliability/test_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
from click.testing import CliRunner

from rsgan.checkpoint import DomainInfo, load_model, save_checkpoint
from rsgan.cli._exit import ExitCode
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import DCGANConfig, build_nets
from rsgan.tiling import load_index

from .test_batch import tiny_checkpoint

_RSGAN_UNDER_LIMIT = """
import resource, signal, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() returns EFBIG instead
from rsgan.cli.main import cli
cli(sys.argv[2:], prog_name="rsgan")
"""


def _rsgan(limit: int, *args: object) -> subprocess.CompletedProcess[str]:
    """``rsgan ARGS`` in a subprocess whose files may not grow past ``limit`` bytes
    (0: no limit)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", _RSGAN_UNDER_LIMIT, str(limit), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _one_error_line(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == ExitCode.ERROR, output
    assert "Traceback" not in done.stderr, output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write "), output
    assert "free space" in lines[0], output
    for part in parts:
        assert part in lines[0], output


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".rsgan-tmp" in p.name]


def test_chips_index_over_the_limit(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    """The chips fit (2.6 kB each), the GeoPackage index (~100 kB) does not: GDAL's
    SQLite rolled the failed page back and raised pyogrio's FeatureError "no such table:
    gpkg_contents" as a traceback."""
    for i in range(3):
        make_raster(f"s{i}.tif", width=128, height=96, seed=i, folder=tmp_path / "scenes")
    out = tmp_path / "chips"
    args = ["chips", tmp_path / "scenes", "--size", "32", "--out", out, "-q"]
    _one_error_line(_rsgan(40_000, *args), f"{out / 'index.gpkg'}: the file size limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]

    assert _rsgan(0, *args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(load_index(out / "index.gpkg")) == 36
    _one_error_line(_rsgan(40_000, *args, "--overwrite"), "index.gpkg")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier run's
    assert _temporaries(tmp_path) == []


def test_batch_manifest_over_the_limit_mid_run(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The manifest outgrows the limit once the first scene is done (a Dask worker runs
    the scenes): one line, not also "Exception ignored in _run_on_dask ... IOLoop is
    closed" with its traceback; the rerun skips the scene done and does the others."""
    for i in range(3):
        make_raster(f"s{i}.tif", width=32, height=32, seed=i, folder=tmp_path / "scenes")
    model = tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    args = ["batch", tmp_path / "scenes", out, "--model", model, "--tile", "64",
            "--overlap", "16", "--precision", "fp32", "-q"]  # fmt: skip
    done = _rsgan(12_288, *args, "--workers", "1")
    _one_error_line(done, f"{out / 'manifest.parquet'}: the file size limit")
    assert (out / "manifest.parquet").exists()  # the last whole one
    again = _rsgan(0, *args, "--workers", "0")
    assert again.returncode == ExitCode.OK, again.stdout + again.stderr
    last = again.stdout.strip().splitlines()[-1]
    assert last.startswith("all 3 scenes done") and "skipped as done before" in last
    assert _temporaries(tmp_path) == []


def test_batch_manifest_over_the_limit_names_the_limit(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """Arrow buffers: the manifest's EFBIG comes before a byte of it is written, which
    was told as "the write failed (disk full, file too large or an I/O error)"."""
    make_raster("s0.tif", width=32, height=32, folder=tmp_path / "scenes")
    model = tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    done = _rsgan(2048, "batch", tmp_path / "scenes", out, "--model", model, "--workers", "0")
    _one_error_line(done, "manifest.parquet: the file size limit (ulimit -f) of 2.0 kB")
    assert list(out.iterdir()) == []


def test_batch_scene_whose_stac_item_fails_is_redone_by_the_rerun(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A scene whose output was written but not its STAC Item (a full disk between the
    two; here the Item's name is taken by a folder, which a file size limit cannot single
    out) is failed; its output was kept, so the rerun refused it as "not written by an
    earlier run of this catalog" and asked for --overwrite, contrary to the summary's
    "rerun the same command to retry them"."""
    make_raster("s0.tif", width=32, height=32, folder=tmp_path / "scenes")
    model = tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    (out / "s0_translated.json").mkdir(parents=True)
    args = ["batch", str(tmp_path / "scenes"), str(out), "--model", str(model),
            "--workers", "0", "-q", "--precision", "fp32"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == ExitCode.SOME_FAILED and "is a folder" in first.output
    assert not (out / "s0_translated.tif").exists()  # not without its STAC Item
    (out / "s0_translated.json").rmdir()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == ExitCode.OK, again.output
    assert (out / "s0_translated.tif").exists() and (out / "s0_translated.json").is_file()


_TRAIN = ["--batch-size", "2", "--nz", "4", "--ngf", "2", "--ndf", "2", "--sample-every",
          "2", "--checkpoint-every", "2", "--log-every", "1", "--quiet"]  # fmt: skip


def test_train_sample_grid_cut_at_its_last_flush(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A sample grid of 4-8 kB under a 4 kB limit fails only at the file's last flush,
    which GDAL's PNG driver ignores: a cut grid was kept under its final name, and the
    state then failed with torch's "unexpected pos" RuntimeError and its traceback."""
    make_raster("s.tif", width=128, height=96, folder=tmp_path / "scenes")
    out = tmp_path / "run"
    args = ["train", "dcgan", tmp_path / "scenes", "--out", out, "--steps", "2", *_TRAIN]
    done = _rsgan(4096, *args)
    _one_error_line(done, str(out / "samples" / "step_000002.png"))
    assert list(out.rglob("*.png")) == []
    assert not (out / "model.safetensors").exists() and _temporaries(out) == []


def test_train_state_over_the_limit_resumes_from_the_last_checkpoint(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """train_state.pt (140 kB) over a 20 kB limit at step 4: torch.save raised
    "basic_ios::clear: iostream error" with a traceback; the checkpoint of step 2 stays
    and the run resumes from it once the limit is lifted."""
    make_raster("s.tif", width=128, height=96, folder=tmp_path / "scenes")
    out = tmp_path / "run"
    args = ["train", "dcgan", tmp_path / "scenes", "--out", out, *_TRAIN]
    assert _rsgan(0, *args, "--steps", "2").returncode == 0
    saved = {name: (out / name).read_bytes() for name in ("model.safetensors", "train_state.pt")}
    done = _rsgan(20_480, *args, "--steps", "4", "--resume")
    _one_error_line(done, f"{out / 'train_state.pt'}: the file size limit")
    assert {name: (out / name).read_bytes() for name in saved} == saved
    assert _temporaries(out) == []
    again = _rsgan(0, *args, "--steps", "4", "--resume")
    assert again.returncode == 0, again.stderr
    assert load_model(out / "model.safetensors").steps == 4
    steps = [int(line.split(",")[0].split(":")[1]) for line in
             (out / "log.jsonl").read_text().splitlines()]  # fmt: skip
    assert steps == [1, 2, 3, 4]


def _dcgan_checkpoint(path: Path) -> Path:
    config = DCGANConfig(channels=3, nz=4, ngf=2, ndf=2)
    torch.manual_seed(0)
    domain = DomainInfo(bands=None, count=3, dtype="uint8",
                        normalizer=Normalizer.for_dtype("uint8", 3))  # fmt: skip
    return save_checkpoint(path, kind="dcgan", config=config, nets=build_nets("dcgan", config),
                           domains={"data": domain}, generators_only=True)  # fmt: skip


def test_generate_grid_over_the_limit_is_named(tmp_path: Path) -> None:
    """The samples (2 kB) fit, the grid (10 kB) does not: the error named the output
    folder only (the grid's own atomic output did not see GDAL's failure: the outer
    collector, the first filter of rasterio's logger, dropped the record)."""
    model = _dcgan_checkpoint(tmp_path / "dc.safetensors")
    out = tmp_path / "gen"
    args = ["generate", model, "--n", "4", "--out", out, "-q"]
    _one_error_line(_rsgan(4096, *args), f"{out / 'grid.png'}: the file size limit")
    assert not out.exists() and _temporaries(tmp_path) == []
    assert _rsgan(0, *args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _one_error_line(_rsgan(4096, *args, "--overwrite"), "grid.png")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_augment_pair_whose_mask_fails_leaves_no_image(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The translated image (~12 kB) fits a 20 kB limit, the float64 mask (32 kB) does
    not: the pair fails (exit 3) and its image is not left without its mask."""
    rng = np.random.default_rng(0)
    for i in range(2):
        make_raster(f"t{i}.tif", width=64, height=64, seed=i, folder=tmp_path / "img")
    make_raster("t0.tif", data=np.zeros((1, 64, 64), "uint8"), folder=tmp_path / "lbl")
    noisy = rng.random((1, 64, 64))
    make_raster("t1.tif", data=noisy, dtype="float64", compress=None, folder=tmp_path / "lbl")
    model = tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "aug"
    args = ["augment", "--images", tmp_path / "img", "--masks", tmp_path / "lbl", "--model",
            model, "--out", out, "--tile", "32", "--overlap", "8", "-q"]  # fmt: skip
    done = _rsgan(20_480, *args)
    assert done.returncode == ExitCode.SOME_FAILED, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"t1: cannot write {out / 'masks' / 't1.tif'}: the file size limit" in done.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == ["t0.tif"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["t0.tif"]
    assert list(pd.read_csv(out / "index.csv")["translated"]) == [False, True]
    again = _rsgan(0, *args, "--overwrite")
    assert again.returncode == ExitCode.OK, again.stdout + again.stderr
    with rasterio.open(out / "masks" / "t1.tif") as src:
        np.testing.assert_array_equal(src.read(), noisy)


_API_UNDER_LIMIT = """
import resource, signal, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
import numpy as np, torch
from rsgan.errors import RasterWriteError
from rsgan.io import write_png_grid
from rsgan.checkpoint import save_train_state
from rsgan.models import DCGANConfig, build_nets
from rsgan.checkpoint import save_checkpoint
folder = sys.argv[1]
grey = np.random.default_rng(0).integers(0, 256, (1, 40, 40), dtype=np.uint8)  # ~6 kB
config = DCGANConfig(channels=3, nz=4, ngf=4, ndf=4)
from rsgan.checkpoint import DomainInfo
from rsgan.io import Normalizer
domain = DomainInfo(bands=None, count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3))
for name, write in [
    ("grid.png", lambda p: write_png_grid([grey], p, 1)),
    ("model.safetensors", lambda p: save_checkpoint(
        p, kind="dcgan", config=config, nets=build_nets("dcgan", config),
        domains={"data": domain})),
    ("state.pt", lambda p: save_train_state(p, {"w": torch.zeros(4096)})),
]:
    try:
        write(f"{folder}/{name}")
        print(name, "written")
    except RasterWriteError as exc:
        print(name, "RasterWriteError", exc)
"""


def test_library_writers_under_the_limit(tmp_path: Path) -> None:
    """A PNG cut at its last flush, safetensors' SafetensorError ("I/O error: File too
    large (os error 27)") and torch.save's RuntimeError become RasterWriteError."""
    done = subprocess.run(
        [sys.executable, "-c", _API_UNDER_LIMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout + done.stderr
    for line, name in zip(lines, ["grid.png", "model.safetensors", "state.pt"], strict=True):
        assert line.startswith(f"{name} RasterWriteError cannot write {tmp_path / name}: ")
        assert "the file size limit (ulimit -f) of 4.1 kB" in line
    assert "cut short" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_translate_quicklook_over_the_limit(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A quicklook cut short at its last flush exited 0 and was kept under its name."""
    scene = make_raster("s.tif", width=128, height=96)
    model = tiny_checkpoint(tmp_path / "tiny.safetensors")
    args = ["translate", scene, tmp_path / "ok.tif", "--model", model, "--tile", "64",
            "--overlap", "16", "-q", "--quicklook", tmp_path / "ok.png"]  # fmt: skip
    assert _rsgan(0, *args).returncode == 0
    png, tif = (tmp_path / "ok.png").stat().st_size, (tmp_path / "ok.tif").stat().st_size
    limit = png - 1  # 4 kB blocks: the last one is flushed when the file is closed
    assert tif < limit
    args = [tmp_path / "out.tif" if a == tmp_path / "ok.tif" else a for a in args]
    args = [tmp_path / "out.png" if a == tmp_path / "ok.png" else a for a in args]
    _one_error_line(_rsgan(limit, *args), f"{tmp_path / 'out.png'}: the file size limit")
    assert not (tmp_path / "out.png").exists() and _temporaries(tmp_path) == []
    assert (tmp_path / "out.tif").exists()  # whole (read back before its rename)
