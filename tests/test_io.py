"""rsgan.io: describing, reading, masks, statistics, normalisation, outputs."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import mosaic_vrt
from hypothesis import given
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.windows import Window

from rsgan.errors import (
    BandError,
    ConfigError,
    OutputExistsError,
    RasterReadError,
    RasterWriteError,
)
from rsgan.io import (
    BandStats,
    Normalizer,
    NotGeoreferencedWarning,
    NoValidPixelsError,
    WindowError,
    atomic_output,
    atomic_output_dir,
    check_bands,
    compute_band_stats,
    copy_band_metadata,
    describe,
    list_image_files,
    open_raster,
    output_profile,
    read_masked,
    read_valid_mask,
    read_window,
    remove_stale_temporaries,
    rgb_bands,
    same_crs,
    source_stem,
    warn_if_not_georeferenced,
    write_png_grid,
    write_quicklook_png,
)

INT_DTYPES = ("uint8", "uint16", "int16")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("EPSG:4326", "OGC:CRS84", True),  # axis order only
        ("EPSG:32615", "EPSG:32615", True),
        ("EPSG:4326", "EPSG:4269", False),  # WGS 84 vs NAD83
        ("EPSG:32615", "EPSG:26915", False),  # UTM 15N on WGS 84 vs on NAD83
        ("EPSG:4326", "EPSG:3857", False),
        ("EPSG:4326", None, False),
        (None, None, True),
    ],
)
def test_same_crs_ignores_axis_order_only(a: str | None, b: str | None, same: bool) -> None:
    def crs(text: str | None) -> CRS | None:
        return None if text is None else CRS.from_user_input(text)

    assert same_crs(crs(a), crs(b)) is same
    assert same_crs(crs(b), crs(a)) is same


# --------------------------------------------------------------------------- describe / open


def test_describe_reports_header(make_raster) -> None:
    path = make_raster(
        count=3,
        dtype="uint16",
        nodata=0,
        descriptions=["blue", "green", "red"],
        tags={"SENSOR": "test"},
        tiled=True,
        blocksize=32,
    )
    info = describe(path)
    assert (info.width, info.height, info.count) == (96, 80, 3)
    assert info.dtype == "uint16" and info.dtypes == ("uint16",) * 3
    assert info.crs.to_epsg() == 32614 and info.is_georeferenced
    assert info.transform.c == 500000.0 and info.res == (2.0, 2.0)
    assert info.nodata == 0 and info.nodatavals == (0, 0, 0)
    assert info.descriptions == ("blue", "green", "red")
    assert info.tags["SENSOR"] == "test"
    assert info.mask_flags[0] == (MaskFlags.nodata,)
    assert info.block_shapes[0] == (32, 32)
    assert info.bounds.left == 500000.0 and info.bounds.top == 5200000.0


def test_mixed_dtype_is_refused_only_when_asked(tmp_path: Path) -> None:
    # GDAL GeoTIFFs hold one dtype; a VRT can mix them.
    a = tmp_path / "a.tif"
    with rasterio.open(a, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    vrt = tmp_path / "mixed.vrt"
    vrt.write_text(
        f"""<VRTDataset rasterXSize="8" rasterYSize="8">
  <VRTRasterBand dataType="Byte" band="1"><SimpleSource>
    <SourceFilename relativeToVRT="0">{a}</SourceFilename><SourceBand>1</SourceBand>
  </SimpleSource></VRTRasterBand>
  <VRTRasterBand dataType="UInt16" band="2"><SimpleSource>
    <SourceFilename relativeToVRT="0">{a}</SourceFilename><SourceBand>1</SourceBand>
  </SimpleSource></VRTRasterBand>
