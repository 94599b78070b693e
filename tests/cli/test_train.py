"""`rsgan train dcgan|cyclegan` through click's CliRunner."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
import torch
from click.testing import CliRunner

from rsgan import training
from rsgan.checkpoint import load_model
from rsgan.cli.main import cli

FAST = ["--sample-every", "1", "--log-every", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _single_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(*args: str):
    return CliRunner().invoke(cli, ["train", *args])


def test_train_dcgan_writes_a_run(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    scene = make_raster("farm.tif", width=160, height=140, count=4, dtype="uint16")
    out = tmp_path / "run"
    args = [str(scene), "--out", str(out), "--steps", "2", "--batch-size", "2", "--nz", "4",
            "--ngf", "2", "--ndf", "2", "--bands", "3,2,1", *FAST]  # fmt: skip
    result = _run("dcgan", *args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"checkpoint: {out / 'model.safetensors'}"
    model = load_model(out / "model.safetensors")
    assert model.config.nz == 4 and model.config.channels == 3
    assert model.out_domain().bands == (3, 2, 1) and model.out_domain().dtype == "uint16"
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert (out / "samples" / "step_000002.png").exists()

    again = _run("dcgan", *args)  # an existing run is not overwritten silently
    assert again.exit_code == 1 and "--resume" in again.output
    assert len(again.output.strip().splitlines()) == 1
    resumed = _run("dcgan", *[a if a != "2" else "3" for a in args[:5]], *args[5:], "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert load_model(out / "model.safetensors").steps == 3

    done = _run("dcgan", *[a if a != "2" else "3" for a in args[:5]], *args[5:], "--resume")
    assert done.exit_code == 0, done.output  # nothing to train is said, not an error
    assert "Warning: resume: the run in" in done.output and "--steps" in done.output
    assert "already at step 3 of steps=3: nothing to train" in done.output
    fewer = _run("dcgan", *args, "--resume")  # --steps 2: the total, not 2 more
    assert fewer.exit_code == 1 and "already at step 3, past steps=2" in fewer.output
    assert len(fewer.output.strip().splitlines()) == 1
    assert load_model(out / "model.safetensors").steps == 3


def test_train_cyclegan_and_ctrl_c(
    make_raster: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre = make_raster("pre.tif", width=72, height=64, count=3, seed=1)
    post = make_raster("post.tif", width=72, height=64, count=4, dtype="uint16", seed=2)
    out = tmp_path / "run"
    args = ["--domain-a", str(pre), "--domain-b", str(post), "--out", str(out), "--tile", "32",
            "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--upsample", "resize",
            "--steps", "3", *FAST]  # fmt: skip
    trainer = training._TRAINERS["cyclegan"]
    calls = {"n": 0}

    def step(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: step 2 finishes, then it stops
        return trainer.step(*a, **k)

    monkeypatch.setitem(training._TRAINERS, "cyclegan", dataclasses.replace(trainer, step=step))
    result = _run("cyclegan", *args)
    assert result.exit_code == 130
    assert "after step 2" in result.output and "--resume" in result.output
    monkeypatch.undo()
    result = _run("cyclegan", *args, "--resume")
    assert result.exit_code == 0, result.output
    model = load_model(out / "model.safetensors")
    assert model.steps == 3 and model.config.in_channels_b == 4 and model.config.ngf == 4
    assert model.config.upsample == "resize"
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.generator().modules())
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_cyclegan_resume_keeps_the_runs_tile(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """--resume without --tile trains on the run's chip size (not 256 px); another tile is
    refused before anything is written."""
    pre = make_raster("pre.tif", width=72, height=64, count=3, seed=1)
    post = make_raster("post.tif", width=72, height=64, count=3, seed=2)
    out = tmp_path / "run"
    data = ["--domain-a", str(pre), "--domain-b", str(post), "--out", str(out), *FAST]
    first = _run("cyclegan", *data, "--tile", "32", "--ngf", "4", "--ndf", "4",
                 "--n-blocks", "1", "--steps", "2")  # fmt: skip
    assert first.exit_code == 0, first.output
    resumed = _run("cyclegan", *data, "--steps", "3", "--resume")
    assert resumed.exit_code == 0, resumed.output
    model = load_model(out / "model.safetensors")
    assert model.steps == 3 and model.metadata["data"]["a"]["chip_size"] == 32
    other = _run("cyclegan", *data, "--tile", "48", "--steps", "4", "--resume")
    assert other.exit_code == 1 and "Traceback" not in other.output
    lines = [line for line in other.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "tile 48" in lines[0] and "32 px" in lines[0], other.output
    assert load_model(out / "model.safetensors").steps == 3
    assert training.load_train_state(out / "train_state.pt")["step"] == 3


def test_resume_with_other_architecture_options_names_them(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """--resume with another --ngf (or --upsample, ...) printed both whole configs (some
    400 characters) and said "resume without a config", an option the command does not
    have; it names the options that differ, with the run's values."""
    out = tmp_path / "run"
    assert _tiny_cyclegan(make_raster, out).exit_code == 0
    pre, post = tmp_path / "pre.tif", tmp_path / "post.tif"
    other = _run("cyclegan", "--domain-a", str(pre), "--domain-b", str(post), "--out", str(out),
                 "--ngf", "8", "--upsample", "blur", "--steps", "2", "--resume", *FAST)  # fmt: skip
    assert other.exit_code == 1 and "Traceback" not in other.output
    (line,) = [line for line in other.output.splitlines() if line.strip()]
    assert "ngf=8, upsample='blur'" in line and "ngf=4, upsample='deconv'" in line, line
    assert "--ngf, --upsample" in line and "CycleGANConfig(" not in line, line


