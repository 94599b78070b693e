"""`rsgan info` through click's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets


def test_info_prints_checkpoint_metadata(tmp_path: Path) -> None:
    config = CycleGANConfig(in_channels_a=4, ngf=4, ndf=4, n_blocks=1)
    domains = {
        "a": DomainInfo(bands=(1, 2, 3, 4), count=4, dtype="uint16",
                        normalizer=Normalizer(lo=(1,) * 4, hi=(900,) * 4, dtype="uint16")),
        "b": DomainInfo(bands=None, count=3, dtype="uint8"),
    }  # fmt: skip
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        kind="cyclegan",
        config=config,
        nets=build_nets("cyclegan", config),
        domains=domains,
        steps=42,
    )
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "kind: cyclegan" in result.output and "steps: 42" in result.output
    assert "domain a: 4 band(s) (1, 2, 3, 4), dtype uint16" in result.output
    assert "1..900" in result.output and "ngf=4" in result.output
    raw = CliRunner().invoke(cli, ["info", str(path), "--json"])
    assert json.loads(raw.output)["domains"]["b"]["count"] == 3


def test_info_describes_a_raster(make_raster: Callable[..., Path]) -> None:
    path = make_raster(width=40, height=30, count=2, dtype="uint16", nodata=0)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "40 x 30 px" in result.output and "2 band(s)" in result.output
    assert "EPSG:32614" in result.output and "nodata: 0.0" in result.output
    named = make_raster(
        "s2.tif", count=4, descriptions=["B02 blue", "B03 green", "B04 red", "B08 nir"]
    )
    listed = CliRunner().invoke(cli, ["info", str(named)]).output
    assert "bands (for --bands):" in listed
    rows = {line.split(":")[0].strip(): line for line in listed.splitlines() if ": " in line}
    assert "'B04 red'" in rows["3"] and "'B08 nir'" in rows["4"] and "5" not in rows


def test_info_on_a_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    result = CliRunner().invoke(cli, ["info", str(bad)])
    assert result.exit_code == 1
    assert len([x for x in result.output.splitlines() if x.strip()]) == 1


def test_info_says_how_a_raster_without_a_crs_is_placed(tmp_path: Path, make_raster) -> None:
    from conftest import placed_raster

    lines = {}
    for name, path in {
        "gcps": placed_raster(tmp_path / "gcps.tif"),
        "rpcs": placed_raster(tmp_path / "rpcs.tif", rpcs=True),
        "plain": make_raster("plain.tif", crs=None),
    }.items():
        result = CliRunner().invoke(cli, ["info", str(path)])
        assert result.exit_code == 0, result.output
        lines[name] = next(s for s in result.output.splitlines() if "crs:" in s)
    assert "placed by 4 ground control points in EPSG:32614" in lines["gcps"]
    assert "placed by RPCs" in lines["rpcs"]
    assert "none (not georeferenced)" in lines["plain"]


def test_both_command_groups_take_dash_h() -> None:
    from rsgan.cli.main import rio_rsgan

    for group in (cli, rio_rsgan):
        result = CliRunner().invoke(group, ["-h"])
        assert result.exit_code == 0 and "Usage:" in result.output, result.output
