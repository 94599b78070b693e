"""Sources that are not local files: URLs read over real HTTP (GDAL's ``/vsicurl/``
against a server on the loopback interface, tests/range_server.py) and ``/vsizip/`` paths.
Their names must reach GDAL as given: ``pathlib`` folds the ``//`` of ``http://host/`` and
of ``/vsizip//abs/path.zip``, and GDAL then looks for another file."""

from __future__ import annotations

import json
import socket
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from click.testing import CliRunner
from range_server import Served

from rsgan.cli.main import cli
from rsgan.errors import CatalogError, RasterReadError, RasterWriteError
from rsgan.io import _is_network
from rsgan.models.cyclegan import ResnetGenerator
from rsgan.pipelines.catalog import read_catalog, translate_catalog
from rsgan.pipelines.translate import translate_raster


def _read(path: Path | str) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        meta = {
            "crs": ds.crs,
            "transform": ds.transform,
            "nodata": ds.nodata,
            "descriptions": ds.descriptions,
            "shape": (ds.count, ds.height, ds.width),
        }
        return ds.read(), meta


def _scene(make_raster: Callable[..., Path], folder: Path) -> Path:
    return make_raster(
        "scene.tif", width=200, height=180, nodata=0, collar=12, seed=3, folder=folder,
        descriptions=("red", "green", "blue"), tiled=True, blocksize=64,
    )  # fmt: skip


