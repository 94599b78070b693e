"""``nodata=`` / ``--nodata``: a source read as if it carried that nodata value, for scenes
whose empty collar has none set (e.g. after reprojection)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rsgan.cli.main import cli
from rsgan.errors import ConfigError
from rsgan.models.cyclegan import ResnetGenerator
from rsgan.pipelines.catalog import translate_catalog
from rsgan.pipelines.translate import EmptyEdgeWarning, translate_raster

FAST = {"tile": 64, "overlap": 16, "stats_memory_mb": 2, "progress": False}


def _read(path: Path) -> tuple[np.ma.MaskedArray, dict]:
    with rasterio.open(path) as ds:
        meta = {"nodata": ds.nodata, "crs": ds.crs, "transform": ds.transform,
                "descriptions": ds.descriptions, "tags": ds.tags()}  # fmt: skip
        return ds.read(masked=True), meta


@pytest.fixture
def collar_pair(make_raster: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    """The same pixels with a 20 px zero collar, written with nodata 0 and without."""
    flagged = make_raster(
        "flagged.tif", width=200, height=180, nodata=0, collar=20, seed=7,
        descriptions=("r", "g", "b"), tags={"SENSOR": "test"},
    )  # fmt: skip
    with rasterio.open(flagged) as ds:
        pixels = ds.read()
    assert (pixels[:, :20] == 0).all() and (pixels[:, 20:-20, 20:-20] > 0).all()
    bare = make_raster(
        "bare.tif", width=200, height=180, data=pixels, descriptions=("r", "g", "b"),
        tags={"SENSOR": "test"},
    )  # fmt: skip
    return flagged, bare


def test_override_gives_what_the_file_carrying_the_value_gives(
    collar_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Scene statistics pooled over part of the blocks, masked blend: the bare file with
    nodata=0 translates to the same bytes as the file flagged nodata 0; without the
    override the collar enters the statistics and is translated like land."""
    flagged, bare = collar_pair
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    expected, expected_meta = _read(translate_raster(flagged, tmp_path / "f.tif", net, **FAST))
    got, got_meta = _read(translate_raster(bare, tmp_path / "b.tif", net, nodata=0, **FAST))
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_array_equal(got.filled(0), expected.filled(0))
    assert got_meta == expected_meta and got_meta["nodata"] == 0
    assert got.mask[:, :20].all() and not got.mask[:, 20:-20, 20:-20].any()
    with pytest.warns(EmptyEdgeWarning):
        ignored, ignored_meta = _read(translate_raster(bare, tmp_path / "n.tif", net, **FAST))
    assert ignored_meta["nodata"] is None and not ignored.mask.any()
    inner = (slice(None), slice(20, -20), slice(20, -20))
    assert np.abs(ignored[inner].astype(int) - expected[inner]).mean() > 0.5


def test_float_source_keeps_its_values_and_the_override(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    data = np.random.default_rng(1).uniform(0.1, 0.9, (2, 70, 90)).astype("float32")
    data[:, :, :15] = -9999.0
    src = make_raster("f.tif", width=90, height=70, count=2, dtype="float32", data=data)
    out, meta = _read(
        translate_raster(src, tmp_path / "o.tif", torch.nn.Identity(), nodata=-9999, **FAST)
    )
    assert meta["nodata"] == -9999.0
    assert out.mask[:, :, :15].all() and not out.mask[:, :, 15:].any()
    np.testing.assert_allclose(out[:, :, 15:], data[:, :, 15:], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (300, r"nodata 300 is not a uint8 value \(0\.\.255\)"),
        (1.5, r"nodata 1\.5 is not a uint8 value"),
        (float("nan"), r"nodata nan is not a uint8 value"),
        (True, r"nodata must be a number; got True"),
        ("0", r"nodata must be a number; got '0'"),
    ],
)
def test_bad_override_is_refused_before_any_work(
    make_raster: Callable[..., Path], tmp_path: Path, value: object, match: str
) -> None:
    src = make_raster()
    dst = tmp_path / "o.tif"
    with pytest.raises(ConfigError, match=match):
        translate_raster(src, dst, torch.nn.Identity(), nodata=value, progress=False)  # type: ignore[arg-type]
    assert not dst.exists()


def test_cli_and_catalog_take_the_override(collar_pair: tuple[Path, Path], tmp_path: Path) -> None:
    flagged, bare = collar_pair
    dst = tmp_path / "cli.tif"
    args = ["translate", str(bare), str(dst), "--nodata", "0", "--tile", "64", "--quiet"]
    args += ["--overlap", "16"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out, meta = _read(dst)
    assert meta["nodata"] == 0 and out.mask[:, :20].all()
    manifest = translate_catalog(
        [bare], tmp_path / "cat", torch.nn.Identity(), workers=0, nodata=0, **FAST
    )
    assert list(manifest["status"]) == ["done"], list(manifest["error"])
    out, meta = _read(Path(manifest["output"][0]))
    expected, _ = _read(flagged)
    assert meta["nodata"] == 0
    np.testing.assert_array_equal(out.mask, expected.mask)
    np.testing.assert_array_equal(out.filled(0), expected.filled(0))


def test_an_unmarked_empty_collar_is_warned_about(
    collar_pair: tuple[Path, Path], make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A zero collar with no nodata value is translated as image: a warning says so and
    names the fix, for a tiled run and a one-pass run; none with the override, for the
    file flagged nodata 0, or for a scene with a few black edge pixels."""
    flagged, bare = collar_pair
    net = torch.nn.Identity()
    for kwargs in (FAST, {"progress": False}):  # tiled with a statistics pass; one pass
        with pytest.warns(EmptyEdgeWarning, match=r"bare.tif: 100% of the .*--nodata 0"):
            translate_raster(bare, tmp_path / "w.tif", net, overwrite=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyEdgeWarning)
        translate_raster(bare, tmp_path / "o1.tif", net, nodata=0, **FAST)
        translate_raster(flagged, tmp_path / "o2.tif", net, **FAST)
        pixels = np.random.default_rng(3).integers(1, 256, (3, 90, 120), dtype=np.uint8)
        pixels[:, 0, :5] = 0  # 5 of 420 edge pixels black: dark pixels, not a collar
        dark = make_raster("dark.tif", data=pixels)
        translate_raster(dark, tmp_path / "o3.tif", net, **FAST)
    result = CliRunner().invoke(cli, ["translate", str(bare), str(tmp_path / "c.tif"), "-q"])
    assert result.exit_code == 0, result.output
    assert "Warning: bare.tif: 100% of the scene's edge pixels are 0" in result.output
