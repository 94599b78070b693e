"""`rsgan batch`: exit codes, the summary table, and one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner, Result

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli._exit import ExitCode
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets

FAST = ["--tile", "64", "--overlap", "16", "--quiet", "--precision", "fp32"]


def tiny_checkpoint(path: Path) -> Path:
    """A 3-band uint8 CycleGAN checkpoint with random weights (ngf 4, one block)."""
    config = CycleGANConfig(in_channels_a=3, in_channels_b=3, ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    domain = DomainInfo(bands=None, count=3, dtype="uint8",
                        normalizer=Normalizer.for_dtype("uint8", 3))  # fmt: skip
    nets = build_nets("cyclegan", config)
    return save_checkpoint(path, kind="cyclegan", config=config, nets=nets,
                           domains={"a": domain, "b": domain}, generators_only=True)  # fmt: skip


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return tiny_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture
def folder(make_raster: Callable[..., Path], tmp_path: Path) -> Path:
    for i in range(2):
        make_raster(f"s{i}.tif", width=48, height=40, seed=i, folder=tmp_path / "scenes")
    return tmp_path / "scenes"


def _batch(*args: object) -> Result:
    return CliRunner().invoke(cli, ["batch", *map(str, args), *FAST])


def test_batch_translates_and_reruns(folder: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _batch(folder / "*.tif", out, "--model", checkpoint, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert "done          2" in result.output
    manifest = gpd.read_parquet(out / "manifest.parquet")
    assert list(manifest["status"]) == ["done", "done"]
    with rasterio.open(out / "s0_translated.tif") as a, rasterio.open(folder / "s0.tif") as b:
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
        assert not np.array_equal(a.read(), b.read())  # the random net changed the pixels
    assert (
        result.output.splitlines()[-1]
        == "all 2 scenes done (2 translated, 0 skipped as done before)"
    )
    again = _batch(folder / "*.tif", out, "--model", checkpoint, "--workers", 0)
    assert again.exit_code == 0 and "skipped       2" in again.output
    assert (
        again.output.splitlines()[-1]
        == "all 2 scenes done (0 translated, 2 skipped as done before)"
    )


def test_batch_exit_code_says_a_scene_failed(
    folder: Path, checkpoint: Path, tmp_path: Path
) -> None:
    (folder / "broken.tif").write_bytes(b"not a raster")
    result = _batch(folder, tmp_path / "out", "--model", checkpoint, "--workers", 0)
    assert result.exit_code == ExitCode.SOME_FAILED == 3
    assert "failed        1" in result.output and "broken.tif" in result.output
    assert (tmp_path / "out" / "s1_translated.tif").exists()


def _truncated(path: Path) -> Path:
    """A real GeoTIFF cut to 60 % of its bytes (a download that stopped)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def test_batch_exit_codes_tell_failed_scenes_from_a_run_that_could_not_start(
    make_raster: Callable[..., Path], checkpoint: Path, tmp_path: Path
) -> None:
    """Scripts over catalogs must tell "the run worked, some scenes failed: rerun to retry
    them" (3) from "the run could not be done" (1): both used to exit 1. A CSV catalog of
    three GeoTIFFs, one of them truncated, on the real LocalCluster of 2 processes."""
    scenes = [make_raster(f"s{i}.tif", width=48, height=40, seed=i, compress=None,
                          folder=tmp_path / "scenes") for i in range(3)]  # fmt: skip
    _truncated(scenes[1])
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("path\n" + "".join(f"{p}\n" for p in scenes))
    out = tmp_path / "out"
    result = _batch(catalog, out, "--model", checkpoint, "--workers", 2)
    assert result.exit_code == 3, result.output
    assert "failed        1" in result.output and "s1.tif" in result.output
    assert result.output.splitlines()[-1] == (
        "1 of 3 scenes failed (exit code 3); rerun the same command to retry them: the scenes "
        "done are skipped"
    )
    assert "Traceback" not in result.output
    manifest = gpd.read_parquet(out / "manifest.parquet")
    assert list(manifest["status"]) == ["done", "failed", "done"]
    assert (out / "s0_translated.tif").exists() and (out / "s2_translated.tif").exists()
    # the scene is fixed: the rerun retries only it, and the run is all done
    make_raster("s1.tif", width=48, height=40, seed=1, folder=tmp_path / "scenes")
    again = _batch(catalog, out, "--model", checkpoint, "--workers", 0)
    assert again.exit_code == 0, again.output
    assert (
        again.output.splitlines()[-1]
        == "all 3 scenes done (1 translated, 2 skipped as done before)"
    )


