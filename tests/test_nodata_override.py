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


def test_fill_nodata_keeps_valid_pixels_and_fills_from_the_neighbours() -> None:
    from rsgan.pipelines.translate import FILL_REACH, fill_nodata

    rng = np.random.default_rng(0)
    data = np.empty((2, 90, 100), np.uint8)
    data[0], data[1] = 40, 200  # a flat image: the fill must continue it
    valid = rng.random((90, 100)) > 0.4
    valid[:, 70:] = False  # and a wide nodata band on the right
    out = fill_nodata(np.where(valid, data, 0).astype(np.uint8), valid, 12, 8, (127.5, 127.5))
    assert out.dtype == np.uint8
    # valid kept; invalid pixels among valid ones filled with the image's 40 / 200
    np.testing.assert_array_equal(out[:, :, :56], data[:, :, :56])
    # into the band the fill goes on from the edge, then towards the mid value given
    step_in = np.abs(out[:, :, 70:80].astype(int) - data[:, :, 70:80]).max(axis=(0, 1))
    assert step_in[0] <= 4 and (np.diff(step_in) >= 0).all()  # no wall at the edge
    assert (out[0, :, 99] > 40).all() and (out[1, :, 99] < 200).all()
    # beyond the reach of any valid pixel: the mid value given
    far = fill_nodata(data, np.zeros((90, 100), bool), 0, 0, (100.0, 7.0))
    assert (far[0] == 100).all() and (far[1] == 7).all()
    # NaN nodata in a float source
    floats = rng.random((3, 40, 50)).astype(np.float32)
    mask = rng.random((40, 50)) > 0.5
    floats[:, ~mask] = np.nan
    filled = fill_nodata(floats, mask, 4, 4, (0.5, 0.5, 0.5))
    assert np.isfinite(filled).all() and np.array_equal(filled[:, mask], floats[:, mask])
    assert filled.min() >= floats[:, mask].min() and filled.max() <= floats[:, mask].max()
    assert FILL_REACH % 4 == 0


