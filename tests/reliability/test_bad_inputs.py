"""Every public function and CLI command against the bad and odd inputs of the corpus.

Bad inputs must give an :class:`RsganError` whose message names the file, and leave no
output behind; odd but valid inputs (1x1, NaN/inf, nodata equal to a real value, no CRS, a
sparse 100000 x 100000 raster) must give a correct result.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rsgan.checkpoint import load_model
from rsgan.cli.main import cli
from rsgan.data import ChipDataset
from rsgan.errors import (
    BandError,
    CatalogError,
    CheckpointError,
    ModelError,
    RsganError,
    TileSpecError,
)
from rsgan.io import NotGeoreferencedWarning, compute_band_stats, describe
from rsgan.pipelines.augment import augment_segmentation_dataset
from rsgan.pipelines.catalog import translate_catalog
from rsgan.pipelines.translate import translate_raster
from rsgan.tiling import TileSpec, chip_index, export_chips
from rsgan.training import TrainOptions, train_dcgan

from .conftest import BAD_CHECKPOINTS, BAD_RASTERS, HUGE_RASTER, HUGE_SIDE, ODD_RASTERS

IDENTITY = torch.nn.Identity()
FAST = {"tile": 32, "overlap": 8, "progress": False}
# The header of truncated.tif is whole: functions that read headers only may succeed on it.
HEADER_ONLY_OK = {"truncated.tif"}


def _names_file(exc: BaseException, path: Path) -> None:
    assert path.name in str(exc), f"message does not name {path.name}: {exc}"


def _bad_raster(entry: str, corpus: dict[str, Path], name: str, tally) -> Path:
    tally.add(entry, "bad raster")
    return corpus[name]


# --------------------------------------------------------------------------- bad rasters


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_describe_and_chip_index_refuse_bad_rasters(corpus, name, tally) -> None:
    path = corpus[name]
    for entry, call in (
        ("describe", lambda: describe(path)),
        ("chip_index", lambda: chip_index(path, TileSpec(16, 0))),
    ):
        tally.add(entry, "bad raster")
        if name in HEADER_ONLY_OK:
            call()  # header-only: no pixel is read, so nothing is wrong yet
            continue
        with pytest.raises(RsganError) as err:
            call()
        _names_file(err.value, path)


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_pixel_readers_refuse_bad_rasters(corpus, name, tally) -> None:
    path = _bad_raster("compute_band_stats", corpus, name, tally)
    with pytest.raises(RsganError) as err:
        compute_band_stats(path)
    _names_file(err.value, path)


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_chip_dataset_refuses_bad_rasters(corpus, name, tally) -> None:
    path = _bad_raster("ChipDataset", corpus, name, tally)
    with pytest.raises(RsganError) as err:
        dataset = ChipDataset([path], size=16)
        dataset[0]  # a truncated file fails on its first read
    _names_file(err.value, path)


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_translate_raster_refuses_bad_rasters(corpus, name, tmp_path, snapshot, tally) -> None:
    path = _bad_raster("translate_raster", corpus, name, tally)
    new = snapshot(tmp_path)
    with pytest.raises(RsganError) as err:
        translate_raster(path, tmp_path / "out.tif", IDENTITY, **FAST)
    _names_file(err.value, path)
    assert new() == set()


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_export_chips_refuses_bad_rasters(corpus, name, tmp_path, snapshot, tally) -> None:
    path = _bad_raster("export_chips", corpus, name, tally)
    new = snapshot(tmp_path)
    with pytest.raises(RsganError) as err:
        export_chips([path], tmp_path / "chips", TileSpec(16, 0), progress=False)
    _names_file(err.value, path)
    assert new() == set()


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_train_dcgan_refuses_bad_rasters_before_writing(corpus, name, tmp_path, tally) -> None:
    path = _bad_raster("train_dcgan", corpus, name, tally)
    out = tmp_path / "run"
    options = TrainOptions(steps=1, batch_size=1, device="cpu", progress=False)
    with pytest.raises(RsganError) as err:
        train_dcgan([path], out, config={"image_size": 64, "ngf": 4, "ndf": 4}, options=options)
    _names_file(err.value, path)
    assert not (out / "model.safetensors").exists()


def test_translate_catalog_records_bad_rows_and_writes_nothing_for_them(
    corpus, tmp_path, tally
) -> None:
    bad = [corpus[n] for n in BAD_RASTERS]
    tally.add("translate_catalog", "bad raster row", len(bad))
    out = tmp_path / "out"
    manifest = translate_catalog([corpus["good.tif"], *bad], out, IDENTITY, workers=0, **FAST)
    by_source = manifest.set_index(manifest.source.map(lambda s: Path(s).name))
    assert by_source.loc["good.tif", "status"] == "done"
    for path in bad:
        row = by_source.loc[path.name]
        assert row.status == "failed", row
        assert path.name in row.error
        assert not Path(row.output).exists()
    written = {p.name for p in out.iterdir()}
    assert written == {"manifest.parquet", "good_translated.tif", "good_translated.json"}


def test_augment_lists_bad_images_and_writes_only_good_pairs(corpus, tmp_path, tally) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    names = [
        n for n in BAD_RASTERS if n.endswith(".tif") and n not in ("folder.tif", "missing.tif")
    ]
    tally.add("augment_segmentation_dataset", "bad image", len(names))
    mask = np.ones((1, 64, 64), np.uint8)
    for name in ["good.tif", *names]:
        stem = Path(name).stem
        (images / name).write_bytes(corpus[name].read_bytes())
        with rasterio.open(corpus["good.tif"]) as src:
            profile = src.profile | {"count": 1}
        with rasterio.open(masks / f"{stem}.tif", "w", **profile) as dst:
            dst.write(mask)
    out = tmp_path / "aug"
    with pytest.raises(RsganError) as err:
        augment_segmentation_dataset(images, masks, IDENTITY, out, **FAST)
    for name in names:
        assert name in str(err.value)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["good.tif"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["good.tif"]


# --------------------------------------------------------------------------- odd rasters


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(masked=True)


@pytest.mark.parametrize("name", ODD_RASTERS)
def test_identity_translation_of_odd_rasters_is_exact(corpus, name, tmp_path, tally) -> None:
    tally.add("translate_raster", "odd raster (correct result)")
    src = corpus[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        out = translate_raster(src, tmp_path / "out.tif", IDENTITY, **FAST)
    source, result = _read(src), _read(out)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
    # a pixel is valid when every band is finite and not nodata (GDAL's dataset mask)
    valid = (~np.ma.getmaskarray(source) & np.isfinite(source.filled(0))).all(axis=0)
    out_valid = (~np.ma.getmaskarray(result) & np.isfinite(result.filled(0))).all(axis=0)
    np.testing.assert_array_equal(out_valid, valid)
    np.testing.assert_allclose(
        result.filled(0)[:, valid].astype(float),
        source.filled(0)[:, valid].astype(float),
        atol=1e-6,
    )


def test_nan_and_inf_are_left_out_of_band_statistics(corpus, tally) -> None:
    tally.add("compute_band_stats", "odd raster (correct result)")
    stats = compute_band_stats(corpus["nan_inf.tif"])
    with rasterio.open(corpus["nan_inf.tif"]) as src:
        data = src.read()
    for band in range(3):
        finite = data[band][np.isfinite(data[band])]
        assert np.isfinite(stats.min[band]) and np.isfinite(stats.max[band])
        assert stats.min[band] == pytest.approx(float(finite.min()))
        assert stats.max[band] == pytest.approx(float(finite.max()))


def test_nodata_equal_to_a_real_value_is_treated_as_nodata(corpus, tmp_path, tally) -> None:
    tally.add("export_chips", "odd raster (correct result)")
    index = export_chips(
        [corpus["nodata_is_valid.tif"]], tmp_path / "chips", TileSpec(16, 0), progress=False
    )
    assert len(index) == 16
    with rasterio.open(tmp_path / "chips" / index.chip.iloc[0]) as chip:
        assert chip.nodata == 0
        assert not chip.read_masks(1)[10:, 10:].any()  # the zero field is nodata, as declared


def test_one_pixel_raster_gets_a_clear_tiling_error_or_pads(corpus, tmp_path, tally) -> None:
    tally.add("chip_index", "odd raster (correct result)", 2)
    path = corpus["one_pixel.tif"]
    with pytest.raises(TileSpecError, match="pad"):
        chip_index(path, TileSpec(16, 0))
    index = chip_index(path, TileSpec(16, 0, "pad"))
    assert len(index) == 1


def test_scene_smaller_than_the_tile_error_names_the_scene(corpus, tally) -> None:
    tally.add("chip_index", "odd raster (error names the file)")
    path = corpus["one_pixel.tif"]
    with pytest.raises(TileSpecError) as err:
        chip_index(path, TileSpec(16, 0))
    _names_file(err.value, path)


def test_raster_without_crs_warns_and_keeps_pixel_coordinates(corpus, tmp_path, tally) -> None:
    tally.add("export_chips", "odd raster (correct result)")
    with pytest.warns(NotGeoreferencedWarning):
        translate_raster(corpus["no_crs.tif"], tmp_path / "o.tif", IDENTITY, **FAST)
    index = export_chips([corpus["no_crs.tif"]], tmp_path / "c", TileSpec(16, 0), progress=False)
    with rasterio.open(tmp_path / "c" / index.chip.iloc[-1]) as chip:
        assert chip.crs is None
        assert chip.transform.c == 48 and chip.transform.f == 48  # pixel offsets


def test_huge_sparse_raster_is_described_and_sampled_without_reading_it(corpus, tally) -> None:
    path = corpus[HUGE_RASTER]
    tally.add("describe", "huge sparse raster")
    info = describe(path)
    assert (info.width, info.height) == (HUGE_SIDE, HUGE_SIDE)
    tally.add("compute_band_stats", "huge sparse raster")
    stats = compute_band_stats(path, max_windows=16, window_size=64)
    assert stats.n_pixels == 16 * 64 * 64  # sampled windows only; empty blocks read as 0
    assert stats.max == (0.0,)


def test_chip_index_of_a_huge_raster_without_nodata_reads_no_pixels(
    corpus, monkeypatch, tally
) -> None:
    """A uint8 raster without nodata, mask or alpha is valid everywhere by definition; its
    100000 x 100000 grid must not be read (that took 25 s of a sparse file here, and reads
    4096-row strips of 400 MB)."""
    import rsgan.tiling

    def no_read(*args, **kwargs):
        raise AssertionError("chip_index read pixels of a raster that cannot have nodata")

    monkeypatch.setattr(rsgan.tiling, "read_valid_mask", no_read)
    tally.add("chip_index", "huge sparse raster")
    index = chip_index(corpus[HUGE_RASTER], TileSpec(4096, 0))
    assert len(index) == 25 * 25  # ceil(100000 / 4096) squared, shift edge
    assert (index.valid_fraction == 1.0).all()


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", BAD_CHECKPOINTS)
def test_load_model_refuses_bad_checkpoints_without_running_code(checkpoints, name, tally) -> None:
    tally.add("load_model", "bad checkpoint")
    path = checkpoints[name]
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    _names_file(err.value, path)
    assert not checkpoints["marker"].exists(), "a pickle ran code while loading"


@pytest.mark.parametrize("name", BAD_CHECKPOINTS)
def test_translate_raster_refuses_bad_checkpoints(
    corpus, checkpoints, name, tmp_path, snapshot, tally
) -> None:
    tally.add("translate_raster", "bad checkpoint")
    new = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as err:
        translate_raster(corpus["good.tif"], tmp_path / "o.tif", checkpoints[name], **FAST)
    _names_file(err.value, checkpoints[name])
    assert new() == set()
    assert not checkpoints["marker"].exists()


def test_checkpoint_with_other_band_count_is_refused(corpus, checkpoints, tmp_path, tally) -> None:
    tally.add("translate_raster", "bad checkpoint")
    with pytest.raises((BandError, ModelError)) as err:
        translate_raster(corpus["good.tif"], tmp_path / "o.tif", checkpoints["four_bands"], **FAST)
    assert "good.tif" in str(err.value) and "4" in str(err.value)
    assert not (tmp_path / "o.tif").exists()


# --------------------------------------------------------------------------- catalogs


def _catalogs(root: Path, corpus: dict[str, Path]) -> dict[str, Path]:
    """Catalogs that cannot be read at all (each must raise CatalogError)."""
    root.mkdir()
    out = {}
    out["missing_column"] = root / "nocol.csv"
    pd.DataFrame({"file": [str(corpus["good.tif"])]}).to_csv(out["missing_column"], index=False)
    out["empty_csv"] = root / "empty.csv"
    out["empty_csv"].write_text("")
    out["header_only"] = root / "header.csv"
    out["header_only"].write_text("path\n")
    out["binary_csv"] = root / "binary.csv"
    out["binary_csv"].write_bytes(b"\x00\xff\xfe" * 50)
    out["bad_geojson"] = root / "bad.geojson"
    out["bad_geojson"].write_text('{"type": "FeatureCollection", "features": [')
    out["bad_gpkg"] = root / "bad.gpkg"
    out["bad_gpkg"].write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    out["bad_parquet"] = root / "bad.parquet"
    out["bad_parquet"].write_bytes(b"PAR1 not really")
    out["stac_no_items"] = root / "stac.json"
    out["stac_no_items"].write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    out["missing_file"] = root / "nothing.csv"
    out["empty_folder"] = root / "empty_folder"
    out["empty_folder"].mkdir()
    out["glob_no_match"] = root / "nothing_*.tif"
    return out


CATALOG_CASES = (
    "missing_column",
    "empty_csv",
    "header_only",
    "binary_csv",
    "bad_geojson",
    "bad_gpkg",
    "bad_parquet",
    "stac_no_items",
    "missing_file",
    "empty_folder",
    "glob_no_match",
)


@pytest.fixture(scope="module")
def bad_catalogs(tmp_path_factory, corpus) -> dict[str, Path]:
    return _catalogs(tmp_path_factory.mktemp("catalogs") / "c", corpus)


@pytest.mark.parametrize("case", CATALOG_CASES)
def test_unreadable_catalogs_are_catalog_errors(bad_catalogs, case, tmp_path, tally) -> None:
    tally.add("translate_catalog", "bad catalog")
    catalog = bad_catalogs[case]
    out = tmp_path / "out"
    with pytest.raises(CatalogError) as err:
        translate_catalog(catalog, out, IDENTITY, workers=0, **FAST)
    assert catalog.name in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_catalog_rows_with_bad_paths_fail_alone(corpus, tmp_path, tally) -> None:
    rows = ["", "does_not_exist.tif", str(corpus["text.tif"]), str(tmp_path), "   "]
    tally.add("translate_catalog", "bad catalog row", len(rows))
    catalog = tmp_path / "rows.csv"
    paths = [str(corpus["good.tif"]), *rows]
    pd.DataFrame({"path": paths, "id": range(len(paths))}).to_csv(catalog, index=False)
    manifest = translate_catalog(catalog, tmp_path / "out", IDENTITY, workers=0, **FAST)
    assert manifest.status.tolist() == ["done"] + ["failed"] * len(rows)
    for error in manifest.error.iloc[1:]:
        assert "rows.csv" in error or "does_not_exist" in error or "text.tif" in error, error


# --------------------------------------------------------------------------- CLI


def _one_line_error(result, *names: str) -> str:
    """rsgan's errors: one ``Error:`` line, exit 1. click's own usage errors (exit 2) add
    a usage line and a hint before the ``Error:`` line; no traceback in either."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    if result.exit_code == 2:
        assert lines[0].startswith("Usage:") and len(lines) == 3, result.output
        lines = lines[-1:]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error:"), lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def _invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("name", BAD_RASTERS)
