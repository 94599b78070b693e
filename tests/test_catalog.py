"""translate_catalog on a real Dask LocalCluster (2 worker processes) and the real
translate_raster: every catalog kind, reruns, bad rows, a worker killed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import torch
from conftest import make_gate
from shapely.geometry import box

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.errors import CatalogError, ConfigError
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets
from rsgan.pipelines import catalog as catalog_module
from rsgan.pipelines.catalog import (
    MANIFEST_NAME,
    bbox_4326,
    read_catalog,
    read_manifest,
    sha256_file,
    translate_catalog,
)

distributed = pytest.importorskip("distributed")

SIZES = ((48, 40), (64, 56), (40, 72))  # (width, height) of the generated scenes
FAST = {"tile": 64, "overlap": 16, "progress": False}


class KillOnce(torch.nn.Module):
    """Identity that kills its worker process the first time it runs (marker file)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)  # the worker dies in the middle of a task
        return x


class InterruptOn4Bands(torch.nn.Module):
    """Identity that raises KeyboardInterrupt on a 4-band scene (a user's Ctrl-C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 4:
            raise KeyboardInterrupt
        return x


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def scenes(make_raster: Callable[..., Path], tmp_path: Path) -> list[Path]:
    folder = tmp_path / "data" / "scenes"
    return [
        make_raster(
            f"scene_{i}.tif",
            width=w,
            height=h,
            seed=i,
            folder=folder,
            transform=rasterio.Affine(2.0, 0, 500000.0 + 1000 * i, 0, -2.0, 5200000.0),
        )
        for i, (w, h) in enumerate(SIZES)
    ]


def _pixels_and_grid(path: Path | str) -> tuple[np.ndarray, tuple]:
    with rasterio.open(path) as src:
        return src.read(), (src.crs, src.transform, src.width, src.height, src.dtypes)


def _assert_identity_outputs(manifest: gpd.GeoDataFrame, sources: list[Path]) -> None:
    assert sorted(manifest["status"]) == ["done"] * len(sources)
    by_source = {Path(r.source).resolve(): r for r in manifest.itertuples()}
    for src in sources:
        row = by_source[src.resolve()]
        assert Path(row.output).name == f"{src.stem}_translated.tif"
        out_pixels, out_grid = _pixels_and_grid(row.output)
        in_pixels, in_grid = _pixels_and_grid(src)
        assert out_grid == in_grid
        np.testing.assert_array_equal(out_pixels, in_pixels)
        assert row.sha256 == sha256_file(row.output)
        # the footprint is in EPSG:4326 and covers the scene's centre
        with rasterio.open(src) as ds:
            centre = box(*ds.bounds).centroid
        centre_4326 = gpd.GeoSeries([centre], crs=ds.crs).to_crs("EPSG:4326").iloc[0]
        assert manifest.crs.to_epsg() == 4326
        assert row.geometry.contains(centre_4326)
        item = json.loads(Path(row.output).with_suffix(".json").read_text())
        assert item["assets"]["data"]["file:checksum"] == "1220" + row.sha256
        assert item["properties"]["proj:code"] == "EPSG:32614"


def _footprints(paths: list[Path]) -> list:
    geoms = []
    for p in paths:
        with rasterio.open(p) as ds:
            geoms.append(box(*ds.bounds))
    return geoms


def _write_catalog(kind: str, scenes: list[Path], root: Path) -> str:
    """Write a catalog of ``scenes`` of the given kind under ``root`` (paths relative)."""
    rel = [os.path.relpath(p, root) for p in scenes]
    table = gpd.GeoDataFrame({"path": rel}, geometry=_footprints(scenes), crs="EPSG:32614")
    if kind in ("gpkg", "geojson", "parquet"):
        path = root / f"catalog.{kind}"
        if kind == "parquet":
            table.to_parquet(path)
        else:
            table.to_file(path, driver="GPKG" if kind == "gpkg" else "GeoJSON")
        return os.fspath(path)
    if kind == "csv":
        pd.DataFrame({"path": rel}).to_csv(root / "catalog.csv", index=False)
        return os.fspath(root / "catalog.csv")
    if kind == "folder":
        return os.fspath(scenes[0].parent)
    if kind == "glob":
        return os.fspath(scenes[0].parent / "scene_*.tif")
    items = []
    for p, geom in zip(scenes, table.to_crs("EPSG:4326").geometry, strict=True):
        item = pystac.Item(
            p.stem,
            geom.__geo_interface__,
            list(geom.bounds),
            pystac.utils.str_to_datetime("2020-01-01T00:00:00Z"),
            {},
        )
        item.add_asset(
            "visual", pystac.Asset(os.path.relpath(p, root), media_type=pystac.MediaType.GEOTIFF)
        )
        item.add_asset("thumbnail", pystac.Asset("thumb.png", media_type=pystac.MediaType.PNG))
        items.append(item)
    if kind == "stac-items":
        path = root / "items.json"
        pystac.ItemCollection(items).save_object(dest_href=os.fspath(path))
        return os.fspath(path)
    cat = pystac.Catalog("scenes", "test scenes")
    for item in items:
        item.assets["visual"].href = os.fspath(root / item.assets["visual"].href)
        cat.add_item(item)
    cat.normalize_hrefs(os.fspath(root / "stac"))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return os.fspath(root / "stac" / "catalog.json")


KINDS = ("gpkg", "geojson", "parquet", "csv", "folder", "glob", "stac-items", "stac-catalog")


@pytest.mark.parametrize("kind", KINDS)
def test_each_catalog_kind_translates_on_the_cluster(
    kind: str, scenes: list[Path], tmp_path: Path, client: object
) -> None:
    catalog = _write_catalog(kind, scenes, tmp_path / "data")
    asset_key = "visual" if kind.startswith("stac") else None
    manifest = translate_catalog(
        catalog,
        tmp_path / "out",
        torch.nn.Identity(),
        scheduler=client,
        asset_key=asset_key,
        **FAST,
    )
    _assert_identity_outputs(manifest, scenes)
    on_disk = read_manifest(tmp_path / "out")
    assert on_disk is not None
    assert list(on_disk["sha256"]) == list(manifest["sha256"])


def test_rerun_is_a_no_op_then_redoes_only_what_changed(
    scenes: list[Path], tmp_path: Path, client: object
) -> None:
    out = tmp_path / "out"
    first = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), scheduler=client, **FAST)
    stamps = {p: os.stat(p).st_mtime_ns for p in first["output"]}
    again = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), scheduler=client, **FAST)
    assert list(again["status"]) == ["skipped"] * 3
    assert {p: os.stat(p).st_mtime_ns for p in again["output"]} == stamps
    assert list(again["sha256"]) == list(first["sha256"])
    assert list(read_manifest(out)["status"]) == ["skipped"] * 3

    gone, damaged, kept = (Path(p) for p in first["output"])
    gone.unlink()
    with open(damaged, "ab") as f:
        f.write(b"junk")
    third = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), scheduler=client, **FAST)
    assert list(third["status"]) == ["done", "done", "skipped"]
    assert os.stat(kept).st_mtime_ns == stamps[os.fspath(kept)]
    _assert_identity_outputs(third.assign(status="done"), scenes)


def test_bad_rows_fail_alone(scenes: list[Path], tmp_path: Path, client: object) -> None:
    corrupt = scenes[0].parent / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00 this is not a GeoTIFF")
    twin = tmp_path / "data" / "other" / scenes[1].name  # same stem, other folder
    twin.parent.mkdir(parents=True)
    twin.write_bytes(scenes[1].read_bytes())
    rows = [
        *map(os.fspath, scenes),
        os.fspath(corrupt),
        "scenes/missing.tif",
        os.fspath(twin),
        os.fspath(scenes[2]),
        "",
    ]
    pd.DataFrame({"path": rows}).to_csv(tmp_path / "data" / "catalog.csv", index=False)
    manifest = translate_catalog(
        tmp_path / "data" / "catalog.csv",
        tmp_path / "out",
        torch.nn.Identity(),
        scheduler=client,
        **FAST,
    )
    status = dict(enumerate(manifest["status"]))
    errors = list(manifest["error"])
    assert [status[i] for i in range(3)] == ["done"] * 3
    assert status[3] == "failed" and "corrupt.tif" in errors[3] and "row 4" in errors[3]
    assert status[4] == "failed" and "missing.tif" in errors[4]
    assert status[5] == "failed" and "would write the same output as row 2" in errors[5]
    assert status[6] == "failed" and "repeats the file of row 3" in errors[6]
    assert status[7] == "failed" and "empty 'path'" in errors[7]
    _assert_identity_outputs(manifest[manifest["status"] == "done"], scenes)

    # a rerun keeps the scenes done: a repeated row's failure does not hide the row that
    # wrote the output (it did, keyed by scene name, and the rerun failed rows 2 and 3)
    again = translate_catalog(
        tmp_path / "data" / "catalog.csv",
        tmp_path / "out",
        torch.nn.Identity(),
        scheduler=client,
        **FAST,
    )
    assert list(again["status"]) == ["skipped"] * 3 + ["failed"] * 5
    assert list(again["error"])[5:7] == errors[5:7]


def test_worker_killed_mid_task_is_retried_and_every_output_is_valid(
    scenes: list[Path], tmp_path: Path, client: object
) -> None:
    marker = tmp_path / "killed-once"
    manifest = translate_catalog(
        scenes[0].parent, tmp_path / "out", KillOnce(os.fspath(marker)), scheduler=client, **FAST
    )
    assert marker.exists()  # a worker really died
    _assert_identity_outputs(manifest, scenes)
    assert not list((tmp_path / "out").glob(".*rsgan-tmp*"))  # its temporary was cleaned


def test_checkpoint_is_loaded_once_per_worker(
    scenes: list[Path], tmp_path: Path, client: object
) -> None:
    config = CycleGANConfig(in_channels_a=3, in_channels_b=3, ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    domain = DomainInfo(
        bands=None, count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    ckpt = save_checkpoint(
        tmp_path / "tiny.safetensors",
        kind="cyclegan",
        config=config,
        nets=build_nets("cyclegan", config),
        domains={"a": domain, "b": domain},
        generators_only=True,
    )
    manifest = translate_catalog(
        scenes[0].parent, tmp_path / "out", ckpt, scheduler=client, precision="fp32", **FAST
    )
    assert list(manifest["status"]) == ["done"] * 3
    for row, src in zip(manifest.itertuples(), scenes, strict=True):
        assert _pixels_and_grid(row.output)[1] == _pixels_and_grid(src)[1]
    cached = client.run(lambda: sorted(catalog_module._WORKER_MODELS))
    keys = [k for ks in cached.values() for k in ks if k.startswith(os.fspath(ckpt))]
    assert 1 <= len(keys) <= 2 and all(len(ks) <= 2 for ks in cached.values())
    assert all(sum(k.startswith(os.fspath(ckpt)) for k in ks) <= 1 for ks in cached.values())


def test_sequential_run_matches_the_cluster_and_survives_an_interrupt(
    make_raster: Callable[..., Path], scenes: list[Path], tmp_path: Path, client: object
) -> None:
    dask_run = translate_catalog(
        scenes[0].parent, tmp_path / "dask", torch.nn.Identity(), scheduler=client, **FAST
    )
    make_raster("scene_3.tif", count=4, width=40, height=40, folder=scenes[0].parent, seed=3)
    make_raster("scene_4.tif", width=40, height=40, folder=scenes[0].parent, seed=4)
    out = tmp_path / "seq"
    with pytest.raises(KeyboardInterrupt):
        translate_catalog(scenes[0].parent, out, InterruptOn4Bands(), workers=0, **FAST)
    halfway = read_manifest(out)
    assert list(halfway["status"]) == ["done"] * 3 + ["pending"] * 2
    assert list(halfway["sha256"][:3]) == list(dask_run["sha256"])  # same bytes either way
    resumed = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(resumed["status"]) == ["skipped"] * 3 + ["done"] * 2


def test_stac_items_of_scenes_placed_by_gcps_or_rpcs_have_their_footprint(tmp_path: Path) -> None:
    """A scene without a geotransform, placed by ground control points or RPCs, gets a
    STAC geometry and bbox from them (before: none), and its output keeps them."""
    from pyproj import Transformer

    from tests.conftest import placed_raster

    folder = tmp_path / "scenes"
    folder.mkdir()
    w, h = 90, 70
    placed_raster(folder / "gcps.tif", width=w, height=h)
    placed_raster(folder / "rpcs.tif", width=w, height=h, rpcs=True)
    out = tmp_path / "out"
    manifest = translate_catalog(folder, out, torch.nn.Identity(), workers=0, **FAST)
    assert set(manifest["status"]) == {"done"}
    # the GCPs map pixel (r, c) to x = 500000 + 2c + 0.3r, y = 5200000 - 2r + 0.2c (UTM 14N)
    utm = [(500000 + 2 * c + 0.3 * r, 5200000 - 2 * r + 0.2 * c) for r in (0, h) for c in (0, w)]
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(*zip(*utm, strict=True))
    dx, dy = 0.1 / w / 2, 0.1 / h / 2
    expected = {
        "gcps": (min(lon), min(lat), max(lon), max(lat)),
        # the RPCs: longitude -99.2 +- 0.05 across the columns, latitude 47.1 +- 0.05 down,
        # their line and sample counted from the first pixel's centre (GDAL's convention):
        # the corners lie half a pixel before
        "rpcs": (-99.25 - dx, 47.05 + dy, -99.15 - dx, 47.15 + dy),
    }
    for name, bbox in expected.items():
        item = json.loads((out / f"{name}_translated.json").read_text())
        assert item["bbox"] == pytest.approx(bbox, abs=1e-7), name
        assert item["geometry"]["type"] == "Polygon"
        with rasterio.open(out / f"{name}_translated.tif") as ds:
            assert (ds.rpcs is not None) if name == "rpcs" else len(ds.gcps[0]) == 4


@pytest.mark.parametrize(
    "turn",
    [rasterio.Affine.rotation(30), rasterio.Affine.shear(20, 10)],
    ids=["rotated-30", "sheared"],
)
def test_stac_geometry_of_a_rotated_scene_is_its_footprint(
    make_raster: Callable[..., Path], tmp_path: Path, turn: rasterio.Affine
) -> None:
    """Regression: a rotated or sheared scene's STAC geometry (and manifest footprint)
    was the axis-aligned bounding box of the grid in its CRS, a larger area than the
    scene's; it is the four corners of the pixel grid through the transform (edges
    densified, then reprojected), and ``bbox`` the bounds of that polygon."""
    from pyproj import Transformer
    from shapely.geometry import LineString, Point, shape

    w, h = 64, 48
    transform = (
        rasterio.Affine(1, 0, 500000.0, 0, 1, 5200000.0) * turn * rasterio.Affine.scale(10.0, -10.0)
    )
    scene = make_raster("turned.tif", width=w, height=h, transform=transform, folder=tmp_path / "s")
    out = tmp_path / "out"
    manifest = translate_catalog(scene.parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(manifest["status"]) == ["done"]
    with rasterio.open(out / "turned_translated.tif") as ds:
        assert ds.transform.almost_equals(transform)
    item = json.loads((out / "turned_translated.json").read_text())
    footprint = shape(item["geometry"])
    assert footprint.geom_type == "Polygon" and footprint.is_valid
    assert manifest.geometry.iloc[0].equals_exact(footprint, 1e-12)
    to_4326 = Transformer.from_crs(32614, 4326, always_xy=True)
    pixels = [(0, 0), (w, 0), (w, h), (0, h)]  # (col, row) corners, clockwise on the grid
    corners = [to_4326.transform(*(transform * p)) for p in pixels]
    vertices = list(footprint.exterior.coords)
    for corner in corners:  # each corner of the pixel grid is a vertex of the polygon
        assert min(Point(corner).distance(Point(v)) for v in vertices) < 1e-9, corner
    # every vertex lies on an edge of the grid mapped to EPSG:4326 (densified, not cut short)
    edges = []
    for (c0, r0), (c1, r1) in zip(pixels, pixels[1:] + pixels[:1], strict=True):
        steps = np.linspace(0.0, 1.0, 65)
        xy = [transform * (c0 + (c1 - c0) * t, r0 + (r1 - r0) * t) for t in steps]
        edges.append(LineString([to_4326.transform(x, y) for x, y in xy]))
    assert all(min(e.distance(Point(v)) for e in edges) < 1e-9 for v in vertices)
    assert len(vertices) > 5  # densified
    assert item["bbox"] == pytest.approx(list(footprint.bounds), abs=1e-12)
    lons, lats = zip(*corners, strict=True)
    assert item["bbox"] == pytest.approx([min(lons), min(lats), max(lons), max(lats)], abs=1e-6)
    # the axis-aligned box of the grid in UTM covers far more than the scene
    with rasterio.open(scene) as ds:
        utm_box = box(*ds.bounds)
    box_4326 = gpd.GeoSeries([utm_box], crs=32614).to_crs(4326).iloc[0]
    assert footprint.area < 0.9 * box_4326.area
    assert not footprint.contains(Point(to_4326.transform(*utm_box.exterior.coords[0])))


def test_stac_geometry_of_a_rotated_scene_across_the_antimeridian_is_cut_there(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A rotated scene across 180 degrees gets a valid MultiPolygon, one part each side,
    every corner of its grid a vertex (GDAL's cutting of such a slanted outline gave an
    invalid polygon, or one spanning the globe: ``transform_geom`` is no longer used)."""
    from pyproj import Transformer
    from shapely.geometry import Point, Polygon, shape

    w, h = 70, 50  # 1 km pixels in UTM zone 60N, the antimeridian 3 degrees east of 177E
    transform = (
        rasterio.Affine.translation(800000.0, 150000.0)
        * rasterio.Affine.rotation(30)
        * rasterio.Affine.scale(1000.0, -1000.0)
    )
    scene = make_raster("am.tif", width=w, height=h, crs="EPSG:32660", transform=transform,
                        folder=tmp_path / "s")  # fmt: skip
    out = tmp_path / "out"
    manifest = translate_catalog(scene.parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(manifest["status"]) == ["done"]
    item = json.loads((out / "am_translated.json").read_text())
    footprint = shape(item["geometry"])
    assert footprint.geom_type == "MultiPolygon" and footprint.is_valid
    east, west = sorted(footprint.geoms, key=lambda p: -p.bounds[0])
    assert east.bounds[2] == 180.0 and west.bounds[0] == -180.0
    assert all(-180.0 <= x <= 180.0 for x in footprint.bounds[::2])
    to_4326 = Transformer.from_crs(32660, 4326, always_xy=True)
    corners = [to_4326.transform(*(transform * p)) for p in ((0, 0), (w, 0), (w, h), (0, h))]
    assert {lon > 0 for lon, _ in corners} == {True, False}  # it does cross
    vertices = [v for part in footprint.geoms for v in part.exterior.coords]
    for corner in corners:
        assert min(Point(corner).distance(Point(v)) for v in vertices) < 1e-9, corner
    unwrapped = Polygon([(lon % 360.0, lat) for lon, lat in corners])
    assert footprint.area == pytest.approx(unwrapped.area, rel=1e-3)  # not the globe
    # RFC 7946 section 5.2: the bbox of a footprint across 180 degrees has west > east
    _, south, _, north = footprint.bounds
    assert item["bbox"] == [east.bounds[0], south, west.bounds[2], north]


def _geo_bbox(path: Path) -> list[float]:
    """The ``bbox`` of the geometry column in a GeoParquet file's ``geo`` metadata."""
    import pyarrow.parquet as pq

    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    return list(geo["columns"][geo["primary_column"]]["bbox"])


@pytest.mark.parametrize(
    ("crs", "transform", "beside"),
    [
        # 1 km pixels in UTM zone 60N near 9 N, where 180 degrees is at x = 829886 m
        ("EPSG:32660", rasterio.Affine(1000.0, 0, 800000.0, 0, -1000.0, 1040000.0), -10),
        # and in zone 1N, where it is at x = 170114 m
        ("EPSG:32601", rasterio.Affine(1000.0, 0, 140000.0, 0, -1000.0, 1040000.0), 10),
        # a geographic scene from 179.5 to 180.5 (i.e. -179.5) degrees east
        ("EPSG:4326", rasterio.Affine(1 / 64, 0, 179.5, 0, -1 / 64, 10.0), -10),
    ],
    ids=["utm-60n", "utm-1n", "lonlat-past-180"],
)
def test_stac_bbox_of_a_scene_across_the_antimeridian_has_west_greater_than_east(
    make_raster: Callable[..., Path],
    tmp_path: Path,
    crs: str,
    transform: rasterio.Affine,
    beside: int,
) -> None:
    """Regression: the STAC Item of a scene across 180 degrees had the bbox of its cut
    footprint, [-180, south, 180, north], as if the scene spanned the globe's width; it
    is [west, south, east, north] with west > east (RFC 7946 section 5.2, which the STAC
    item spec follows), so searches place it. The manifest's GeoParquet bbox follows the
    same rule; a scene beside it that does not cross keeps its bounds exactly."""
    from pyproj import Transformer
    from shapely.geometry import shape

    w, h = 64, 48
    folder = tmp_path / "s"
    make_raster("am.tif", width=w, height=h, crs=crs, transform=transform, folder=folder)
    near = rasterio.Affine.translation(beside * w * transform.a, 0.0) * transform
    make_raster("near.tif", width=w, height=h, crs=crs, transform=near, folder=folder)
    out = tmp_path / "out"
    manifest = translate_catalog(folder, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(manifest["status"]) == ["done", "done"]

    to_4326 = Transformer.from_crs(crs, 4326, always_xy=True)
    pixels = [(i * w / 8, 0) for i in range(9)] + [(i * w / 8, h) for i in range(9)]
    lons, lats = zip(*(to_4326.transform(*(transform * p)) for p in pixels), strict=True)
    lons_east = [x % 360.0 for x in lons]  # continuous across 180
    assert min(lons_east) < 180.0 < max(lons_east)  # it does cross
    item = pystac.Item.from_file(os.fspath(out / "am_translated.json"))
    footprint = shape(item.geometry)
    assert footprint.geom_type == "MultiPolygon"
    west, south, east, north = item.bbox
    assert west > 0 > east  # not [-180, south, 180, north]
    assert west == pytest.approx(min(lons_east), abs=1e-6)
    assert east == pytest.approx(max(lons_east) - 360.0, abs=1e-6)
    assert (south, north) == pytest.approx((min(lats), max(lats)), abs=1e-6)
    assert (south, north) == footprint.bounds[1::2]
    parts_east = [p for p in footprint.geoms if p.bounds[2] == 180.0]
    parts_west = [p for p in footprint.geoms if p.bounds[0] == -180.0]
    assert west == min(p.bounds[0] for p in parts_east)
    assert east == max(p.bounds[2] for p in parts_west)
    assert pystac.Item.from_dict(item.to_dict()).bbox == item.bbox  # round-trips

    other = pystac.Item.from_file(os.fspath(out / "near_translated.json"))
    assert shape(other.geometry).geom_type == "Polygon"
    assert other.bbox == list(shape(other.geometry).bounds)  # unchanged: min/max
    assert -180.0 < other.bbox[0] < other.bbox[2] < 180.0

    # the manifest: footprints unchanged, its GeoParquet bbox the smallest box over both
    again = read_manifest(out)
    assert again is not None
    assert again.geometry.iloc[manifest["scene"].tolist().index("am")].equals(footprint)
    lat_range = [min(south, other.bbox[1]), max(north, other.bbox[3])]
    if beside < 0:  # the other scene is west of 180, on the eastern hemisphere's side
        expected = [other.bbox[0], lat_range[0], east, lat_range[1]]
    else:
        expected = [west, lat_range[0], other.bbox[2], lat_range[1]]
    assert _geo_bbox(out / MANIFEST_NAME) == expected


def test_stac_bbox_of_polar_scenes(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    """A polar stereographic scene across 180 degrees (not around the pole) gets a bbox
    with west > east; one around the pole covers every longitude, [-180, south, 180, 90],
    and so does the manifest's GeoParquet bbox over both."""
    from pyproj import Transformer
    from shapely.geometry import shape

    folder = tmp_path / "s"
    off_pole = rasterio.Affine(10000.0, 0, -1480000.0, 0, -10000.0, 1480000.0)
    around = rasterio.Affine(10000.0, 0, -320000.0, 0, -10000.0, 320000.0)
    for name, transform in (("off", off_pole), ("cap", around)):
        make_raster(f"{name}.tif", width=64, height=64, crs="EPSG:3413", transform=transform,
                    folder=folder)  # fmt: skip
    out = tmp_path / "out"
    manifest = translate_catalog(folder, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(manifest["status"]) == ["done", "done"]

    off = pystac.Item.from_file(os.fspath(out / "off_translated.json"))
    to_4326 = Transformer.from_crs(3413, 4326, always_xy=True)
    lons = [to_4326.transform(*(off_pole * p))[0] for p in ((0, 0), (64, 0), (64, 64), (0, 64))]
    assert {lon > 0 for lon in lons} == {True, False}  # it does cross 180
    west, _, east, _ = off.bbox
    assert west == pytest.approx(min(lon % 360.0 for lon in lons), abs=1e-6)
    assert east == pytest.approx(max(lon % 360.0 for lon in lons) - 360.0, abs=1e-6)
    assert off.bbox[1::2] == list(shape(off.geometry).bounds[1::2])

    cap = pystac.Item.from_file(os.fspath(out / "cap_translated.json"))
    assert cap.bbox == list(shape(cap.geometry).bounds)
    assert cap.bbox[::2] == [-180.0, 180.0] and cap.bbox[3] == 90.0
    assert _geo_bbox(out / MANIFEST_NAME) == [-180.0, off.bbox[1], 180.0, 90.0]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([box(10, 0, 20, 5)], [10, 0, 20, 5]),
        ([box(-180, 0, -170, 5)], [-180, 0, -170, 5]),  # touches -180 only: plain
        ([box(-180, 0, -170, 5), box(10, -1, 20, 1)], [-180, -1, 20, 5]),
        ([box(170, -10, 175, 10), box(-175, -10, -170, 10)], [-175, -10, 175, 10]),
        # RFC 7946 section 5.2's example, as a footprint cut at 180 degrees
        ([box(177, -20, 180, -16), box(-180, -20, -178, -16)], [177, -20, -178, -16]),
        # the widest gap (-175 to 0) is left out, not the one from 10 to 170
        ([box(170, 0, 180, 1), box(-180, 0, -175, 1), box(0, 0, 10, 2)], [0, 0, -175, 2]),
        # overlapping parts that together cover every longitude (a polar cap)
        ([box(-180, 80, 10, 90), box(-10, 80, 180, 90)], [-180, 80, 180, 90]),
        ([box(-180, 80, 180, 90)], [-180, 80, 180, 90]),
    ],
)
def test_bbox_4326(parts: list[Any], expected: list[float]) -> None:
    """The RFC 7946 bbox: west > east only for geometries with parts on both sides of
    the antimeridian; a MultiPolygon or a list of geometries gives the same bbox."""
    from shapely.geometry import MultiPolygon

    assert bbox_4326(parts) == expected
    assert bbox_4326([MultiPolygon(parts), None]) == expected
    assert bbox_4326([]) is None and bbox_4326([None, box(0, 0, 0, 0).buffer(0)]) is None


def test_stac_asset_key_errors(scenes: list[Path], tmp_path: Path) -> None:
    catalog = _write_catalog("stac-items", scenes, tmp_path / "data")
    with pytest.raises(CatalogError, match="no item has an asset 'nope'.*thumbnail, visual"):
        read_catalog(catalog, asset_key="nope")
    # two assets, one of them a raster (the PNG thumbnail counts too): must be named
    rows = read_catalog(catalog)
    assert all(r.error and "pass asset_key" in r.error for r in rows)
    doc = json.loads(Path(catalog).read_text())
    del doc["features"][1]["assets"]["visual"]
    Path(catalog).write_text(json.dumps(doc))
    rows = read_catalog(catalog, asset_key="visual")
    assert [r.error is None for r in rows] == [True, False, True]
    assert "item 'scene_1'" in rows[1].error and "has no asset 'visual'" in rows[1].error


def test_scene_names_cannot_escape_the_output_folder(scenes: list[Path], tmp_path: Path) -> None:
    item = pystac.Item(
        "../escaped", None, None, pystac.utils.str_to_datetime("2020-01-01T00:00:00Z"), {}
    )
    item.add_asset("data", pystac.Asset(os.fspath(scenes[0]), media_type=pystac.MediaType.GEOTIFF))
    path = tmp_path / "items.json"
    pystac.ItemCollection([item]).save_object(dest_href=os.fspath(path))
    manifest = translate_catalog(path, tmp_path / "out", torch.nn.Identity(), workers=0, **FAST)
    assert list(manifest["status"]) == ["failed"]
    assert "outside the output folder" in manifest["error"][0]
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob("escaped*"))


def test_foreign_file_at_an_output_path_is_not_overwritten(
    scenes: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "scene_0_translated.tif"
    foreign.write_bytes(b"someone else's file")
    manifest = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(manifest["status"]) == ["failed", "done", "done"]
    assert "overwrite=True" in manifest["error"][0]
    assert foreign.read_bytes() == b"someone else's file"
    manifest = translate_catalog(
        scenes[0].parent, out, torch.nn.Identity(), workers=0, overwrite=True, **FAST
    )
    _assert_identity_outputs(manifest, scenes)


def test_unreachable_scheduler_is_a_clear_error(
    scenes: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(
        CatalogError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"
    ):
        translate_catalog(
            scenes[0].parent,
            tmp_path / "out",
            torch.nn.Identity(),
            scheduler="tcp://127.0.0.1:9",
            **FAST,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": 2, "scheduler": "tcp://127.0.0.1:9"}, "both given"),
        ({"workers": -1}, "workers=-1"),
        ({"retries": -1}, "retries=-1"),
        ({"tile_size": 64}, "unknown translation option.*tile_size"),
        ({"quicklook": "q.png"}, "quicklook='q.png' names one PNG.*write_quicklook"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    kwargs: dict, match: str, scenes: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=match):
        translate_catalog(scenes[0].parent, tmp_path / "out", torch.nn.Identity(), **kwargs)
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_bad_catalogs_are_clear_errors(tmp_path: Path) -> None:
    pd.DataFrame({"file": ["a.tif"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(CatalogError, match="no column 'path'.*file.*path_column"):
        read_catalog(tmp_path / "c.csv")
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope.gpkg")
    with pytest.raises(CatalogError, match="lists no scenes"):
        read_catalog(tmp_path / "*.tif")


def test_without_dask_runs_in_process_with_a_warning(
    scenes: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "_dask_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="Dask is not installed"):
        manifest = translate_catalog(
            scenes[0].parent, tmp_path / "out", torch.nn.Identity(), **FAST
        )
    _assert_identity_outputs(manifest, scenes)


def test_outputs_written_before_an_interrupt_are_kept(scenes: list[Path], tmp_path: Path) -> None:
    """A task that finished while the client was interrupted left its output and STAC Item
    but no 'done' row: the rerun keeps it when the Item's checksum matches the file."""
    out = tmp_path / "out"
    first = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    pending = first.assign(status="pending", sha256="")
    pending.to_parquet(out / MANIFEST_NAME)
    stamps = [os.stat(p).st_mtime_ns for p in first["output"]]
    item = Path(first["output"][2]).with_suffix(".json")
    item.write_text(item.read_text().replace(first["sha256"][2], "0" * 64))
    again = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(again["status"]) == ["skipped", "skipped", "done"]
    assert [os.stat(p).st_mtime_ns for p in again["output"]][:2] == stamps[:2]
    assert list(again["sha256"]) == list(first["sha256"])
    assert again.geometry[0].equals_exact(first.geometry[0], 1e-9)


@pytest.mark.parametrize("workers", [None, 1])
def test_local_cluster_sizing_threads_and_retries(workers: int | None) -> None:
    cores = catalog_module._cpu_count()
    with catalog_module._dask_client(workers, None, 5, n_jobs=2, device="cpu") as client:
        threads = client.run(torch.get_num_threads)
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    n = workers or min(cores, 2)
    assert len(threads) == n
    assert set(threads.values()) == {max(1, cores // n)}
    assert allowed == 5


def test_output_folder_inside_the_scanned_folder(scenes: list[Path]) -> None:
    folder = scenes[0].parent
    translate_catalog(folder, folder, torch.nn.Identity(), workers=0, **FAST)
    again = translate_catalog(folder, folder, torch.nn.Identity(), workers=0, **FAST)
    assert list(again["scene"]) == [p.stem for p in scenes]
    assert list(again["status"]) == ["skipped"] * 3
    assert not list(folder.glob("*_translated_translated*"))


def test_row_with_an_unknown_users_home_fails_alone(tmp_path: Path) -> None:
    """`~nosuchuser/x.tif` cannot be expanded: a failed row naming it, not a RuntimeError."""
    catalog = tmp_path / "cat.csv"
    catalog.write_text("path\n~nosuchuser12345/x.tif\n")
    manifest = translate_catalog(
        catalog, tmp_path / "out", torch.nn.Identity(), workers=0, progress=False
    )
    assert list(manifest["status"]) == ["failed"]
    assert "~nosuchuser12345" in manifest["error"].iloc[0]


def test_statistics_pass_fits_a_small_worker_memory_limit():
    from rsgan.pipelines.catalog import _fit_stats_memory
    from rsgan.pipelines.translate import STATS_MEMORY_MB

    options = {"tile": 768}
    # a 1 GiB worker: the pass may take 40 % of it, not the default 1536 MiB
    assert _fit_stats_memory(options, 2**30) == {"tile": 768, "stats_memory_mb": 409.6}
    assert _fit_stats_memory(options, 2**24)["stats_memory_mb"] == 64.0  # floor
    # a large worker, no worker, or the caller's own choice: unchanged
    assert _fit_stats_memory(options, 64 * 2**30) == options
    assert _fit_stats_memory(options, None) == options
    chosen = {"stats_memory_mb": 3000}
    assert _fit_stats_memory(chosen, 2**30) == chosen
    assert STATS_MEMORY_MB > 409.6


def test_url_scenes_translate_on_the_cluster(
    make_raster: Callable[..., Path], served: Any, tmp_path: Path, client: object
) -> None:
    """A catalog of URLs (as a STAC catalog of remote COGs gives): the workers read them
    over HTTP, each output as from the file."""
    for i, (w, h) in enumerate(SIZES[:2]):
        make_raster(f"r{i}.tif", width=w, height=h, seed=i, folder=served.folder)
    urls = [f"{served.base}/r0.tif", f"{served.base}/r1.tif"]
    manifest = translate_catalog(urls, tmp_path / "out", torch.nn.Identity(), scheduler=client,
                                 **FAST)  # fmt: skip
    assert list(manifest["status"]) == ["done", "done"], list(manifest["error"])
    assert list(manifest["source"]) == urls
    for row, name in zip(manifest.itertuples(), ["r0.tif", "r1.tif"], strict=True):
        out_pixels, out_grid = _pixels_and_grid(row.output)
        in_pixels, in_grid = _pixels_and_grid(served.folder / name)
        assert out_grid == in_grid
        np.testing.assert_array_equal(out_pixels, in_pixels)


def test_stac_item_collection_given_by_a_relative_path_gives_absolute_sources(
    scenes: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rsgan batch items.json out/` from the catalog's folder: the scenes' sources (the
    manifest's, and each Item's derived_from link) used to stay relative to the working
    folder, so the Items' links pointed inside OUT_DIR and workers started elsewhere (an
    existing cluster) looked for other files; other catalog kinds gave absolute paths."""
    _write_catalog("stac-items", scenes, tmp_path / "data")
    monkeypatch.chdir(tmp_path / "data")
    manifest = translate_catalog(
        "items.json", "out", torch.nn.Identity(), asset_key="visual", workers=0, **FAST
    )
    assert list(manifest["source"]) == [os.fspath(p) for p in scenes]
    _assert_identity_outputs(manifest, scenes)
    for row in manifest.itertuples():
        item = json.loads(Path(row.output).with_suffix(".json").read_text())
        links = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
        assert links == [row.source] and item["properties"]["rsgan:source"] == row.source


def test_rerun_redoes_a_scene_whose_row_now_names_another_file(
    make_raster: Callable[..., Path], scenes: list[Path], tmp_path: Path
) -> None:
    """A catalog row edited to give a scene name another file (a reprocessed or corrected
    scene): the rerun used to skip it, keeping the output of the old file, and the
    manifest still named the old file as the source."""
    catalog = tmp_path / "data" / "catalog.csv"
    pd.DataFrame({"path": [os.fspath(p) for p in scenes]}).to_csv(catalog, index=False)
    out = tmp_path / "out"
    first = translate_catalog(catalog, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(first["status"]) == ["done"] * 3
    newer = make_raster("scene_0.tif", width=32, height=32, seed=9, folder=tmp_path / "v2")
    pd.DataFrame({"path": [os.fspath(newer), *map(os.fspath, scenes[1:])]}).to_csv(
        catalog, index=False
    )
    again = translate_catalog(catalog, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(again["status"]) == ["done", "skipped", "skipped"]
    assert again["source"][0] == os.fspath(newer)
    _assert_identity_outputs(again.assign(status="done"), [newer, *scenes[1:]])


def test_stac_item_of_a_custom_crs_has_wkt2_and_band_scales(tmp_path: Path) -> None:
    """A CRS without an EPSG code goes into ``proj:wkt2`` as WKT2 (it was GDAL's WKT1,
    which STAC readers parsing WKT2 refuse), and each band's scale, offset and unit, which
    the output keeps, into ``raster:bands``."""
    from pyproj import CRS as ProjCRS

    wkt = (
        'PROJCS["custom_tm",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,'
        '298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
        'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",12.5],'
        'PARAMETER["central_meridian",-99.25],PARAMETER["scale_factor",0.9996],'
        'PARAMETER["false_easting",123456],PARAMETER["false_northing",0],UNIT["metre",1]]'
    )
    folder = tmp_path / "scenes"
    folder.mkdir()
    with rasterio.open(
        folder / "s.tif",
        "w",
        driver="GTiff",
        width=64,
        height=48,
        count=2,
        dtype="uint16",
        crs=rasterio.crs.CRS.from_wkt(wkt),
        transform=rasterio.Affine(10, 0, 123456, 0, -10, 1400000),
    ) as ds:
        ds.write(np.random.default_rng(0).integers(1, 3000, (2, 48, 64), dtype=np.uint16))
        ds.scales = [1e-4, 1e-4]
        ds.offsets = [-0.1, -0.1]
        ds.units = ["reflectance", "reflectance"]
    out = tmp_path / "out"
    manifest = translate_catalog(folder, out, torch.nn.Identity(), workers=0, **FAST)
    assert set(manifest["status"]) == {"done"}
    item = json.loads((out / "s_translated.json").read_text())
    text = item["properties"]["proj:wkt2"]
    assert text.startswith("PROJCRS[")  # WKT2, not WKT1's PROJCS[
    assert ProjCRS.from_wkt(text).equals(ProjCRS.from_wkt(wkt))
    bands = item["assets"]["data"]["raster:bands"]
    assert [(b["scale"], b["offset"], b["unit"]) for b in bands] == [
        (1e-4, -0.1, "reflectance")
    ] * 2


def test_unknown_option_message_lists_only_options_passed_on(
    scenes: list[Path], tmp_path: Path
) -> None:
    # the list of options translate_catalog passes on left out quicklook, which it refuses
    with pytest.raises(ConfigError, match="tile_size") as err:
        translate_catalog(scenes[0].parent, tmp_path / "out", torch.nn.Identity(), tile_size=64)
    passed_on = str(err.value).split("translate_raster: ")[1].split(", ")
    assert "tile" in passed_on
    assert "quicklook" not in passed_on


def test_a_script_without_main_guard_gets_a_catalog_error_saying_so(
    scenes: list[Path], tmp_path: Path
) -> None:
    # the README's translate_catalog line at a script's top level: every worker process
    # imported the script again and the run died with Dask's "Nanny failed to start"
    script = tmp_path / "run_catalog.py"
    script.write_text(
        "import torch\n"
        "from rsgan.pipelines.catalog import translate_catalog\n"
        f"translate_catalog({str(scenes[0].parent)!r}, {str(tmp_path / 'out')!r}, "
        "torch.nn.Identity(), workers=1, progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rsgan.errors.CatalogError: Dask could not start 1 local worker")
    assert 'if __name__ == "__main__":' in last and "workers=0" in last


def test_rerun_skips_scenes_named_through_a_link_or_another_relative_path(
    scenes: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same files, named on the rerun through a symlinked folder or another relative
    path (``scenes/../scenes``): since a rerun redoes a scene whose row gives another
    file, every finished scene was translated again, as the sources' text differed."""
    out = tmp_path / "out"
    first = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(first["status"]) == ["done"] * 3
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path / "data")
    for catalog in (tmp_path / "link" / "scenes", "scenes/../scenes"):
        again = translate_catalog(catalog, out, torch.nn.Identity(), workers=0, **FAST)
        assert list(again["status"]) == ["skipped"] * 3, catalog
        assert list(again["sha256"]) == list(first["sha256"])


@pytest.fixture
def zipped_scene(make_raster: Callable[..., Path], tmp_path: Path) -> Path:
    """``tmp_path/cat/data/scenes.zip`` holding one GeoTIFF ``a.tif``; returns ``cat``."""
    scene = make_raster("a.tif", width=48, height=40, folder=tmp_path / "src")
    (tmp_path / "cat" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    with zipfile.ZipFile(tmp_path / "cat" / "data" / "scenes.zip", "w") as archive:
        archive.write(scene, "a.tif")
    return tmp_path / "cat"


def test_a_relative_vsizip_row_is_stored_absolute_and_found_from_another_folder(
    zipped_scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a CSV row ``/vsizip/data/scenes.zip/a.tif`` (the archive relative, as
    any relative path in a catalog) went into the manifest as written, so GDAL looked for
    the archive in whatever folder the run started in: a rerun from another folder could
    not read it, nor could anyone reading the manifest. Like a relative local path, its
    archive resolves against the catalog's folder, and the manifest holds it absolute."""
    catalog = zipped_scene / "scenes.csv"
    pd.DataFrame({"path": ["/vsizip/data/scenes.zip/a.tif"]}).to_csv(catalog, index=False)
    absolute = f"/vsizip/{zipped_scene}/data/scenes.zip/a.tif"  # /vsizip//tmp/...
    out = tmp_path / "out"
    monkeypatch.chdir(zipped_scene)
    first = translate_catalog("scenes.csv", out, torch.nn.Identity(), workers=0, **FAST)
    assert list(first["status"]) == ["done"], list(first["error"])
    assert list(first["source"]) == [absolute]
    item = json.loads(Path(first["output"][0]).with_suffix(".json").read_text())
    assert item["properties"]["rsgan:source"] == absolute
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "link").symlink_to(zipped_scene)
    for named in (catalog, "../cat/scenes.csv", tmp_path / "link" / "scenes.csv"):
        again = translate_catalog(named, out, torch.nn.Identity(), workers=0, **FAST)
        assert list(again["status"]) == ["skipped"], named
        assert list(again["source"]) == [absolute], named
    with rasterio.open(read_manifest(out)["source"][0]) as src:  # the manifest's source
        assert src.read().shape == (3, 40, 48)
    Path(first["output"][0]).unlink()  # the output lost: redone from this folder
    redone = translate_catalog(catalog, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(redone["status"]) == ["done"], list(redone["error"])
    assert list(redone["sha256"]) == list(first["sha256"])


def test_a_relative_vsizip_href_of_a_local_stac_item_is_made_absolute(
    zipped_scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local STAC item's ``/vsizip/data/scenes.zip/a.tif`` asset resolves against the
    item's folder, as its other relative hrefs do (it was kept relative to the working
    folder)."""
    item = pystac.Item("a", None, None, pystac.utils.str_to_datetime("2020-01-01T00:00:00Z"), {})
    href = "/vsizip/data/scenes.zip/a.tif"
    item.add_asset("data", pystac.Asset(href, media_type=pystac.MediaType.GEOTIFF))
    for path in (zipped_scene / "items.json", zipped_scene / "a.json"):
        if path.name == "items.json":  # an ItemCollection: no file per item
            pystac.ItemCollection([item]).save_object(dest_href=os.fspath(path))
        else:
            item.save_object(include_self_link=True, dest_href=os.fspath(path))
        monkeypatch.chdir(tmp_path / "elsewhere")
        (scene,) = read_catalog(path)
        assert scene.source == f"/vsizip/{zipped_scene}/data/scenes.zip/a.tif", path
        with rasterio.open(scene.source) as src:
            assert src.count == 3


@pytest.mark.parametrize(
    "form",
    ["/vsizip/{}/a.tif", "/vsizip/{{{}}}/a.tif", "zip://{}!a.tif"],
    ids=["vsizip", "vsizip-braces", "zip-url"],
)
def test_a_relative_archive_named_from_two_folders_is_one_scene(
    zipped_scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """Regression: the same archive member given relative to two working folders
    (``/vsizip/data/scenes.zip/a.tif`` from the catalog's folder, then
    ``/vsizip/cat/data/scenes.zip/a.tif`` from its parent) was two sources to the rerun,
    which translated the scene again; and a manifest written with the relative name (by an
    earlier rsgan) still counts as done when resumed from the folder it was made in."""
    out = tmp_path / "out"
    monkeypatch.chdir(zipped_scene)
    first = translate_catalog([form.format("data/scenes.zip")], out, torch.nn.Identity(),
                              workers=0, **FAST)  # fmt: skip
    assert list(first["status"]) == ["done"], list(first["error"])
    assert str(zipped_scene) in first["source"][0]
    monkeypatch.chdir(tmp_path)
    again = translate_catalog([form.format("cat/data/scenes.zip")], out, torch.nn.Identity(),
                              workers=0, **FAST)  # fmt: skip
    assert list(again["status"]) == ["skipped"]
    assert list(again["sha256"]) == list(first["sha256"])
    older = read_manifest(out)
    older["source"] = [form.format("data/scenes.zip")]  # as rsgan stored it before
    older.to_parquet(out / MANIFEST_NAME)
    monkeypatch.chdir(zipped_scene)
    resumed = translate_catalog([form.format("data/scenes.zip")], out, torch.nn.Identity(),
                                workers=0, **FAST)  # fmt: skip
    assert list(resumed["status"]) == ["skipped"]


def test_rerun_skips_url_scenes_signed_anew(
    make_raster: Callable[..., Path], served: Any, tmp_path: Path
) -> None:
    """A long batch over signed hrefs (Planetary Computer SAS tokens expire in an hour)
    is resumed with the catalog signed again: only the signature differs, so the scenes
    are the same and are skipped; they were all translated again. Another file (another
    path) is still redone."""
    for i in range(2):
        make_raster(f"r{i}.tif", width=48, height=40, seed=i, folder=served.folder)

    def signed(name: str, stamp: str) -> str:
        return f"{served.base}/{name}?st={stamp}&se={stamp}Z&sp=r&sv=2021-06-08&sr=b&sig={stamp}x"

    out = tmp_path / "out"
    urls = [signed("r0.tif", "a"), signed("r1.tif", "a")]
    first = translate_catalog(urls, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(first["status"]) == ["done", "done"], list(first["error"])
    again = translate_catalog([signed("r0.tif", "b"), signed("r1.tif", "b")], out,
                              torch.nn.Identity(), workers=0, **FAST)  # fmt: skip
    assert list(again["status"]) == ["skipped", "skipped"]
    make_raster("r1.tif", width=48, height=40, seed=5, folder=served.folder / "v2")
    moved = translate_catalog([signed("r0.tif", "c"), signed("v2/r1.tif", "c")], out,
                              torch.nn.Identity(), workers=0, **FAST)  # fmt: skip
    assert list(moved["status"]) == ["skipped", "done"]


def test_a_second_run_on_a_busy_output_folder_is_refused(
    scenes: list[Path], tmp_path: Path
) -> None:
    """Two runs on one OUT_DIR at once (a cron job overlapping the last one): the second
    used to translate every scene again, fail each as "appeared while it was being
    written", and write its manifest over the first's, so the manifest said failed for
    scenes that were done and every later rerun failed them all ("exists and was not
    written by an earlier run") until --overwrite. It is refused before any work now."""
    import threading

    from rsgan.errors import RasterWriteError

    out = tmp_path / "out"
    gate = make_gate()
    first: dict[str, Any] = {}

    def run() -> None:
        first["manifest"] = translate_catalog(scenes[0].parent, out, gate, workers=0, **FAST)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert gate.entered.wait(60)
        for overwrite in (False, True):
            with pytest.raises(RasterWriteError, match=r"out is in use by another rsgan batch"):
                translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0,
                                  overwrite=overwrite, **FAST)  # fmt: skip
    finally:
        gate.release.set()
        thread.join()
    _assert_identity_outputs(first["manifest"], scenes)
    _assert_identity_outputs(read_manifest(out), scenes)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no lock left
    again = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    assert list(again["status"]) == ["skipped"] * len(scenes)


def test_an_output_folder_that_cannot_be_made_is_a_clear_error(
    scenes: list[Path], tmp_path: Path
) -> None:
    """It was a NotADirectoryError / PermissionError traceback from mkdir."""
    from rsgan.errors import RasterWriteError

    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(RasterWriteError, match=r"cannot create output folder .*a_file/out"):
        translate_catalog(scenes[0].parent, tmp_path / "a_file" / "out", torch.nn.Identity(),
                          workers=0, **FAST)  # fmt: skip


def test_a_scheduler_without_workers_says_so_then_waits_for_one(
    scenes: list[Path], tmp_path: Path
) -> None:
    """A cluster whose workers have not started yet (or never will: a wrong address given
    to `dask worker`): the run used to wait at 0 % without a word. It warns, waits, and
    runs the scenes once a worker joins."""
    import threading
    import time

    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster:
        with pytest.warns(RuntimeWarning, match=r"has no workers yet.*dask worker tcp://") as seen:

            def add_a_worker_once_warned() -> None:
                give_up = time.monotonic() + 120  # without the warning: fail, not hang
                while not any("no workers" in str(w.message) for w in list(seen)):
                    if time.monotonic() > give_up:
                        break
                    time.sleep(0.05)
                cluster.scale(1)

            helper = threading.Thread(target=add_a_worker_once_warned, daemon=True)
            helper.start()
            manifest = translate_catalog(scenes[0].parent, tmp_path / "out", torch.nn.Identity(),
                                         scheduler=cluster.scheduler_address, **FAST)  # fmt: skip
    _assert_identity_outputs(manifest, scenes)


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_a_bad_checkpoint_is_refused_before_any_scene(
    scenes: list[Path], tmp_path: Path, content: bytes
) -> None:
    """A corrupt or truncated --model was found by each scene in turn: every row of a
    catalog failed with the same error (after a manifest of them was written). It is
    one error now, before any work."""
    from rsgan.errors import CheckpointError

    model = tmp_path / "model.safetensors"
    model.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"checkpoint .*model\.safetensors"):
        translate_catalog(scenes[0].parent, tmp_path / "out", model, workers=0, **FAST)
    assert not (tmp_path / "out").exists()


def test_a_lock_file_left_by_another_users_run_does_not_block(
    scenes: list[Path], tmp_path: Path
) -> None:
    """A killed run of a teammate left its lock file (theirs, 0644: not writable here)."""
    out = tmp_path / "out"
    out.mkdir()
    stale = out / catalog_module.RUN_LOCK_NAME
    stale.write_text("pid 1 on elsewhere")
    stale.chmod(0o444)
    if os.access(stale, os.W_OK):
        pytest.skip("this process writes every file (root with CAP_DAC_OVERRIDE)")
    manifest = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0, **FAST)
    _assert_identity_outputs(manifest, scenes)
    assert not stale.exists()


def test_a_live_writers_temporary_in_out_dir_is_kept(scenes: list[Path], tmp_path: Path) -> None:
    """An output being written by another process (a task of an interrupted run that an
    external cluster still runs): the run used to delete its temporary before and after
    its own work, whatever its writer; only temporaries of writers that are gone are
    removed now, and that scene waits for a rerun."""
    from rsgan.io import atomic_output

    out = tmp_path / "out"
    out.mkdir()
    busy = out / f"{scenes[0].stem}_translated.tif"
    with atomic_output(busy) as live:
        live.write_bytes(b"being written")
        manifest = translate_catalog(scenes[0].parent, out, torch.nn.Identity(), workers=0,
                                     **FAST)  # fmt: skip
        assert live.read_bytes() == b"being written"
    by_scene = manifest.set_index("scene")
    assert "being written by another process" in by_scene.loc[scenes[0].stem, "error"]
    assert sorted(manifest["status"]) == ["done", "done", "failed"]
    assert busy.read_bytes() == b"being written"


def test_a_catalog_name_past_the_file_systems_limit_is_a_catalog_error(tmp_path: Path) -> None:
    """It was an OSError traceback ("File name too long") from Path.exists."""
    with pytest.raises(CatalogError, match=r"File name too long"):
        translate_catalog(tmp_path / ("c" * 256 + ".csv"), tmp_path / "out", workers=0)
