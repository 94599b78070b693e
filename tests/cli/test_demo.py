"""`rsgan demo`: real or synthesised scene, translated end to end, with a quicklook."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rsgan import checkpoint as checkpoint_mod
from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets


@pytest.fixture
def tiny_default(tmp_path, monkeypatch):
    """A tiny checkpoint standing in for the bundled model (speed)."""
    config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    domain = DomainInfo(
        bands=(1, 2, 3), count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    path = save_checkpoint(
        tmp_path / "tiny.safetensors",
        kind="cyclegan",
        config=config,
        nets=build_nets("cyclegan", config),
        domains={"a": domain, "b": domain},
        generators_only=True,
    )
    monkeypatch.delenv("RSGAN_MODEL", raising=False)
    monkeypatch.setattr(checkpoint_mod, "DEFAULT_MODEL_PATH", path)  # translate's default
    return path


def test_demo_synthesises_a_scene_without_data(tmp_path, tiny_default, monkeypatch):
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--out", "demo-output", "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "demo-output"
    assert "synthesised scene" in result.output and "Mpx/s" in result.output
    # one line on stderr says why, naming where it looked and how to point it at the data
    (why,) = [line for line in result.stderr.splitlines() if "no real data" in line]
    assert "no real data" not in result.stdout
    assert str(tmp_path / "no-data-here") in why and str(tmp_path.parent / "shared") in why
    assert "set RSGAN_SHARED_DATA" in why
    assert str(out / "translated.tif") in result.output
    with (
        rasterio.open(out / "synthetic_scene.tif") as a,
        rasterio.open(out / "translated.tif") as b,
    ):
        assert a.crs == b.crs and a.transform == b.transform and b.count == 3
        assert not np.array_equal(a.read(), b.read())
    png = out / "before_after.png"
    with rasterio.open(png) as q:
        assert q.width > 2 * q.height - 20  # two images side by side
    again = CliRunner().invoke(cli, ["demo", "--out", "demo-output", "-q"])
    assert again.exit_code == 1 and "overwrite" in again.output
    assert len(again.output.splitlines()) == 1  # the error alone, no notice before it


def test_demo_says_why_the_scene_is_synthesised_before_translating(
    tmp_path, tiny_default, monkeypatch
):
    """The reason comes first, not after the translation it would have explained."""
    from rsgan.pipelines import demo as demo_mod

    monkeypatch.setenv("RSGAN_SHARED_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)  # nor beside the working folder (../shared/data)
    real = demo_mod.translate_raster

    def translate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        print("<translation starts>", file=sys.stderr)
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_mod, "translate_raster", translate)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("no real data found at ") and lines[1] == "<translation starts>"


def test_a_bad_model_fails_before_the_notice_and_the_scene(tmp_path, monkeypatch):
    """A corrupt $RSGAN_MODEL is the one error line: no notice that the scene is
    synthesised, no scene synthesised (it was, and was left behind, before the model was
    found bad, and left behind in a folder that existed)."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    monkeypatch.setenv("RSGAN_MODEL", str(bad))
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)
    for out in ("new-folder", "existing-folder"):
        (tmp_path / "existing-folder").mkdir(exist_ok=True)
        result = CliRunner().invoke(cli, ["demo", "--out", out, "-q"])
        assert result.exit_code == 1
        (line,) = result.output.splitlines()
        assert "$RSGAN_MODEL" in line and "bad.safetensors" in line
    assert not (tmp_path / "new-folder").exists()
    assert list((tmp_path / "existing-folder").iterdir()) == []


def test_demo_picks_the_tile_held_out_from_training(
    make_raster, tmp_path, tiny_default, monkeypatch
):
    """Of the four Joplin pre tiles, the demo shows the one the bundled model was not
    trained on (docs/model-card.md), not the first by name."""
    pre = tmp_path / "data" / "xview2_joplin_prepost" / "pre"
    pre.mkdir(parents=True)
    for name in ("tile_1361-10160", "tile_1361-9136", "tile_337-10160", "tile_337-9136"):
        make_raster(width=32, height=32).rename(pre / f"{name}.tif")
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 0, result.output
    assert f"scene: {pre / 'tile_337-9136.tif'}" in result.output
    assert "synthesised" not in result.output and "no real data" not in result.output


@pytest.mark.realdata
def test_demo_uses_a_real_joplin_tile(tmp_path, tiny_default, shared_data, monkeypatch):
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(shared_data))
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 0, result.output
    assert "xview2_joplin_prepost/pre/tile_337-9136.tif" in result.output
    assert "synthesised" not in result.output
    with rasterio.open(tmp_path / "d" / "translated.tif") as b:
        assert b.crs.to_epsg() == 26915 and b.width == 1024


def test_demo_with_a_given_scene(make_raster, tmp_path, tiny_default):
    src = make_raster(width=64, height=48)
    result = CliRunner().invoke(
        cli, ["demo", "--scene", str(src), "--out", str(tmp_path / "d"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert rasterio.open(tmp_path / "d" / "translated.tif").shape == (48, 64)
