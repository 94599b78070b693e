"""`rsgan generate` through click's CliRunner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import rasterio
from click.testing import CliRunner

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import DCGANConfig, build_nets


def _checkpoint(path: Path) -> Path:
    config = DCGANConfig(channels=2, nz=4, ngf=2, ndf=2)
    norm = Normalizer(lo=(100.0, 0.0), hi=(5000.0, 3000.0), dtype="int16")
    domains = {"data": DomainInfo(bands=(4, 1), count=2, dtype="int16", normalizer=norm,
                                  descriptions=("nir", "blue"))}  # fmt: skip
    return save_checkpoint(path, kind="dcgan", config=config, nets=build_nets("dcgan", config),
                           domains=domains, generators_only=True)  # fmt: skip


def test_generate_writes_geotiffs_and_grid(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    ckpt = _checkpoint(tmp_path / "m.safetensors")
    template = make_raster("t.tif", crs="EPSG:32633")
    out = tmp_path / "gen"
    result = CliRunner().invoke(
        cli, ["generate", str(ckpt), "--n", "3", "--out", str(out), "--template", str(template)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "grid.png",
        "sample_0000.tif",
        "sample_0001.tif",
        "sample_0002.tif",
    ]
    with rasterio.open(out / "sample_0001.tif") as src:
        assert src.dtypes == ("int16", "int16") and src.shape == (64, 64)
        assert src.crs.to_epsg() == 32633 and src.descriptions == ("nir", "blue")
        data = src.read()
    assert 100 <= data[0].min() and data[0].max() <= 5000  # tanh range, denormalised
    again = CliRunner().invoke(cli, ["generate", str(ckpt), "--n", "1", "--out", str(out)])
    assert again.exit_code == 1 and "overwrite" in again.output.lower()
    ok = CliRunner().invoke(cli, ["generate", str(ckpt), "--n", "1", "--out", str(out),
                                  "--overwrite"])  # fmt: skip
    assert ok.exit_code == 0 and len(list(out.glob("*.tif"))) == 1


def test_generate_refuses_a_corrupt_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01\x02")
    result = CliRunner().invoke(cli, ["generate", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "truncated" in result.output
    assert "Traceback" not in result.output


def test_generate_takes_quiet_like_the_other_commands(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.safetensors")
    for flag, out in (("-q", tmp_path / "a"), ("--quiet", tmp_path / "b")):
        result = CliRunner().invoke(
            cli, ["generate", str(ckpt), "--n", "2", "--out", str(out), flag]
        )
        assert result.exit_code == 0, result.output
        assert result.stderr == ""  # nothing but the summary
        assert result.stdout == f"wrote 2 GeoTIFF sample(s) and {out / 'grid.png'}\n"


def test_generate_shows_progress_unless_quiet(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.safetensors")
    result = CliRunner().invoke(
        cli, ["generate", str(ckpt), "--n", "3", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "generate" in result.stderr and "3/3" in result.stderr