def _corrupt_model(tmp_path: Path) -> list[object]:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    return ["--model", bad]


@pytest.mark.parametrize(
    ("why", "args"),
    [
        ("no catalog", lambda tmp, ckpt: [tmp / "missing.csv", tmp / "out", "--model", ckpt]),
        ("bad model", lambda tmp, ckpt: [tmp / "scenes", tmp / "out", *_corrupt_model(tmp)]),
        (
            "OUT_DIR cannot be made",
            lambda tmp, ckpt: [tmp / "scenes", tmp / "file" / "out", "--model", ckpt],
        ),  # fmt: skip
    ],
)
def test_batch_exits_1_when_the_run_cannot_be_done(
    folder: Path, checkpoint: Path, tmp_path: Path, why: str, args: Callable[..., list[object]]
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    result = _batch(*args(tmp_path, checkpoint), "--workers", 0)
    assert result.exit_code == ExitCode.ERROR == 1, (why, result.output)
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_batch_usage_errors_exit_2(folder: Path, tmp_path: Path) -> None:
    """click's own convention, kept: OUT_DIR that is a file is a usage error."""
    (tmp_path / "file").write_text("a file")
    result = _batch(folder, tmp_path / "file")
    assert result.exit_code == ExitCode.USAGE == 2 and "is a file" in result.output


def test_batch_unreachable_scheduler_is_one_line(
    folder: Path, tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsgan.pipelines import catalog

    monkeypatch.setattr(catalog, "CONNECT_TIMEOUT_S", 1)
    address = "tcp://127.0.0.1:9"
    result = _batch(folder, tmp_path / "out", "--model", checkpoint, "--scheduler", address)
    assert result.exit_code == 1
    assert "cannot reach the Dask scheduler" in result.output
    assert "Traceback" not in result.output


def test_batch_compress_option_matches_translate(
    folder: Path, checkpoint: Path, tmp_path: Path
) -> None:
    from rsgan.cli.batch import batch
    from rsgan.pipelines.translate import COMPRESSIONS

    choices = next(p for p in batch.params if p.name == "compress").type.choices
    assert list(choices) == list(COMPRESSIONS)
    out = tmp_path / "out"
    result = _batch(folder, out, "--model", checkpoint, "--workers", 0, "--compress", "lzw")
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "s0_translated.tif") as ds:
        assert ds.profile["compress"] == "lzw"


def test_batch_nodata_override(
    make_raster: Callable[..., Path], checkpoint: Path, tmp_path: Path
) -> None:
    """--nodata reaches translate_raster: a zero collar without a nodata value stays nodata."""
    scene = make_raster("c.tif", width=48, height=40, nodata=0, collar=6, folder=tmp_path / "in")
    with rasterio.open(scene) as ds:
        pixels = ds.read()
    bare = make_raster("bare.tif", width=48, height=40, data=pixels, folder=tmp_path / "bare")
    out = tmp_path / "out"
    result = _batch(bare.parent, out, "--model", checkpoint, "--workers", 0, "--nodata", 0)
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "bare_translated.tif") as a:
        assert a.nodata == 0
        assert (a.read_masks(1)[:6] == 0).all() and (a.read_masks(1)[6:-6, 6:-6] == 255).all()
