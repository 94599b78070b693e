"""translate_raster: exactness with an identity model, metadata, nodata, COG, failures."""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import make_gate, mosaic_vrt, placed_raster
from rasterio.enums import ColorInterp
from torch import nn

import rsgan
from rsgan import checkpoint as checkpoint_mod
from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.errors import (
    BandError,
    CheckpointError,
    ConfigError,
    ModelError,
    OutputExistsError,
    RasterWriteError,
    TileSpecError,
)
from rsgan.io import Normalizer, NotGeoreferencedWarning
from rsgan.models import CycleGANConfig, build_nets
from rsgan.models.cyclegan import ResnetGenerator
from rsgan.models.layers import SceneInstanceNorm2d, norm_layers
from rsgan.pipelines import translate as translate_mod
from rsgan.pipelines.translate import translate_raster


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "rsgan-tmp" in p.name)


# --------------------------------------------------------------------------- identity


CASES = [
    # dtype, bands, width, height, overlap, blend
    ("uint8", 1, 97, 61, 0, "hann"),
    ("uint8", 3, 130, 75, 32, "linear"),
    ("uint8", 4, 64, 129, 64, "none"),
    ("uint8", 13, 71, 71, 32, "hann"),
    ("uint16", 1, 150, 33, 64, "linear"),
    ("uint16", 3, 99, 101, 32, "none"),
    ("uint16", 4, 45, 160, 0, "hann"),
    ("uint16", 13, 80, 48, 64, "hann"),
    ("float32", 1, 121, 67, 32, "hann"),
    ("float32", 3, 66, 90, 64, "linear"),
    ("float32", 4, 101, 37, 0, "none"),
    ("float32", 13, 53, 77, 32, "linear"),
]


@pytest.mark.parametrize(("dtype", "count", "width", "height", "overlap", "blend"), CASES)
def test_identity_reproduces_input_and_metadata(
    make_raster, tmp_path, dtype, count, width, height, overlap, blend
):
    descriptions = [f"band {i}" for i in range(1, count + 1)]
    nodata = 0 if dtype != "float32" else -9999.0
    src = make_raster(
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        nodata=nodata,
        descriptions=descriptions,
        tags={"SENSOR": "test", "DATE": "2011-05-22"},
        seed=count,
    )
    dst = tmp_path / "out.tif"
    tile = 32 + 3 * overlap  # several tiles in each direction
    out = translate_raster(
        src, dst, nn.Identity(), tile=tile, overlap=overlap, blend=blend, progress=False
    )
    assert out == dst
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        if dtype == "float32":
            np.testing.assert_allclose(b.read(), a.read(), rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(b.read(), a.read())
        assert b.dtypes == a.dtypes
        assert b.crs == a.crs and b.transform == a.transform
        assert (b.width, b.height, b.count) == (a.width, a.height, a.count)
        assert b.nodata == a.nodata
        assert b.descriptions == a.descriptions
        assert b.colorinterp == a.colorinterp
        assert b.tags()["SENSOR"] == "test" and b.tags()["DATE"] == "2011-05-22"
        assert b.profile["tiled"]
    assert _leftovers(tmp_path) == []


def test_identity_keeps_rgb_colour_interpretation(make_raster, tmp_path):
    src = make_raster(count=3, colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red])
    translate_raster(src, tmp_path / "o.tif", nn.Identity(), tile=64, overlap=16, progress=False)
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.colorinterp == (ColorInterp.blue, ColorInterp.green, ColorInterp.red)


def test_band_selection_and_float32_output(make_raster, tmp_path):
    src = make_raster(count=4, descriptions=["b", "g", "r", "nir"])
    dst = tmp_path / "o.tif"
    translate_raster(
        src, dst, nn.Identity(), bands=(4, 1), dtype="float32", tile=64, overlap=16, progress=False
    )
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.count == 2 and b.dtypes == ("float32", "float32")
        assert b.descriptions == ("nir", "b")
        np.testing.assert_allclose(b.read(), a.read((4, 1)).astype(np.float32), atol=1e-3)


# --------------------------------------------------------------------------- nodata


def test_nodata_stays_nodata_and_is_masked(make_raster, tmp_path):
    src = make_raster(width=120, height=100, nodata=0, collar=9)
    dst = tmp_path / "o.tif"

    class Darken(nn.Module):
        def forward(self, x):
            return x * 0.5 - 0.5  # every valid pixel changes

    translate_raster(src, dst, Darken(), tile=64, overlap=16, progress=False)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        invalid = a.read_masks(1) == 0
        out = b.read()
        assert invalid.sum() > 0
        assert (out[:, invalid] == 0).all()
        assert (out[:, ~invalid] != 0).all()  # valid pixels are never read as nodata
        assert ((b.read_masks(1) == 0) == invalid).all()


@pytest.mark.parametrize(("norm", "first_empty"), [("scene", False), ("tile", True)])
def test_tiles_without_a_valid_pixel_are_not_translated(
    make_raster, tmp_path, monkeypatch, norm, first_empty
):
    """A tile all nodata is not run through the model, and the output is the same byte
    for byte (its pixels get no weight either way); the first tile always runs (its
    output tells the writer the band count)."""
    data = make_raster(width=260, height=200, nodata=0, seed=6).parent
    rows, cols = np.mgrid[:200, :260]
    with rasterio.open(data / "scene.tif") as ds:
        pixels = ds.read()
    empty_area = (cols >= 150) | ((rows >= 120) & (cols < 70))
    if first_empty:
        empty_area |= (rows < 80) & (cols < 100)
    pixels[:, empty_area] = 0
    src = make_raster("holes.tif", data=pixels, nodata=0)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    seen: list[int] = []  # the batch size of each forward
    net.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    outs = {}
    for skip in (False, True):
        monkeypatch.setattr(translate_mod, "SKIP_EMPTY_TILES", skip)
        seen.clear()
        dst = translate_raster(
            src, tmp_path / f"{skip}.tif", net, tile=64, overlap=16, norm=norm,
            stats_memory_mb=1, progress=False, device="cpu",
        )  # fmt: skip
        with rasterio.open(dst) as ds:
            outs[skip] = (ds.read(), ds.read_masks(1), sum(seen))
    windows = translate_mod.balanced_windows(260, 200, 64, 16, multiple=4, min_size=8)
    valid = ~empty_area
    with_pixels = [
        k for k, w in enumerate(windows)
        if valid[int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)].any()
    ]  # fmt: skip
    assert (0 in with_pixels) != first_empty
    np.testing.assert_array_equal(outs[True][0], outs[False][0])
    np.testing.assert_array_equal(outs[True][1], outs[False][1])
    assert (outs[True][0][:, empty_area] == 0).all()
    # tiles the model saw (the statistics pass's too in scene mode): all of them without
    # skipping; with it, only those with a valid pixel, and the first
    extra = outs[False][2] - len(windows)
    assert outs[True][2] == len(set(with_pixels) | {0}) + extra
    assert len(with_pixels) < len(windows) - 4


