"""Fuzzing: parsers with hypothesis, rasters by mutating the bytes of small valid GeoTIFFs.

The rule is the same everywhere: any input gives a result or an :class:`RsganError`, never
another exception, and never a crashed interpreter. Mutated rasters are opened in a child
process (GDAL bugs can segfault), which reports one line per file; a file that takes the
child down is recorded as a crash and the child restarts after it.

CI runs the ``ci`` hypothesis profile (40 examples per property) and 48 mutated rasters;
``-m slow`` adds 1500 more mutants.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsgan.cli._options import parse_bands
from rsgan.cli.main import cli
from rsgan.errors import BandError, ConfigError, RsganError, TileSpecError
from rsgan.io import check_bands
from rsgan.pipelines.catalog import output_path, read_catalog
from rsgan.tiling import TileSpec, tile_windows
from tests.conftest import placed_raster

from .conftest import valid_scene

# function-scoped fixtures (tally, tmp_path) are shared by a test's examples on purpose
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _examples() -> int:
    return settings.default.max_examples


# --------------------------------------------------------------------------- parsers


@FUZZ
@given(text=st.text(st.sampled_from("0123456789,- +abx\t.") | st.characters(), max_size=30))
def test_parse_bands_gives_positive_unique_ints_or_a_config_error(text, tally) -> None:
    tally.add("parse_bands (--bands)", "fuzzed text")
    try:
        bands = parse_bands(text)
    except ConfigError as exc:
        assert repr(text) in str(exc)  # the message quotes the whole value
        return
    if bands is not None:
        assert all(isinstance(b, int) and b >= 1 for b in bands)
        assert len(set(bands)) == len(bands)


@FUZZ
@given(bands=st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True))
def test_parse_bands_round_trips(bands, tally) -> None:
    tally.add("parse_bands (--bands)", "valid list round trip")
    assert parse_bands(",".join(map(str, bands))) == tuple(bands)


VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
)


@FUZZ
@given(count=st.integers(1, 16), bands=st.none() | st.lists(VALUES, max_size=5))
def test_check_bands_returns_a_valid_selection_or_a_band_error(count, bands, tally) -> None:
    tally.add("check_bands", "fuzzed band list")
    try:
        selected = check_bands(count, bands, path="scene.tif")
    except BandError:
        return
    assert all(1 <= b <= count for b in selected)


@FUZZ
@given(size=VALUES, overlap=VALUES, edge=st.sampled_from(["shift", "pad", "", "PAD", None, 3]))
def test_tile_spec_accepts_only_what_it_can_tile(size, overlap, edge, tally) -> None:
    tally.add("TileSpec", "fuzzed size/overlap/edge")
    try:
        spec = TileSpec(size, overlap, edge)
    except TileSpecError:
        return
    assert 0 <= spec.overlap < spec.size


@FUZZ
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    size=st.integers(1, 64),
    data=st.data(),
    edge=st.sampled_from(["shift", "pad"]),
)
def test_tile_windows_cover_the_scene_or_explain_why_not(
    width, height, size, data, edge, tally
) -> None:
    tally.add("tile_windows", "fuzzed grid")
    spec = TileSpec(size, data.draw(st.integers(0, size - 1)), edge)
    try:
        windows = tile_windows(width, height, spec)
    except TileSpecError:
        assert edge == "shift" and min(width, height) < size
        return
    covered = np.zeros((height, width), bool)
    for w in windows:
        r, c = int(w.row_off), int(w.col_off)
        covered[max(r, 0) : r + int(w.height), max(c, 0) : c + int(w.width)] = True
    assert covered.all()


@FUZZ
@given(
    size=st.floats(allow_nan=True, allow_infinity=True),
    overlap=st.floats(allow_nan=True, allow_infinity=True),
)
def test_tile_spec_from_crs_units_gives_a_spec_or_a_tile_spec_error(size, overlap, tally) -> None:
    tally.add("TileSpec.from_crs_units", "fuzzed size/overlap (metres)")
    try:
        spec = TileSpec.from_crs_units(size, overlap, Affine(0.5, 0, 0, 0, -0.5, 0))
    except TileSpecError:
        return
    assert math.isfinite(size) and spec.size >= 1


# catalog paths: anything a CSV cell can hold, traversal attempts included
PATH_TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "a", "b.tif", "", "~", " ", "\\", "c:"]), max_size=6).map(
        "/".join
    ),
)


@FUZZ
@given(cells=st.lists(PATH_TEXT, min_size=1, max_size=6))
def test_catalog_rows_never_escape_the_output_folder(cells, tmp_path, tally) -> None:
    tally.add("read_catalog (CSV rows)", "fuzzed path cells", len(cells))
    catalog = tmp_path / "rows.csv"
    pd.DataFrame({"path": cells, "n": range(len(cells))}).to_csv(catalog, index=False)
    out = tmp_path / "out"
    try:
        scenes = read_catalog(catalog)
    except RsganError:
        return
    for scene in scenes:
        if scene.error is None:
            target = output_path(out, scene.name)
            assert target.resolve().parent == out.resolve()


@FUZZ
@given(item_id=PATH_TEXT.filter(bool))
def test_stac_item_ids_never_escape_the_output_folder(item_id, tmp_path, tally) -> None:
    tally.add("read_catalog (STAC ids)", "fuzzed item id")
    catalog = tmp_path / "items.json"
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {"image": {"href": "scene.tif", "type": "image/tiff"}},
    }
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    try:
        scenes = read_catalog(catalog)
    except RsganError:
        return
    for scene in scenes:
        if scene.error is None:
            target = output_path(tmp_path / "out", scene.name)
            assert target.resolve().parent == (tmp_path / "out").resolve()


OPTION_VALUES = st.sampled_from(
    ["0", "-1", "1", "3", "4", "17", "64", "1e3", "nan", "", "x", "99999999999", "1,2", "2,2"]
)


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory) -> tuple[Path, Path]:
    from .conftest import tiny_checkpoint

    root = tmp_path_factory.mktemp("cli_fuzz")
    return valid_scene(root / "scene.tif", size=32), tiny_checkpoint(root / "m.safetensors")


@FUZZ
@given(
    tile=OPTION_VALUES,
    overlap=OPTION_VALUES,
    bands=OPTION_VALUES,
    batch=OPTION_VALUES,
    blend=st.sampled_from(["hann", "linear", "none", "cubic", ""]),
)
def test_cli_translate_option_values_never_crash(
    cli_inputs, tile, overlap, bands, batch, blend, tmp_path, tally
) -> None:
    tally.add("rsgan translate options", "fuzzed option values")
    scene, model = cli_inputs
    out = tmp_path / "o.tif"
    args = ["translate", scene, out, "--model", model, "-q", "--overwrite", "--device", "cpu"]
    args += ["--tile", tile, "--overlap", overlap, "--bands", bands, "--batch-size", batch]
    args += ["--blend", blend]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exit_code == 0:
        with rasterio.open(out) as dst:
            assert dst.shape == (32, 32)
        return
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error:"), result.output


# --------------------------------------------------------------------------- mutated rasters

# The child: for each file, describe it, compute statistics and translate it with an
# identity net; print one JSON line per file ("ok", "rsgan" + error class, or "other" +
# exception class). It flushes a "start" line first, so the parent knows which file a crash
# came from.
_CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    import torch
    from rsgan.errors import RsganError
    from rsgan.io import compute_band_stats, describe
    from rsgan.pipelines.translate import translate_raster

    MAX_PX = 2_000_000  # a mutated header may declare a giant raster: do not translate it

    def check(path):
        info = describe(path)
        compute_band_stats(path, max_windows=4, window_size=64)
        if info.width * info.height > MAX_PX:
            return "ok (large: translate skipped)"
        out = path.with_name(path.stem + "_out.tif")
        try:
            translate_raster(path, out, torch.nn.Identity(), tile=32, overlap=8,
                             progress=False, device="cpu")
        except BaseException:
            leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(
                (out.name, "." + out.name))]
            if leftovers:
                raise AssertionError(f"failed translate left {leftovers}")
            raise
        out.unlink()
        return "ok"

    for line in sys.stdin:
        path = Path(line.strip())
        print(json.dumps({"start": str(path)}), flush=True)
        try:
            result = {"outcome": check(path)}
        except RsganError as exc:
            result = {"outcome": "rsgan", "error": type(exc).__name__, "message": str(exc)}
        except BaseException as exc:
            result = {"outcome": "other", "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps({"done": str(path), **result}), flush=True)
    """
)


