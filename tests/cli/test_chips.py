"""`rsgan chips` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from rsgan.cli.main import cli, rio_rsgan
from rsgan.tiling import load_index


def _run(*args: str, command=cli):
    return CliRunner().invoke(command, ["chips", *args])


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_chips_writes_chips_index_and_summary(make_raster, tmp_path: Path) -> None:
    scene = make_raster(width=96, height=80, nodata=0, collar=6)
    out = tmp_path / "chips"
    result = _run(
        str(scene), "--size", "32", "--overlap", "8", "--out", str(out),
        "--max-nodata", "0.1", "--bands", "3,1", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    index = load_index(out / "index.gpkg")
    assert result.output.strip() == (
        f"wrote {len(index)} chip(s) of 12 from 1 scene(s) to {out} (skipped: 0 outside the "
        f"AOI, {12 - len(index)} over the nodata limit); index: {out / 'index.gpkg'}"
    )
    assert 0 < len(index) < 12
    with rasterio.open(out / index.chip.iloc[0]) as chip:
        assert chip.count == 2 and chip.width == 32 and chip.crs.to_epsg() == 32614


def test_chips_with_aoi_file(make_raster, tmp_path: Path) -> None:
    scene = make_raster(width=64, height=64)
    aoi = tmp_path / "aoi.geojson"
    box = shapely.box(500000 + 10, 5200000 - 20, 500000 + 30, 5200000 - 10)  # chip (0, 0)
    gpd.GeoDataFrame(geometry=[box], crs="EPSG:32614").to_crs(4326).to_file(aoi)
    out = tmp_path / "c"
    result = _run(str(scene), "--size", "32", "--out", str(out), "--aoi", str(aoi), "-q")
    assert result.exit_code == 0, result.output
    assert "skipped: 3 outside the AOI" in result.output
    assert load_index(out / "index.gpkg").chip.tolist() == ["scene_r0_c0.tif"]


def test_rio_plugin_runs_the_same_command(make_raster, tmp_path: Path) -> None:
    scene = make_raster(width=32, height=32)
    result = _run(str(scene), "--size", "32", "--out", str(tmp_path / "c"), "-q",
                  command=rio_rsgan)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "scene_r0_c0.tif").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--size", "32"], "no such file: "),
        (["{notraster}", "--size", "32"], "cannot read"),
        (["{scene}", "--size", "512"], 'use edge="pad"'),
        (["{scene}", "--size", "32", "--overlap", "32"], "overlap 32 px"),
        (["{scene}", "--size", "32", "--bands", "1,7"], "band 7 is out of range"),
        (["{scene}", "{scene4}", "--size", "32"], "scene4.tif has 4 band(s)"),
        (["{scene}", "--size", "32", "--aoi", "{far}"], "misses every scene"),
        (["{scene}", "--size", "32", "--aoi", "{nocrs}"], "has no CRS"),
        (["{scene}", "--size", "32", "--out", "{existing}"], "exists; pass overwrite=True"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(
    make_raster, tmp_path: Path, args: list[str], message: str
) -> None:
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs=4326).to_file(far)
    nocrs = tmp_path / "nocrs.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)]).to_file(nocrs)
    notraster = tmp_path / "text.tif"
    notraster.write_text("hello")
    existing = tmp_path / "existing"
    existing.mkdir()
    names = {
        "missing": tmp_path / "missing.tif",
        "notraster": notraster,
        "scene": make_raster(width=96, height=80),
        "scene4": make_raster("scene4.tif", count=4),
        "far": far,
        "nocrs": nocrs,
        "existing": existing,
    }
    argv = [a.format(**names) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    line = _one_line_error(_run(*argv, "-q"))
    assert line.startswith("Error: ") and message in line
    assert not (tmp_path / "out").exists()


def test_bad_band_list_is_a_usage_error(make_raster, tmp_path: Path) -> None:
    result = _run(str(make_raster()), "--bands", "1,x", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "'x' is not an integer" in result.output


def test_sigterm_mid_export_leaves_nothing(make_raster, tmp_path: Path, monkeypatch) -> None:
    """SIGTERM (a scheduler's stop) in any command, not only translate: raised as an
    interrupt, the half-written chip folder is removed, exit 143 with one line."""
    import os
    import signal

    from rsgan import tiling

    scene = make_raster(width=96, height=80)
    out = tmp_path / "chips"
    real = tiling._write_scene_chips
    seen: list[str] = []

    def write_then_stop(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        real(*args, **kwargs)  # chips are on disk in the hidden folder beside the output
        seen.extend(p.name for p in tmp_path.iterdir() if p != scene)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(tiling, "_write_scene_chips", write_then_stop)
    result = _run(str(scene), "--size", "32", "--out", str(out), "--quiet")
    assert result.exit_code == 143, result.output
    assert result.output.strip() == "Terminated; no partial output was left behind."
    assert seen and all(name.startswith(".") for name in seen), seen  # it was writing
    assert [p for p in tmp_path.iterdir() if p != scene] == []  # and nothing is left
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the default is back


def test_a_folder_of_scenes_stands_for_its_rasters(make_raster, tmp_path: Path) -> None:
    """SCENES may be folders, as in `rsgan train`: the image files directly in it (hidden
    files, other files and subfolders left out), beside files given one by one."""
    folder = tmp_path / "scenes"
    make_raster("a.tif", width=64, height=32, folder=folder)
    make_raster("b.TIF", width=32, height=32, folder=folder, seed=1)
    make_raster(".hidden.tif", width=32, height=32, folder=folder)
    (folder / "notes.txt").write_text("not a raster")
    make_raster("c.tif", width=32, height=32, folder=folder / "sub")
    single = make_raster("d.tif", width=32, height=32)
    out = tmp_path / "chips"
    result = _run(str(folder), str(single), "--size", "32", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert "wrote 4 chip(s) of 4 from 3 scene(s)" in result.output
    index = load_index(out / "index.gpkg")
    assert sorted(index.chip) == ["a_r0_c0.tif", "a_r0_c32.tif", "b_r0_c0.tif", "d_r0_c0.tif"]


def test_a_folder_without_rasters_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_line_error(_run(str(empty), "--size", "32", "--out", str(tmp_path / "o")))
    assert line.startswith("Error: ") and "holds no image file" in line
    assert not (tmp_path / "o").exists()