</VRTDataset>"""
    )
    info = describe(vrt)
    assert info.dtypes == ("uint8", "uint16")
    with pytest.raises(BandError, match="different data types"):
        _ = info.dtype


def test_open_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match=r"no such file: .*nope\.tif; check the path"):
        describe(tmp_path / "nope.tif")


def test_open_not_a_raster(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not an image")
    with pytest.raises(RasterReadError, match="notes.tif") as exc:
        describe(bad)
    assert "not recognized" in str(exc.value)


def test_open_truncated_raster(make_raster, tmp_path: Path) -> None:
    path = make_raster(width=64, height=64)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RasterReadError, match="cut.tif"):
        with open_raster(cut) as src:
            src.read()


def test_read_of_truncated_blocks(tmp_path: Path) -> None:
    path = tmp_path / "full.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 256, 256)).astype("uint8")
    profile = dict(driver="GTiff", width=256, height=256, count=3, dtype="uint8")
    profile.update(tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    cut = tmp_path / "half.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with open_raster(cut) as src, pytest.raises(RasterReadError, match="half.tif.*truncated"):
        read_window(src, Window(0, 192, 64, 64))


def test_open_folder(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match="is a folder"):
        describe(tmp_path)


# --------------------------------------------------------------------------- bands


def test_check_bands() -> None:
    assert check_bands(4, None) == (1, 2, 3, 4)
    assert check_bands(4, [3, 1]) == (3, 1)
    with pytest.raises(BandError, match=r"band 5 is out of range: x\.tif has 4 band"):
        check_bands(4, (1, 5), path="x.tif")
    with pytest.raises(BandError, match="between 1 and 4"):
        check_bands(4, (0,))
    with pytest.raises(BandError, match="empty"):
        check_bands(4, ())
    with pytest.raises(BandError, match="not an integer"):
        check_bands(4, (1.5,))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- windows


@given(
    data=st.data(),
    dtype=st.sampled_from(("uint8", "uint16", "int16", "float32")),
    count=st.integers(1, 4),
)
def test_read_window_matches_numpy_slicing(tmp_path_factory, data, dtype, count) -> None:
    from tests.conftest import synthetic_scene

    height, width = data.draw(st.integers(5, 40)), data.draw(st.integers(5, 40))
    arr = synthetic_scene(count, height, width, dtype, seed=height * width)
    path = tmp_path_factory.mktemp("rw") / "s.tif"
    with rasterio.open(  # MINISBLACK: a 4th uint8 band would otherwise be alpha
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype,
        photometric="MINISBLACK",
    ) as dst:  # fmt: skip
        dst.write(arr)
    row = data.draw(st.integers(-10, height - 1))
    col = data.draw(st.integers(-10, width - 1))
    h, w = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    bands = data.draw(st.lists(st.integers(1, count), min_size=1, max_size=count, unique=True))
    padded = np.full((count, height + 60, width + 60), 7, dtype=dtype)
    padded[:, 20 : 20 + height, 20 : 20 + width] = arr
    expected = padded[[b - 1 for b in bands], 20 + row : 20 + row + h, 20 + col : 20 + col + w]
    with open_raster(path) as src:
        got = read_window(src, Window(col, row, w, h), bands, boundless=True, fill=7)
        mask = read_valid_mask(src, Window(col, row, w, h), bands, boundless=True)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)
    inside = np.zeros((height + 60, width + 60), bool)
    inside[20 : 20 + height, 20 : 20 + width] = True
    np.testing.assert_array_equal(mask, inside[20 + row : 20 + row + h, 20 + col : 20 + col + w])


def test_read_window_fill_defaults_to_nodata(make_raster) -> None:
    path = make_raster(width=10, height=10, count=1, nodata=9)
    with open_raster(path) as src:
        out = read_window(src, Window(5, 5, 10, 10), boundless=True)
    assert (out[:, 5:, :] == 9).all() and (out[:, :, 5:] == 9).all()


def test_window_past_edge_needs_boundless(make_raster) -> None:
    path = make_raster(width=10, height=10)
    with open_raster(path) as src, pytest.raises(WindowError, match="boundless=True"):
        read_window(src, Window(5, 5, 10, 10))
    with open_raster(path) as src, pytest.raises(WindowError, match="whole pixels"):
        read_window(src, Window(0.5, 0, 4, 4))


def test_read_window_band_out_of_range(make_raster) -> None:
    path = make_raster(count=3)
    with open_raster(path) as src, pytest.raises(BandError, match="band 4 is out of range"):
        read_window(src, Window(0, 0, 4, 4), bands=(4,))


# --------------------------------------------------------------------------- masks


def test_mask_from_nodata(make_raster) -> None:
    path = make_raster(width=20, height=20, count=2, nodata=0, collar=3)
    with open_raster(path) as src:
        mask = read_valid_mask(src, Window(0, 0, 20, 20))
    assert mask.sum() == 14 * 14 and not mask[0, 0] and mask[10, 10]


def test_mask_nodata_in_one_band_invalidates_pixel(make_raster) -> None:
    data = np.full((2, 6, 6), 5, np.uint8)
    data[1, 2, 3] = 0
    path = make_raster(data=data, nodata=0)
    with open_raster(path) as src:
        all_bands = read_valid_mask(src, Window(0, 0, 6, 6))
        band1 = read_valid_mask(src, Window(0, 0, 6, 6), bands=(1,))
    assert not all_bands[2, 3] and all_bands.sum() == 35
    assert band1.all()


def test_mask_from_internal_mask(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    msk = np.full((8, 8), 255, np.uint8)
    msk[:, :3] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(
            path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8"
        ) as dst:
            dst.write(np.ones((3, 8, 8), np.uint8))
            dst.write_mask(msk)
    with open_raster(path) as src:
        mask = read_valid_mask(src, Window(0, 0, 8, 8))
    np.testing.assert_array_equal(mask, msk > 0)


def test_mask_from_alpha_band(make_raster) -> None:
    data = np.full((4, 6, 6), 100, np.uint8)
    data[3, :2, :] = 0  # transparent rows
    path = make_raster(
        data=data,
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
    )
    with open_raster(path) as src:
        mask = read_valid_mask(src, Window(0, 0, 6, 6), bands=(1, 2, 3))
    assert not mask[:2].any() and mask[2:].all()


def test_mask_nan_is_invalid(make_raster) -> None:
    data = np.ones((2, 5, 5), np.float32)
    data[0, 1, 1] = np.nan
    data[1, 3, 3] = np.inf
    path = make_raster(data=data)
    with open_raster(path) as src:
        values, mask = read_masked(src, Window(0, 0, 5, 5))
    assert mask.sum() == 23 and not mask[1, 1] and not mask[3, 3]
    assert np.isnan(values[0, 1, 1])


# --------------------------------------------------------------------------- statistics


def test_stats_of_small_scene_are_exact(make_raster) -> None:
    path = make_raster(width=40, height=30, count=2, dtype="uint16", nodata=0, collar=2)
    with rasterio.open(path) as src:
        arr = src.read()
    valid = (arr != 0).all(axis=0)
    stats = compute_band_stats(path, percentiles=(2, 50, 98))
    assert stats.n_pixels == valid.sum() == 36 * 26
    for b in range(2):
        px = arr[b][valid].astype(float)
        assert stats.min[b] == px.min() and stats.max[b] == px.max()
        assert stats.mean[b] == pytest.approx(px.mean())
        assert stats.std[b] == pytest.approx(px.std())
        assert stats.percentiles[98.0][b] == pytest.approx(np.percentile(px, 98))


def test_stats_percentiles_from_bounded_sample(make_raster, monkeypatch) -> None:
    import rsgan.io

    path = make_raster(width=50, height=40, count=2, dtype="int16")
    exact = compute_band_stats(path)
    monkeypatch.setattr(rsgan.io, "PERCENTILE_SAMPLE", 500)
    sampled = compute_band_stats(path)
    assert sampled.n_pixels == exact.n_pixels == 2000
    assert sampled.min == exact.min and sampled.max == exact.max
    assert sampled.mean == pytest.approx(exact.mean) and sampled.std == pytest.approx(exact.std)
    assert sampled.percentiles[50.0] != exact.percentiles[50.0]  # from 500 of 2000 pixels
    span = np.subtract(exact.max, exact.min)
    assert np.all(
        np.abs(np.subtract(sampled.percentiles[50.0], exact.percentiles[50.0])) < 0.1 * span
    )


def test_stats_sample_windows_of_large_scene(make_raster) -> None:
    path = make_raster(width=128, height=128, count=1)
    stats = compute_band_stats(path, max_windows=3, window_size=16)
    assert stats.n_pixels == 3 * 16 * 16  # three windows, not the whole scene
    again = compute_band_stats(path, max_windows=3, window_size=16)
    assert again == stats  # seeded
    other = compute_band_stats(path, max_windows=3, window_size=16, seed=1)
    assert other.mean != stats.mean


def test_stats_use_overviews_when_present(make_raster) -> None:
    path = make_raster(width=128, height=128, count=1, tiled=True, blocksize=32)
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4])
    stats = compute_band_stats(path, max_windows=4, window_size=16)
    assert stats.n_pixels == 32 * 32  # the 4x overview fits 4 * 16 * 16 pixels


def test_stats_pool_files_and_refuse_mixed(make_raster) -> None:
    a = make_raster("a.tif", width=10, height=10, count=2, seed=1)
    b = make_raster("b.tif", width=12, height=10, count=2, seed=2)
    c = make_raster("c.tif", width=10, height=10, count=3)
    assert compute_band_stats([a, b]).n_pixels == 220
    with pytest.raises(BandError, match=r"c\.tif has 3 uint8 band.*a\.tif has 2"):
        compute_band_stats([a, c])
    assert compute_band_stats([a, c], bands=(1, 2)).bands == (1, 2)


def test_stats_with_no_valid_pixel(make_raster) -> None:
    path = make_raster(data=np.zeros((1, 5, 5), np.uint8), nodata=0)
    with pytest.raises(NoValidPixelsError, match="no valid pixel"):
        compute_band_stats(path)


def test_band_stats_json_round_trip(make_raster) -> None:
    stats = compute_band_stats(make_raster(width=20, height=20))
    text = json.dumps(stats.to_dict())
    assert BandStats.from_dict(json.loads(text)) == stats
    with pytest.raises(ConfigError, match="malformed"):
        BandStats.from_dict({"bands": [1]})


# --------------------------------------------------------------------------- normaliser


@given(dtype=st.sampled_from(INT_DTYPES), count=st.integers(1, 5), seed=st.integers(0, 999))
def test_for_dtype_round_trip_is_exact(dtype: str, count: int, seed: int) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    arr = rng.integers(info.min, info.max, size=(count, 7, 9), endpoint=True).astype(dtype)
    arr[0, 0, :2] = (info.min, info.max)
    norm = Normalizer.for_dtype(dtype, count)
    out = norm.normalize(arr)
    assert out.dtype == np.float32 and out.min() >= -1 and out.max() <= 1
    back = norm.denormalize(out)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, arr)


@given(
    dtype=st.sampled_from(INT_DTYPES),
    lo_frac=st.floats(0, 0.4),
    width_frac=st.floats(0.001, 0.6),
    seed=st.integers(0, 999),
)
def test_stats_normaliser_round_trip_is_exact(dtype, lo_frac, width_frac, seed) -> None:
    info = np.iinfo(dtype)
    span = float(info.max) - float(info.min)
    lo = float(info.min) + lo_frac * span
    hi = lo + max(width_frac * span, 1.0)
    norm = Normalizer(lo=(lo, lo - 3), hi=(hi, hi), dtype=dtype)
    arr = np.random.default_rng(seed).integers(info.min, info.max, (2, 6, 6), endpoint=True)
    arr = arr.astype(dtype)
    np.testing.assert_array_equal(norm.denormalize(norm.normalize(arr)), arr)


@given(seed=st.integers(0, 999))
def test_float32_round_trip_to_rounding(seed: int) -> None:
    arr = np.random.default_rng(seed).uniform(-0.5, 3.0, size=(3, 5, 5)).astype(np.float32)
    norm = Normalizer(lo=(0.0, 0.1, -0.5), hi=(1.0, 2.0, 3.0), dtype="float32")
    back = norm.denormalize(norm.normalize(arr))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, arr, rtol=1e-6, atol=1e-6)


def test_normalise_maps_lo_hi_to_unit_range_without_clipping() -> None:
    norm = Normalizer(lo=(100.0,), hi=(200.0,), dtype="uint16")
    arr = np.array([[[100, 150, 200, 300]]], np.uint16)
    np.testing.assert_allclose(norm.normalize(arr), [[[-1, 0, 1, 3]]])
    batch = np.stack([arr, arr])  # (n, bands, rows, cols)
    np.testing.assert_allclose(norm.normalize(batch)[1], [[[-1, 0, 1, 3]]])


def test_denormalise_clips_to_integer_range() -> None:
    norm = Normalizer.for_dtype("uint8", 1)
    out = norm.denormalize(np.array([[[-3.0, 1.5, np.nan, 0.0]]], np.float32))
    np.testing.assert_array_equal(out, [[[0, 255, 0, 128]]])


def test_normaliser_validation_and_dict() -> None:
    with pytest.raises(ConfigError, match="greater than lo"):
        Normalizer(lo=(5.0,), hi=(5.0,), dtype="uint8")
    with pytest.raises(ConfigError, match="one value per band"):
        Normalizer(lo=(0.0, 1.0), hi=(5.0,), dtype="uint8")
    norm = Normalizer(lo=(1, 2), hi=(3, 4), dtype="int16")
    assert Normalizer.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    with pytest.raises(BandError, match="normaliser has 2"):
        norm.normalize(np.zeros((3, 2, 2)))


def test_normaliser_from_stats() -> None:
    stats = BandStats(
        bands=(1, 2),
        dtype="uint16",
        n_pixels=10,
        min=(0.0, 7.0),
        max=(900.0, 7.0),
        mean=(1.0, 7.0),
        std=(1.0, 0.0),
        percentiles={0.5: (10.0, 7.0), 99.5: (800.0, 7.0)},
    )
    pct = Normalizer.from_stats(stats)
    assert pct.lo == (10.0, 7.0) and pct.hi == (800.0, 8.0)  # constant band guarded
    mm = Normalizer.from_stats(stats, method="minmax")
    assert mm.lo == (0.0, 7.0) and mm.hi == (900.0, 8.0)
    with pytest.raises(ConfigError, match="percentile 2.0 is not in the statistics"):
        Normalizer.from_stats(stats, low=2)
    with pytest.raises(ConfigError, match="'zscore' is unknown"):
        Normalizer.from_stats(stats, method="zscore")


# --------------------------------------------------------------------------- profiles


def test_output_profile_and_metadata_copy(make_raster, tmp_path: Path) -> None:
    src_path = make_raster(
        count=3,
        dtype="uint16",
        nodata=0,
        descriptions=["b", "g", "r"],
        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red],
        tags={"K": "v"},
    )
    info = describe(src_path)
    profile = output_profile(info, count=2)
    assert profile["crs"] == info.crs and profile["transform"] == info.transform
    assert profile["tiled"] and profile["blockxsize"] == 256 and profile["predictor"] == 2
    assert profile["BIGTIFF"] == "IF_SAFER" and profile["nodata"] == 0
    assert output_profile(info, dtype="float32")["predictor"] == 3
    with pytest.raises(ConfigError, match="does not fit the output type uint8"):
        output_profile(replace(info, nodata=-9999.0), dtype="uint8")
    with pytest.raises(ConfigError, match="multiple of 16"):
        output_profile(info, blocksize=100)
    dst_path = tmp_path / "out.tif"
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(np.ones((2, info.height, info.width), np.uint16))
        copy_band_metadata(info, dst, bands=(3, 1))
    out = describe(dst_path)
    assert out.descriptions == ("r", "b")
    assert out.colorinterp == (ColorInterp.red, ColorInterp.blue)
    assert out.tags["K"] == "v" and out.crs == info.crs and out.transform == info.transform


# --------------------------------------------------------------------------- atomic outputs


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".rsgan-" in p.name]


def test_atomic_output_renames_on_success(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    with atomic_output(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.tif.rsgan-tmp-")
        assert tmp.suffix == ".tif" and not dst.exists()
        tmp.write_text("x")
    assert dst.read_text() == "x" and not _hidden(tmp_path)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_output_cleans_up_on_failure(tmp_path: Path, error) -> None:
    dst = tmp_path / "out.tif"
    with pytest.raises(error), atomic_output(dst) as tmp:
        tmp.write_text("partial")
        raise error()
    assert not dst.exists() and not _hidden(tmp_path)


def test_atomic_output_refuses_existing_before_work(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    dst.write_text("old")
    entered = False
    with pytest.raises(OutputExistsError, match="out.tif exists; pass overwrite=True"):
        with atomic_output(dst):
            entered = True
    assert not entered and dst.read_text() == "old"
    with atomic_output(dst, overwrite=True) as tmp:
        tmp.write_text("new")
    assert dst.read_text() == "new"


def test_atomic_output_bad_destinations(tmp_path: Path) -> None:
    with pytest.raises(RasterWriteError, match="is a folder"), atomic_output(tmp_path):
        pass
    with pytest.raises(RasterWriteError, match="does not exist"):
        with atomic_output(tmp_path / "missing" / "o.tif"):
            pass
    src = tmp_path / "in.tif"
    src.write_text("input")
    link = tmp_path / "link.tif"
    os.symlink(src, link)
    for dst in (src, link):
        with pytest.raises(RasterWriteError, match="inputs are never modified"):
            with atomic_output(dst, overwrite=True, inputs=[src]):
                pass
    assert src.read_text() == "input"


def test_outputs_never_replace_a_file_a_vrt_input_reads(tmp_path: Path, make_raster) -> None:
    """A VRT's sources are inputs too: an output (or an output folder) on one of them is
    refused, with --overwrite as well, naming the source and the VRT."""
    a = make_raster("a.tif", count=1, width=20, height=10, seed=1)
    b = make_raster("parts/b.tif", count=1, width=20, height=10, seed=2)
    inner = mosaic_vrt(tmp_path / "inner.vrt", [b], 20, 10)
    vrt = mosaic_vrt(tmp_path / "scene.vrt", [a, inner], 20, 10)
    before = b.read_bytes()
    for dst in (a, b):  # a source, and a source of a VRT within the VRT
        with pytest.raises(
            RasterWriteError, match=f"{dst.name}, which the input .*scene.vrt reads"
        ):
            with atomic_output(dst, overwrite=True, inputs=[vrt]):
                pass
    assert b.read_bytes() == before
    with pytest.raises(RasterWriteError, match="holds .*b.tif, which the input"):
        with atomic_output_dir(tmp_path / "parts", overwrite=True, inputs=[vrt]):
            pass
    assert b.read_bytes() == before
    with atomic_output(tmp_path / "out.tif", inputs=[vrt]) as tmp:  # elsewhere: fine
        tmp.write_bytes(a.read_bytes())
    # a VRT that does not open is left to the read that follows
    broken = tmp_path / "broken.vrt"
    broken.write_text("<VRTDataset")
    with atomic_output(tmp_path / "out2.tif", inputs=[broken]) as tmp:
        tmp.write_bytes(a.read_bytes())


def test_atomic_output_needs_a_written_file(tmp_path: Path) -> None:
    with pytest.raises(RasterWriteError, match="nothing was written"):
        with atomic_output(tmp_path / "o.tif"):
            pass


def test_a_raster_without_read_permission_is_called_so(make_raster, tmp_path: Path) -> None:
    """It was "cannot read X as a raster (X: Permission denied); pass a GeoTIFF or another
    format GDAL reads": the file is a GeoTIFF, its permissions are the problem."""
    src = make_raster()
    src.chmod(0o000)
    try:
        if os.access(src, os.R_OK):
            pytest.skip("this process reads every file (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(RasterReadError, match=r"no permission to read .*scene\.tif") as info:
            describe(src)
        assert "pass a GeoTIFF" not in str(info.value)
    finally:
        src.chmod(0o644)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_atomic_output_unwritable_folder(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RasterWriteError, match="not writable"):
            with atomic_output(tmp_path / "o.tif"):
                pass
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_atomic_output_in_a_folder_that_refuses_files_is_not_called_a_full_disk() -> None:
    """/proc takes no new files even from root (for whom its permissions look writable)
    and reports 0 bytes free: the error says the folder refuses files, not that the disk
    is full."""
    with pytest.raises(RasterWriteError) as info:
        with atomic_output(Path("/proc/rsgan-test.tif")):
            pass
    message = str(info.value)
    assert "/proc" in message and "choose another folder" in message
    assert "no space" not in message and "free space" not in message
    assert "\n" not in message


def test_atomic_output_dir(tmp_path: Path) -> None:
    dst = tmp_path / "chips"
    with pytest.raises(KeyboardInterrupt), atomic_output_dir(dst) as tmp:
        (tmp / "a").write_text("1")
        raise KeyboardInterrupt
    assert not dst.exists() and not _hidden(tmp_path)
    with atomic_output_dir(dst) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_output_dir(dst):
        pass
    with atomic_output_dir(dst, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert [p.name for p in dst.iterdir()] == ["b"] and not _hidden(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(RasterWriteError, match="is a file"), atomic_output_dir(tmp_path / "file"):
        pass


# --------------------------------------------------------------------------- folders, PNG


def test_list_image_files_and_georef_warning(make_raster, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    make_raster("b.TIF", folder=folder, crs=None)
    make_raster("a.tif", folder=folder)
    (folder / "notes.txt").write_text("")
    (folder / ".hidden.tif").write_text("")
    files = list_image_files(folder)
    assert [f.name for f in files] == ["a.tif", "b.TIF"]
    assert not warn_if_not_georeferenced(describe(files[0]))
    with pytest.warns(NotGeoreferencedWarning, match="b.TIF has no CRS"):
        assert warn_if_not_georeferenced(describe(files[1]))
    with pytest.raises(RasterReadError, match="no image file"):
        list_image_files(folder, extensions=(".png",))
    with pytest.raises(RasterReadError, match="no such folder"):
        list_image_files(tmp_path / "none")


def test_quicklook_png_stretches_and_masks(tmp_path: Path) -> None:
    arr = np.stack([np.tile(np.arange(100, dtype=np.uint16), (10, 1))] * 4)
    mask = np.ones((10, 100), bool)
    mask[0] = False
    path = write_quicklook_png(arr, tmp_path / "q.png", stretch=(0, 100), mask=mask)
    with rasterio.open(path) as src:
        out = src.read()
    assert src.driver == "PNG" and out.shape == (3, 10, 100)
    assert out[0, 5, 0] == 0 and out[0, 5, 99] == 255 and (out[:, 0] == 0).all()
    with pytest.raises(OutputExistsError):
        write_quicklook_png(arr, path)


CI = ColorInterp


@pytest.mark.parametrize(
    ("descriptions", "colorinterp", "expected"),
    [
        # Sentinel-2 band names, with the gray/undefined a uint16 GeoTIFF gets by default
        (("B02 blue", "B03 green", "B04 red", "B08 nir"), (CI.gray,) + (CI.undefined,) * 3,
         (3, 2, 1)),
        # colour interpretation set on purpose
        ((None,) * 4, (CI.blue, CI.green, CI.red, CI.undefined), (3, 2, 1)),
        ((None,) * 4, ("undefined", "blue", "green", "red"), (4, 3, 2)),
        # a B, G, R byte file keeps the red, green, blue GDAL gives bands 1-3 by default;
        # its descriptions say otherwise and win
        (("Blue", "Green", "Red"), (CI.red, CI.green, CI.blue), (3, 2, 1)),
        # ... which stays when nothing says otherwise
        ((None,) * 3, (CI.red, CI.green, CI.blue), (1, 2, 3)),
        # colour interpretation set on purpose wins over descriptions
        (("Blue", "Green", "Red"), (CI.undefined, CI.blue, CI.green, CI.red), (4, 3, 2)),
        # all 13 Sentinel-2 bands: red edge is not red, NIR names no colour
        (("B01 coastal aerosol", "B02 blue", "B03 green", "B04 red", "B05 red edge 1",
          "B06 red edge 2", "B07 red edge 3", "B08 nir", "B8A narrow nir",
          "B09 water vapour", "B10 swir cirrus", "B11 swir 1", "B12 swir 2"),
         (CI.gray,) + (CI.undefined,) * 12, (4, 3, 2)),
        # PlanetScope SuperDove and WorldView: of two bands naming a colour, the one naming
        # nothing else ("blue" over "coastal_blue", "green" over "green_i")
        (("coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir"),
         (CI.gray,) + (CI.undefined,) * 7, (6, 4, 2)),
        (("Coastal Blue", "Blue", "Green", "Red", "NIR"), (CI.gray,) + (CI.undefined,) * 4,
         (4, 3, 2)),
        # no colours, a colour twice, colours as parts of other words, one missing: None
        (("a", "b", "c"), (CI.gray, CI.undefined, CI.undefined), None),
        (("red", "red", "green", "blue"), (CI.gray,) + (CI.undefined,) * 3, None),
        (("reddish", "greenland", "blueish"), (CI.gray, CI.undefined, CI.undefined), None),
        (("red", "green"), (CI.gray, CI.undefined), None),
        ((), (), None),
    ],
)  # fmt: skip
def test_rgb_bands_from_colour_interpretation_or_descriptions(
    descriptions, colorinterp, expected
) -> None:
    assert rgb_bands(descriptions, colorinterp) == expected


def test_quicklook_png_shows_the_chosen_bands(tmp_path: Path) -> None:
    """rgb=(red, green, blue) picks 1-based bands of the array; by default the first 3."""
    arr = np.stack([np.full((4, 5), v, np.uint8) for v in (10, 20, 30, 40)])
    path = write_quicklook_png(arr, tmp_path / "q.png", stretch=None, rgb=(4, 3, 1))
    with rasterio.open(path) as src:
        assert src.read()[:, 0, 0].tolist() == [40, 30, 10]
    path = write_quicklook_png(arr, tmp_path / "d.png", stretch=None)
    with rasterio.open(path) as src:
        assert src.read()[:, 0, 0].tolist() == [10, 20, 30]
    with pytest.raises(BandError, match="band 5 is out of range"):
        write_quicklook_png(arr, tmp_path / "x.png", rgb=(5, 2, 1))
    assert not (tmp_path / "x.png").exists()


def test_png_grid_layout(tmp_path: Path) -> None:
    tiles = [np.full((3, 4, 5), v, np.uint8) for v in (10, 20, 30)] + [
        np.full((1, 4, 5), 40, np.uint8)
    ]
    path = write_png_grid(tiles, tmp_path / "g.png", ncols=3, pad=1)
    with rasterio.open(path) as src:
        grid = src.read()
    assert grid.shape == (3, 2 * 5 + 1, 3 * 6 + 1)
    assert grid[0, 1, 1] == 10 and grid[0, 1, 7] == 20 and grid[2, 6, 1] == 40
    assert grid[0, 0, 0] == 0
    with pytest.raises(ConfigError, match="differ in size"):
        write_png_grid([tiles[0], np.zeros((3, 2, 2), np.uint8)], tmp_path / "h.png", 2)


# --------------------------------------------------------------------------- write failures
# (reliability findings 6, 8 and 9)


def test_atomic_output_removes_a_killed_writers_temporaries(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    stale = [
        tmp_path / ".out.tif.rsgan-tmp-0badc0de.tif",
        tmp_path / ".out.tif.rsgan-tmp-0badc0de.tif.aux.xml",
    ]
    unlocked = tmp_path / ".out.tif.rsgan-tmp-feedf00d.tif"
    for path in [*stale, unlocked, unlocked.with_name(".out.tif.rsgan-tmp-feedf00d.lock")]:
        path.write_bytes(b"partial")  # the lock file of a gone writer is not locked
    other = tmp_path / ".other.tif.rsgan-tmp-0badc0de.tif"
    other.write_bytes(b"another output's")
    with atomic_output(dst) as tmp:
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"new"
    assert _hidden(tmp_path) == [other.name]


def test_atomic_output_keeps_a_live_writers_temporary(tmp_path: Path) -> None:
    """A second writer of the same output while the first writes (two jobs given one
    output) is refused before its work, with or without overwrite: it used to do all its
    work, then fail as "appeared while it was being written" (or, with overwrite, both
    ran to the end and the last one won). The first writer's temporary is kept."""
    dst = tmp_path / "out.tif"
    with atomic_output(dst, overwrite=True) as live:
        live.write_bytes(b"being written")
        for overwrite in (False, True):
            with pytest.raises(RasterWriteError, match=r"out\.tif is being written by another"):
                with atomic_output(dst, overwrite=overwrite):
                    pytest.fail("the block ran")
        assert live.read_bytes() == b"being written"
    assert dst.read_bytes() == b"being written" and _hidden(tmp_path) == []
    with atomic_output(dst, overwrite=True) as tmp:  # once the first is done: allowed
        tmp.write_bytes(b"second")
    assert dst.read_bytes() == b"second" and _hidden(tmp_path) == []


def test_atomic_output_dir_refuses_a_second_live_writer(tmp_path: Path) -> None:
    dst = tmp_path / "chips"
    with atomic_output_dir(dst) as live:
        (live / "a.txt").write_text("a")
        with pytest.raises(RasterWriteError, match=r"chips is being written by another"):
            with atomic_output_dir(dst, overwrite=True):
                pytest.fail("the block ran")
        assert (live / "a.txt").exists()
    assert (dst / "a.txt").read_text() == "a" and _hidden(tmp_path) == []


def test_a_lock_file_that_cannot_be_opened_does_not_refuse_a_writer(tmp_path: Path) -> None:
    """Another user's killed run can leave a lock file this one cannot open (0600): its
    temporaries are kept, and writing goes on."""
    dst = tmp_path / "out.tif"
    stale_lock = tmp_path / ".out.tif.rsgan-tmp-0badc0de.lock"
    stale_lock.mkdir()  # cannot be opened as a file, whoever runs the test
    with atomic_output(dst) as tmp:
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"new" and stale_lock.is_dir()


def test_remove_stale_temporaries_of_a_folder(tmp_path: Path) -> None:
    stale = tmp_path / ".chips.rsgan-tmp-12345678"
    stale.mkdir()
    (stale / "a.tif").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path / "chips") == [stale]
    with atomic_output_dir(tmp_path / "chips") as live:
        assert remove_stale_temporaries(tmp_path / "chips") == []
        assert live.is_dir()


_WRITE_UNDER_LIMIT = """
import resource, signal, sys
import numpy as np, rasterio
from rsgan.errors import RasterWriteError
from rsgan.io import atomic_output
resource.setrlimit(resource.RLIMIT_FSIZE, (2**18, 2**18))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() returns EFBIG instead
data = np.random.default_rng(0).random((2, 512, 512), dtype=np.float32)  # 2 MB
try:
    with atomic_output(sys.argv[1]) as tmp, rasterio.open(
        tmp, "w", driver="GTiff", width=512, height=512, count=2, dtype="float32",
        tiled=True, compress="deflate", NUM_THREADS=sys.argv[2],
    ) as out:
        out.write(data)
except RasterWriteError as exc:
    print("RasterWriteError", exc)
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_gdal_write_failure_becomes_a_raster_write_error(tmp_path: Path, threads) -> None:
    """GDAL only prints libtiff's write failures (file size limit here, a full disk
    alike); with one thread rasterio raises a vague RasterioIOError, with two nothing."""
    import subprocess
    import sys

    dst = tmp_path / "out.tif"
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_UNDER_LIMIT, str(dst), threads],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith("RasterWriteError cannot write"), done.stdout + done.stderr
    assert "out.tif: the file size limit (ulimit -f)" in done.stdout
    assert "_tiffWriteProc" not in done.stderr  # libtiff's own prints are silenced
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code", [28, 27])  # ENOSPC, EFBIG
def test_disk_oserror_in_atomic_output_names_the_file(tmp_path: Path, code) -> None:
    with pytest.raises(RasterWriteError, match=r"cannot write .*out\.json: .*free space"):
        with atomic_output(tmp_path / "out.json") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(code, os.strerror(code))
    assert list(tmp_path.iterdir()) == []


def test_logged_gdal_write_failure_stops_the_rename(tmp_path: Path) -> None:
    import logging

    env_logger = logging.getLogger("rasterio._env")
    level = env_logger.level
    with pytest.raises(RasterWriteError, match="Write error at scanline 7"):
        with atomic_output(tmp_path / "out.tif") as tmp:
            tmp.write_bytes(b"II*\x00")
            env_logger.info(
                "GDAL signalled an error: err_no=%r, msg=%r",
                1,
                "TIFFAppendToStrip:Write error at scanline 7",
            )
    assert list(tmp_path.iterdir()) == [] and env_logger.level == level


def _tiled_tif(path: Path, *, sparse: bool = False) -> Path:
    """A 64 x 64 px, 3-band GeoTIFF of 16 px tiles; ``sparse`` writes only the first tile."""
    data = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64)
    profile = dict(driver="GTiff", width=64, height=64, count=3, dtype="uint16", tiled=True)
    profile.update(blockxsize=16, blockysize=16, compress="deflate", SPARSE_OK=sparse)
    with rasterio.open(path, "w", **profile) as out:
        if sparse:
            out.write(data[:, :16, :16], window=Window(0, 0, 16, 16))
        else:
            out.write(data)
    return path


def test_truncated_geotiff_is_not_renamed_onto_dst(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    with pytest.raises(RasterWriteError, match="does not read back"):
        with atomic_output(dst) as tmp:
            _tiled_tif(tmp)
            whole = tmp.read_bytes()
            tmp.write_bytes(whole[:1000] + bytes(len(whole) - 1000))  # tiles zeroed
    assert list(tmp_path.iterdir()) == []


def test_geotiff_with_unwritten_blocks_is_not_renamed_onto_dst(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    with pytest.raises(RasterWriteError, match=r"block \(0, 1\) of band 1 was never written"):
        with atomic_output(dst) as tmp:
            _tiled_tif(tmp, sparse=True)
    with atomic_output(dst, verify=False) as tmp:  # opt-out
        _tiled_tif(tmp, sparse=True)
    assert dst.exists()


def test_atomic_output_checks_free_space_first(tmp_path: Path) -> None:
    with pytest.raises(RasterWriteError, match="needs about .* MB free"):
        with atomic_output(tmp_path / "out.tif", needed_bytes=2**62):
            pytest.fail("the block ran")


@pytest.mark.parametrize("where", ["in", "under", "is"])
def test_atomic_output_dir_refuses_a_folder_holding_an_input(tmp_path: Path, where) -> None:
    out = tmp_path / "data"
    scene = {"in": out / "s.tif", "under": out / "a" / "s.tif", "is": out}[where]
    scene.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    if where != "is":
        scene.write_bytes(b"scene")
    with pytest.raises(RasterWriteError, match=r"output folder .*data holds the input"):
        with atomic_output_dir(out, overwrite=True, inputs=[scene]):
            pytest.fail("the block ran")
    assert scene.exists()
    with atomic_output_dir(tmp_path / "elsewhere", inputs=[scene]) as tmp:  # allowed
        (tmp / "x").write_bytes(b"")


def test_atomic_output_dir_sees_an_input_through_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "s.tif").write_bytes(b"scene")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(RasterWriteError, match="holds the input"):
        with atomic_output_dir(tmp_path / "link", overwrite=True, inputs=[real / "sub" / "s.tif"]):
            pytest.fail("the block ran")


def test_sweep_keeps_a_live_temporary_whose_suffix_starts_with_hex(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    with atomic_output(dst, suffix="abc") as live:  # ".out.rsgan-tmp-<8 hex>abc"
        live.write_bytes(b"being written")
        assert remove_stale_temporaries(dst) == []
        assert live.exists()


def test_nested_outputs_restore_rasterio_log_levels(tmp_path: Path) -> None:
    import logging

    loggers = [logging.getLogger(n) for n in ("rasterio._env", "rasterio._err")]
    before = [lg.level for lg in loggers]
    with atomic_output(tmp_path / "a.txt") as a, atomic_output(tmp_path / "b.txt") as b:
        assert all(lg.getEffectiveLevel() <= logging.INFO for lg in loggers)
        a.write_text("a")
        b.write_text("b")
    assert [lg.level for lg in loggers] == before
    assert [lg.filters for lg in loggers] == [[], []]


@pytest.mark.parametrize("make", ["file", "folder"])
def test_output_folder_removed_while_writing_is_a_raster_write_error(tmp_path: Path, make) -> None:
    folder = tmp_path / "vanishing"
    folder.mkdir()
    output = atomic_output(folder / "o.tif") if make == "file" else atomic_output_dir(folder / "o")
    with pytest.raises(RasterWriteError, match=r"its folder .*vanishing was removed while"):
        with output as tmp:
            shutil.rmtree(folder)
            target = tmp if make == "file" else tmp / "chip.tif"
            rasterio.open(target, "w", driver="GTiff", width=1, height=1, count=1, dtype="uint8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("source", "stem"),
    [
        ("data/scene.tif", "scene"),
        ("https://host/a/scene.tif?sig=x", "scene"),
        ("/vsizip//tmp/a.zip/scene.tif", "scene"),
        ("vrt://scene.tif?bands=3,2,1", "scene"),  # was "": the file name read as a host
        ("vrt://data/scene.tif?bands=1", "scene"),
        ("vrt:///abs/data/scene.tif?ot=Byte", "scene"),
        ("vrt:///vsicurl/https://host/scene.tif?bands=1", "scene"),
    ],
)
def test_source_stem_of_paths_urls_and_vrt_names(source: str, stem: str) -> None:
    assert source_stem(source) == stem


def test_copy_band_metadata_palette_units_and_stale_tags(tmp_path: Path) -> None:
    """Units, colour tables and the IMAGERY domain (acquisition metadata) are copied;
    cached statistics and a COG's overview
    resampling are not (they describe the source's pixels and file); a palette band
    written as float32, which no colour table can index, is marked gray."""
    src_path = tmp_path / "pal.tif"
    table = {0: (0, 0, 0, 255), 1: (10, 200, 30, 255), 2: (200, 10, 30, 255)}
    profile = {
        "driver": "GTiff",
        "width": 20,
        "height": 10,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32614",
        "transform": rasterio.Affine(2, 0, 500000, 0, -2, 5200000),
    }
    with rasterio.open(src_path, "w", photometric="palette", **profile) as ds:
        ds.write(np.ones((1, 10, 20), np.uint8))
        ds.write_colormap(1, table)
        ds.units = ["class"]
        ds.update_tags(1, STATISTICS_MAXIMUM="2", CLASS_1="crop")
        ds.update_tags(OVR_RESAMPLING_ALG="NEAREST", K="v")
        ds.update_tags(ns="IMAGERY", CLOUDCOVER="3", SATELLITEID="S2A")
    info = describe(src_path)
    assert info.units == ("class",) and info.colormaps[0] is not None
    for dtype in ("uint8", "float32"):
        dst_path = tmp_path / f"out_{dtype}.tif"
        with rasterio.open(dst_path, "w", **{**profile, "dtype": dtype}) as dst:
            copy_band_metadata(info, dst)
            dst.write(np.ones((1, 10, 20), dtype))
        with rasterio.open(dst_path) as out:
            assert out.units == ("class",)
            assert out.tags(1) == {"CLASS_1": "crop"}
            assert "OVR_RESAMPLING_ALG" not in out.tags() and out.tags()["K"] == "v"
            assert out.tags(ns="IMAGERY") == {"CLOUDCOVER": "3", "SATELLITEID": "S2A"}
            if dtype == "uint8":
                assert out.colorinterp == (ColorInterp.palette,)
                assert {k: out.colormap(1)[k] for k in table} == table
            else:
                assert out.colorinterp == (ColorInterp.gray,)


def test_outputs_with_names_near_the_file_systems_limit(tmp_path: Path) -> None:
    """A 250-byte name is a valid file name, but its temporary (".<name>.rsgan-tmp-<token>
    .lock") was not: writing failed with "File name too long", reported as a full disk.
    Temporaries carry a shortened name with a hash now; the sweep finds them."""
    name = "é" * 60 + "s" * 116 + "_translated.tif"  # 251 bytes in UTF-8
    assert len(os.fsencode(name)) == 251
    dst = tmp_path / name
    with atomic_output(dst) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255 - len(".gtiff.tif.ovr")
        tmp.write_bytes(b"out")
        stale = tmp.with_name(tmp.name.replace(tmp.name[-12:-4], "0badc0de"))
        stale.write_bytes(b"a killed run's")
    assert dst.read_bytes() == b"out"
    assert remove_stale_temporaries(dst) == [stale]
    folder = tmp_path / ("f" * 250)
    for _ in range(2):  # the second replaces the first (its old copy is a temporary too)
        with atomic_output_dir(folder, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("a")
    assert (folder / "a.txt").read_text() == "a" and _hidden(tmp_path) == []


def test_an_output_name_past_the_file_systems_limit_is_refused(make_raster, tmp_path) -> None:
    """A 260-byte output name was an OSError traceback ("File name too long") from the
    first os.stat of the path."""
    import torch

    from rsgan.pipelines.translate import translate_raster

    src = make_raster()
    dst = tmp_path / ("n" * 256 + ".tif")
    with pytest.raises(RasterWriteError, match=r"is 260 bytes long.*at most 255"):
        translate_raster(src, dst, torch.nn.Identity(), progress=False)
    with pytest.raises(RasterWriteError, match=r"is 256 bytes long"):
        with atomic_output_dir(tmp_path / ("f" * 256)):
            pytest.fail("the block ran")
    with pytest.raises(RasterReadError, match=r"cannot read .*nnnn\.tif \(File name too long\)"):
        describe(dst)  # an input so named: the same OSError traceback