def _mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip bytes in the header, flip bytes anywhere, truncate, or zero a run."""
    data = bytearray(raw)
    kind = rng.integers(4)
    if kind == 0:  # the IFD and tag values live near the start of a small TIFF
        for _ in range(rng.integers(1, 6)):
            data[rng.integers(0, min(len(data), 512))] = rng.integers(256)
    elif kind == 1:
        for _ in range(rng.integers(1, 20)):
            data[rng.integers(0, len(data))] = rng.integers(256)
    elif kind == 2:
        data = data[: rng.integers(8, len(data))]
    else:
        start = rng.integers(0, len(data))
        data[start : start + rng.integers(1, 64)] = b"\x00" * len(data[start : start + 64])
    return bytes(data)


def _seeds(folder: Path) -> list[bytes]:
    """Small valid GeoTIFFs of several layouts: striped, tiled+deflate, float+nodata,
    placed by ground control points, placed by RPCs."""
    rng = np.random.default_rng(0)
    striped = valid_scene(folder / "striped.tif", size=40)
    tiled = folder / "tiled.tif"
    floats = folder / "float.tif"
    profile = {
        "driver": "GTiff",
        "width": 48,
        "height": 48,
        "crs": "EPSG:32614",
        "transform": Affine(2, 0, 500000, 0, -2, 5200000),
    }
    with rasterio.open(
        tiled, "w", count=3, dtype="uint16", tiled=True, blockxsize=16, blockysize=16,
        compress="deflate", **profile,
    ) as dst:  # fmt: skip
        dst.write(rng.integers(0, 4000, size=(3, 48, 48), dtype=np.uint16))
    with rasterio.open(floats, "w", count=2, dtype="float32", nodata=-9999, **profile) as dst:
        dst.write(rng.uniform(0, 1, size=(2, 48, 48)).astype(np.float32))
    # placed by ground control points / RPCs instead of a geotransform
    gcps = placed_raster(folder / "gcps.tif", width=40, height=36)
    rpcs = placed_raster(folder / "rpcs.tif", width=40, height=36, rpcs=True)
    return [p.read_bytes() for p in (striped, tiled, floats, gcps, rpcs)]


def _run_children(files: list[Path]) -> dict[str, dict[str, str]]:
    """Run the child over ``files``; restart it after a crash. Returns results by path."""
    results: dict[str, dict[str, str]] = {}
    pending = list(files)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    while pending:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input="".join(f"{p}\n" for p in pending),
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record.pop("done")] = record
                started = None
        if started is not None:  # the child died on this file
            results[started] = {"outcome": "crash", "error": f"exit {proc.returncode}"}
        elif proc.returncode != 0:
            raise AssertionError(f"the fuzz child failed before its first file: {proc.stderr}")
        pending = [p for p in pending if str(p) not in results]
    return results


def _fuzz_rasters(tmp_path: Path, n: int, seed: int, tally) -> None:
    seeds = _seeds(tmp_path)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        path = tmp_path / "mutants" / f"m{i:05d}" / "scene.tif"
        path.parent.mkdir(parents=True)
        path.write_bytes(_mutate(seeds[i % len(seeds)], rng))
        files.append(path)
    results = _run_children(files)
    tally.add("describe + compute_band_stats + translate_raster", "mutated GeoTIFF", n)
    outcomes = pd.Series([r["outcome"].split(" ")[0] for r in results.values()])
    summary = outcomes.value_counts().to_dict()
    target = os.environ.get("RSGAN_RELIABILITY_FUZZ_JSON")  # keep the largest run's counts
    if target and (
        not Path(target).exists() or json.loads(Path(target).read_text())["mutants"] < n
    ):
        Path(target).write_text(json.dumps({"mutants": n, "seed": seed, **summary}) + "\n")
    bad = {p: r for p, r in results.items() if r["outcome"] in ("other", "crash")}
    assert not bad, f"{len(bad)} of {n} mutants escaped rsgan's errors: {bad}"
    assert len(results) == n


def test_mutated_geotiffs_give_results_or_rsgan_errors(tmp_path, tally) -> None:
    _fuzz_rasters(tmp_path, 48, seed=1, tally=tally)


@pytest.mark.slow
def test_many_mutated_geotiffs_give_results_or_rsgan_errors(tmp_path, tally) -> None:
    _fuzz_rasters(tmp_path, 1500, seed=2, tally=tally)


def test_identity_child_really_translates(tmp_path) -> None:
    """The child's "ok" is real: an unmutated seed translates and the output is removed."""
    seeds = _seeds(tmp_path)
    path = tmp_path / "plain" / "scene.tif"
    path.parent.mkdir()
    path.write_bytes(seeds[1])
    results = _run_children([path])
    assert results == {str(path): {"outcome": "ok"}}
    assert sorted(p.name for p in path.parent.iterdir()) == ["scene.tif"]