def test_values_under_nodata_change_nothing(make_raster, tmp_path):
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    data = None
    outs = []
    for fill_seed in (1, 2):
        src = make_raster(name=f"s{fill_seed}.tif", width=96, height=80, nodata=0, collar=8)
        with rasterio.open(src) as ds:
            data = ds.read()
        rng = np.random.default_rng(fill_seed)
        noise = rng.integers(0, 255, size=data.shape, dtype=np.uint8)
        collar = (data == 0).all(axis=0)
        changed = np.where(collar[None], noise, data)
        # same valid pixels, different values under the mask (an internal mask, no nodata)
        path = make_raster(name=f"m{fill_seed}.tif", data=changed.astype(np.uint8))
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(np.where(collar, 0, 255).astype(np.uint8))
        dst = tmp_path / f"o{fill_seed}.tif"
        translate_raster(path, dst, net, tile=48, overlap=8, progress=False, precision="fp32")
        with rasterio.open(dst) as ds:
            outs.append((ds.read(), ds.read_masks(1)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert (outs[0][1][:8] == 0).all() and (outs[0][1][40][8:-8] == 255).all()


class _NormOnly(nn.Module):
    """norm -> x 0.2: the output reveals the statistics the norm layer used."""

    size_multiple = 1
    min_size = 1

    def __init__(self) -> None:
        super().__init__()
        self.norm = SceneInstanceNorm2d(3)

    def forward(self, x):
        return self.norm(x) * 0.2


@pytest.mark.parametrize("tile", [32, 64, 128])
def test_nodata_does_not_enter_the_scene_statistics(make_raster, tmp_path, tile):
    src = make_raster(width=100, height=90, nodata=0, collar=12, seed=3)
    dst = tmp_path / "o.tif"
    translate_raster(src, dst, _NormOnly(), tile=tile, overlap=8, dtype="float32", progress=False)
    norm = Normalizer.for_dtype("uint8", 3)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        valid = a.read_masks(1) > 0
        x = norm.normalize(a.read())
        out = b.read()
    values = x[:, valid]
    mean, var = values.mean(axis=1), values.var(axis=1)
    expected = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * 0.2
    expected = norm.denormalize(expected, dtype="float32")
    np.testing.assert_allclose(out[:, valid], expected[:, valid], atol=0.05)


# --------------------------------------------------------------------------- COG


def _tiff_layout(path: Path) -> tuple[list[int], int]:
    """IFD offsets of a classic little/big-endian TIFF, and the smallest tile data offset."""
    raw = path.read_bytes()
    order = "<" if raw[:2] == b"II" else ">"
    assert struct.unpack(order + "H", raw[2:4])[0] == 42, "expected a classic TIFF"
    offset = struct.unpack(order + "I", raw[4:8])[0]
    ifds, data_offsets = [], []
    sizes = {3: 2, 4: 4, 16: 8}
    while offset:
        ifds.append(offset)
        n = struct.unpack(order + "H", raw[offset : offset + 2])[0]
        for i in range(n):
            entry = raw[offset + 2 + 12 * i : offset + 14 + 12 * i]
            tag, typ, cnt = struct.unpack(order + "HHI", entry[:8])
            if tag == 324:  # TileOffsets
                size = sizes[typ]
                fmt = {2: "H", 4: "I", 8: "Q"}[size]
                if cnt * size <= 4:
                    vals = struct.unpack(order + fmt * cnt, entry[8 : 8 + cnt * size])
                else:
                    at = struct.unpack(order + "I", entry[8:12])[0]
                    vals = struct.unpack(order + fmt * cnt, raw[at : at + cnt * size])
                data_offsets += [v for v in vals if v]
        offset = struct.unpack(order + "I", raw[offset + 2 + 12 * n : offset + 6 + 12 * n])[0]
    return ifds, min(data_offsets)


def test_cog_output_is_valid(make_raster, tmp_path):
    src = make_raster(width=700, height=600, nodata=0, collar=5, descriptions=["r", "g", "b"])
    dst = tmp_path / "cog.tif"
    translate_raster(src, dst, nn.Identity(), tile=256, overlap=32, cog=True, progress=False)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        np.testing.assert_array_equal(b.read(), a.read())
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert b.profile["tiled"] and b.block_shapes[0] == (512, 512)
        overviews = b.overviews(1)
        assert overviews and overviews[0] == 2
        ov = b.read(1, out_shape=(b.height // 2, b.width // 2))
        assert ov.max() > 0  # overviews hold data, not zeros (rioxarray #410)
        assert b.crs == a.crs and b.transform == a.transform and b.nodata == 0
        assert b.descriptions == ("r", "g", "b")
    ifds, first_data = _tiff_layout(dst)
    assert len(ifds) >= 2  # full resolution + overviews (+ masks)
    assert ifds == sorted(ifds) and max(ifds) < first_data  # every IFD before the pixels
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("compress", "expected"),
    [("zstd", "zstd"), ("deflate", "deflate"), ("lzw", "lzw"), ("none", None)],
)
@pytest.mark.parametrize("cog", [False, True])
def test_output_compression(make_raster, tmp_path, compress, expected, cog):
    src = make_raster(width=300, height=200, dtype="uint16")
    dst = tmp_path / "o.tif"
    translate_raster(
        src, dst, nn.Identity(), tile=128, overlap=16, compress=compress, cog=cog, progress=False
    )
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        np.testing.assert_array_equal(b.read(), a.read())
        assert b.profile.get("compress") == expected
        # a horizontal predictor with every compression (2: integer differences)
        assert b.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == (None if expected is None else "2")


def test_default_compression_is_zstd_and_a_bad_one_is_refused(make_raster, tmp_path):
    src = make_raster()
    dst = tmp_path / "o.tif"
    translate_raster(src, dst, nn.Identity(), tile=64, overlap=16, progress=False)
    assert rasterio.open(dst).profile["compress"] == "zstd"
    with pytest.raises(ConfigError, match="'jpeg'.*zstd, deflate, lzw, none"):
        translate_raster(src, tmp_path / "b.tif", nn.Identity(), compress="jpeg", progress=False)
    assert not (tmp_path / "b.tif").exists()


# --------------------------------------------------------------------------- tile workers


@pytest.fixture
def two_threads():
    """At least two torch threads, so translate_raster runs two tiles at once on CPU (in
    bf16; the tests of that pass ``device="cpu"``, which a machine with CUDA would not
    pick by itself)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("norm", ["scene", "tile"])
def test_two_tiles_at_once_match_one_at_a_time(
    make_raster, tmp_path, monkeypatch, two_threads, norm
):
    """Tiles translated two at a time, each thread with its own copy of the model, give
    the output of one tile at a time: the same order, and in norm="tile" each tile's own
    valid mask (the nodata collar makes the masks differ from tile to tile)."""
    src = make_raster(width=200, height=180, nodata=0, collar=20, seed=5)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    outs = {}
    for workers in (1, 2):
        monkeypatch.setattr(translate_mod, "CPU_TILE_WORKERS", workers)
        dst = tmp_path / f"{workers}.tif"
        translate_raster(
            src, dst, net, tile=64, overlap=16, norm=norm, dtype="float32",
            precision="bf16", stats_memory_mb=2, progress=False, device="cpu",
        )  # fmt: skip
        with rasterio.open(dst) as ds:
            outs[workers] = ds.read(masked=True)
    np.testing.assert_array_equal(outs[1].mask, outs[2].mask)
    assert outs[1].mask.any() and not outs[1].mask.all()
    if norm == "scene":
        # oneDNN's results do not depend on the thread count here: the same values exactly
        np.testing.assert_array_equal(outs[2].filled(0), outs[1].filled(0))
    else:
        # per-tile statistics of channels-last activations are summed by torch's batch-norm
        # kernel in an order that depends on the thread count, and bf16 rounds the small
        # difference on (measured: 0.006 DN on average, 0.5 DN at most); a tile out of
        # order or with another tile's mask would be off by DN everywhere in it
        diff = np.abs(outs[2].filled(0) - outs[1].filled(0))
        assert diff.mean() < 0.02 and diff.max() < 2.0
    assert float(outs[1].std()) > 1.0  # a real translation, not a constant


def test_tile_workers_by_device_and_precision(two_threads):
    cpu = torch.device("cpu")
    assert translate_mod._tile_workers(cpu, "bf16") == 2
    assert translate_mod._tile_workers(cpu, "fp32") == 1  # measured slower two at once
    assert translate_mod._tile_workers(torch.device("cuda"), "bf16") == 1  # batches instead
    torch.set_num_threads(1)
    assert translate_mod._tile_workers(cpu, "bf16") == 1


class _TileCounter:
    def __init__(self) -> None:
        self.seen: list[int] = []  # list.append is atomic: no lock (a lock cannot be copied)

    def count(self, module, args) -> None:  # a bound method: copied models must share it
        self.seen.append(int(args[0].shape[0]))


def test_forward_hooks_see_every_tile_with_two_at_once(make_raster, tmp_path, two_threads):
    src = make_raster(width=200, height=180)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    counter = _TileCounter()
    net.register_forward_pre_hook(counter.count)
    translate_raster(
        src, tmp_path / "o.tif", net, tile=64, overlap=16, norm="tile", precision="bf16",
        progress=False,
    )  # fmt: skip
    windows = translate_mod.balanced_windows(200, 180, 64, 16, multiple=4, min_size=8)
    assert sum(counter.seen) == len(windows) > 4


def _count_submissions(monkeypatch) -> list[int]:
    """The sizes of the batches handed to the tile workers, in the order submitted."""
    submitted: list[int] = []
    original = translate_mod._Forwarders.submit

    def counted(self, fn, *args, **kwargs):
        submitted.append(len(args[0]))
        return original(self, fn, *args, **kwargs)

    monkeypatch.setattr(translate_mod._Forwarders, "submit", counted)
    return submitted


def test_each_tile_worker_has_a_batch_queued_behind_its_own(
    make_raster, tmp_path, monkeypatch, two_threads
):
    """While the first batch is held up, the dispatcher hands the workers two batches
    each and one more, then waits for the first: enough that a worker whose tiles run
    faster than the head's does not stand idle until the head is done (outputs go on in
    order), and no more (the tiles in flight stay bounded)."""
    src = make_raster(width=200, height=180)
    windows = translate_mod.balanced_windows(200, 180, 64, 16, multiple=4, min_size=8)
    assert len(windows) > 8
    submitted = _count_submissions(monkeypatch)
    gate = make_gate()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            translate_raster(
                src, tmp_path / "o.tif", gate, tile=64, overlap=16, norm="tile",
                precision="bf16", progress=False, device="cpu",
            )  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(200):  # until the dispatcher waits (at most 10 s)
            if len(submitted) >= 5:
                break
            threading.Event().wait(0.05)
        threading.Event().wait(0.3)  # and it goes no further
        assert len(submitted) == 2 * 2 + 1
    finally:
        gate.release.set()
        thread.join(timeout=60)
    assert not errors
    assert sum(submitted) == len(windows)
    with rasterio.open(src) as a, rasterio.open(tmp_path / "o.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_tiles_done_beforehand_wait_until_every_worker_has_a_batch(
    make_raster, tmp_path, monkeypatch, two_threads
):
    """A tile the statistics pass translated is handed to the writer (which opens the
    output on the first tile) only once both tile workers have a batch, so they do not
    stand idle meanwhile; the tile's output is the one the pass gave."""
    src = make_raster(width=200, height=180)
    windows = translate_mod.balanced_windows(200, 180, 64, 16)  # the gate's grid
    h, w = int(windows[0].height), int(windows[0].width)
    # the first tile comes translated from the statistics pass: all -1 (0 DN)
    done = {0: (np.full((3, h, w), -1.0, np.float32), np.ones((h, w), bool))}
    plan = translate_mod._StatsPlan(windows, [0], [1.0], [], reuse=True)
    monkeypatch.setattr(translate_mod, "_stats_plan", lambda run: plan)

    def stats_pass(run, plan, read, *args):
        read()
        return None, dict(done)

    monkeypatch.setattr(translate_mod, "_stats_pass", stats_pass)
    submitted = _count_submissions(monkeypatch)
    at_first_tile: list[int] = []
    original_write = translate_mod._write_mosaic

    def write(run, dst, tiles, out_dtype):
        def watched():
            for k, item in enumerate(tiles):
                if k == 0:
                    at_first_tile.append(len(submitted))
                    gate.release.set()
                yield item

        return original_write(run, dst, watched(), out_dtype)

    monkeypatch.setattr(translate_mod, "_write_mosaic", write)
    gate = make_gate()
    translate_raster(
        src, tmp_path / "o.tif", gate, tile=64, overlap=16, norm="tile",
        precision="bf16", progress=False, device="cpu",
    )  # fmt: skip
    assert at_first_tile == [2]
    assert sum(submitted) == len(windows) - 1
    with rasterio.open(src) as a, rasterio.open(tmp_path / "o.tif") as b:
        expected = a.read()
        got = b.read()
    # where only the first tile lies, the output is the pass's; below it, the input
    second_row = min(int(v.row_off) for v in windows if v.row_off > 0)
    second_col = min(int(v.col_off) for v in windows if v.col_off > 0)
    assert (got[:, :second_row, :second_col] == 0).all()
    np.testing.assert_array_equal(got[:, h:], expected[:, h:])


def test_tiles_are_read_while_the_statistics_pass_runs(make_raster, tmp_path, monkeypatch):
    """The reader starts on the run's tiles before the statistics pass, so the tile
    workers find tiles waiting when it ends."""
    src = make_raster(width=200, height=180)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    read_one = threading.Event()
    original_read = translate_mod._read_tile

    def read_tile(*args):
        if threading.current_thread().name == "rsgan-read":
            read_one.set()
        return original_read(*args)

    monkeypatch.setattr(translate_mod, "_read_tile", read_tile)
    original_pooled = translate_mod.pooled_forward
    seen: list[bool] = []

    def pooled(*args, **kwargs):
        # the statistics pass's model waits here for the reader: in vain if the reader
        # starts after it
        seen.append(read_one.wait(timeout=10))
        return original_pooled(*args, **kwargs)

    monkeypatch.setattr(translate_mod, "pooled_forward", pooled)
    translate_raster(
        src, tmp_path / "o.tif", net, tile=64, overlap=16, stats_memory_mb=2, progress=False
    )
    assert seen == [True]


class _ThreadCounts(nn.Module):
    """The identity; notes torch's thread count at the start of each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, int]] = []  # (the tile's mean, threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((float(x.mean()), torch.get_num_threads()))
        return x


def test_the_last_tile_runs_on_all_threads(make_raster, tmp_path, two_threads):
    """Two tiles at once, one thread each; the last tile of the run gets all of torch's
    threads (its worker's partner has nothing left to do) and the output is unchanged."""
    rows, cols = np.mgrid[:180, :200]
    ramp = ((rows + cols) // 2).astype(np.uint8)  # the last (bottom-right) tile is brightest
    src = make_raster(width=200, height=180, data=np.stack([ramp] * 3))
    net = _ThreadCounts()
    translate_raster(
        src, tmp_path / "o.tif", net, tile=64, overlap=16, precision="bf16", progress=False,
        device="cpu",
    )  # fmt: skip
    windows = translate_mod.balanced_windows(200, 180, 64, 16)
    threads = torch.get_num_threads()
    assert len(net.seen) == len(windows)
    by_mean = [t for _, t in sorted(net.seen)]  # forwards may start out of order
    assert by_mean == [threads // 2] * (len(windows) - 1) + [threads]
    assert torch.get_num_threads() == threads
    with rasterio.open(src) as a, rasterio.open(tmp_path / "o.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_translation_gives_torch_its_thread_count_back(make_raster, tmp_path, two_threads):
    src = make_raster(width=150, height=150)
    before = torch.get_num_threads()
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    translate_raster(
        src, tmp_path / "o.tif", net, tile=64, overlap=16, norm="tile", precision="bf16",
        progress=False,
    )  # fmt: skip
    assert torch.get_num_threads() == before
    # the count a new thread starts with (torch.set_num_threads in a worker sets it too)
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [before]


# --------------------------------------------------------------------------- failures


class _FailAfter(nn.Module):
    def __init__(self, calls: int, exc: type[BaseException]) -> None:
        super().__init__()
        self.calls, self.exc = calls, exc

    def forward(self, x):
        self.calls -= 1
        if self.calls < 0:
            raise self.exc("boom")
        return x


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("cog", [False, True])
def test_failure_mid_run_leaves_no_output(make_raster, tmp_path, exc, cog, two_threads):
    src = make_raster(width=200, height=200)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "o.tif"
    with pytest.raises(exc, match="boom"):
        translate_raster(
            src,
            dst,
            _FailAfter(3, exc),
            tile=64,
            overlap=8,
            batch_size=1,
            cog=cog,
            precision="bf16",  # two tiles at once on CPU
            progress=False,
        )
    assert list(out_dir.iterdir()) == []


def test_existing_output_needs_overwrite(make_raster, tmp_path):
    src = make_raster()
    dst = tmp_path / "o.tif"
    dst.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="overwrite"):
        translate_raster(src, dst, nn.Identity(), tile=64, overlap=16, progress=False)
    assert dst.read_bytes() == b"keep me"
    translate_raster(src, dst, nn.Identity(), tile=64, overlap=16, progress=False, overwrite=True)
    assert rasterio.open(dst).count == 3


def test_quicklook_is_checked_before_any_work_and_written_after(make_raster, tmp_path):
    src = make_raster()
    dst = tmp_path / "o.tif"
    kwargs = {"tile": 64, "overlap": 16, "progress": False, "overwrite": True}
    (tmp_path / "dir.png").mkdir()
    for bad in (src, dst, tmp_path / "nope" / "q.png", tmp_path / "dir.png"):
        with pytest.raises(RasterWriteError, match="quicklook"):
            translate_raster(src, dst, nn.Identity(), quicklook=bad, **kwargs)
        assert not dst.exists()  # refused before the translation, which left its output
    png = tmp_path / "o.png"
    png.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="quicklook"):
        translate_raster(
            src, dst, nn.Identity(), quicklook=png, tile=64, overlap=16, progress=False
        )
    assert png.read_bytes() == b"keep me" and not dst.exists()
    translate_raster(src, dst, nn.Identity(), quicklook=png, **kwargs)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


S2_BANDS = ["B02 blue", "B03 green", "B04 red", "B08 nir"]


def _bands_shown(png: Path, src: Path, side: int = 0) -> tuple[int, ...]:
    """The source band each channel of a quicklook shows (the best correlated one), from
    the ``side``-th picture of a before/after PNG."""
    with rasterio.open(png) as q, rasterio.open(src) as s:
        shown, bands = q.read().astype(float), s.read().astype(float)
    x0 = side * (bands.shape[2] + 8)  # before | 8 px gap | after
    shown = shown[:, :, x0 : x0 + bands.shape[2]]
    return tuple(
        int(np.argmax([np.corrcoef(c.ravel(), b.ravel())[0, 1] for b in bands])) + 1 for c in shown
    )


def _independent_bands(make_raster, name="s2.tif", **kwargs):
    """A 4-band uint16 scene whose bands are unrelated noise (so each is recognisable)."""
    data = np.random.default_rng(7).integers(1, 4000, (4, 60, 70)).astype(np.uint16)
    return make_raster(name, data=data, **kwargs)


@pytest.mark.parametrize("named", ["descriptions", "colorinterp"])
def test_quicklooks_show_the_bands_named_red_green_and_blue(make_raster, tmp_path, named):
    """A Sentinel-2 style B, G, R, NIR scene is previewed in true colour: the PNG's red
    channel shows band 3, green band 2, blue band 1, whether the bands say so by their
    descriptions or their colour interpretation; in write_quicklook, write_before_after
    and translate_raster's quicklook."""
    colours = {
        "descriptions": {"descriptions": S2_BANDS},
        "colorinterp": {
            "colorinterp": [
                ColorInterp.blue,
                ColorInterp.green,
                ColorInterp.red,
                ColorInterp.undefined,
            ]  # fmt: skip
        },
    }
    src = _independent_bands(make_raster, **colours[named])
    png = translate_mod.write_quicklook(src, tmp_path / "q.png")
    assert _bands_shown(png, src) == (3, 2, 1)
    dst = tmp_path / "o.tif"
    translate_raster(
        src, dst, nn.Identity(), quicklook=tmp_path / "t.png", tile=64, overlap=16,
        progress=False,
    )  # fmt: skip
    assert _bands_shown(tmp_path / "t.png", src) == (3, 2, 1)
    both = translate_mod.write_before_after(src, dst, tmp_path / "ba.png")
    assert _bands_shown(both, src, side=0) == _bands_shown(both, src, side=1) == (3, 2, 1)


def test_quicklooks_of_scenes_naming_no_colours_show_bands_1_2_3(make_raster, tmp_path):
    """Without colour interpretation or descriptions naming red, green and blue (a word
    like "reddish" does not name red) the first three bands are red, green and blue."""
    src = _independent_bands(make_raster, descriptions=["a", "b", "reddish", "nir"])
    png = translate_mod.write_quicklook(src, tmp_path / "q.png")
    assert _bands_shown(png, src) == (1, 2, 3)


def test_quicklook_bands_can_be_chosen(make_raster, tmp_path):
    """rgb=(red, green, blue) picks the bands, over what the scene's metadata says; a
    selection that is not three bands of the scene is refused, naming the fix."""
    plain = _independent_bands(make_raster)
    png = translate_mod.write_quicklook(plain, tmp_path / "q.png", rgb=(3, 2, 1))
    assert _bands_shown(png, plain) == (3, 2, 1)
    named = _independent_bands(make_raster, "named.tif", descriptions=S2_BANDS)
    png = translate_mod.write_quicklook(named, tmp_path / "nir.png", rgb=(4, 3, 2))
    assert _bands_shown(png, named) == (4, 3, 2)  # false colour: NIR as red
    both = translate_mod.write_before_after(plain, named, tmp_path / "ba.png", rgb=(4, 3, 2))
    assert _bands_shown(both, plain, 0) == _bands_shown(both, named, 1) == (4, 3, 2)
    with pytest.raises(BandError, match=r"band 5 is out of range.*4 band"):
        translate_mod.write_quicklook(plain, tmp_path / "x.png", rgb=(5, 3, 2))
    with pytest.raises(BandError, match=r"rgb=\(3, 2\).*three.*rgb=\(3, 2, 1\)"):
        translate_mod.write_quicklook(plain, tmp_path / "x.png", rgb=(3, 2))
    assert not (tmp_path / "x.png").exists()


def test_a_vrt_scene_keeps_the_files_it_reads(make_raster, tmp_path):
    """A VRT scene translates like a file, and neither the output nor the quicklook may
    replace a file the VRT reads (with overwrite too); the refusal comes before any work."""
    a = make_raster("a.tif", count=1, width=64, height=48, seed=1)
    b = make_raster("b.png", count=1, width=64, height=48, seed=2)  # a TIFF: GDAL sniffs
    vrt = mosaic_vrt(tmp_path / "scene.vrt", [a, b], 64, 48)
    before, a_before = b.read_bytes(), a.read_bytes()
    kwargs = {"tile": 64, "overlap": 16, "progress": False, "overwrite": True}
    with pytest.raises(RasterWriteError, match="a.tif, which the input .*scene.vrt reads"):
        translate_raster(vrt, a, nn.Identity(), **kwargs)
    dst = tmp_path / "o.tif"
    with pytest.raises(RasterWriteError, match="quicklook .*b.png, which the input reads"):
        translate_raster(vrt, dst, nn.Identity(), quicklook=b, **kwargs)
    assert b.read_bytes() == before and a.read_bytes() == a_before and not dst.exists()
    translate_raster(vrt, dst, nn.Identity(), **kwargs)
    with rasterio.open(a) as ra, rasterio.open(b) as rb, rasterio.open(dst) as out:
        np.testing.assert_array_equal(out.read(1), np.hstack([ra.read(1), rb.read(1)]))


@pytest.mark.parametrize("dtype", ["complex1024", "foo", "complex64", "bool"])
def test_unknown_output_dtype_is_refused_before_any_work(make_raster, tmp_path, dtype):
    dst = tmp_path / "o.tif"
    with pytest.raises(ConfigError, match=dtype):
        translate_raster(make_raster(), dst, nn.Identity(), dtype=dtype, progress=False)
    assert not dst.exists()


def test_output_that_is_a_folder_or_the_input_or_unwritable(make_raster, tmp_path):
    src = make_raster()
    with pytest.raises(RasterWriteError, match="folder"):
        translate_raster(src, tmp_path, nn.Identity(), progress=False)
    with pytest.raises(RasterWriteError, match="input"):
        translate_raster(src, src, nn.Identity(), progress=False, overwrite=True)
    with pytest.raises(RasterWriteError, match="does not exist"):
        translate_raster(src, tmp_path / "nope" / "o.tif", nn.Identity(), progress=False)
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(RasterWriteError, match="not writable"):
            translate_raster(src, locked / "o.tif", nn.Identity(), progress=False)


def test_output_and_quicklook_names_say_what_is_written(make_raster, tmp_path):
    """A GeoTIFF named out.png (which image viewers would not open) and a PNG quicklook
    named .jpg are refused before any work, with the name to use; TIFF endings in any
    case, and none, are fine."""
    src = make_raster()
    kwargs = {"tile": 64, "overlap": 16, "progress": False}
    with pytest.raises(RasterWriteError, match=r"writes a GeoTIFF; name it .*out.tif \(for a PNG"):
        translate_raster(src, tmp_path / "out.png", nn.Identity(), **kwargs)
    with pytest.raises(RasterWriteError, match=r"writes a GeoTIFF; name it .*out.tif$"):
        translate_raster(src, tmp_path / "out.jp2", nn.Identity(), **kwargs)
    with pytest.raises(RasterWriteError, match=r"a quicklook is a PNG picture; name it .*q.png"):
        translate_raster(src, tmp_path / "o.tif", nn.Identity(), quicklook=tmp_path / "q.jpg",
                         **kwargs)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
    for name in ("o.TIF", "o.tiff", "o.gtiff", "o"):
        translate_raster(src, tmp_path / name, nn.Identity(), **kwargs)
        with rasterio.open(tmp_path / name) as ds:
            assert ds.driver == "GTiff"


def test_tile_not_suited_to_the_model(make_raster, tmp_path):
    src = make_raster()
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1)
    with pytest.raises(TileSpecError, match="multiple of 4"):
        translate_raster(src, tmp_path / "o.tif", net, tile=66, progress=False)
    with pytest.raises(TileSpecError, match="at least 8"):
        translate_raster(src, tmp_path / "o.tif", net, tile=4, overlap=0, progress=False)
    with pytest.raises(ConfigError, match="blend"):
        translate_raster(src, tmp_path / "o.tif", net, blend="cosine", progress=False)
    with pytest.raises(ConfigError, match="norm"):
        translate_raster(src, tmp_path / "o.tif", net, norm="batch", progress=False)
    for bad in (0, -5, "1024", True):
        with pytest.raises(ConfigError, match="stats_memory_mb"):
            translate_raster(src, tmp_path / "o.tif", net, stats_memory_mb=bad, progress=False)
    assert not (tmp_path / "o.tif").exists()


def test_band_count_mismatch_names_the_bands(make_raster, tmp_path):
    src = make_raster(count=4)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1)
    with pytest.raises(BandError, match=r"bands=\(1, 2, 3\)"):
        translate_raster(src, tmp_path / "o.tif", net, progress=False)
    one = make_raster(name="one.tif", count=1)
    with pytest.raises(BandError, match="model trained on 1 band"):
        translate_raster(one, tmp_path / "o.tif", net, progress=False)


@pytest.mark.parametrize("named", ["descriptions", "colorinterp"])
def test_band_count_mismatch_names_the_red_green_and_blue_bands(make_raster, tmp_path, named):
    """A Sentinel-2 style B, G, R, NIR source: the hint also names its red, green and
    blue bands in that order (3, 2, 1), from their descriptions or colour
    interpretation; a source that names no colours gets no such hint."""
    from rasterio.enums import ColorInterp as CI

    kinds = {
        "descriptions": {"descriptions": ["B02 blue", "B03 green", "B04 red", "B08 nir"]},
        "colorinterp": {"colorinterp": [CI.blue, CI.green, CI.red, CI.undefined]},
    }
    src = make_raster(count=4, **kinds[named])
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1)
    with pytest.raises(BandError, match=r"red, green and blue bands.*bands=\(3, 2, 1\)"):
        translate_raster(src, tmp_path / "o.tif", net, progress=False)
    plain = make_raster(name="plain.tif", count=4, descriptions=["a", "b", "reddish", "d"])
    with pytest.raises(BandError) as raised:
        translate_raster(plain, tmp_path / "o.tif", net, progress=False)
    assert "red, green and blue" not in str(raised.value)
    assert not (tmp_path / "o.tif").exists()


def test_no_crs_warns_and_keeps_the_pixel_grid(make_raster, tmp_path):
    src = make_raster(crs=None, width=70, height=50)
    dst = tmp_path / "o.tif"
    with pytest.warns(NotGeoreferencedWarning):
        translate_raster(src, dst, nn.Identity(), tile=32, overlap=8, progress=False)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.crs is None and b.transform == a.transform
        np.testing.assert_array_equal(b.read(), a.read())


@pytest.mark.parametrize("rpcs", [False, True])
def test_ground_control_points_and_rpcs_are_kept(tmp_path, rpcs):
    """A raster placed by ground control points (or RPCs) instead of a geotransform keeps
    them, on the same pixel grid: the output sits where the input does, as a COG too, and
    neither rsgan nor rasterio (on opening the output) calls it not georeferenced."""
    import warnings

    src = placed_raster(tmp_path / "placed.tif", rpcs=rpcs)
    for cog in (False, True):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            dst = translate_raster(
                src, tmp_path / f"o_{cog}.tif", nn.Identity(), tile=32, overlap=8, cog=cog,
                progress=False,
            )  # fmt: skip
        not_placed = (NotGeoreferencedWarning, rasterio.errors.NotGeoreferencedWarning)
        assert not [w for w in seen if issubclass(w.category, not_placed)]
        with rasterio.open(src) as a, rasterio.open(dst) as b:
            np.testing.assert_array_equal(b.read(), a.read())
            if rpcs:
                assert b.rpcs is not None
                for key, value in a.rpcs.to_dict().items():
                    assert b.rpcs.to_dict()[key] == pytest.approx(value), key
            else:
                assert b.gcps[1] == a.gcps[1] == "EPSG:32614"
                assert [(g.row, g.col, g.x, g.y) for g in b.gcps[0]] == [
                    (g.row, g.col, g.x, g.y) for g in a.gcps[0]
                ]


# --------------------------------------------------------------------------- checkpoints


def _tiny_checkpoint(path: Path, dtype: str = "uint8", count: int = 3) -> Path:
    config = CycleGANConfig(in_channels_a=count, in_channels_b=count, ngf=4, n_blocks=1, ndf=4)
    torch.manual_seed(0)
    nets = build_nets("cyclegan", config)
    domain = DomainInfo(
        bands=tuple(range(1, count + 1)),
        count=count,
        dtype=dtype,
        normalizer=Normalizer.for_dtype(dtype, count),
    )
    return save_checkpoint(
        path,
        kind="cyclegan",
        config=config,
        nets=nets,
        domains={"a": domain, "b": domain},
        generators_only=True,
    )


def test_checkpoint_path_and_direction(make_raster, tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors")
    src = make_raster(width=90, height=70, nodata=0, collar=4)
    outs = []
    for direction in ("a2b", "b2a"):
        dst = tmp_path / f"{direction}.tif"
        translate_raster(src, dst, ckpt, direction=direction, tile=32, overlap=8, progress=False)
        with rasterio.open(dst) as ds:
            outs.append(ds.read())
            assert ds.count == 3 and ds.dtypes[0] == "uint8" and ds.nodata == 0
    assert not np.array_equal(outs[0], outs[1])


S2_NORM = Normalizer(lo=(300, 400, 200), hi=(2400, 2600, 3000), dtype="uint16")


def _naip_to_s2_checkpoint(tmp_path: Path) -> Path:
    """A tiny CycleGAN from uint8 aerial RGB (NAIP, domain a) to uint16 Sentinel-2 NIR,
    red, green (b, :data:`S2_NORM`)."""
    config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    naip = DomainInfo(bands=(1, 2, 3), count=3, dtype="uint8",
                      normalizer=Normalizer.for_dtype("uint8", 3))  # fmt: skip
    s2 = DomainInfo(bands=(4, 3, 2), count=3, dtype="uint16", normalizer=S2_NORM,
                    descriptions=("B08 nir", "B04 red", "B03 green"),
                    colorinterp=("gray", "undefined", "undefined"))  # fmt: skip
    return save_checkpoint(tmp_path / "naip2s2.safetensors", kind="cyclegan", config=config,
                           nets=build_nets("cyclegan", config), domains={"a": naip, "b": s2},
                           generators_only=True)  # fmt: skip


def test_a_model_between_data_types_writes_its_output_domains_type(make_raster, tmp_path):
    """A CycleGAN from uint8 aerial RGB (NAIP) to uint16 Sentinel-2: translate wrote the
    source's uint8 by default, and the Sentinel-2 values (hundreds to thousands) were
    clipped to 255 in every pixel: a white scene. The output takes the data type of the
    domain the model writes (``dtype=`` still overrides it) and the names of its bands
    (they were the source's red, green, blue); back, b2a, writes uint8, and
    a source nodata value that uint8 cannot hold (65535) becomes a mask (it was refused,
    naming an option translate does not have)."""
    ckpt = _naip_to_s2_checkpoint(tmp_path)
    src = make_raster(width=90, height=70, nodata=0, collar=4)
    dst = tmp_path / "s2_style.tif"
    translate_raster(src, dst, ckpt, tile=32, overlap=8, progress=False)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert b.dtypes == ("uint16",) * 3 and b.nodata == 0
        assert (b.read_masks(1) == a.read_masks(1)).all()
        assert b.descriptions == ("B08 nir", "B04 red", "B03 green")  # the bands it made
        assert b.colorinterp[0] == ColorInterp.gray and a.colorinterp[0] == ColorInterp.red
        values = b.read(masked=True)
    for band, lo, hi in zip(values, S2_NORM.lo, S2_NORM.hi, strict=True):
        assert lo <= band.min() and band.max() <= hi and band.max() < hi and band.std() > 0
    translate_raster(src, dst, ckpt, tile=32, overlap=8, dtype="float32", progress=False,
                     overwrite=True)  # fmt: skip
    with rasterio.open(dst) as b:
        assert b.dtypes == ("float32",) * 3
    # back, from a scene whose nodata uint8 cannot hold: a mask marks the invalid pixels
    s2_src = make_raster("s2.tif", width=90, height=70, count=3, dtype="uint16",
                         nodata=65535, collar=5)  # fmt: skip
    back = translate_raster(s2_src, tmp_path / "naip_style.tif", ckpt, direction="b2a",
                            tile=32, overlap=8, progress=False)  # fmt: skip
    with rasterio.open(s2_src) as a, rasterio.open(back) as b:
        assert b.dtypes == ("uint8",) * 3 and b.nodata is None and 0 < b.read().std()
        assert (b.dataset_mask() == a.dataset_mask()).all() and (a.dataset_mask() == 0).any()


def test_the_default_dtype_given_explicitly_masks_a_nodata_it_cannot_hold(make_raster, tmp_path):
    """Sentinel-2 (nodata 65535) to NAIP style: the default output dtype, uint8, marks
    the invalid pixels with a mask; the same dtype given (dtype="uint8", --dtype uint8)
    was refused ("cannot hold the nodata value 65535"), suggesting uint16 or float32, which
    a NAIP-style output is not."""
    ckpt = _naip_to_s2_checkpoint(tmp_path)
    src = make_raster("s2.tif", width=90, height=70, count=3, dtype="uint16",
                      nodata=65535, collar=5)  # fmt: skip
    outputs = [
        translate_raster(
            src,
            tmp_path / f"naip_{i}.tif",
            ckpt,
            direction="b2a",
            tile=32,
            overlap=8,
            progress=False,
            **kwargs,
        )  # fmt: skip
        for i, kwargs in enumerate([{}, {"dtype": "uint8"}])
    ]
    with rasterio.open(outputs[0]) as a, rasterio.open(outputs[1]) as b:
        assert b.dtypes == ("uint8",) * 3 and b.nodata is None
        np.testing.assert_array_equal(b.read(), a.read())
        np.testing.assert_array_equal(b.dataset_mask(), a.dataset_mask())
        assert (b.dataset_mask() == 0).any()


def test_checkpoint_dtype_mismatch(make_raster, tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors", dtype="uint16")
    src = make_raster(dtype="uint8")
    with pytest.raises(ModelError, match="uint16"):
        translate_raster(src, tmp_path / "o.tif", ckpt, progress=False)


def test_wrong_bands_and_dtype_in_one_message_whose_conversion_works(make_raster, tmp_path):
    """A Sentinel-2 style uint16 B, G, R, NIR scene for a 3-band uint8 model: one error
    names the bands and the dtype, and the vrt:// name it suggests (with a scale filled
    in) translates."""
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors", dtype="uint8")
    src = make_raster(
        count=4, dtype="uint16", descriptions=["B02 blue", "B03 green", "B04 red", "B08 nir"]
    )
    dst = tmp_path / "o.tif"
    with pytest.raises(BandError) as both:
        translate_raster(src, dst, ckpt, progress=False)
    assert "expects 3 band(s)" in str(both.value) and "needs uint8 data" in str(both.value)
    with pytest.raises(ModelError) as dtype_only:
        translate_raster(src, dst, ckpt, bands=(3, 2, 1), progress=False)
    for message in (str(both.value), str(dtype_only.value)):
        vrt = re.search(r'"(vrt://[^"]+)"', message)
        assert vrt is not None, message
        assert vrt.group(1).endswith("?bands=3,2,1&ot=Byte&scale=LOW,HIGH,0,255")
    converted = vrt.group(1).replace("LOW,HIGH", "0,65535")
    translate_raster(converted, dst, ckpt, tile=32, overlap=8, progress=False)
    with rasterio.open(dst) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3


def test_corrupt_checkpoint(make_raster, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        translate_raster(make_raster(), tmp_path / "o.tif", bad, progress=False)
    assert not (tmp_path / "o.tif").exists()


def test_model_none_uses_env_then_bundled(make_raster, tmp_path, monkeypatch):
    src = make_raster(width=40, height=40)
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors")
    monkeypatch.setenv("RSGAN_MODEL", str(ckpt))
    translate_raster(src, tmp_path / "env.tif", None, tile=32, overlap=8, progress=False)
    direct = tmp_path / "direct.tif"
    translate_raster(src, direct, ckpt, tile=32, overlap=8, progress=False)
    assert np.array_equal(rasterio.open(tmp_path / "env.tif").read(), rasterio.open(direct).read())
    assert rsgan.load_model().path == ckpt  # load_model() loads what model=None uses
    # a bad $RSGAN_MODEL is named as such
    monkeypatch.setenv("RSGAN_MODEL", str(tmp_path / "nope.safetensors"))
    with pytest.raises(ModelError, match=r"\$RSGAN_MODEL is .*nope.safetensors.*unset it"):
        translate_raster(src, tmp_path / "o.tif", None, progress=False)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    monkeypatch.setenv("RSGAN_MODEL", str(bad))
    with pytest.raises(CheckpointError, match=r"^\$RSGAN_MODEL: .*bad.safetensors"):
        translate_raster(src, tmp_path / "o.tif", None, progress=False)
    monkeypatch.delenv("RSGAN_MODEL")
    assert rsgan.load_model().path == translate_mod.DEFAULT_MODEL_PATH  # the bundled one
    # the default model lives in rsgan.checkpoint (translate re-exports its names)
    monkeypatch.setattr(checkpoint_mod, "DEFAULT_MODEL_PATH", tmp_path / "missing.safetensors")
    with pytest.raises(ModelError, match="bundled default model"):
        translate_raster(src, tmp_path / "o.tif", None, progress=False)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_fast_denormalize_matches_the_normalizer(dtype):
    norm = Normalizer(lo=(-3.0, 10.0), hi=(250.0, 9000.0), dtype=dtype)
    rng = np.random.default_rng(0)
    values = rng.uniform(-1.3, 1.3, size=(2, 40, 50)).astype(np.float32)
    values[0, 0, 0] = np.nan
    expected = norm.denormalize(values.copy())
    got = translate_mod._fast_denormalize(norm, dtype)(values.copy())
    assert got.dtype == expected.dtype
    if dtype == "float32":
        np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)
    else:
        assert np.abs(got.astype(np.int64) - expected.astype(np.int64)).max() <= 1
        assert (got == expected).mean() > 0.999


def _bf16_hardware(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    """Make this CPU look as if it had (or lacked) AVX512-BF16 and AMX."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: present)


def test_native_bf16_and_preferred_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    from rsgan._device import native_bf16, preferred_precision, resolve_precision

    cpu = torch.device("cpu")
    _bf16_hardware(monkeypatch, False)
    assert not native_bf16(cpu)
    assert preferred_precision("bf16", cpu) == "fp32"  # emulated bf16: 2.5-8.7x slower
    assert preferred_precision(None, cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"  # asked for: kept
    _bf16_hardware(monkeypatch, True)
    assert native_bf16(cpu)
    assert preferred_precision("bf16", cpu) == "bf16"
    assert preferred_precision("fp32", cpu) == "fp32"
    assert resolve_precision(None, cpu) == "fp32"  # no preference: fp32 on CPU


def test_bundled_model_runs_in_fp32_on_a_cpu_without_native_bf16(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled model prefers bf16; without AVX512-BF16/AMX the default run is the fp32
    run bit for bit, with them the bf16 run; an explicit precision is always kept."""
    if not translate_mod.DEFAULT_MODEL_PATH.is_file():
        pytest.skip("the bundled model is not in this checkout")
    src = make_raster(width=96, height=80, seed=3)

    def run(name: str, **kwargs: object) -> np.ndarray:
        out = translate_raster(src, tmp_path / name, progress=False, **kwargs)
        with rasterio.open(out) as ds:
            return ds.read()

    fp32, bf16 = run("fp32.tif", precision="fp32"), run("bf16.tif", precision="bf16")
    assert not np.array_equal(fp32, bf16)  # the two precisions can be told apart
    _bf16_hardware(monkeypatch, False)
    np.testing.assert_array_equal(run("default_emulated.tif"), fp32)
    np.testing.assert_array_equal(run("asked.tif", precision="bf16"), bf16)
    _bf16_hardware(monkeypatch, True)
    np.testing.assert_array_equal(run("default_native.tif"), bf16)


def test_fp32_scene_mode_folds_the_statistics_into_the_convolutions(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In fp32 the main pass runs the model with the scene statistics folded into its
    convolutions: the same output as the norm layers give (float rounding), with a nodata
    collar; bf16 keeps the norm layers (folded bf16 weights round differently)."""
    from rsgan.models import layers as layers_mod

    src = make_raster(width=200, height=180, nodata=0, collar=20, seed=5)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    folds: list[bool] = []
    real = layers_mod.fold_norm_stats

    def spy(model: nn.Module, stats: dict) -> nn.Module | None:
        folded = real(model, stats)
        folds.append(folded is not None)
        return folded

    def run(name: str, precision: str) -> np.ma.MaskedArray:
        translate_raster(
            src, tmp_path / name, net, tile=64, overlap=16, dtype="float32",
            precision=precision, stats_memory_mb=2, progress=False,
        )  # fmt: skip
        with rasterio.open(tmp_path / name) as ds:
            return ds.read(masked=True)

    monkeypatch.setattr(translate_mod, "fold_norm_stats", spy)
    folded = run("folded.tif", "fp32")
    assert folds == [True]
    run("bf16.tif", "bf16")
    assert folds == [True]  # not asked for in bf16
    monkeypatch.setattr(translate_mod, "fold_norm_stats", lambda model, stats: None)
    plain = run("plain.tif", "fp32")
    np.testing.assert_array_equal(folded.mask, plain.mask)
    assert folded.mask.any() and not folded.mask.all()
    np.testing.assert_allclose(folded.filled(0), plain.filled(0), rtol=0, atol=1e-3)  # DN
    assert not np.array_equal(folded.filled(0), plain.filled(0))  # computed another way
    assert float(plain.std()) > 1.0


def test_a_quick_run_prints_no_stale_progress_line(make_raster, tmp_path: Path, capsys) -> None:
    """A scene translated in one quick pass shows no progress bar (it appears after a
    second): before, the bar's description change printed a "0/1" line that was never
    completed, and the next output ran into it in logs."""
    src = make_raster(width=96, height=80)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    translate_raster(src, tmp_path / "o.tif", net, precision="fp32", progress=True)
    err = capsys.readouterr().err
    assert "0/1" not in err and "tile/s" not in err, err


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_model_input_normalises_on_the_way_into_the_batch(dtype, layout):
    # integers are scaled straight into the batch's layout; the values are the
    # normaliser's (to float rounding), whatever the layout (invalid pixels come filled)
    norm = Normalizer(lo=(-3.0, 10.0), hi=(250.0, 9000.0), dtype=dtype)
    rng = np.random.default_rng(1)
    raws = [rng.uniform(0, 240, (2, 9, 11)).astype(dtype) for _ in range(3)]
    valids = [np.ones((9, 11), bool), rng.random((9, 11)) > 0.3, np.ones((9, 11), bool)]
    sources = [translate_mod._source(r, v, norm) for r, v in zip(raws, valids, strict=True)]
    assert (sources[0] is raws[0]) == (dtype != "float32")  # integers are not copied
    x = translate_mod._model_input(sources, norm, torch.device("cpu"), layout)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=layout)
    expected = np.stack(
        [translate_mod._prepare(r, v, norm) for r, v in zip(raws, valids, strict=True)]
    )
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=3e-7)


def test_gdal_cache_holds_a_tile_row_of_input_blocks_up_to_a_cap(make_raster):
    info = translate_mod.describe(make_raster(tiled=True, blocksize=32))
    base = translate_mod.GDAL_CACHE_MB * 2**20
    assert translate_mod.gdal_cache_bytes(info, 736) == base  # small scenes: the floor
    wide = dataclasses.replace(info, width=16384, count=3, dtypes=("uint8",) * 3)
    block_rows = info.block_shapes[0][0]
    row_blocks = (736 + block_rows) * 16384 * 3  # one tile row's input blocks, all bands
    assert row_blocks < translate_mod.gdal_cache_bytes(wide, 736) <= 2 * row_blocks
    huge = dataclasses.replace(wide, width=60000, count=13, dtypes=("float32",) * 13)
    assert translate_mod.gdal_cache_bytes(huge, 736) == translate_mod.GDAL_CACHE_MAX_MB * 2**20


# --------------------------------------------------------------------------- GIS metadata


def _sentinel2_like(path: Path) -> Path:
    """A uint16 scene with Sentinel-2 L2A-style per-band scale/offset and units, a COG's
    overview tag, and cached statistics in a ``.aux.xml`` (what ``gdalinfo -stats`` does)."""
    rng = np.random.default_rng(3)
    data = rng.integers(800, 3000, (4, 260, 300), dtype=np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=300,
        height=260,
        count=4,
        dtype="uint16",
        crs="EPSG:4326",
        transform=rasterio.Affine(1e-4, 0, 2.3, 0, -1e-4, 48.8),
        nodata=0,
    ) as ds:
        ds.write(data)
        ds.scales = [1e-4] * 4
        ds.offsets = [-0.1] * 4
        ds.units = ["reflectance"] * 4
        ds.update_tags(OVR_RESAMPLING_ALG="NEAREST", SENSOR="MSI")
        ds.update_tags(ns="IMAGERY", SATELLITEID="S2A", CLOUDCOVER="3")
    with rasterio.open(path) as ds:
        ds.stats(approx=False)  # cached in path.aux.xml as STATISTICS_*
    assert path.with_name(path.name + ".aux.xml").exists()
    return path


class _Darken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 - 0.5  # every valid pixel changes


@pytest.mark.parametrize("cog", [False, True])
def test_output_keeps_units_and_scale_but_not_the_sources_statistics(tmp_path, cog):
    """GDAL and QGIS read cached STATISTICS_* band tags as the raster's statistics (and
    stretch by them): copied from the source they described other pixels. Units, scale
    and offset still hold (values stay in source units), and the source's overview
    resampling tag is not the output's. The IMAGERY domain (acquisition metadata) is
    kept in a GeoTIFF."""
    src = _sentinel2_like(tmp_path / "s2.tif")
    dst = tmp_path / "out.tif"
    translate_raster(src, dst, _Darken(), tile=128, overlap=16, cog=cog, progress=False)
    with rasterio.open(dst) as ds:
        assert ds.units == ("reflectance",) * 4
        assert ds.scales == (1e-4,) * 4 and ds.offsets == (-0.1,) * 4
        assert ds.tags()["SENSOR"] == "MSI"
        # GDAL's COG driver copies the default metadata domain only
        assert ds.tags(ns="IMAGERY") == ({} if cog else {"SATELLITEID": "S2A", "CLOUDCOVER": "3"})
        assert bool(ds.overviews(1)) == cog
        assert ds.tags().get("OVR_RESAMPLING_ALG") == ("AVERAGE" if cog else None)
        assert not any(k.startswith("STATISTICS_") for b in range(1, 5) for k in ds.tags(b))
        pixels = ds.read(masked=True)
        for band, stats in enumerate(ds.stats(approx=False)):
            assert (stats.min, stats.max) == (pixels[band].min(), pixels[band].max())


@pytest.mark.parametrize(
    ("src_dtype", "nodata", "dtype", "message"),
    [
        ("int16", -9999, "uint8", r"span -32768\.\.32767 in source units"),
        ("uint16", 65535, "int16", r"span 0\.\.65535 in source units"),
        ("uint16", 0, "uint8", r"span 0\.\.65535 in source units"),
    ],
)
def test_an_output_dtype_that_cannot_hold_the_values_is_refused_before_any_work(
    make_raster, tmp_path, monkeypatch, src_dtype, nodata, dtype, message
):
    """An integer dtype narrower than the values (uint16 reflectances as uint8, not
    rescaled) wrote every pixel above 255 as 255; it is refused before any work. (A
    nodata it cannot hold is no reason: a mask marks the invalid pixels.)"""
    src = make_raster(dtype=src_dtype, nodata=nodata)
    monkeypatch.setattr(translate_mod, "_translated_tiles", _no_work)
    with pytest.raises(ConfigError, match=message):
        translate_raster(
            src, tmp_path / "o.tif", nn.Identity(), dtype=dtype, tile=64, overlap=16, progress=False
        )
    assert not (tmp_path / "o.tif").exists()


def _no_work(*args, **kwargs):
    raise AssertionError("work started")


def test_a_model_into_another_dtypes_domain_drops_the_sources_scale_and_unit(tmp_path):
    """A CycleGAN from uint16 reflectance (scale 0.0001, offset -0.1) into a uint8 domain
    writes 0..255 values: the source's scale, offset and unit, copied before, made GDAL
    and QGIS read them as reflectances of -0.1..-0.07. A model within the source's data
    type keeps them."""
    src = _sentinel2_like(tmp_path / "s2.tif")
    config = CycleGANConfig(in_channels_a=4, in_channels_b=4, ngf=4, n_blocks=1, ndf=4)
    torch.manual_seed(0)
    reflectance = Normalizer(lo=(0.0,) * 4, hi=(3000.0,) * 4, dtype="uint16")
    domains = {
        "a": DomainInfo(bands=(1, 2, 3, 4), count=4, dtype="uint16", normalizer=reflectance),
        "b": DomainInfo(
            bands=(1, 2, 3, 4), count=4, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 4)
        ),
    }
    for name, b in (("to_uint8", domains["b"]), ("to_uint16", domains["a"])):
        ckpt = save_checkpoint(
            tmp_path / f"{name}.safetensors",
            kind="cyclegan",
            config=config,
            nets=build_nets("cyclegan", config),
            domains={"a": domains["a"], "b": b},
            generators_only=True,
        )
        dst = tmp_path / f"{name}.tif"
        translate_raster(src, dst, ckpt, tile=64, overlap=16, progress=False)
        with rasterio.open(dst) as ds:
            kept = name == "to_uint16"
            assert ds.scales == ((1e-4,) * 4 if kept else (1.0,) * 4)
            assert ds.offsets == ((-0.1,) * 4 if kept else (0.0,) * 4)
            assert ds.units == (("reflectance",) * 4 if kept else (None,) * 4)
            assert ds.tags()["SENSOR"] == "MSI"  # the rest of the metadata is kept


def test_the_suggested_conversion_of_a_scaled_source_resets_its_scale(tmp_path):
    """GDAL keeps a band's scale and offset through vrt://'s ot/scale rescaling, where
    they no longer describe the values: the name rsgan suggests for a Sentinel-2 style
    source (scale 0.0001, offset -0.1) for a uint8 model resets them, and the output of
    that conversion is not read as reflectance."""
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors", dtype="uint8", count=4)
    src = _sentinel2_like(tmp_path / "s2.tif")
    with pytest.raises(ModelError) as refused:
        translate_raster(src, tmp_path / "o.tif", ckpt, progress=False)
    vrt = re.search(r'"(vrt://[^"]+)"', str(refused.value))
    assert vrt is not None and vrt.group(1).endswith("&a_scale=1&a_offset=0")
    dst = tmp_path / "o.tif"
    converted = vrt.group(1).replace("LOW,HIGH", "0,3000")
    translate_raster(converted, dst, ckpt, tile=64, overlap=16, progress=False)
    with rasterio.open(dst) as ds:
        assert ds.dtypes == ("uint8",) * 4
        assert ds.scales == (1.0,) * 4 and ds.offsets == (0.0,) * 4


def test_cog_overviews_of_a_paletted_band_hold_its_classes(make_raster, tmp_path):
    """A paletted band keeps its colour table, and a COG's overviews of it are sampled,
    not averaged: an average of classes 1 and 5 is class 3, a class no pixel has."""
    rows, cols = np.mgrid[:300, :320]
    classes = np.where((rows // 3 + cols // 3) % 2 == 0, 1, 5).astype(np.uint8)[None]
    table = {1: (0, 128, 0, 255), 5: (200, 200, 0, 255)}
    src = make_raster("classes.tif", data=classes, colormap=table)
    dst = tmp_path / "cog.tif"
    translate_raster(src, dst, nn.Identity(), tile=128, overlap=16, cog=True, progress=False)
    with rasterio.open(dst) as ds:
        assert ds.colorinterp == (ColorInterp.palette,)
        assert {k: ds.colormap(1)[k] for k in table} == table
        assert ds.overviews(1) and ds.tags()["OVR_RESAMPLING_ALG"] == "NEAREST"
        overview = ds.read(1, out_shape=(ds.height // 2, ds.width // 2))
        assert set(np.unique(overview)) <= {1, 5}


def test_a_second_translation_to_an_output_being_written_is_refused_at_once(
    make_raster, tmp_path: Path
) -> None:
    """Two jobs given the same DST (a scheduler's duplicate): the second used to translate
    the whole scene and then fail ("appeared while it was being written"), or with
    overwrite both ran to the end. It is refused before any work; the first is whole."""
    src = make_raster(width=90, height=70)
    dst = tmp_path / "out.tif"
    gate = make_gate()
    thread = threading.Thread(
        target=translate_raster, args=(src, dst, gate), kwargs={"progress": False}
    )
    thread.start()
    try:
        assert gate.entered.wait(60)
        for overwrite in (False, True):
            second = make_gate()
            second.release.set()
            with pytest.raises(RasterWriteError, match=r"out\.tif is being written by another"):
                translate_raster(src, dst, second, overwrite=overwrite, progress=False)
            assert not second.entered.is_set()  # refused before any tile
    finally:
        gate.release.set()
        thread.join()
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert _leftovers(tmp_path) == []


@pytest.fixture
def small_stats_grid(monkeypatch):
    """The statistics pass on the grid of tile 64 / overlap 16, so a run at that tiling
    reuses the pass's outputs on a scene of a few hundred pixels."""
    monkeypatch.setattr(translate_mod, "STATS_TILE", 64)
    monkeypatch.setattr(translate_mod, "STATS_OVERLAP", 16)


@pytest.fixture
def pools(monkeypatch) -> list[rsgan._memory.MappedArrays]:
    """The pools of output buffers translate_raster makes, in the order it makes them."""
    made: list[rsgan._memory.MappedArrays] = []

    class Recorded(rsgan._memory.MappedArrays):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(translate_mod._memory, "MappedArrays", Recorded)
    return made


def _translate_with_reuse(src, dst, net, **kwargs):
    kwargs = {"stats_memory_mb": 2, **kwargs}
    return translate_raster(
        src, dst, net, tile=64, overlap=16, dtype="float32", progress=False, device="cpu",
        **kwargs,
    )  # fmt: skip


def test_runs_sharing_one_model_at_once_keep_their_own_statistics(
    make_raster, tmp_path, small_stats_grid
):
    """Two scenes translated at once in threads with one model (a Dask worker's threads
    over a catalog, a user's thread pool): each run gets its own scene's statistics, the
    outputs equal those of the runs one after the other. The model's norm layers were
    changed by each run in place: the dark scene came out 28.7 DN off on average."""
    rng = np.random.default_rng(5)
    dark = rng.integers(0, 90, (3, 420, 150)).astype(np.uint8)
    bright = rng.integers(150, 256, (3, 420, 150)).astype(np.uint8)
    srcs = [make_raster(name=f"s{k}.tif", data=d) for k, d in enumerate((dark, bright))]
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    # the runs at once overlap for sure: each one's first convolution waits for the
    # other's (the hook is there for the runs one after the other too: a hooked model is
    # not folded, which moves float32 outputs by ~1e-5)
    meet = threading.Barrier(2, timeout=60)
    first: set[int] = set()
    armed = threading.Event()

    def wait_for_the_other(module, args):  # noqa: ANN001, ANN202
        if armed.is_set() and threading.get_ident() not in first:
            first.add(threading.get_ident())
            meet.wait()

    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    hook = conv.register_forward_pre_hook(wait_for_the_other)
    expected = []
    for k, src in enumerate(srcs):
        with rasterio.open(_translate_with_reuse(src, tmp_path / f"seq{k}.tif", net)) as ds:
            expected.append(ds.read())
    armed.set()
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            _translate_with_reuse(srcs[k], tmp_path / f"par{k}.tif", net)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hook.remove()
    assert not errors, errors
    assert len(first) == 2 and not meet.broken
    for k in range(2):
        with rasterio.open(tmp_path / f"par{k}.tif") as ds:
            np.testing.assert_array_equal(ds.read(), expected[k])
    assert all(layer.mode == "instance" for layer in norm_layers(net).values())


def test_runs_sharing_a_model_that_cannot_be_copied_take_turns(
    make_raster, tmp_path, small_stats_grid
):
    """A model whose modules cannot be copied (here one holds a lock) cannot get a copy
    per run: runs at once with it take turns, whole run after whole run."""
    srcs = [make_raster(name=f"s{k}.tif", width=150, height=420, seed=k) for k in range(2)]
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    net.guard = threading.Lock()  # deepcopy cannot copy it
    assert rsgan.models.layers.shared_copy(net) is None
    calls: list[int] = []

    def note(module, args):  # noqa: ANN001, ANN202
        calls.append(threading.get_ident())
        time.sleep(0.002)  # room for the other run to interleave, were it allowed

    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_pre_hook(note)
    threads = [
        threading.Thread(target=_translate_with_reuse, args=(s, tmp_path / f"o{k}.tif", net))
        for k, s in enumerate(srcs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all((tmp_path / f"o{k}.tif").is_file() for k in range(2))
    switches = sum(a != b for a, b in zip(calls, calls[1:], strict=False))
    assert len(set(calls)) == 2 and switches == 1


def test_far_statistics_pass_outputs_wait_in_a_temporary_file(
    make_raster, tmp_path, monkeypatch, small_stats_grid, pools
):
    """The statistics pass's outputs for tiles below the first two tile rows are written
    to a temporary file and read back at their turn: the output is the same bytes as
    with all of them in memory, and each held array is its tile's alone (not a view that
    keeps the whole pass's batch alive)."""
    src = make_raster(width=150, height=420, nodata=0, collar=9, seed=3)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    spilled: list[int] = []
    held: list[bool] = []
    passes: list[tuple[int, int]] = []  # (outputs, the pool's mappings) of each pass
    original_hold, original_pass = translate_mod._Spill.hold, translate_mod._stats_pass

    def hold(self, i, array):
        # the array is its tile's alone, not a view that keeps the pass's whole batch
        held.append(not isinstance(array.base, np.ndarray) or array.base.nbytes == array.nbytes)
        kept = original_hold(self, i, array)
        if isinstance(kept, translate_mod._Spilled):
            spilled.append(i)
        return kept

    def stats_pass(*args):
        stats, passed = original_pass(*args)
        assert passed  # the run reuses the pass's outputs
        passes.append((len(passed), pools[-1].mapped))
        return stats, passed

    folders: list[Path] = []
    original_file = translate_mod.tempfile.TemporaryFile

    def temporary_file(**kwargs):
        folders.append(Path(kwargs["dir"]))
        return original_file(**kwargs)

    monkeypatch.setattr(translate_mod._Spill, "hold", hold)
    monkeypatch.setattr(translate_mod, "_stats_pass", stats_pass)
    monkeypatch.setattr(translate_mod.tempfile, "TemporaryFile", temporary_file)
    (tmp_path / "out").mkdir()
    outs = {}
    for rows in (1, 10**6):
        monkeypatch.setattr(translate_mod, "SPILL_AFTER_ROWS", rows)
        spilled.clear()
        dst = _translate_with_reuse(src, tmp_path / "out" / f"{rows}.tif", net, stats_memory_mb=5)
        with rasterio.open(dst) as ds:
            outs[rows] = (ds.read(), ds.read_masks(1), list(spilled))
    windows = translate_mod.balanced_windows(150, 420, 64, 16, multiple=4, min_size=8)
    first_rows = sorted({int(w.row_off) for w in windows})[:2]
    far = outs[1][2]
    assert far and all(int(windows[i].row_off) not in first_rows for i in far)
    assert outs[10**6][2] == []
    # on disk beside the output (a /tmp in memory would hold what it saves), and gone
    assert folders == [tmp_path / "out"]
    assert sorted(p.name for p in folders[0].iterdir()) == ["1.tif", "1000000.tif"]
    np.testing.assert_array_equal(outs[1][0], outs[10**6][0])
    np.testing.assert_array_equal(outs[1][1], outs[10**6][1])
    assert float(outs[1][0].std()) > 0.05  # a real translation, not a constant
    assert held and all(held)
    # the outputs written away took turns in one buffer: fewer mappings than outputs,
    # against one each with all of them kept
    (count, spilling), (same, keeping) = passes
    assert count == same and keeping == count
    assert spilling <= count - len(far) + len({windows[i].height * windows[i].width for i in far})
    assert spilling < count


def test_statistics_pass_outputs_stay_in_memory_without_a_temporary_file(
    make_raster, tmp_path, monkeypatch, small_stats_grid
):
    """Where no temporary file can be made (or written), the pass's outputs stay in
    memory and the run gives the same output."""
    src = make_raster(width=150, height=420, seed=4)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    expected = _translate_with_reuse(src, tmp_path / "a.tif", net)

    class FullDisk:
        def __init__(self, *args, **kwargs):
            self.closed = False

        def seek(self, *args):
            return 0

        def tell(self):
            return 0

        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            self.closed = True

    files: list[FullDisk] = []
    monkeypatch.setattr(
        translate_mod.tempfile, "TemporaryFile", lambda **k: files.append(FullDisk()) or files[-1]
    )
    got = _translate_with_reuse(src, tmp_path / "b.tif", net)
    assert len(files) == 1 and files[0].closed
    with rasterio.open(expected) as a, rasterio.open(got) as b:
        np.testing.assert_array_equal(a.read(), b.read())

    def no_file(**kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(translate_mod.tempfile, "TemporaryFile", no_file)
    got = _translate_with_reuse(src, tmp_path / "c.tif", net)
    with rasterio.open(expected) as a, rasterio.open(got) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_spilled_array_cut_short_is_a_clear_error(tmp_path):
    with open(tmp_path / "f", "w+b") as f:
        spilled = translate_mod._Spilled(f, np.arange(12, dtype=np.float32).reshape(3, 4))
        np.testing.assert_array_equal(spilled.load(), np.arange(12).reshape(3, 4))
        # read back into a reused buffer of a pool: the same values, one mapping
        pool = rsgan._memory.MappedArrays()
        for _ in range(3):
            loaded = spilled.load(pool)
            np.testing.assert_array_equal(loaded, np.arange(12).reshape(3, 4))
            assert loaded.dtype == np.float32
            del loaded
        assert pool.mapped == 1
        f.truncate(20)
        with pytest.raises(RasterWriteError, match="free space"):
            spilled.load()


def test_tile_outputs_reuse_pages_of_their_own(make_raster, tmp_path, pools, two_threads):
    """The tile workers' outputs come from a pool of mappings that the writer hands back
    (not from the workers' heaps, which grew through long runs around the outputs held
    for the writer): a few mappings serve every tile, and the output is exact."""
    src = make_raster(width=330, height=300, seed=6)
    dst = translate_raster(
        src, tmp_path / "o.tif", nn.Identity(), tile=64, overlap=16, progress=False,
        device="cpu", precision="bf16",
    )  # fmt: skip
    windows = translate_mod.balanced_windows(330, 300, 64, 16)
    assert len(pools) == 1 and len(windows) >= 30
    # in flight at most: two batches per worker and one, the writer's queue, its tile
    assert 1 <= pools[0].mapped <= 2 * 2 + 1 + 4 + 2
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        np.testing.assert_array_equal(a.read(), b.read())