def test_no_chip_without_too_much_nodata_names_the_domain_and_the_option(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """Scenes whose every chip holds nodata (a few nodata-valued pixels strewn over the
    scene: dark water in uint8 imagery whose nodata is 0) said "no chip of 64 px passes
    the filters (...); relax them": for a DCGAN, which has no option to relax (it trains
    on complete chips), and for a CycleGAN without saying which domain or option. Each
    names the domain and a fix the command has."""
    data = make_raster("speckle.tif", width=128, height=128, count=3, nodata=0, seed=1)
    with rasterio.open(data, "r+") as ds:
        pixels = ds.read()
        pixels[:, ::16, ::16] = 0
        ds.write(pixels)
    clean = make_raster("clean.tif", width=128, height=128, count=3, seed=2)
    dcgan = _run("dcgan", str(data), "--out", str(tmp_path / "d"), "--steps", "1", *FAST)
    assert dcgan.exit_code == 1 and "Traceback" not in dcgan.output
    assert "DCGAN trains on chips without nodata" in dcgan.output
    assert "relax" not in dcgan.output and "--size" not in dcgan.output, dcgan.output  # 64: least
    cyclegan = _run("cyclegan", "--domain-a", str(clean), "--domain-b", str(data), "--out",
                    str(tmp_path / "c"), "--tile", "64", "--max-nodata", "0", "--steps", "1",
                    *FAST)  # fmt: skip
    assert cyclegan.exit_code == 1 and "Traceback" not in cyclegan.output
    assert "domain B: no chip of 64 px" in cyclegan.output, cyclegan.output
    assert "--max-nodata" in cyclegan.output and "--tile" in cyclegan.output
    assert not (tmp_path / "d").exists() and not (tmp_path / "c").exists()


def _tiny_cyclegan(make_raster: Callable[..., Path], out: Path, *options: str):  # noqa: ANN202
    """One step of a tiny CycleGAN on two 64 px scenes, with ``options``."""
    pre = make_raster("pre.tif", width=64, height=64, count=3, seed=1)
    post = make_raster("post.tif", width=64, height=64, count=3, seed=2)
    return _run("cyclegan", "--domain-a", str(pre), "--domain-b", str(post), "--out",
                str(out), "--tile", "32", "--ngf", "4", "--ndf", "4", "--n-blocks", "1",
                *options, "--steps", "1", *FAST)  # fmt: skip


def test_train_cyclegan_with_blurred_upsampling(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    from rsgan.models._common import BinomialBlur2d

    out = tmp_path / "run"
    result = _tiny_cyclegan(make_raster, out, "--upsample", "blur")
    assert result.exit_code == 0, result.output
    model = load_model(out / "model.safetensors")
    assert model.config.upsample == "blur"
    blurs = [m for m in model.generator().modules() if isinstance(m, BinomialBlur2d)]
    assert [b.channels for b in blurs] == [8, 4]


def test_train_cyclegan_with_the_periodic_loss(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = _tiny_cyclegan(make_raster, out, "--lambda-periodic", "10")
    assert result.exit_code == 0, result.output
    assert load_model(out / "model.safetensors").config.lambda_periodic == 10
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert record["periodic_AB"] > 0 and record["periodic_BA"] > 0
    bad = _tiny_cyclegan(make_raster, tmp_path / "bad", "--lambda-periodic", "-1")
    assert bad.exit_code == 2 and "-1" in bad.output


def test_errors_are_one_line(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    pre = make_raster("pre.tif", width=72, height=64, count=3)
    result = _run("cyclegan", "--domain-a", str(pre), "--domain-b", str(pre), "--out",
                  str(tmp_path / "r"), "--tile", "30", "--quiet")  # fmt: skip
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "tile 30" in lines[0]
    result = _run("dcgan", str(pre), "--out", str(tmp_path / "d"), "--bands", "5", "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "5" in result.output


def test_a_tile_larger_than_the_scenes_names_a_train_option(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The fix offered is one `rsgan train` has (--tile, --size), not `rsgan chips`'s --edge."""
    pre = make_raster("pre.tif", width=72, height=64, count=3)
    result = _run("cyclegan", "--domain-a", str(pre), "--domain-b", str(pre), "--out",
                  str(tmp_path / "c"), "--tile", "2048", "--quiet")  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--edge" not in lines[0], result.output
    assert f"{pre} (72 x 64 px) is smaller than the 2048 px chips" in lines[0]
    assert "tile=64 (--tile 64) or less" in lines[0]
    farm = make_raster("farm.tif", width=160, height=140, count=3)
    result = _run("dcgan", str(farm), "--out", str(tmp_path / "d"), "--size", "256", "--quiet")
    assert result.exit_code == 1 and "--edge" not in result.output
    assert "image_size=128 (--size 128) or less" in result.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