def test_fill_nodata_does_not_depend_on_the_tile() -> None:
    """Two overlapping tiles (offsets on the model's 4 px grid, not on the fill's cells)
    give the same fill wherever both hold the valid pixels it comes from: the scene's
    grid, not the tile's, sets the cells, so tile-size invariance is kept."""
    from rsgan.pipelines.translate import FILL_REACH, fill_nodata

    rng = np.random.default_rng(1)
    scene = rng.integers(0, 256, (3, 400, 400), dtype=np.uint8)
    yy, xx = np.mgrid[0:400, 0:400]
    valid = (xx + 0.6 * yy) < 330  # a slanted nodata edge
    a = fill_nodata(scene[:, 0:300, 20:340], valid[0:300, 20:340], 0, 20, (127.5,) * 3)
    b = fill_nodata(scene[:, 68:400, 100:400], valid[68:400, 100:400], 68, 100, (127.5,) * 3)
    margin = 2 * FILL_REACH  # away from both tiles' edges
    rows, cols = slice(68 + margin, 300 - margin), slice(100 + margin, 340 - margin)
    in_a = a[:, rows.start : rows.stop, cols.start - 20 : cols.stop - 20]
    in_b = b[:, rows.start - 68 : rows.stop - 68, cols.start - 100 : cols.stop - 100]
    assert (~valid[rows, cols]).sum() > 1000  # the overlap holds much nodata
    np.testing.assert_array_equal(in_a, in_b)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_fill_nodata_upsampling_gives_the_per_pixel_values(
    monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """Tiles with many invalid pixels are filled by upsampling the cells over the tile
    (FILL_GATHER_SHARE); the values are the per-pixel bilinear ones to float rounding,
    whatever the tile's offset on the cells' grid."""
    from rsgan.pipelines import translate as translate_mod

    rng = np.random.default_rng(2)
    data = (rng.random((3, 150, 170)) * 250).astype(dtype)
    yy, xx = np.mgrid[0:150, 0:170]
    valid = (xx + 0.4 * yy) < 90 + 20 * np.sin(yy / 9.0)  # most of the tile invalid
    outs = []
    for share in (2.0, -1.0):  # every tile per pixel, then every tile upsampled
        monkeypatch.setattr(translate_mod, "FILL_GATHER_SHARE", share)
        outs.append(translate_mod.fill_nodata(data, valid, 36, 52, (127.5,) * 3))
    per_pixel, upsampled = (o.astype(np.float64) for o in outs)
    assert (~valid).mean() > 0.5
    np.testing.assert_array_equal(upsampled[:, valid], data[:, valid].astype(np.float64))
    tolerance = 1e-4 if dtype == "float32" else 1.0  # a rounding step at most
    np.testing.assert_allclose(upsampled, per_pixel, rtol=0, atol=tolerance)
    assert np.mean(upsampled != per_pixel) < (0.5 if dtype == "float32" else 0.001)


@pytest.mark.realdata
def test_the_fill_brings_the_pixels_next_to_nodata_closer_to_the_uncut_scene(
    shared_data: Path, make_raster: Callable[..., Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The bundled model, a real Joplin tile and the same tile with a nodata collar cut
    into it: the first valid pixels next to the collar come out closer to the uncut
    tile's with the pull-push fill than with the mid-grey the model saw before."""
    import rsgan.pipelines.translate as translate_mod

    with rasterio.open(shared_data / "xview2_joplin_prepost/pre/tile_1361-9136.tif") as ds:
        pixels = np.maximum(ds.read(), 1)  # real pixels off the nodata value
    cut = pixels.copy()
    yy, xx = np.mgrid[0 : pixels.shape[1], 0 : pixels.shape[2]]
    inside = (xx + 0.7 * yy) < 1100
    cut[:, ~inside] = 0
    whole = make_raster("whole.tif", data=pixels)
    collar = make_raster("collar.tif", data=cut, nodata=0)
    kwargs = {"tile": 512, "stats_memory_mb": 128, "progress": False}
    reference, _ = _read(translate_raster(whole, tmp_path / "r.tif", None, **kwargs))
    shrunk = inside.copy()
    for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
        shrunk &= np.roll(inside, shift, axis)
    rim = inside & ~shrunk  # the first valid pixel next to the collar

    def rim_error(name: str) -> float:
        out, _ = _read(translate_raster(collar, tmp_path / name, None, **kwargs))
        return float(np.abs(out.data.astype(float) - reference.data)[:, rim].mean())

    filled = rim_error("filled.tif")

    def mid_grey(data: np.ndarray, valid: np.ndarray, *_: object) -> np.ndarray:
        return np.where(valid, data, 128).astype(data.dtype)

    monkeypatch.setattr(translate_mod, "fill_nodata", mid_grey)
    grey = rim_error("grey.tif")
    print(f"first valid pixel next to the collar: {filled:.2f} DN filled, {grey:.2f} DN grey")
    assert filled < 0.9 * grey  # 4.98 against 6.11 DN when written


def test_tiles_without_a_valid_pixel_are_not_filled(
    make_raster: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fill runs only for tiles with valid and invalid pixels: a tile without a valid
    pixel is skipped anyway (only the first tile is translated), and filling it was the
    fill's worst case (55 ms for a 768 px 3-band tile)."""
    import rsgan.pipelines.translate as translate_mod

    data = np.random.default_rng(2).integers(1, 256, (3, 256, 256), dtype=np.uint8)
    data[:, :, 128:] = 0  # the right half nodata
    src = make_raster("half.tif", data=data, nodata=0)
    masks: list[np.ndarray] = []
    real = translate_mod.fill_nodata

    def counting(data: np.ndarray, valid: np.ndarray, *args: object) -> np.ndarray:
        masks.append(valid)
        return real(data, valid, *args)

    monkeypatch.setattr(translate_mod, "fill_nodata", counting)
    translate_raster(src, tmp_path / "o.tif", torch.nn.Identity(), tile=64, overlap=16,
                     stats_memory_mb=1, progress=False)  # fmt: skip
    assert masks and all(v.any() and not v.all() for v in masks)
    out, _ = _read(tmp_path / "o.tif")
    assert out.mask[:, :, 128:].all() and not out.mask[:, :, :128].any()


def test_override_keeps_the_imagery_metadata_domain(
    collar_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """The scene read through ``vrt://...?a_nodata=`` lost GDAL's ``IMAGERY`` domain
    (acquisition date, satellite), which the output keeps without the override; units
    and scales came through."""
    _, bare = collar_pair
    with rasterio.open(bare, "r+") as ds:
        ds.update_tags(ns="IMAGERY", SATELLITEID="S2A", ACQUISITIONDATETIME="2020-06-01")
        ds.units = ["DN"] * 3
        ds.scales = [0.5] * 3
    outputs = [
        translate_raster(bare, tmp_path / f"{i}.tif", torch.nn.Identity(), **kwargs, **FAST)
        for i, kwargs in enumerate([{}, {"nodata": 0}])
    ]
    with rasterio.open(outputs[0]) as plain, rasterio.open(outputs[1]) as overridden:
        assert overridden.tags(ns="IMAGERY") == plain.tags(ns="IMAGERY")
        assert plain.tags(ns="IMAGERY")["SATELLITEID"] == "S2A"
        assert (overridden.units, overridden.scales) == (plain.units, plain.scales)
        assert overridden.nodata == 0 and plain.nodata is None