def test_cli_translate_chips_and_demo_refuse_bad_rasters(
    corpus, checkpoints, name, tmp_path, snapshot, tally
) -> None:
    path = corpus[name]
    new = snapshot(tmp_path)
    model = checkpoints["good"]
    runs = {
        "rsgan translate": ("translate", path, tmp_path / "o.tif", "--model", model, "-q"),
        "rsgan chips": ("chips", path, "--out", tmp_path / "chips", "--size", "16", "-q"),
    }
    for entry, args in runs.items():
        tally.add(entry, "bad raster")
        _one_line_error(_invoke(*args), name)
    assert new() == set(), "a failed command left files behind"


@pytest.mark.parametrize(
    "name",
    # click refuses the folder before run_demo runs
    BAD_RASTERS,
)
def test_cli_demo_refuses_bad_scenes_and_leaves_nothing(
    corpus, checkpoints, name, tmp_path, tally
) -> None:
    tally.add("rsgan demo", "bad raster")
    out = tmp_path / "demo"
    result = _invoke("demo", "--scene", corpus[name], "--out", out, "--model", checkpoints["good"])
    _one_line_error(result, name)
    assert not out.exists(), "the failed demo left its output folder behind"


@pytest.mark.parametrize("name", BAD_CHECKPOINTS)
def test_cli_translate_refuses_bad_checkpoints(corpus, checkpoints, name, tmp_path, tally) -> None:
    tally.add("rsgan translate", "bad checkpoint")
    path = checkpoints[name]
    result = _invoke("translate", corpus["good.tif"], tmp_path / "o.tif", "--model", path, "-q")
    _one_line_error(result, path.name)
    assert not (tmp_path / "o.tif").exists()
    assert not checkpoints["marker"].exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--tile", "0"),
        ("--tile", "-5"),
        ("--overlap", "-1"),
        ("--overlap", "40", "--tile", "32"),
        ("--bands", "0"),
        ("--bands", "1,1"),
        ("--bands", "9"),
        ("--bands", "a,b"),
        ("--batch-size", "0"),
        ("--stats-memory-mb", "0"),
        ("--stats-memory-mb", "-3"),
        ("--stats-memory-mb", "lots"),
        ("--dtype", "complex1024"),
        ("--dtype", "foo"),
        ("--device", "tpu:7"),
    ],
    ids=lambda a: " ".join(a),
)
def test_cli_translate_refuses_bad_option_values(
    corpus, checkpoints, args, tmp_path, tally
) -> None:
    tally.add("rsgan translate", "bad option value")
    out = tmp_path / "o.tif"
    result = _invoke(
        "translate", corpus["good.tif"], out, "--model", checkpoints["good"], "-q", *args
    )
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_batch_reports_bad_rows_and_exits_3(corpus, checkpoints, tmp_path, tally) -> None:
    """Every row bad, but the run itself worked (manifest written): 3, not 1 (an error)."""
    bad = [corpus[n] for n in BAD_RASTERS]
    tally.add("rsgan batch", "bad raster row", len(bad))
    catalog = tmp_path / "c.csv"
    pd.DataFrame({"path": [str(p) for p in bad]}).to_csv(catalog, index=False)
    out = tmp_path / "out"
    result = _invoke(
        "batch", catalog, out, "--model", checkpoints["good"], "--workers", "0", "-q",
        "--tile", "32", "--overlap", "8",
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Error:" not in result.output and "Traceback" not in result.output
    for path in bad:
        assert path.stem in result.output
    assert {p.name for p in out.iterdir()} == {"manifest.parquet"}


@pytest.mark.parametrize("case", CATALOG_CASES)
def test_cli_batch_refuses_unreadable_catalogs(
    bad_catalogs, checkpoints, case, tmp_path, tally
) -> None:
    tally.add("rsgan batch", "bad catalog")
    catalog = bad_catalogs[case]
    result = _invoke(
        "batch", catalog, tmp_path / "out", "--workers", "0", "-q", "--model", checkpoints["good"]
    )
    _one_line_error(result, catalog.name)


def test_real_subprocess_errors_are_one_line_without_traceback(
    corpus, checkpoints, tmp_path, tally
) -> None:
    """The installed ``rsgan`` script, as a user runs it (a sample: subprocesses are slow)."""
    cases = [
        ("translate", corpus["empty.tif"], tmp_path / "o.tif", "--model", checkpoints["good"]),
        ("translate", corpus["good.tif"], tmp_path / "o.tif", "--model", checkpoints["pickle_st"]),
        ("chips", corpus["text.tif"], "--out", tmp_path / "c"),
    ]
    tally.add("rsgan (subprocess)", "bad raster or checkpoint", len(cases))
    for args in cases:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("rsgan")), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:"), proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- train, generate, info

