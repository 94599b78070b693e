"""Chipping real scenes (../shared/data): a NAIP uint8 scene and an OSCD Sentinel-2 uint16
scene, checked against direct rasterio reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from rsgan.cli.main import cli
from rsgan.data import ChipDataset
from rsgan.io import compute_band_stats, describe
from rsgan.tiling import TileSpec, export_chips, load_index

pytestmark = pytest.mark.realdata


def _check_chips(scene: Path, out: Path, index, size: int) -> None:
    """Every chip has the scene's CRS, its own transform and the scene's pixels."""
    assert len(index) > 0
    with rasterio.open(scene) as src:
        for row in index.itertuples():
            with rasterio.open(out / row.chip) as chip:
                assert chip.crs == src.crs
                assert chip.transform.a == src.transform.a
                assert chip.transform.e == src.transform.e
                x, y = src.transform @ (row.col_off, row.row_off)
                assert chip.transform @ (0, 0) == pytest.approx((x, y), abs=1e-9)
                assert chip.nodata == src.nodata and chip.dtypes == src.dtypes
                assert chip.descriptions == src.descriptions
                window = ((row.row_off, row.row_off + size), (row.col_off, row.col_off + size))
                np.testing.assert_array_equal(chip.read(), src.read(window=window))
                # the chip's footprint lies inside the scene where the index says
                cb, sb = chip.bounds, src.bounds
                assert sb.left <= cb.left < cb.right <= sb.right + 1e-9
                assert sb.bottom - 1e-9 <= cb.bottom < cb.top <= sb.top


def test_naip_scene_chips(shared_data: Path, tmp_path: Path) -> None:
    scene = sorted((shared_data / "naip_northdakota_timeseries").glob("*.tif"))[0]
    out = tmp_path / "naip"
    result = CliRunner().invoke(
        cli,
        ["chips", str(scene), "--size", "256", "--overlap", "32", "--out", str(out), "-q",
         "--max-nodata", "0.1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    index = load_index(out / "index.gpkg")
    info = describe(scene)
    assert index.crs == info.crs and set(index["crs"]) == {"EPSG:26914"}
    _check_chips(scene, out, index, 256)
    # the dataset reads the same pixels lazily from the scene
    ds = ChipDataset(scene, size=256, overlap=32, max_nodata=0.1)
    assert len(ds) == len(index)
    raw, mask = ds.read(3)
    with rasterio.open(out / index.chip.iloc[3]) as chip:
        np.testing.assert_array_equal(raw, chip.read())
    image = ds[3]["image"].numpy()
    np.testing.assert_allclose(image[:, mask], raw[:, mask] / 255.0 * 2 - 1, atol=1e-6)


def test_oscd_uint16_scene_chips(shared_data: Path, tmp_path: Path) -> None:
    scene = shared_data / "oscd_s2_bitemporal" / "bercy" / "bercy_t1_B02B03B04B08.tif"
    out = tmp_path / "oscd"
    index = export_chips(scene, out, TileSpec(128, 32), progress=False)
    info = describe(scene)
    assert info.dtype == "uint16" and info.crs.to_epsg() == 4326
    assert len(index) == len(load_index(out / "index.gpkg"))
    _check_chips(scene, out, index, 128)
    # statistics-based normalisation inverts exactly on real reflectances
    ds = ChipDataset(scene, size=128, overlap=32)
    assert ds.normalizer.lo == compute_band_stats(scene).percentiles[0.5]
    raw, _ = ds.read(0)
    back = ds.normalizer.denormalize(ds.normalizer.normalize(raw))
    np.testing.assert_array_equal(back, raw)
