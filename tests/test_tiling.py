"""rsgan.tiling: tile specs, grids, chip index, AOI and nodata filters, chip export."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import transform as window_transform

import rsgan.tiling as tiling
from rsgan.errors import (
    AOIError,
    BandError,
    ConfigError,
    OutputExistsError,
    RasterReadError,
    RasterWriteError,
    TileSpecError,
)
from rsgan.io import describe
from rsgan.tiling import (
    INDEX_COLUMNS,
    TileSpec,
    chip_index,
    export_chips,
    load_index,
    sample_chips,
    save_index,
    tile_grid,
    tile_windows,
)
from tests.conftest import placed_raster, synthetic_scene

ORIGIN = Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 5200000.0)


@st.composite
def grids(draw):
    size = draw(st.integers(1, 40))
    overlap = draw(st.integers(0, size - 1))
    edge = draw(st.sampled_from(("shift", "pad")))
    low = size if edge == "shift" else 1
    width = draw(st.integers(low, 150))
    height = draw(st.integers(low, 150))
    return TileSpec(size, overlap, edge), width, height


# --------------------------------------------------------------------------- TileSpec / grids


def test_tile_spec_validation() -> None:
    assert TileSpec(256, 64).stride == 192
    assert TileSpec.from_stride(256, 128) == TileSpec(256, 128)
    with pytest.raises(TileSpecError, match=r"overlap 256 px .* tile size 256 px"):
        TileSpec(256, 256)
    with pytest.raises(TileSpecError, match="overlap -1"):
        TileSpec(256, -1)
    with pytest.raises(TileSpecError, match="must be positive"):
        TileSpec(0)
    with pytest.raises(TileSpecError, match="'mirror' is unknown; use one of shift, pad"):
        TileSpec(64, edge="mirror")  # type: ignore[arg-type]
    with pytest.raises(TileSpecError, match="whole number"):
        TileSpec(64.5)  # type: ignore[arg-type]


def test_tile_spec_from_crs_units() -> None:
    ten_m = Affine(10, 0, 0, 0, -10, 0)
    assert TileSpec.from_crs_units(2560, 320, ten_m) == TileSpec(256, 32)
    with pytest.raises(TileSpecError, match="not square"):
        TileSpec.from_crs_units(100, 0, Affine(10, 0, 0, 0, -20, 0))
    with pytest.raises(TileSpecError, match="rotated"):
        TileSpec.from_crs_units(100, 0, Affine(10, 1, 0, 0, -10, 0))
    with pytest.raises(TileSpecError, match="under one pixel"):
        TileSpec.from_crs_units(2, 0, ten_m)


def test_scene_smaller_than_tile_with_shift() -> None:
    with pytest.raises(TileSpecError, match='use edge="pad"'):
        tile_windows(100, 300, TileSpec(256))
    (only,) = tile_windows(100, 300, TileSpec(512, edge="pad"))
    assert (only.col_off, only.row_off, only.width, only.height) == (0, 0, 512, 512)


def test_shift_moves_last_tile_inside() -> None:
    cols = [int(w.col_off) for w in tile_grid(300, 256, TileSpec(256, 64))[0]]
    assert cols == [0, 44]
    pads = [int(w.col_off) for w in tile_grid(300, 256, TileSpec(256, 64, "pad"))[0]]
    assert pads == [0, 192]


@given(grids())
def test_grid_covers_every_pixel(case) -> None:
    spec, width, height = case
    grid = tile_grid(width, height, spec)
    windows = tile_windows(width, height, spec)
    assert windows == [w for row in grid for w in row]
    hits = np.zeros((height + spec.size, width + spec.size), np.int32)
    for w in windows:
        assert w.width == w.height == spec.size and w.col_off >= 0 and w.row_off >= 0
        assert w.col_off < width and w.row_off < height
        if spec.edge == "shift":
            assert w.col_off + spec.size <= width and w.row_off + spec.size <= height
        hits[
            int(w.row_off) : int(w.row_off) + spec.size, int(w.col_off) : int(w.col_off) + spec.size
        ] += 1
    assert (hits[:height, :width] >= 1).all()
    # row-major, and neighbours share at least the overlap
    for row in grid:
        offs = [int(w.col_off) for w in row]
        assert offs == sorted(set(offs))
        assert all(b - a <= spec.stride for a, b in zip(offs, offs[1:], strict=False))
    rows = [int(r[0].row_off) for r in grid]
    assert rows == sorted(set(rows))


@settings(max_examples=25)
@given(
    case=grids(),
    count=st.integers(1, 4),
    dtype=st.sampled_from(("uint8", "uint16", "int16", "float32")),
)
def test_windows_reassemble_the_scene_and_keep_georeference(
    tmp_path_factory, case, count, dtype
) -> None:
    spec, width, height = case
    arr = synthetic_scene(count, height, width, dtype, seed=width + height)
    path = tmp_path_factory.mktemp("scene") / "s.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs="EPSG:32633",
        transform=ORIGIN,
    ) as dst:
        dst.write(arr)
    canvas = np.zeros((count, height + spec.size, width + spec.size), dtype)
    from rsgan.io import open_raster, read_window

    with open_raster(path) as src:
        for w in tile_windows(width, height, spec):
            chip = read_window(src, w, boundless=True)
            r, c = int(w.row_off), int(w.col_off)
            canvas[:, r : r + spec.size, c : c + spec.size] = chip
            # each chip's transform maps its pixel (0, 0) where the scene maps (c, r)
            assert window_transform(w, src.transform) @ (0, 0) == src.transform @ (c, r)
    np.testing.assert_array_equal(canvas[:, :height, :width], arr)


# --------------------------------------------------------------------------- chip index


def test_chip_index_columns_and_footprints(make_raster) -> None:
    path = make_raster(width=96, height=80)
    index = chip_index(path, TileSpec(32, 8))
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert len(index) == 4 * 3 and index.crs.to_epsg() == 32614
    row = index.iloc[1]
    assert (row.row_off, row.col_off, row.height, row.width) == (0, 24, 32, 32)
    assert row.crs == "EPSG:32614" and row.scene == str(path)
    assert row.geometry.bounds == (500048.0, 5199936.0, 500112.0, 5200000.0)
    assert (index.valid_fraction == 1.0).all()
    assert index.attrs == {"chips_total": 12, "skipped_aoi": 0, "skipped_nodata": 0}


def test_nodata_filter_counts(make_raster) -> None:
    # 64x64 scene with an 8 px nodata collar; 16 px chips without overlap: the 12 border
    # chips are half nodata, the 4 corner chips of them 75 % nodata.
    path = make_raster(width=64, height=64, count=2, nodata=0, collar=8)
    index = chip_index(path, TileSpec(16))
    fractions = sorted(index.valid_fraction.round(6))
    assert fractions == [0.25] * 4 + [0.5] * 8 + [1.0] * 4
    kept = chip_index(path, TileSpec(16), max_nodata=0.5)
    assert len(kept) == 12 and kept.attrs["skipped_nodata"] == 4
    assert len(chip_index(path, TileSpec(16), max_nodata=0.0)) == 4
    with pytest.raises(ConfigError, match="max_nodata 1.5"):
        chip_index(path, TileSpec(16), max_nodata=1.5)


def test_padded_chips_count_outside_as_invalid(make_raster) -> None:
    path = make_raster(width=40, height=20)
    index = chip_index(path, TileSpec(32, edge="pad"))
    assert list(index.valid_fraction) == [20 * 32 / 1024, 20 * 8 / 1024]


def _to_lonlat(geom, epsg: int):
    t = Transformer.from_crs(epsg, 4326, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def test_aoi_in_another_crs_selects_the_right_chips(make_raster, tmp_path: Path) -> None:
    path = make_raster(width=96, height=96)  # 2 m pixels from (500000, 5200000)
    # AOI over scene pixels cols 40..70, rows 10..30, given in lon/lat
    native = shapely.box(500000 + 80, 5200000 - 60, 500000 + 140, 5200000 - 20)
    aoi = _to_lonlat(native.buffer(-0.5), 32614)
    spec = TileSpec(32)  # chips at 0, 32, 64 each way
    index = chip_index(path, spec, aoi=aoi, aoi_crs="EPSG:4326")
    assert sorted(zip(index.row_off, index.col_off, strict=True)) == [(0, 32), (0, 64)]
    assert index.attrs["skipped_aoi"] == 7
    # the same AOI from a file in lon/lat
    aoi_file = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[aoi], crs="EPSG:4326").to_file(aoi_file)
    from_file = chip_index(path, spec, aoi=aoi_file)
    assert from_file[["row_off", "col_off"]].equals(index[["row_off", "col_off"]])
    # within: a larger AOI holding exactly the chip at (32, 32)
    inner = _to_lonlat(shapely.box(500064 - 1, 5199872 - 1, 500128 + 1, 5199936 + 1), 32614)
    within = chip_index(path, spec, aoi=inner, aoi_crs=4326, aoi_within=True)
    assert list(zip(within.row_off, within.col_off, strict=True)) == [(32, 32)]


def test_aoi_touching_a_chip_edge_does_not_select_it(make_raster) -> None:
    path = make_raster(width=64, height=32)
    aoi = shapely.box(500000 + 64, 5200000 - 64, 500000 + 128, 5200000)  # cols 32..64
    index = chip_index(path, TileSpec(32), aoi=aoi, aoi_crs="EPSG:32614")
    assert list(index.col_off) == [32]


def test_aoi_errors(make_raster, tmp_path: Path) -> None:
    path = make_raster()
    far = shapely.box(10, 10, 11, 11)
    with pytest.raises(AOIError, match=r"misses every scene \(scene.tif\)"):
        chip_index(path, TileSpec(32), aoi=far, aoi_crs="EPSG:4326")
    with pytest.raises(AOIError, match=r"misses every scene"):  # within, and far away
        chip_index(path, TileSpec(32), aoi=far, aoi_crs="EPSG:4326", aoi_within=True)
    # inside the scene but smaller than a chip: not "misses every scene" (its CRS is fine)
    small = shapely.box(500000 + 10, 5200000 - 30, 500000 + 40, 5200000 - 10)
    assert len(chip_index(path, TileSpec(32), aoi=small, aoi_crs="EPSG:32614")) > 0
    with pytest.raises(AOIError, match=r"no whole chip of 32 px lies within the AOI"):
        chip_index(path, TileSpec(32), aoi=small, aoi_crs="EPSG:32614", aoi_within=True)
    with pytest.raises(AOIError, match="has no CRS.*aoi_crs"):
        chip_index(path, TileSpec(32), aoi=far)
    no_crs = tmp_path / "nocrs.gpkg"
    gpd.GeoDataFrame(geometry=[far]).to_file(no_crs)
    with pytest.raises(AOIError, match="nocrs.gpkg has no CRS"):
        chip_index(path, TileSpec(32), aoi=no_crs)
    with pytest.raises(AOIError, match="no such AOI file"):
        chip_index(path, TileSpec(32), aoi=tmp_path / "none.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(AOIError, match="cannot read AOI"):
        chip_index(path, TileSpec(32), aoi=bad)


def test_scenes_must_agree_on_bands(make_raster) -> None:
    a = make_raster("a.tif", count=3)
    b = make_raster("b.tif", count=4)
    with pytest.raises(BandError, match=r"b\.tif has 4 band\(s\) but .*a\.tif has 3"):
        chip_index([a, b], TileSpec(32))
    assert len(chip_index([a, b], TileSpec(32), bands=(1, 2))) == 2 * 9
    with pytest.raises(BandError, match="band 4 is out of range"):
        chip_index([a, b], TileSpec(32), bands=(4,))
    c = make_raster("c.tif", count=3, dtype="uint16")
    with pytest.raises(BandError, match="one data type"):
        chip_index([a, c], TileSpec(32))


def test_scenes_in_different_crs(make_raster) -> None:
    a = make_raster("a.tif", crs="EPSG:32614")
    # the same place in EPSG:4326 (about 500000, 5200000 in UTM 14N)
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(500000, 5200000)
    b = make_raster("b.tif", crs="EPSG:4326", transform=Affine(2e-5, 0, lon, 0, -2e-5, lat))
    index = chip_index([a, b], TileSpec(32))
    assert index.crs.to_epsg() == 32614
    assert set(index.crs_col if hasattr(index, "crs_col") else index["crs"]) == {
        "EPSG:32614",
        "EPSG:4326",
    }
    first_b = index[index.scene == str(b)].geometry.iloc[0]
    assert first_b.bounds[0] == pytest.approx(500000, abs=1.0)
    assert first_b.bounds[3] == pytest.approx(5200000, abs=1.0)


def test_missing_scene(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match="no such file"):
        chip_index(tmp_path / "x.tif", TileSpec(32))


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_index_save_load_round_trip(make_raster, tmp_path: Path, suffix: str) -> None:
    index = chip_index(make_raster(), TileSpec(32, 16))
    path = save_index(index, tmp_path / f"chips{suffix}")
    back = load_index(path)
    assert list(back.columns) == list(INDEX_COLUMNS)
    assert back.crs == index.crs
    for col in ("scene", "row_off", "col_off", "height", "width", "valid_fraction", "crs"):
        assert back[col].tolist() == index[col].tolist()
    assert back.geometry.equals(index.geometry)
    with pytest.raises(OutputExistsError):
        save_index(index, path)


def test_index_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown file ending '.csv'"):
        save_index(gpd.GeoDataFrame(geometry=[]), tmp_path / "i.csv")
    with pytest.raises(RasterReadError, match="no such file"):
        load_index(tmp_path / "none.gpkg")
    other = tmp_path / "other.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(0, 0)], crs=4326).to_file(other)
    with pytest.raises(ConfigError, match="lacks column"):
        load_index(other)


def test_sample_chips(make_raster) -> None:
    index = chip_index(make_raster(), TileSpec(16))
    a = sample_chips(index, 5, seed=3)
    assert len(a) == 5 and a.equals(sample_chips(index, 5, seed=3))
    assert not a.equals(sample_chips(index, 5, seed=4))
    assert len(set(zip(a.row_off, a.col_off, strict=True))) == 5
    with pytest.raises(ConfigError, match="fewer than the 1000"):
        sample_chips(index, 1000)
    assert len(sample_chips(index, 1000, replace=True)) == 1000


# --------------------------------------------------------------------------- export


def test_export_chips_georeference_and_metadata(make_raster, tmp_path: Path) -> None:
    scene = make_raster(
        width=70,
        height=50,
        count=3,
        dtype="uint16",
        nodata=0,
        descriptions=["blue", "green", "red"],
        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red],
        tags={"SOURCE": "test"},
    )
    before = scene.read_bytes()
    out = tmp_path / "chips"
    index = export_chips(scene, out, TileSpec(32, 8), bands=(3, 1), progress=False)
    assert scene.read_bytes() == before
    assert len(index) == 3 * 2 and (out / "index.gpkg").exists()
    saved = load_index(out / "index.gpkg")
    assert saved["chip"].tolist() == index["chip"].tolist()
    with rasterio.open(scene) as src:
        full = src.read()
        for row in index.itertuples():
            chip_path = out / row.chip
            assert row.chip == f"scene_r{row.row_off}_c{row.col_off}.tif"
            with rasterio.open(chip_path) as chip:
                assert chip.crs == src.crs and chip.nodata == 0
                assert chip.transform @ (0, 0) == src.transform @ (row.col_off, row.row_off)
                assert chip.descriptions == ("red", "blue")
                assert chip.colorinterp[0] == ColorInterp.red
                assert chip.tags()["SOURCE"] == "test"
                r, c = row.row_off, row.col_off
                np.testing.assert_array_equal(chip.read(), full[[2, 0], r : r + 32, c : c + 32])


@pytest.mark.parametrize("rpcs", [False, True])
def test_chips_of_a_raster_placed_by_gcps_or_rpcs_stay_placed(tmp_path: Path, rpcs) -> None:
    """A chip of a raster placed by ground control points (or RPCs) carries them moved
    by its offset: each chip pixel maps to where the same source pixel does."""
    from rasterio.transform import GCPTransformer, RPCTransformer

    scene = placed_raster(tmp_path / "placed.tif", rpcs=rpcs)
    index = export_chips(scene, tmp_path / "chips", TileSpec(32, 0), progress=False)
    assert len(index) > 2
    # the index's footprints are the chips' edges mapped through the GCPs (their CRS) or
    # the RPCs (longitude, latitude); an AOI selects chips by them
    assert index.crs == ("EPSG:4326" if rpcs else "EPSG:32614")
    with rasterio.open(scene) as src:
        for row in index.itertuples():
            corners = [(row.row_off, row.col_off), (row.row_off + 32, row.col_off + 32)]
            rows, cols = zip(*corners, strict=True)
            if rpcs:
                from rasterio.transform import RPCTransformer as Tr

                with Tr(src.rpcs) as t:
                    xs, ys = t.xy(rows, cols, offset="ul")
            else:
                from rasterio.transform import GCPTransformer as Tr

                with Tr(src.gcps[0]) as t:
                    xs, ys = t.xy(rows, cols, offset="ul")
            for x, y in zip(xs, ys, strict=True):
                assert row.geometry.distance(shapely.Point(x, y)) < 1e-9
    first = index.geometry.iloc[0].centroid
    aoi = gpd.GeoDataFrame(geometry=[first.buffer(1e-7)], crs=index.crs)
    picked = chip_index(scene, TileSpec(32, 0), aoi=aoi)
    assert list(zip(picked.row_off, picked.col_off, strict=True)) == [(0, 0)]
    # indexed beside a scene with a geotransform in another CRS: one index in the first's
    other = tmp_path / "utm15.tif"
    with rasterio.open(
        other, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
        crs="EPSG:32615", transform=Affine(2, 0, 300000, 0, -2, 5200000),
    ) as dst:  # fmt: skip
        dst.write(np.ones((3, 64, 64), np.uint8))
    both = chip_index([scene, other], TileSpec(32, 0))
    assert both.crs == index.crs and len(both) == len(index) + 4

    def where(ds, rows, cols):
        if rpcs:
            with RPCTransformer(ds.rpcs) as t:
                return np.asarray(t.xy(rows, cols))
        with GCPTransformer(ds.gcps[0]) as t:
            return np.asarray(t.xy(rows, cols))

    rows, cols = [0, 5, 31], [0, 17, 31]
    with rasterio.open(scene) as src:
        for row in index.itertuples():
            with rasterio.open(tmp_path / "chips" / row.chip) as chip:
                if not rpcs:
                    assert chip.gcps[1] == src.gcps[1]
                got = where(chip, rows, cols)
                want = where(src, [r + row.row_off for r in rows], [c + row.col_off for c in cols])
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_export_pad_chips_mask_the_outside(make_raster, tmp_path: Path) -> None:
    scene = make_raster(width=40, height=20, count=1)  # no nodata value
    index = export_chips(scene, tmp_path / "c", TileSpec(32, edge="pad"), progress=False)
    with rasterio.open(tmp_path / "c" / index.chip.iloc[1]) as chip:
        mask = chip.dataset_mask()
    assert mask[:20, :8].all() and not mask[20:].any() and not mask[:, 8:].any()


def test_export_refuses_existing_folder_and_overwrites(make_raster, tmp_path: Path) -> None:
    scene = make_raster()
    out = tmp_path / "chips"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_chips(scene, out, TileSpec(32), progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    export_chips(scene, out, TileSpec(32), overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and len(list(out.glob("*.tif"))) == 9


def test_export_failure_leaves_nothing(make_raster, tmp_path: Path, monkeypatch) -> None:
    scene = make_raster()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiling, "_write_scene_chips", boom)
    with pytest.raises(KeyboardInterrupt):
        export_chips(scene, tmp_path / "chips", TileSpec(32), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_export_refuses_clashing_names(make_raster, tmp_path: Path) -> None:
    a = make_raster("x/s.tif")
    b = make_raster("y/s.tif")
    with pytest.raises(ConfigError, match="share the name 's'"):
        export_chips([a, b], tmp_path / "chips", TileSpec(32), progress=False)


def test_export_nodata_filter_and_describe(make_raster, tmp_path: Path) -> None:
    scene = make_raster(width=64, height=64, count=1, nodata=0, collar=8)
    index = export_chips(scene, tmp_path / "c", TileSpec(16), max_nodata=0.0, progress=False)
    assert len(index) == 4 and index.attrs["skipped_nodata"] == 12
    info = describe(tmp_path / "c" / index.chip.iloc[0])
    assert (info.width, info.height, info.count) == (16, 16, 1)


@settings(max_examples=12)
@given(
    case=grids(),
    count=st.integers(1, 3),
    dtype=st.sampled_from(("uint8", "uint16", "int16", "float32")),
    nodata=st.sampled_from((None, 0)),
)
def test_exported_chips_reassemble_the_scene(tmp_path_factory, case, count, dtype, nodata) -> None:
    spec, width, height = case
    if spec.size < 8 or spec.stride < spec.size // 2:  # keep the number of files small
        spec = TileSpec(max(spec.size, 8), max(spec.size, 8) // 2, spec.edge)
        width, height = max(width, spec.size), max(height, spec.size)
    arr = synthetic_scene(count, height, width, dtype, seed=width * 7 + height)
    if nodata is not None:
        arr[arr == 0] = 1
    folder = tmp_path_factory.mktemp("export")
    scene = folder / "s.tif"
    with rasterio.open(
        scene, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype,
        crs="EPSG:32633", transform=ORIGIN, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(arr)
    index = export_chips(scene, folder / "chips", spec, progress=False)
    canvas = np.zeros((count, height + spec.size, width + spec.size), dtype)
    for row in index.itertuples():
        with rasterio.open(folder / "chips" / row.chip) as chip:
            assert chip.crs.to_epsg() == 32633 and chip.nodata == nodata
            assert chip.transform @ (0, 0) == ORIGIN @ (row.col_off, row.row_off)
            assert chip.transform @ (3, 5) == ORIGIN @ (row.col_off + 3, row.row_off + 5)
            canvas[
                :, row.row_off : row.row_off + spec.size, row.col_off : row.col_off + spec.size
            ] = chip.read()
    np.testing.assert_array_equal(canvas[:, :height, :width], arr)


# --------------------------------------------------------------------------- reliability
# (findings 1, 4, 5 and 9)


def test_scene_smaller_than_the_tile_is_named_in_the_error(make_raster, tmp_path: Path) -> None:
    big = make_raster("big.tif", width=32, height=32)
    small = make_raster("small_one.tif", width=20, height=40)
    with pytest.raises(TileSpecError, match=r"small_one\.tif \(20 x 40 px\): 20 px along"):
        chip_index([big, small], TileSpec(32, 0))
    with pytest.raises(TileSpecError, match=r"small_one\.tif"):
        export_chips([big, small], tmp_path / "chips", TileSpec(32, 0), progress=False)


@pytest.mark.parametrize(
    ("size", "overlap", "named"),
    [
        (float("nan"), 0, "tile size nan"),
        (float("inf"), 0, "tile size inf"),
        (1e308, 0, "tile size 1e+308"),  # finite, but infinite pixels
        (10, float("nan"), "overlap nan"),
        (10, float("-inf"), "overlap -inf"),
    ],
)
def test_from_crs_units_refuses_non_finite_sizes(size, overlap, named) -> None:
    with pytest.raises(TileSpecError, match=re.escape(f"{named} CRS units is not a finite number")):
        TileSpec.from_crs_units(size, overlap, Affine(0.5, 0, 0, 0, -0.5, 0))


def test_chip_index_reads_no_pixel_of_a_raster_valid_by_definition(
    make_raster, monkeypatch
) -> None:
    path = make_raster(width=40, height=20, dtype="uint16")  # no nodata, mask or alpha
    expected = chip_index(path, TileSpec(16, 0, "pad"))

    def no_read(*args, **kwargs):
        raise AssertionError("pixels read")

    monkeypatch.setattr(tiling, "read_valid_mask", no_read)
    index = chip_index(path, TileSpec(16, 0, "pad"))
    assert index.valid_fraction.tolist() == expected.valid_fraction.tolist()
    assert sorted(set(index.valid_fraction)) == [0.125, 0.25, 0.5, 1.0]  # 8 / 4 px inside


@pytest.mark.parametrize("dtype", ["uint8", "float32"])  # nodata; floats may hold NaN
def test_chip_index_reads_masks_in_bounded_block_aligned_pieces(
    make_raster, monkeypatch, dtype
) -> None:
    path = make_raster(
        width=200, height=70, count=2, dtype=dtype, nodata=0, collar=5, tiled=True, blocksize=32
    )
    spec = TileSpec(24, 4, "pad")
    expected = chip_index(path, spec)
    reads = []
    original = tiling.read_valid_mask

    def recording(src, window, *args, **kwargs):
        reads.append(window)
        return original(src, window, *args, **kwargs)

    monkeypatch.setattr(tiling, "read_valid_mask", recording)
    monkeypatch.setattr(tiling, "_MASK_STRIP_PIXELS", 64 * 24)
    index = chip_index(path, spec)
    assert index.valid_fraction.tolist() == expected.valid_fraction.tolist()
    assert 0 < index.valid_fraction.min() < 1
    assert {int(w.width) * int(w.height) for w in reads} <= {64 * 24, 8 * 24}  # 200 = 3*64 + 8
    assert {int(w.col_off) % 32 for w in reads} == {0}


@pytest.mark.parametrize("out", ["scenes", "."])
def test_export_refuses_an_out_folder_holding_a_scene(make_raster, tmp_path: Path, out) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    path = make_raster(width=32, height=32, folder=folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(RasterWriteError, match="holds the input"):
        export_chips([path], tmp_path / out, TileSpec(16, 0), overwrite=True, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_export_refuses_an_out_folder_holding_the_aoi(make_raster, tmp_path: Path) -> None:
    path = make_raster(width=32, height=32)
    info = describe(path)
    (tmp_path / "aoi").mkdir()
    aoi = tmp_path / "aoi" / "aoi.gpkg"
    gpd.GeoSeries([shapely.box(*info.bounds)], crs=info.crs).to_file(aoi)
    with pytest.raises(RasterWriteError, match=r"holds the input .*aoi\.gpkg"):
        export_chips(
            [path], tmp_path / "aoi", TileSpec(16, 0), aoi=aoi, overwrite=True, progress=False
        )
    assert aoi.exists()


_EXPORT_UNDER_LIMIT = """
import resource, signal, sys
from rsgan.errors import RasterWriteError
from rsgan.tiling import TileSpec, export_chips
resource.setrlimit(resource.RLIMIT_FSIZE, (2**14, 2**14))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() returns EFBIG instead
try:
    export_chips([sys.argv[1]], sys.argv[2], TileSpec(64, 0), progress=False)
