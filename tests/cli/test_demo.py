"""`rsgan demo`: real or synthesised scene, translated end to end, with a quicklook."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets
from rsgan.pipelines import translate as translate_mod


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
    monkeypatch.setattr(translate_mod, "DEFAULT_MODEL_PATH", path)
    return path


def test_demo_synthesises_a_scene_without_data(tmp_path, tiny_default, monkeypatch):
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--out", "demo-output", "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "demo-output"
    assert "synthesised scene" in result.output and "Mpx/s" in result.output
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


@pytest.mark.realdata
def test_demo_uses_a_real_joplin_tile(tmp_path, tiny_default, shared_data, monkeypatch):
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(shared_data))
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 0, result.output
    assert "xview2_joplin_prepost" in result.output and "synthesised" not in result.output
    with rasterio.open(tmp_path / "d" / "translated.tif") as b:
        assert b.crs.to_epsg() == 26915 and b.width == 1024


def test_demo_with_a_given_scene(make_raster, tmp_path, tiny_default):
    src = make_raster(width=64, height=48)
    result = CliRunner().invoke(
        cli, ["demo", "--scene", str(src), "--out", str(tmp_path / "d"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert rasterio.open(tmp_path / "d" / "translated.tif").shape == (48, 64)