TINY_DCGAN = ("--size", "64", "--ngf", "4", "--ndf", "4", "--nz", "8", "--steps", "1")


@pytest.mark.parametrize("name", BAD_RASTERS)  # truncated.tif: finding 12, fixed
def test_cli_info_and_train_refuse_bad_rasters(
    corpus, checkpoints, name, tmp_path, snapshot, tally
) -> None:
    path, good = corpus[name], corpus["good.tif"]
    new = snapshot(tmp_path)
    runs = {
        "rsgan train dcgan": (
            "train", "dcgan", path, "--out", tmp_path / "run", *TINY_DCGAN,
            "--batch-size", "1", "--device", "cpu", "-q",
        ),
        "rsgan train cyclegan": (
            "train", "cyclegan", "--domain-a", good, "--domain-b", path,
            "--out", tmp_path / "cyc", "--steps", "1", "--tile", "32", "--device", "cpu", "-q",
        ),
    }  # fmt: skip
    if name != "truncated.tif":  # its header is whole: info describes it
        runs["rsgan info"] = ("info", path)
    for entry, args in runs.items():
        tally.add(entry, "bad raster")
        _one_line_error(_invoke(*args), name)
    assert new() == set(), "a failed command left files behind"


@pytest.mark.parametrize("name", BAD_CHECKPOINTS)
def test_cli_info_and_generate_refuse_bad_checkpoints(
    checkpoints, name, tmp_path, snapshot, tally
) -> None:
    path = checkpoints[name]
    new = snapshot(tmp_path)
    runs = {"rsgan generate": ("generate", path, "--n", "2", "--out", tmp_path / "gen")}
    if name != "other_arch":  # info reads the metadata only, which is whole
        runs["rsgan info"] = ("info", path)
    for entry, args in runs.items():
        tally.add(entry, "bad checkpoint")
        _one_line_error(_invoke(*args), path.name)
    assert new() == set()
    assert not checkpoints["marker"].exists()


def test_cli_generate_refuses_a_cyclegan_checkpoint(checkpoints, tmp_path, tally) -> None:
    tally.add("rsgan generate", "checkpoint of another kind")
    result = _invoke("generate", checkpoints["good"], "--n", "2", "--out", tmp_path / "gen")
    _one_line_error(result, checkpoints["good"].name)
    assert not (tmp_path / "gen").exists()
