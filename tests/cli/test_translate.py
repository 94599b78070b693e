"""`rsgan translate` (and `rio rsgan translate`) through click's CliRunner."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli.main import cli, rio_rsgan
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets


@pytest.fixture
def checkpoint(tmp_path):
    config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    domain = DomainInfo(
        bands=(1, 2, 3), count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    return save_checkpoint(
        tmp_path / "m.safetensors",
        kind="cyclegan",
        config=config,
        nets=build_nets("cyclegan", config),
        domains={"a": domain, "b": domain},
        generators_only=True,
    )


@pytest.mark.parametrize("group", [cli, rio_rsgan])
def test_translate_writes_output_and_quicklook(make_raster, tmp_path, checkpoint, group):
    src = make_raster(width=90, height=70, nodata=0, collar=3)
    dst, png = tmp_path / "o.tif", tmp_path / "o.png"
    args = ["translate", str(src), str(dst), "--model", str(checkpoint), "--tile", "32"]
    args += ["--overlap", "8", "--quicklook", str(png), "--blend", "linear"]
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {dst}" in result.output and "quicklook" in result.output
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.crs == a.crs and b.transform == a.transform and b.nodata == 0
        assert (b.read_masks(1) == a.read_masks(1)).all()
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("rank", [None, "1"])
def test_a_source_without_crs_gives_one_warning_line(
    make_raster, tmp_path, checkpoint, monkeypatch, rank
):
    """The issue: a source with no CRS warns, and the output keeps its pixel grid. On the
    command line that is one readable line, not Python's file/line dump, and not GDAL's
    own remarks on the missing geotransform at every open. A ``RANK`` other than 0 in the
    environment (a Kubeflow or torchrun job) silences only `rsgan train`'s repeats of rank
    0's warnings, not a translation's own."""
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    src = make_raster(crs=None)
    dst = tmp_path / "o.tif"
    args = ["translate", str(src), str(dst), "--model", str(checkpoint), "--tile", "32"]
    result = CliRunner().invoke(cli, [*args, "--overlap", "8", "-q"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Warning: ") and "has no CRS" in lines[0]
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.crs is None and b.transform == a.transform and b.shape == a.shape


def test_translate_norm_tile_differs_from_scene(make_raster, tmp_path, checkpoint):
    src = make_raster(width=96, height=80)
    outs = []
    for norm in ("scene", "tile"):
        dst = tmp_path / f"out_{norm}.tif"
        args = ["translate", str(src), str(dst), "--model", str(checkpoint), "--tile", "32"]
        result = CliRunner().invoke(cli, [*args, "--overlap", "8", "--norm", norm, "-q"])
        assert result.exit_code == 0, result.output
        assert result.output == ""
        outs.append(rasterio.open(dst).read())
    assert not np.array_equal(outs[0], outs[1])


def test_translate_errors_are_one_line(make_raster, tmp_path, checkpoint):
    src = make_raster(count=4)
    dst = tmp_path / "o.tif"
    result = CliRunner().invoke(cli, ["translate", str(src), str(dst), "--model", str(checkpoint)])
    assert result.exit_code == 1
    assert "bands=(1, 2, 3)" in result.output and "Traceback" not in result.output
    ok = CliRunner().invoke(
        cli, ["translate", str(src), str(dst), "--model", str(checkpoint), "--bands", "3,2,1", "-q"]
    )
    assert ok.exit_code == 0, ok.output
    again = CliRunner().invoke(
        cli, ["translate", str(src), str(dst), "--model", str(checkpoint), "--bands", "1,2,3"]
    )
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = CliRunner().invoke(
        cli, ["translate", str(src), str(dst), "--model", str(tmp_path / "none.safetensors")]
    )
    assert bad.exit_code == 1 and "does not exist" in bad.output


def test_a_dcgan_checkpoint_is_refused_with_the_command_it_is_for(make_raster, tmp_path):
    """`rsgan translate --model` of a DCGAN run said "a dcgan model has no direction 'a2b';
    use one of generate", as if "generate" were a direction to pass; it says that
    translation needs a CycleGAN and that a DCGAN is for `rsgan generate`, as generate does
    the other way round. Nothing is written."""
    from rsgan.models import DCGANConfig

    config = DCGANConfig(ngf=4, ndf=4)
    domain = DomainInfo(
        bands=(1, 2, 3), count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    model = save_checkpoint(tmp_path / "farm.safetensors", kind="dcgan", config=config,
                            nets=build_nets("dcgan", config), domains={"data": domain})  # fmt: skip
    src, dst = make_raster(), tmp_path / "o.tif"
    result = CliRunner().invoke(cli, ["translate", str(src), str(dst), "--model", str(model)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "farm.safetensors is a dcgan" in result.output and "rsgan generate" in result.output
    assert "direction" not in result.output and not dst.exists()


def test_translate_compress_option(make_raster, tmp_path, checkpoint):
    src = make_raster(width=64, height=48)
    dst = tmp_path / "o.tif"
    args = ["translate", str(src), str(dst), "--model", str(checkpoint), "-q"]
    result = CliRunner().invoke(cli, [*args, "--compress", "deflate"])
    assert result.exit_code == 0, result.output
    assert rasterio.open(dst).profile["compress"] == "deflate"
    bad = CliRunner().invoke(cli, [*args, "--compress", "jpeg", "--overwrite"])
    assert bad.exit_code == 2 and "'jpeg' is not one of 'zstd', 'deflate'" in bad.output


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sig", "code", "word"), [("SIGTERM", 143, "Terminated"), ("SIGINT", 130, "Interrupted")]
)
def test_sigterm_and_ctrl_c_mid_run_leave_nothing(make_raster, tmp_path, sig, code, word):
    """A scheduler's SIGTERM (or Ctrl-C) mid-run: exit 143 (130), one line, and neither
    the output nor the hidden temporary file or its lock left in the output folder."""
    src = make_raster(width=1536, height=1536, seed=4)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["translate", str(src), str(out_dir / "o.tif"), "--tile", "128", "--overlap", "16"]
    args += ["--norm", "tile", "--precision", "fp32", "-q"]  # bundled model, ~150 tiles
    proc = subprocess.Popen(
        [sys.executable, "-c", "from rsgan.cli.main import cli; cli()", *args],
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT, and the child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not any(out_dir.glob("*.tif")) and proc.poll() is None:  # the temporary: writing
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal; make it longer"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"{word}; no partial output was left behind."
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_verbose_shows_the_libraries_log_on_stderr(make_raster, tmp_path, checkpoint):
    """Ops need GDAL's own account of a failing remote read (CPL_DEBUG=ON: each request
    and the server's answer); rasterio's loggers have a NullHandler, so without a way to
    show them the `rsgan` command dropped every line. -vv shows DEBUG, and the root
    logger is as it was afterwards."""
    import logging

    src = make_raster(width=64, height=64)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    args = ["translate", str(src), str(tmp_path / "q.tif"), "--model", str(checkpoint), "-q"]
    quiet = CliRunner().invoke(cli, args)
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output
    args[2] = str(tmp_path / "v.tif")
    loud = CliRunner().invoke(cli, ["-vv", *args])
    assert loud.exit_code == 0, loud.output
    assert any(" DEBUG rasterio" in line for line in loud.stderr.splitlines()), loud.stderr
    assert root.handlers == handlers and root.level == level