def test_a_url_source_translates_as_the_local_file_does(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """Tiled, scene statistics pooled over part of the blocks (the view of the scene, the
    statistics blocks and the tiles all read over HTTP): the same output as from the file."""
    folder, base = served.folder, served.base
    local = _scene(make_raster, folder)
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    options = {"tile": 64, "overlap": 16, "stats_memory_mb": 2, "progress": False}
    from_url = translate_raster(f"{base}/scene.tif", tmp_path / "url.tif", net, **options)
    from_file = translate_raster(local, tmp_path / "file.tif", net, **options)
    (url_pixels, url_meta), (file_pixels, file_meta) = _read(from_url), _read(from_file)
    np.testing.assert_array_equal(url_pixels, file_pixels)
    assert url_meta == file_meta
    assert url_meta["descriptions"] == ("red", "green", "blue") and url_meta["nodata"] == 0
    source, _ = _read(local)
    assert np.abs(url_pixels.astype(int) - source).mean() > 5  # translated, not copied


def test_a_vsizip_source_is_read_from_the_archive(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    local = _scene(make_raster, tmp_path / "in")
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(local, "inner/scene.tif")
    src = f"/vsizip/{archive}/inner/scene.tif"  # /vsizip//tmp/...: an absolute path
    assert src.startswith("/vsizip//")
    dst = translate_raster(src, tmp_path / "out.tif", torch.nn.Identity(), tile=64, overlap=16,
                           progress=False)  # fmt: skip
    (out, out_meta), (source, source_meta) = _read(dst), _read(local)
    np.testing.assert_array_equal(out, source)
    assert out_meta == source_meta


@pytest.mark.parametrize("dst", ["https://example.com/out.tif", "/vsimem/out.tif"])
def test_a_url_output_is_refused_before_any_work(
    make_raster: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dst: str
) -> None:
    src = make_raster(folder=tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RasterWriteError, match=r"is a URL or GDAL virtual path.*local path"):
        translate_raster(src, dst, torch.nn.Identity(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no "https:" folder


def test_cli_translates_a_url(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    folder, base = served.folder, served.base
    local = make_raster("small.tif", width=90, height=70, folder=folder)
    runner = CliRunner()
    outs = []
    for name, src in (("url.tif", f"{base}/small.tif"), ("file.tif", str(local))):
        dst = tmp_path / name
        args = ["translate", src, str(dst), "--tile", "32", "--overlap", "8", "--quiet"]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        outs.append(_read(dst))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]
    missing = runner.invoke(cli, ["translate", f"{base}/none.tif", str(tmp_path / "n.tif")])
    assert missing.exit_code == 1
    assert f"{base}/none.tif" in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "n.tif").exists()


def test_catalogs_keep_url_and_vsi_sources(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    folder, base = served.folder, served.base
    for i in range(2):
        make_raster(f"s{i}.tif", width=48, height=40, seed=i, folder=folder)
    urls = [f"{base}/s0.tif", f"{base}/s1.tif?token=abc"]  # a query string, as signed URLs
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "s0.tif", "z/zipped.tif")
    zipped = f"/vsizip/{archive}/z/zipped.tif"
    scenes = read_catalog([*urls, zipped])
    assert [(s.name, s.source) for s in scenes] == [
        ("s0", urls[0]), ("s1", urls[1]), ("zipped", zipped)
    ]  # fmt: skip
    # a CSV table and a STAC item name them the same way
    table = tmp_path / "scenes.csv"
    pd.DataFrame({"path": [urls[0], zipped]}).to_csv(table, index=False)
    assert [s.source for s in read_catalog(table)] == [urls[0], zipped]
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "remote", "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [],
        "assets": {"image": {"href": urls[1], "type": "image/tiff; application=geotiff"}},
    }  # fmt: skip
    stac = tmp_path / "item.json"
    stac.write_text(json.dumps(item))
    assert [s.source for s in read_catalog(stac)] == [urls[1]]
    # and the runner translates them (in-process: the same path a Dask worker takes)
    manifest = translate_catalog(
        [*urls, zipped], tmp_path / "out", torch.nn.Identity(), workers=0,
        tile=32, overlap=8, progress=False,
    )  # fmt: skip
    assert list(manifest["status"]) == ["done"] * 3, list(manifest["error"])
    for row, local in zip(manifest.itertuples(), ["s0.tif", "s1.tif", "s0.tif"], strict=True):
        np.testing.assert_array_equal(_read(row.output)[0], _read(folder / local)[0])


def test_a_url_is_opened_without_probing_for_side_files(
    make_raster: Callable[..., Path],
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GDAL lists a remote raster's folder and asks for its side files (.aux.xml, .ovr,
    .msk...) on open unless told not to: rsgan tells it, unless the user set it."""
    for name in ("a.tif", "b.tif"):
        make_raster(name, width=90, height=70, folder=served.folder)
    options = {"tile": 32, "overlap": 8, "progress": False}
    translate_raster(f"{served.base}/a.tif", tmp_path / "a.tif", torch.nn.Identity(), **options)
    asked = served.requests()
    assert asked and set(asked) == {"/a.tif"}, asked
    # the user's own setting wins: GDAL then lists the folder and probes for side files
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "FALSE")
    translate_raster(f"{served.base}/b.tif", tmp_path / "b.tif", torch.nn.Identity(), **options)
    probes = set(served.requests()[len(asked) :]) - {"/b.tif"}
    assert "/" in probes and any(p.startswith("/b.") for p in probes), probes


def test_cli_info_describes_a_url(make_raster: Callable[..., Path], served: Served) -> None:
    make_raster("i.tif", width=40, height=30, count=2, dtype="uint16", folder=served.folder)
    result = CliRunner().invoke(cli, ["info", f"{served.base}/i.tif"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{served.base}/i.tif\n")
    assert "40 x 30 px" in result.output and "2 band(s)" in result.output
    missing = CliRunner().invoke(cli, ["info", str(served.folder / "none.tif")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    assert "Traceback" not in missing.output


class _StopsTheServer(torch.nn.Module):
    """Identity that stops the server at its third tile (the connection drops mid-run)."""

    def __init__(self, served: Served) -> None:
        super().__init__()
        self.served, self.calls = served, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            self.served.stop()
        return x


def test_a_dropped_connection_mid_run_is_a_clear_error_and_leaves_nothing(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    # 2048 px, uncompressed: more than GDAL's /vsicurl/ cache holds, read tile by tile
    make_raster("big.tif", width=2048, height=2048, tiled=True, compress=None,
                folder=served.folder)  # fmt: skip
    dst = tmp_path / "out.tif"
    model = _StopsTheServer(served)
    with pytest.raises(RasterReadError, match=r"big\.tif .*the connection may have failed"):
        translate_raster(f"{served.base}/big.tif", dst, model, tile=256, overlap=32,
                         progress=False)  # fmt: skip
    assert model.calls >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requests.log", "served"]


@pytest.mark.parametrize(
    ("path", "network"),
    [
        ("https://host/x.tif", True),
        ("s3://bucket/x.tif", True),
        ("zip+https://host/a.zip!/x.tif", True),
        ("/vsicurl/https://host/x.tif", True),
        ("/vsizip//vsis3/bucket/a.zip/x.tif", True),
        ("vrt://https://host/x.tif?a_nodata=0", True),
        ("vrt:///data/x.tif?a_nodata=0", False),
        ("file:///data/x.tif", False),
        ("zip+file:///data/a.zip!/x.tif", False),
        ("zip://data/a.zip!/x.tif", False),
        ("TAR:///data/a.tar!x.tif", False),
        ("/vsizip//data/a.zip/x.tif", False),
        ("/vsimem/x.tif", False),
        ("/data/x.tif", False),
    ],
)
def test_which_sources_are_read_over_the_network(path: str, network: bool) -> None:
    """Only these get the remote open options (and the connection hint in read errors)."""
    assert _is_network(path) is network


def test_a_vrt_connection_string_translates_part_of_a_scene(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """GDAL's vrt:// names select a window and bands without a copy; the output lies on
    the window's grid."""
    src = make_raster(width=200, height=180, count=4, seed=2)
    name = f"vrt://{src}?srcwin=30,40,120,100&bands=3,2,1"
    dst = translate_raster(name, tmp_path / "part.tif", torch.nn.Identity(), tile=64,
                           overlap=16, progress=False)  # fmt: skip
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        window = rasterio.windows.Window(30, 40, 120, 100)
        np.testing.assert_array_equal(b.read(), a.read([3, 2, 1], window=window))
        assert b.transform == a.window_transform(window) and b.crs == a.crs


def test_tiles_are_read_on_several_connections_at_once(
    make_raster: Callable[..., Path], serve: Callable[..., Served], tmp_path: Path
) -> None:
    """Over the network the reads wait on latency, not on the CPU: the tiles ahead of the
    model are read on several threads (one reader, as for a local file, keeps one request
    in flight: a 4096 px scene took 10.6 s instead of 7.8 s at 200 ms, docs/translate.md)."""
    slow = serve(delay=0.1)
    make_raster("big.tif", width=1024, height=1024, tiled=True, compress=None,
                folder=slow.folder)  # fmt: skip
    local = slow.folder / "big.tif"
    dst = translate_raster(f"{slow.base}/big.tif", tmp_path / "o.tif", torch.nn.Identity(),
                           tile=128, overlap=16, progress=False)  # fmt: skip
    np.testing.assert_array_equal(_read(dst)[0], _read(local)[0])  # in order, all of them
    starts = sorted(slow.starts())
    in_flight = max(sum(1 for t in starts if a <= t < a + 0.1) for a in starts)
    assert in_flight >= 4, in_flight


def test_reads_ahead_stay_within_their_memory(
    make_raster: Callable[..., Path],
    serve: Callable[..., Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tiles read ahead are bounded by READ_AHEAD_MB (at least two): many-band float
    tiles must not pile up while the model is slower than the network."""
    import rsgan.pipelines.translate as translate_mod

    slow = serve(delay=0.05)
    make_raster("big.tif", width=1024, height=1024, tiled=True, compress=None,
                folder=slow.folder)  # fmt: skip
    running, most = [0], [0]
    lock = threading.Lock()
    read_tile = translate_mod._read_tile

    def counted(*args: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return read_tile(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(translate_mod, "_read_tile", counted)
    for budget, bound in ((0, 2), (translate_mod.READ_AHEAD_MB, None)):
        monkeypatch.setattr(translate_mod, "READ_AHEAD_MB", budget)
        most[0] = 0
        translate_raster(f"{slow.base}/big.tif", tmp_path / f"o{budget}.tif",
                         torch.nn.Identity(), tile=128, overlap=16, progress=False)  # fmt: skip
        if bound is not None:
            assert most[0] == bound
        else:
            assert most[0] >= 4


def test_chips_and_chip_datasets_read_urls(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """Training data from remote scenes: chips exported from a URL, and a ChipDataset over
    a URL (a query string, as signed URLs have), are those of the file."""
    from rsgan.data import ChipDataset
    from rsgan.tiling import TileSpec, export_chips

    local = make_raster("field.tif", width=150, height=110, nodata=0, collar=5, seed=4,
                        folder=served.folder)  # fmt: skip
    url = f"{served.base}/field.tif?token=abc"
    spec = TileSpec(64, overlap=16)
    remote = export_chips([url], tmp_path / "remote", spec)
    here = export_chips([local], tmp_path / "here", spec)
    assert list(remote["scene"]) == [url] * len(here)
    assert list(remote["chip"]) == list(here["chip"]) and remote["chip"][0].startswith("field_r")
    for name in here["chip"]:
        (a, a_meta), (b, b_meta) = (
            _read(tmp_path / "remote" / name),
            _read(tmp_path / "here" / name),
        )
        np.testing.assert_array_equal(a, b)
        assert a_meta == b_meta
    from_url, from_file = ChipDataset(url, size=32), ChipDataset(local, size=32)
    assert len(from_url) == len(from_file) > 0
    for i in (0, len(from_file) - 1):
        for key in ("image", "mask"):
            assert torch.equal(from_url[i][key], from_file[i][key])


def test_cli_chips_a_url(make_raster: Callable[..., Path], served: Served, tmp_path: Path) -> None:
    make_raster("c.tif", width=80, height=70, folder=served.folder)
    out = tmp_path / "chips"
    args = ["chips", f"{served.base}/c.tif", "--size", "32", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("c_r*_c*.tif"))) == 9 and (out / "index.gpkg").exists()  # 3 x 3


def test_training_reads_a_url(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """A DCGAN trains on chips read over HTTP (two real steps); the source keeps its name."""
    from rsgan.training import TrainOptions, train_dcgan

    make_raster("farm.tif", width=140, height=130, crs=None, folder=served.folder)
    url = f"{served.base}/farm.tif"
    with pytest.warns(UserWarning, match=rf"e\.g\. {url}\)"):  # not http:/127...
        model = train_dcgan([url], tmp_path / "run", config={"image_size": 64},
                            options=TrainOptions(steps=2, batch_size=2))  # fmt: skip
    assert model.is_file() and "/farm.tif" in served.requests()


def test_uint16_training_data_over_a_url_get_the_files_statistics(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """Sentinel-2 style uint16 scenes over HTTP: their normaliser comes from percentiles of
    the pixels (unlike uint8's fixed 0..255), read over the URL as given; it used to be
    looked up as a local file "http:/host/..." (pathlib's folding), so training on any
    non-uint8 URL failed with "no such file"."""
    from rsgan.data import ChipDataset
    from rsgan.io import compute_band_stats
    from rsgan.training import TrainOptions, train_cyclegan

    local = make_raster("s2.tif", width=120, height=100, count=4, dtype="uint16", nodata=0,
                        collar=6, seed=5, folder=served.folder)  # fmt: skip
    url = f"{served.base}/s2.tif?sig=abc"
    assert compute_band_stats(url).percentiles == compute_band_stats(local).percentiles
    assert ChipDataset(url, size=32).normalizer == ChipDataset(local, size=32).normalizer
    model = train_cyclegan(url, local, tmp_path / "run", tile=32,
                           config={"ngf": 4, "ndf": 4, "n_blocks": 1},
                           options=TrainOptions(steps=1, progress=False, sample_every=0))  # fmt: skip
    assert model.is_file() and "/s2.tif?sig=abc" in served.requests()


def test_a_stac_catalog_on_the_web(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """A static STAC catalog served over HTTP, with hrefs relative to its documents: the
    scenes are the assets' absolute URLs, and the runner translates them."""
    folder, base = served.folder, served.base
    (folder / "items").mkdir()
    for i in range(2):
        make_raster(f"s{i}.tif", width=48, height=40, seed=i, folder=folder / "items")
        item = {
            "type": "Feature", "stac_version": "1.0.0", "id": f"scene-{i}", "geometry": None,
            "properties": {"datetime": "2021-05-01T00:00:00Z"},
            "links": [{"rel": "root", "href": "../catalog.json"}],
            "assets": {"image": {"href": f"./s{i}.tif", "type": "image/tiff; application=geotiff"}},
        }  # fmt: skip
        (folder / "items" / f"scene-{i}.json").write_text(json.dumps(item))
    catalog = {
        "type": "Catalog", "stac_version": "1.0.0", "id": "web", "description": "test",
        "links": [{"rel": "item", "href": f"./items/scene-{i}.json"} for i in range(2)],
    }  # fmt: skip
    (folder / "catalog.json").write_text(json.dumps(catalog))
    scenes = read_catalog(f"{base}/catalog.json")
    assert [(s.name, s.source) for s in scenes] == [
        ("scene-0", f"{base}/items/s0.tif"), ("scene-1", f"{base}/items/s1.tif")
    ]  # fmt: skip
    manifest = translate_catalog(f"{base}/catalog.json", tmp_path / "out", torch.nn.Identity(),
                                 workers=0, tile=32, overlap=8, progress=False)  # fmt: skip
    assert list(manifest["status"]) == ["done", "done"], list(manifest["error"])
    for i, row in enumerate(manifest.itertuples()):
        np.testing.assert_array_equal(
            _read(row.output)[0], _read(folder / "items" / f"s{i}.tif")[0]
        )
    with pytest.raises(CatalogError, match=r"from the web rsgan reads STAC JSON documents"):
        read_catalog(f"{base}/scenes.csv")


@pytest.mark.parametrize(
    "args",
    [
        ["translate", "{src}", "s3://bucket/out.tif"],
        ["batch", "{src}", "s3://bucket/out", "--workers", "0"],
        ["chips", "{src}", "--size", "32", "--out", "s3://bucket/chips"],
        ["augment", "--images", "{folder}", "--masks", "{folder}", "--out", "s3://bucket/aug"],
        ["train", "dcgan", "{src}", "--out", "s3://bucket/run", "--steps", "1"],
        ["demo", "--out", "s3://bucket/demo"],
        ["generate", "{src}", "--out", "s3://bucket/samples"],
    ],
    ids=lambda a: a[0],
)
def test_url_outputs_are_refused_on_every_command(
    make_raster: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args
) -> None:
    """Every command refuses an output that is a URL, before any work: a folder argument
    folded by pathlib ("s3:/bucket/out") became a local folder "s3:" (rsgan batch wrote its
    outputs there) or an S3 address that GDAL tried (rsgan augment: a traceback)."""
    from click.testing import CliRunner

    from rsgan.cli.main import cli

    src = make_raster(folder=tmp_path / "in", width=64, height=64)
    monkeypatch.chdir(tmp_path)
    argv = [a.format(src=src, folder=src.parent) for a in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code != 0
    assert "is a URL or GDAL virtual path" in result.output, result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no "s3:" folder


def test_a_store_that_is_busy_now_and_then_is_retried(
    make_raster: Callable[..., Path], serve: Callable[..., Served], tmp_path: Path
) -> None:
    """A 503 on one request (S3's SlowDown, a proxy's hiccup) failed the whole scene:
    GDAL retries no request unless told to. rsgan tells it for network sources
    (GDAL_HTTP_MAX_RETRY, REMOTE_OPEN_OPTIONS), and the output is the file's."""
    busy = serve(fail_once=True)
    local = make_raster("big.tif", width=1024, height=1024, tiled=True, compress=None,
                        folder=busy.folder)  # fmt: skip
    dst = translate_raster(f"{busy.base}/big.tif", tmp_path / "o.tif", torch.nn.Identity(),
                           tile=256, overlap=32, progress=False)  # fmt: skip
    np.testing.assert_array_equal(_read(dst)[0], _read(local)[0])
    assert busy.requests()  # each made twice: the 503s are not logged


def test_the_users_gdal_http_settings_win(
    make_raster: Callable[..., Path],
    serve: Callable[..., Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GDAL_HTTP_MAX_RETRY=0 in the environment: no retry, the scene fails cleanly."""
    busy = serve(fail_once=True)
    make_raster("big.tif", width=1024, height=1024, tiled=True, compress=None,
                folder=busy.folder)  # fmt: skip
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")

    with pytest.raises(RasterReadError, match=r"big\.tif.*GDAL_HTTP_MAX_RETRY"):
        translate_raster(f"{busy.base}/big.tif", tmp_path / "o.tif", torch.nn.Identity(),
                         tile=256, overlap=32, progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requests.log", "served"]


def test_a_connection_that_hangs_is_an_error_not_a_wait_forever(
    make_raster: Callable[..., Path],
    serve: Callable[..., Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that stops answering mid-run (no reset, no bytes): the translation used
    to wait for ever, the progress bar still. GDAL now gives up on a request that got
    no byte for GDAL_HTTP_LOW_SPEED_TIME seconds (60 by default; 2 here)."""
    import rsgan._http
    import rsgan.io

    options = rsgan.io.REMOTE_OPEN_OPTIONS
    assert (options["GDAL_HTTP_LOW_SPEED_TIME"], options["GDAL_HTTP_LOW_SPEED_LIMIT"]) == (
        "60", "1"
    )  # fmt: skip
    monkeypatch.setitem(options, "GDAL_HTTP_LOW_SPEED_TIME", "2")  # not a minute here
    monkeypatch.setitem(rsgan.io.REMOTE_OPEN_OPTIONS, "GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setattr(rsgan._http, "PROBE_TIMEOUT_S", 1.0)  # asking for the status hangs too
    hangs = serve(stall_after=3)
    make_raster("big.tif", width=1024, height=1024, tiled=True, compress=None,
                folder=hangs.folder)  # fmt: skip
    failure: list[BaseException] = []

    def run() -> None:
        try:
            translate_raster(f"{hangs.base}/big.tif", tmp_path / "o.tif", torch.nn.Identity(),
                             tile=256, overlap=32, progress=False)  # fmt: skip
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(300)  # a guard against a hang, not a timing: it ends in seconds
    assert not thread.is_alive(), "the translation still waits on the stalled server"
    assert len(failure) == 1 and isinstance(failure[0], RasterReadError), failure
    assert "big.tif" in str(failure[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requests.log", "served"]


# HTTP errors of a remote source: the status and what to do reach the error message.
# They used to reach it only through CPL_DEBUG=ON with `rsgan -vv`, or as GDAL's bare
# "HTTP response code: 403" with advice about connections and retries.

_S3_ACCESS_DENIED = (
    "403\n<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
    "<Message>Access Denied</Message></Error>"
)


def _fail_with(served: Served, name: str, status: str) -> None:
    """From now on the server answers every request for ``name`` with ``status``."""
    target = served.folder / f"{name}.http-status"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(status)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("403", "HTTP 403 Forbidden: access denied; a signed URL may have expired (sign it again"),
        ("401", "HTTP 401 Unauthorized: the server wants credentials; give them to GDAL"),
        ("410", "HTTP 410 Gone: the file was removed from this address"),
    ],
)
def test_an_http_error_on_open_names_the_status_and_what_to_do(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path, status: str, words: str
) -> None:
    make_raster("scene.tif", width=48, height=40, folder=served.folder)
    _fail_with(served, "scene.tif", status)
    url = f"{served.base}/scene.tif?se=2020-01-01&sig=abc"  # a signed URL, expired
    with pytest.raises(RasterReadError) as caught:
        translate_raster(url, tmp_path / "o.tif", torch.nn.Identity(), progress=False)
    shown = url.replace("sig=abc", "sig=REDACTED")  # the signature is a secret
    assert str(caught.value).startswith(f"cannot read {shown} as a raster: {words}")
    assert caught.value.http_status == int(status)
    assert not (tmp_path / "o.tif").exists()


def test_a_moved_file_is_http_404_with_its_advice(served: Served, tmp_path: Path) -> None:
    url = f"{served.base}/moved.tif"  # the range server answers 404 for a missing file
    with pytest.raises(RasterReadError, match=r"moved\.tif as a raster: HTTP 404 Not Found: "
                       r"nothing at this address; the file may have moved"):  # fmt: skip
        translate_raster(url, tmp_path / "o.tif", torch.nn.Identity(), progress=False)


def test_a_signed_url_that_expires_mid_run_names_http_403(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """The header was read, then the URL expired: GDAL says only "Read failed"; rsgan
    asks the server once (the URL GDAL was given, no header) and names its answer."""
    from rasterio.windows import Window

    from rsgan.io import open_raster, read_window

    make_raster("big.tif", width=512, height=512, tiled=True, blocksize=64, compress=None,
                folder=served.folder)  # fmt: skip
    url = f"{served.base}/big.tif?sig=abc"
    with open_raster(url) as src:
        read_window(src, Window(0, 0, 64, 64))
        _fail_with(served, "big.tif", "403")
        with pytest.raises(RasterReadError) as caught:
            read_window(src, Window(448, 448, 64, 64))  # not in GDAL's cache
    shown = url.replace("sig=abc", "sig=REDACTED")
    assert str(caught.value).startswith(f"cannot read pixels of {shown}: HTTP 403 Forbidden: ")
    assert "sign it again" in str(caught.value) and caught.value.http_status == 403
    probes = [line for line in served.log.read_text().splitlines() if "bytes=0-0" in line]
    assert probes and all(p.split()[1] == "/big.tif?sig=abc" for p in probes)


def test_no_request_of_its_own_when_gdal_sends_credentials(
    make_raster: Callable[..., Path],
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GDAL_HTTP_HEADERS set: GDAL's requests carry a header a plain GET would not, so
    the server's answer to one could mislead; rsgan asks nothing and keeps GDAL's words."""
    from rasterio.windows import Window

    from rsgan.io import open_raster, read_window

    monkeypatch.setenv("GDAL_HTTP_HEADERS", "Authorization: Bearer secret")
    make_raster("big.tif", width=512, height=512, tiled=True, blocksize=64, compress=None,
                folder=served.folder)  # fmt: skip
    with open_raster(f"{served.base}/big.tif") as src:
        read_window(src, Window(0, 0, 64, 64))
        _fail_with(served, "big.tif", "403")
        with pytest.raises(RasterReadError, match="the connection may have failed") as caught:
            read_window(src, Window(448, 448, 64, 64))
    assert caught.value.http_status is None
    assert not [line for line in served.log.read_text().splitlines() if "bytes=0-0" in line]


def test_an_object_store_error_names_the_status_and_the_stores_words(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/vsis3/ against the range server as its endpoint, answering S3's AccessDenied."""
    for name, value in (("AWS_S3_ENDPOINT", served.base.removeprefix("http://")),
                        ("AWS_HTTPS", "NO"), ("AWS_VIRTUAL_HOSTING", "FALSE"),
                        ("AWS_NO_SIGN_REQUEST", "YES")):  # fmt: skip
        monkeypatch.setenv(name, value)
    _fail_with(served, "bucket/scene.tif", _S3_ACCESS_DENIED)
    with pytest.raises(RasterReadError) as caught:
        translate_raster("/vsis3/bucket/scene.tif", tmp_path / "o.tif", torch.nn.Identity(),
                         progress=False)  # fmt: skip
    assert str(caught.value).startswith(
        "cannot read /vsis3/bucket/scene.tif as a raster: HTTP 403 Forbidden (Access Denied): "
    )
    assert caught.value.http_status == 403


def test_cli_prints_the_http_status_in_one_line(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    make_raster("scene.tif", width=48, height=40, folder=served.folder)
    _fail_with(served, "scene.tif", "403")
    url = f"{served.base}/scene.tif?sig=abc"
    result = CliRunner().invoke(cli, ["translate", url, str(tmp_path / "o.tif"), "--quiet"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"Error: cannot read {url.replace('sig=abc', 'sig=REDACTED')} as a raster: HTTP 403"
    )
    assert "sign it again" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "o.tif").exists()


def test_batch_records_the_http_status_of_a_failed_row(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """An expired URL in a catalog: that row fails naming HTTP 403 (in the manifest and
    the summary of `rsgan batch`, which exits 3), the others are done."""
    for i in range(2):
        make_raster(f"s{i}.tif", width=48, height=40, seed=i, folder=served.folder)
    _fail_with(served, "s1.tif", "403")
    manifest = translate_catalog(
        [f"{served.base}/s0.tif", f"{served.base}/s1.tif?sig=old"], tmp_path / "out",
        torch.nn.Identity(), workers=0, tile=32, overlap=8, progress=False,
    )  # fmt: skip
    assert list(manifest["status"]) == ["done", "failed"]
    assert (
        "HTTP 403 Forbidden: access denied; a signed URL may have expired" in manifest["error"][1]
    )


# --------------------------------------------------------------------------- secrets
# A signed URL grants access to whoever holds it: its signature must reach no message, log
# line, manifest or STAC Item (those are shared and published), while a rerun signed anew
# still finds the scenes it finished.

SECRET = "SECRET123"


def _signed(served: Served, name: str, sig: str = SECRET) -> str:
    return f"{served.base}/{name}?sv=2021-06-08&se=2030-01-01T00%3A00Z&sr=b&sp=r&sig={sig}"


def test_a_signed_urls_secret_is_in_no_error_warning_or_log_line(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """Regression: ``cannot read https://...?sig=SECRET as a raster: HTTP 403`` printed
    the signature whole (and so did warnings and GDAL's debug log under ``-vv``)."""
    make_raster("scene.tif", width=48, height=40, folder=served.folder)
    make_raster("plain.tif", width=48, height=40, crs=None, folder=served.folder)
    _fail_with(served, "scene.tif", "403")
    url = _signed(served, "scene.tif")
    with pytest.raises(RasterReadError) as caught:
        translate_raster(url, tmp_path / "o.tif", torch.nn.Identity(), progress=False)
    message = str(caught.value)
    assert SECRET not in message and "sig=REDACTED" in message and "HTTP 403" in message
    assert "se=2030-01-01T00%3A00Z" in message  # the rest of the URL as given
    # the CLI's one error line, and GDAL's own log lines under -vv with CPL_DEBUG
    result = CliRunner().invoke(
        cli, ["-vv", "translate", url, str(tmp_path / "o.tif"), "--quiet"],
        env={"CPL_DEBUG": "ON"},
    )  # fmt: skip
    assert result.exit_code == 1 and "sig=REDACTED" in result.output
    assert SECRET not in result.output, result.output
    # a warning that names the source (a URL without a CRS)
    plain = _signed(served, "plain.tif")
    with pytest.warns(UserWarning, match="has no CRS") as warned:
        translate_raster(plain, tmp_path / "p.tif", torch.nn.Identity(), tile=32, overlap=8,
                         progress=False)  # fmt: skip
    shown = " ".join(str(w.message) for w in warned)
    assert SECRET not in shown and "sig=REDACTED" in shown
    cli_run = CliRunner().invoke(cli, ["translate", plain, str(tmp_path / "q.tif"), "--quiet",
                                       "--tile", "32", "--overlap", "8"])  # fmt: skip
    assert cli_run.exit_code == 0, cli_run.output
    assert "Warning:" in cli_run.output and SECRET not in cli_run.output
    info = CliRunner().invoke(cli, ["info", plain])
    assert info.exit_code == 0 and SECRET not in info.output and "sig=REDACTED" in info.output


def _tiny_checkpoint(path: Path) -> Path:
    from rsgan.checkpoint import DomainInfo, save_checkpoint
    from rsgan.io import Normalizer
    from rsgan.models import CycleGANConfig, build_nets

    config = CycleGANConfig(in_channels_a=3, in_channels_b=3, ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    domain = DomainInfo(bands=None, count=3, dtype="uint8",
                        normalizer=Normalizer.for_dtype("uint8", 3))  # fmt: skip
    return save_checkpoint(path, kind="cyclegan", config=config,
                           nets=build_nets("cyclegan", config),
                           domains={"a": domain, "b": domain}, generators_only=True)  # fmt: skip


def test_batch_records_no_secret_and_a_rerun_signed_anew_skips_the_done_scenes(
    make_raster: Callable[..., Path], served: Served, tmp_path: Path
) -> None:
    """Regression: `rsgan batch` over signed URLs wrote each URL whole into the manifest
    (``source``, and ``error`` of a failed row) and the STAC Items (``rsgan:source``, the
    ``derived_from`` link): a published catalog handed out read access. They now keep the
    unsigned URL, and a rerun with freshly signed URLs still skips the finished scene."""
    import geopandas as gpd

    for i in range(2):
        make_raster(f"s{i}.tif", width=48, height=40, seed=i, folder=served.folder)
    _fail_with(served, "s1.tif", "403")
    model = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "out"

    def batch(sig: str) -> Any:
        catalog = tmp_path / "scenes.csv"
        urls = [_signed(served, f"s{i}.tif", f"{sig}{i}") for i in range(2)]
        pd.DataFrame({"path": urls}).to_csv(catalog, index=False)
        args = ["batch", str(catalog), str(out), "--model", str(model), "--workers", "0",
                "--tile", "32", "--overlap", "8", "--quiet", "--precision", "fp32"]  # fmt: skip
        return CliRunner().invoke(cli, args)

    first = batch(SECRET)
    assert first.exit_code == 3, first.output  # s1 failed
    assert SECRET not in first.output and "HTTP 403" in first.output
    manifest = gpd.read_parquet(out / "manifest.parquet")
    assert list(manifest["status"]) == ["done", "failed"]
    assert list(manifest["source"]) == [f"{served.base}/s0.tif", f"{served.base}/s1.tif"]
    assert SECRET not in (out / "manifest.parquet").read_bytes().decode("latin-1")
    assert "sig=REDACTED" in manifest["error"][1]
    item = json.loads((out / "s0_translated.json").read_text())
    assert SECRET not in json.dumps(item)
    assert item["properties"]["rsgan:source"] == f"{served.base}/s0.tif"
    assert [lk["href"] for lk in item["links"] if lk["rel"] == "derived_from"] == [
        f"{served.base}/s0.tif"
    ]
    done = (out / "s0_translated.tif").stat().st_mtime_ns
    # signed anew: s0 is the same scene (skipped, untouched), s1 still fails
    second = batch("NEWSIG")
    assert second.exit_code == 3, second.output
    manifest = gpd.read_parquet(out / "manifest.parquet")
    assert list(manifest["status"]) == ["skipped", "failed"]
    assert (out / "s0_translated.tif").stat().st_mtime_ns == done
    # the server lets s1 through: a third run, signed anew again, translates only it
    (served.folder / "s1.tif.http-status").unlink()
    third = batch("THIRD")
    assert third.exit_code == 0, third.output
    manifest = gpd.read_parquet(out / "manifest.parquet")
    assert list(manifest["status"]) == ["skipped", "done"]
    assert "THIRD" not in (out / "s1_translated.json").read_text()


def test_a_server_that_refuses_the_connection_gets_network_advice(tmp_path):
    """No server at the address (connection refused): the error says to check the address
    and the connection, not to pass a GeoTIFF (GDAL's words are "CURL error: Failed to
    connect", in capitals)."""
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/scene.tif"
    with pytest.raises(RasterReadError) as info:
        translate_raster(url, tmp_path / "o.tif", torch.nn.Identity(), progress=False)
    message = str(info.value)
    assert "check the address and the connection" in message
    assert "pass a GeoTIFF" not in message
    assert not (tmp_path / "o.tif").exists()