except RasterWriteError as exc:
    print("RasterWriteError", exc)
"""


def test_export_write_failure_is_a_raster_write_error(make_raster, tmp_path: Path) -> None:
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    data = rng.random((3, 128, 128), dtype=np.float32)  # 64 px chips: 49 KB > 16 KiB
    scene = make_raster(width=128, height=128, dtype="float32", data=data, compress=None)
    out = tmp_path / "chips"
    done = subprocess.run(
        [sys.executable, "-c", _EXPORT_UNDER_LIMIT, str(scene), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith(f"RasterWriteError cannot write {out}:"), (
        done.stdout + done.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


def test_export_chips_and_chip_index_take_a_folder(make_raster, tmp_path: Path) -> None:
    """A folder stands for the rasters in it, from Python as from `rsgan chips`."""
    folder = tmp_path / "scenes"
    for i in range(2):
        make_raster(f"s{i}.tif", width=64, height=32, seed=i, folder=folder)
    (folder / "notes.txt").write_text("not a raster")
    index = chip_index(folder, TileSpec(32))
    assert sorted({Path(s).name for s in index["scene"]}) == ["s0.tif", "s1.tif"]
    assert len(index) == 4
    written = export_chips(folder, tmp_path / "chips", TileSpec(32))
    assert len(written) == 4 and len(list((tmp_path / "chips").glob("*.tif"))) == 4


def test_chips_keep_a_colour_table_and_units_but_not_scene_statistics(
    tmp_path: Path, make_raster
) -> None:
    """A paletted label raster's chips keep its colour table (they claimed a palette but
    had none), each band's unit is kept, and the scene's cached statistics (``gdalinfo
    -stats``) are not written into chips, whose pixels are a part of the scene."""
    rng = np.random.default_rng(0)
    table = {i: (i, 255 - i, 40, 255) for i in range(256)}
    classes = rng.integers(0, 6, (1, 64, 64), dtype=np.uint8)
    scene = make_raster("classes.tif", data=classes, colormap=table)
    with rasterio.open(scene, "r+") as ds:
        ds.units = ["class"]
    with rasterio.open(scene) as ds:
        ds.stats(approx=False)  # cached in classes.tif.aux.xml
    index = export_chips(scene, tmp_path / "chips", TileSpec(32, 0), progress=False)
    assert len(index) == 4
    for name in index["chip"]:
        with rasterio.open(tmp_path / "chips" / name) as chip:
            assert chip.colorinterp == (ColorInterp.palette,)
            assert chip.colormap(1) == table
            assert chip.units == ("class",)
            assert not any(k.startswith("STATISTICS_") for k in chip.tags(1))
