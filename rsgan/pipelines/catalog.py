"""Translate a catalog of scenes, one Dask task per scene, safe to rerun.

A *catalog* lists the rasters to translate. It can be

- a vector file (GeoPackage, GeoJSON, GeoParquet, FlatGeobuf, Shapefile) or a CSV with a
  column of raster paths (``path_column``);
- a folder of rasters, or a glob pattern such as ``"scenes/*.tif"``;
- a local STAC ItemCollection, Catalog, Collection or Item JSON, with the key of the asset
  to translate (``asset_key``; optional when every item has exactly one raster asset).

Relative paths resolve against the catalog's folder. Scene ``name`` gives the output
``<out_dir>/<name>_translated.tif`` (``name`` is the file stem, or the STAC item id) and a
STAC Item ``<out_dir>/<name>_translated.json`` next to it.

Execution: one task per scene on Dask distributed (pixels never cross tasks, each output is
written by one task). By default a ``LocalCluster`` of worker processes sized to the machine
(one worker per CPU core, one thread each, memory split evenly; one worker per GPU with
``resources={"GPU": 1}`` when CUDA is used), or an existing cluster (``scheduler=
"tcp://host:8786"`` or a ``distributed.Client``). The model is loaded once per worker: a
checkpoint path is loaded by a per-process cache keyed by the path; an in-memory model is
shipped once per worker in a worker plugin, never inside a task. Without Dask installed (or
with ``workers=0``) the scenes run one after another in this process.

The manifest ``<out_dir>/manifest.parquet`` (GeoParquet; footprints in EPSG:4326) is
rewritten atomically as scenes finish. A rerun skips scenes whose output exists and whose
SHA-256 matches the manifest, and redoes the rest.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import json
import logging
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.polygon import orient

from rsgan._types import PathLike
from rsgan.errors import (
    CatalogError,
    ConfigError,
    MissingDependencyError,
    RasterWriteError,
    RsganError,
)
from rsgan.io import (
    absolute_source,
    atomic_output,
    check_local_output,
    describe,
    exclusive_lock,
    is_virtual,
    pixel_ring,
    placed_xy,
    redact_text,
    remove_stale_temporaries,
    same_source,
    source_name,
    source_stem,
    unsigned_url,
)

try:  # Dask is an optional extra: `pip install 'rsgan[dask]'`
    from distributed import WorkerPlugin as _WorkerPluginBase
except ImportError:  # pragma: no cover - exercised only without the extra
    _WorkerPluginBase = object  # type: ignore[assignment,misc]

MANIFEST_NAME = "manifest.parquet"
RUN_LOCK_NAME = ".rsgan-batch.lock"
"""The file in ``out_dir`` a run holds locked while it runs (removed at its end): a second
run on the same folder is refused (:func:`translate_catalog`)."""
OUTPUT_SUFFIX = "_translated"
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg")
STATUSES = ("pending", "done", "failed", "skipped")
MANIFEST_COLUMNS = ("scene", "source", "output", "status", "error", "seconds", "sha256")
CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a scheduler given by address before giving up."""

_GLOB_CHARS = frozenset("*?[")
_RASTER_MEDIA_HINTS = ("tiff", "jp2", "png", "jpeg")


@dataclass(frozen=True, slots=True)
class Scene:
    """One catalog row.

    Attributes:
        name: output stem, unique within the catalog (file stem or STAC item id).
        source: path or URL of the raster to translate, as rasterio opens it.
        label: how messages name the row, e.g. ``"row 3"`` or ``"item 'S2A_...'"``.
        footprint: the row's geometry in EPSG:4326 when the catalog has one, else None.
        datetime: acquisition time from a STAC item, else None.
        error: why the row cannot be translated (set while reading the catalog), else None.
    """

    name: str
    source: str
    label: str
    footprint: Any = None
    datetime: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SceneResult:
    """What happened to one scene: one manifest row.

    Attributes:
        scene: the scene name.
        source: the input raster.
        output: the translated raster (a path inside ``out_dir``).
        status: ``"done"``, ``"failed"``, ``"skipped"`` (already done by an earlier run) or
            ``"pending"`` (not finished yet).
        error: the error message for a failed scene, else ``""``.
        seconds: wall time of the translation in seconds (0 when not run).
        sha256: hex SHA-256 of the output file, ``""`` when there is none.
        footprint: the scene's footprint in EPSG:4326, or None when unknown.
    """

    scene: str
    source: str
    output: str
    status: str
    error: str = ""
    seconds: float = 0.0
    sha256: str = ""
    footprint: Any = None


# ---------------------------------------------------------------------------------------
# Reading catalogs
# ---------------------------------------------------------------------------------------


def read_catalog(
    catalog: PathLike | Iterable[PathLike],
    *,
    asset_key: str | None = None,
    path_column: str = "path",
) -> list[Scene]:
    """List the scenes of a catalog (see the module docstring for the accepted kinds).

    Args:
        catalog: a vector or CSV file, a folder, a glob pattern, a STAC JSON file or URL
            (``https://.../catalog.json``), or a list of raster paths or URLs.
        asset_key: the STAC asset to translate; None picks the only raster asset of each item.
        path_column: the column of raster paths in a vector or CSV catalog.

    Returns:
        The scenes in catalog order. Rows that cannot be used carry ``error``; the caller
        records them as failed and goes on with the others.

    Raises:
        CatalogError: the catalog itself cannot be read, has no path column, no scenes, or
            an asset key that no item has.
    """
    if not isinstance(catalog, (str, os.PathLike)):
        return _name_scenes([_source_scene(p, f"item {i}") for i, p in enumerate(catalog)])
    if _is_stac_url(os.fspath(catalog)):
        scenes = _read_stac(os.fspath(catalog), asset_key=asset_key)
    else:
        kind, path = _catalog_kind(catalog)
        scenes = _READERS[kind](path, asset_key=asset_key, path_column=path_column)
    if not scenes:
        raise CatalogError(f"catalog {str(catalog)!r} lists no scenes; check the path or pattern")
    return _name_scenes(scenes)


def _catalog_kind(catalog: PathLike) -> tuple[str, Path]:
    text = os.fspath(catalog)
    if "://" in text:
        raise CatalogError(
            f"catalog {text!r}: from the web rsgan reads STAC JSON documents "
            "(https://.../catalog.json); download a vector or CSV catalog and pass the file"
        )
    path = _expand_user(Path(text))
    try:
        exists = path.exists()
    except OSError as exc:  # a name past 255 bytes, a loop of links
        raise CatalogError(f"catalog {text!r}: {exc.strerror}; check the path") from None
    if path.is_dir():
        return "folder", path
    if not exists:
        if _GLOB_CHARS & set(text):
            return "glob", path
        raise CatalogError(
            f"catalog {text!r} does not exist; pass a vector/CSV file, a folder, a glob "
            "pattern such as 'scenes/*.tif', or a STAC JSON file"
        )
    suffix = path.suffix.lower()
    if suffix in (".json", ".geojson"):
        return ("stac" if _is_stac(path) else "vector"), path
    kind = _SUFFIX_KINDS.get(suffix)
    if kind is None:
        raise CatalogError(
            f"catalog {text!r}: unknown kind of file {suffix!r}; use one of "
            f"{', '.join(sorted(_SUFFIX_KINDS))}, a .json STAC file, a folder or a glob"
        )
    return kind, path


def _is_stac(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CatalogError(f"catalog {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict):
        return False
    if "stac_version" in doc:
        return True
    features = doc.get("features") or []
    return bool(features) and isinstance(features[0], dict) and "stac_version" in features[0]


def _is_raster_file(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in RASTER_SUFFIXES
    )


def _read_folder(path: Path, **_: Any) -> list[Scene]:
    return [_path_scene(p, p.name) for p in sorted(path.iterdir()) if _is_raster_file(p)]


def _read_glob(path: Path, **_: Any) -> list[Scene]:
    files = sorted(Path(p) for p in glob.glob(os.fspath(path), recursive=True))
    return [_path_scene(p, p.name) for p in files if _is_raster_file(p)]


@contextlib.contextmanager
def _warnings_if_read() -> Iterator[None]:
    """Hold back the warnings a reader gives while it reads and show them only when it
    succeeds: a file it cannot read is one error line, not GDAL's remark on it (e.g.
    "GPKG: bad application_id") followed by that line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _read_table(path: Path, *, path_column: str, **_: Any) -> list[Scene]:
    try:
        with _warnings_if_read():
            table = _table(path)
    except CatalogError:
        raise
    except Exception as exc:
        raise CatalogError(f"catalog {str(path)!r} could not be read: {exc}") from None
    return _table_scenes(path, table, path_column)


def _table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return _read_parquet(path)
    return gpd.read_file(path)


def _table_scenes(path: Path, table: pd.DataFrame, path_column: str) -> list[Scene]:
    if path_column not in table.columns:
        columns = ", ".join(map(str, table.columns))
        raise CatalogError(
            f"catalog {str(path)!r} has no column {path_column!r} of raster paths; its "
            f"columns are: {columns}. Pass path_column= (--path-column) to name the column"
        )
    footprints = _footprints_4326(table)
    scenes = []
    for i, value in enumerate(table[path_column]):
        label = f"row {i + 1} of {path.name}"
        if not isinstance(value, str) or not value.strip():
            scenes.append(
                Scene(
                    f"row-{i + 1}",
                    "",
                    label,
                    footprints[i],
                    error=f"{label}: empty {path_column!r}; give a raster path",
                )
            )
            continue
        scenes.append(replace(_source_scene(value, label, path.parent), footprint=footprints[i]))
    return scenes


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return gpd.read_parquet(path)
    except ValueError:  # a plain Parquet table without GeoParquet metadata
        return pd.read_parquet(path)


def _footprints_4326(table: pd.DataFrame) -> list[Any]:
    if not isinstance(table, gpd.GeoDataFrame) or table.crs is None:
        return [None] * len(table)
    try:
        return list(table.geometry.to_crs("EPSG:4326"))
    except Exception:  # a footprint is a convenience; a bad CRS must not stop the run
        return [None] * len(table)


def _is_stac_url(text: str) -> bool:
    """A STAC JSON document on the web (``http(s)://.../catalog.json``), which pystac reads."""
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and parts.path.lower().endswith((".json", ".geojson"))


def _stac_items(pystac: Any, path: Path | str) -> list[Any]:
    if isinstance(path, Path):
        doc = json.loads(path.read_text())
    else:  # a URL
        doc = pystac.StacIO.default().read_json(path)
    if doc.get("type") == "FeatureCollection":
        return list(pystac.ItemCollection.from_file(os.fspath(path)))
    if doc.get("type") == "Feature":
        return [pystac.Item.from_file(os.fspath(path))]
    root = pystac.read_file(os.fspath(path))
    if not isinstance(root, pystac.Catalog):  # a Collection is a Catalog too
        raise TypeError(f"it holds a {type(root).__name__}, not a catalog")
    return list(root.get_items(recursive=True))


def _read_stac(path: Path | str, *, asset_key: str | None, **_: Any) -> list[Scene]:
    import pystac

    try:
        with _warnings_if_read():
            items = _stac_items(pystac, path)
    except Exception as exc:
        raise CatalogError(f"STAC catalog {str(path)!r} could not be read: {exc}") from None
    if asset_key is not None and items and not any(asset_key in it.assets for it in items):
        keys = sorted({k for it in items for k in it.assets})
        raise CatalogError(
            f"STAC catalog {str(path)!r}: no item has an asset {asset_key!r}; the asset keys "
            f"are: {', '.join(keys)}. Pass one of them as asset_key (--asset-key)"
        )
    return [_stac_scene(item, asset_key, path) for item in items]


def _stac_scene(item: Any, asset_key: str | None, catalog: Path | str) -> Scene:
    label = f"item {item.id!r}"
    catalog_name = source_name(catalog)
    footprint = shape(item.geometry) if item.geometry else None  # STAC geometry is WGS84
    scene = Scene(item.id, "", label, footprint, item.datetime)
    if asset_key is None:
        rasters = [k for k, a in item.assets.items() if _looks_like_raster(a)]
        if len(rasters) != 1:
            found = ", ".join(sorted(item.assets)) or "none"
            return replace(
                scene,
                error=(
                    f"{label} of {catalog_name}: cannot tell which asset to translate "
                    f"(raster assets: {', '.join(rasters) or 'none'}; all assets: {found}); "
                    "pass asset_key (--asset-key)"
                ),
            )
        asset_key = rasters[0]
    asset = item.assets.get(asset_key)
    if asset is None:
        return replace(
            scene,
            error=(
                f"{label} of {catalog_name} has no asset {asset_key!r}; its assets are: "
                f"{', '.join(sorted(item.assets)) or 'none'}"
            ),
        )
    href = asset.get_absolute_href() or asset.href
    if isinstance(catalog, str):  # on the web: relative to the catalog's URL
        if not is_virtual(href):
            href = urljoin(catalog, href)
    elif is_virtual(href):  # a relative archive (/vsizip/a.zip/b.tif) against the item's folder
        href = absolute_source(href, _item_folder(item, catalog))
    else:  # absolute, as in other catalogs: workers, the manifest and Items need it
        href = os.fspath(_expand_user(_resolve(href, catalog.parent)).absolute())
    return replace(scene, source=href)


def _item_folder(item: Any, catalog: Path) -> Path:
    """The folder of a local STAC item's JSON file (pystac resolves relative hrefs
    against it), or the catalog's for an item of an ItemCollection (no file of its own)."""
    self_href = item.get_self_href()
    if self_href and not is_virtual(self_href):
        return Path(self_href).parent
    return catalog.parent


def _looks_like_raster(asset: Any) -> bool:
    media = (asset.media_type or "").lower()
    if any(hint in media for hint in _RASTER_MEDIA_HINTS):
        return True
    return not media and Path(asset.href).suffix.lower() in RASTER_SUFFIXES


def _expand_user(path: Path) -> Path:
    """``~`` and ``~user`` expanded; a home that cannot be found leaves the path as it is
    (it then fails as a missing file, with the row named, instead of a RuntimeError)."""
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def _resolve(value: str | Path, base: Path) -> Path:
    path = _expand_user(Path(value))
    return path if path.is_absolute() else (base / path)


def _source_scene(value: str | os.PathLike[str], label: str, base: Path | None = None) -> Scene:
    """The scene of a raster path or URL: a local path made absolute (against ``base``
    when relative, else the working folder), a URL or ``/vsi`` path kept as given (pathlib
    would fold the ``//`` of ``https://host/...`` and GDAL then look for another file) but
    for a relative local archive or file in it, made absolute the same way
    (``/vsizip/a.zip/b.tif``: :func:`rsgan.io.absolute_source`), named by its file stem."""
    text = os.fspath(value)
    if is_virtual(text):
        text = absolute_source(text, base)
        return Scene(source_stem(text), text, label)
    return _path_scene(_resolve(text, base) if base is not None else Path(text), label)


def _path_scene(path: Path, label: str) -> Scene:
    path = _expand_user(path).absolute()
    return Scene(path.stem, os.fspath(path), label)


def _name_scenes(scenes: list[Scene]) -> list[Scene]:
    """Mark rows whose output name would escape ``out_dir`` or repeat an earlier row's."""
    seen: dict[str, Scene] = {}
    named = []
    for scene in scenes:
        if scene.error is None:
            problem = _name_problem(scene.name)
            if problem:
                scene = replace(scene, error=f"{scene.label}: {problem}")
            elif scene.name in seen:
                first = seen[scene.name]
                what = (
                    "repeats the file of"
                    if first.source == scene.source
                    else "would write the same output as"
                )
                scene = replace(
                    scene,
                    error=(
                        f"{scene.label} ({scene.source}) {what} {first.label} ({first.source}): "
                        f"both give {scene.name}{OUTPUT_SUFFIX}.tif; remove or rename one of them"
                    ),
                )
            else:
                seen[scene.name] = scene
        named.append(scene)
    return named


def _name_problem(name: str) -> str | None:
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", "\x00")):
        return (
            f"scene name {name!r} would put its output outside the output folder; "
            "scene names must be plain file names"
        )
    return None


_READERS: dict[str, Callable[..., list[Scene]]] = {
    "folder": _read_folder,
    "glob": _read_glob,
    "table": _read_table,
    "vector": _read_table,
    "stac": _read_stac,
}
_SUFFIX_KINDS = {
    ".csv": "table",
    ".gpkg": "vector",
    ".parquet": "vector",
    ".geoparquet": "vector",
    ".fgb": "vector",
    ".shp": "vector",
}


# ---------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------


def output_path(out_dir: PathLike, name: str) -> Path:
    """``<out_dir>/<name>_translated.tif``, refusing names that leave ``out_dir``.

    Raises:
        CatalogError: ``name`` contains a path separator or resolves outside ``out_dir``.
    """
    problem = _name_problem(name)
    out = Path(out_dir).absolute()
    path = out / f"{name}{OUTPUT_SUFFIX}.tif"
    if problem or path.resolve().parent != out.resolve():
        raise CatalogError(problem or f"output {path} would leave the output folder {out}")
    return path


def read_manifest(out_dir: PathLike) -> gpd.GeoDataFrame | None:
    """The manifest of an earlier run in ``out_dir``, or None when there is none."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return gpd.read_parquet(path)
    except Exception as exc:
        raise CatalogError(
            f"manifest {path} is unreadable ({exc}); delete it to start the catalog afresh"
        ) from None


def _manifest_frame(results: Iterable[SceneResult]) -> gpd.GeoDataFrame:
    """The manifest of ``results``, as written and returned: a signed source is kept
    unsigned and an error names it without its secrets (:func:`rsgan.io.unsigned_url`,
    :func:`rsgan.io.redact_text`; a rerun signed anew still matches the row: :func:`same_source`)."""
    rows = list(results)
    data = {c: [getattr(r, c) for r in rows] for c in MANIFEST_COLUMNS}
    data["source"] = [unsigned_url(s) for s in data["source"]]
    data["error"] = [redact_text(e) if isinstance(e, str) else e for e in data["error"]]
    return gpd.GeoDataFrame(data, geometry=[r.footprint for r in rows], crs="EPSG:4326")


def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_OURS = ("done", "skipped", "pending")


def _plan(
    scenes: list[Scene], out_dir: Path, previous: gpd.GeoDataFrame | None, overwrite: bool
) -> tuple[list[SceneResult], dict[str, bool]]:
    """Decide per scene: failed already, skip (verified output), or run (and with overwrite?).

    Returns the initial manifest rows and, for scenes to run, whether their existing output
    may be replaced (a stale output of an earlier run of this catalog, or ``overwrite``).
    """
    # Only rows that wrote (or were writing) an output count: a name's later duplicate row
    # failed without touching that output and must not hide the row that wrote it.
    earlier = {
        r.scene: r for r in ([] if previous is None else previous.itertuples()) if r.status in _OURS
    }
    rows: list[SceneResult] = []
    to_run: dict[str, bool] = {}
    for scene in scenes:
        if scene.error is not None:
            rows.append(
                SceneResult(
                    scene.name, scene.source, "", "failed", scene.error, footprint=scene.footprint
                )
            )
            continue
        try:
            out = output_path(out_dir, scene.name)
        except CatalogError as exc:
            rows.append(
                SceneResult(
                    scene.name,
                    scene.source,
                    "",
                    "failed",
                    f"{scene.label}: {exc}",
                    footprint=scene.footprint,
                )
            )
            continue
        row = SceneResult(
            scene.name, scene.source, os.fspath(out), "pending", footprint=scene.footprint
        )
        before = earlier.get(scene.name)
        ours = before is not None
        if out.exists() and not overwrite:
            # an output made from the file the catalog gives now (named alike or not:
            # through a link, relative to another folder); when the catalog gives this
            # name another file, the output is still ours to replace, but redone
            unchanged = before is not None and same_source(before.source, scene.source)
            finished = _finished_earlier(before, out) if unchanged else None
            if finished is not None:
                rows.append(finished)
                continue
            if not ours:
                rows.append(
                    replace(
                        row,
                        status="failed",
                        error=(
                            f"{scene.label}: output {out} exists and was not written by an earlier "
                            "run of this catalog; pass overwrite=True (--overwrite) to replace it"
                        ),
                    )
                )
                continue
        to_run[scene.name] = overwrite or out.exists()
        rows.append(row)
    return rows, to_run


def _finished_earlier(before: Any, out: Path) -> SceneResult | None:
    """The manifest row of an output an earlier run finished, or None to redo it.

    Finished means: the manifest says done (or skipped) with this file's SHA-256, or the
    run was interrupted after the task wrote the output and its STAC Item (status still
    pending) and the Item's checksum matches the file.
    """
    checksum = sha256_file(out)
    row = SceneResult(before.scene, before.source, os.fspath(out), "skipped",
                      seconds=float(before.seconds), sha256=checksum,
                      footprint=before.geometry)  # fmt: skip
    if before.status in ("done", "skipped"):
        return row if before.sha256 == checksum else None
    try:
        item = json.loads(out.with_suffix(".json").read_text())
        recorded = item["assets"]["data"]["file:checksum"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if recorded != "1220" + checksum:
        return None
    geometry = item.get("geometry")
    return replace(row, footprint=shape(geometry) if geometry else before.geometry)


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    with atomic_output(path, overwrite=True, suffix=".json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str))


def _write_manifest(path: Path, results: Iterable[SceneResult]) -> None:
    frame = _manifest_frame(results)
    with atomic_output(path, overwrite=True, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
        _cross_geoparquet_bbox(tmp, bbox_4326(frame.geometry))


def _cross_geoparquet_bbox(path: Path, bbox: list[float] | None) -> None:
    """Set the GeoParquet ``bbox`` of ``path``'s geometry column to ``bbox`` when it
    crosses the antimeridian (west > east, as the GeoParquet spec's RFC 7946 bbox has it;
    geopandas writes the plain bounds, -180 to 180). Other files are left as written."""
    if bbox is None or bbox[0] <= bbox[2]:
        return
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    metadata = dict(table.schema.metadata or {})
    geo = json.loads(metadata[b"geo"])
    geo["columns"][geo["primary_column"]]["bbox"] = bbox
    metadata[b"geo"] = json.dumps(geo).encode()
    pq.write_table(table.replace_schema_metadata(metadata), path)


# ---------------------------------------------------------------------------------------
# The per-scene task (runs in a worker process)
# ---------------------------------------------------------------------------------------

_WORKER_MODELS: dict[str, Any] = {}
"""Models loaded in this process, by :class:`_ModelRef` key (one copy per worker)."""
_MAX_CACHED_MODELS = 2


@dataclass(frozen=True, slots=True)
class _ModelRef:
    """A small, picklable stand-in for the model that travels with every task.

    ``path`` set: a checkpoint the worker loads once and caches under ``key``.
    ``path`` None: a model installed in the worker's cache by :class:`_ModelPlugin`.
    """

    key: str
    path: str | None = None


def _worker_model(ref: _ModelRef) -> Any:
    if ref.key in _WORKER_MODELS:
        return _WORKER_MODELS[ref.key]
    if ref.path is None:
        raise CatalogError(
            f"model {ref.key!r} is not installed on this worker; the worker plugin that "
            "carries it was not registered (was the worker started by another client?)"
        )
    from rsgan.checkpoint import load_model

    model = load_model(ref.path)
    while len(_WORKER_MODELS) >= _MAX_CACHED_MODELS:
        _WORKER_MODELS.pop(next(iter(_WORKER_MODELS)))
    _WORKER_MODELS[ref.key] = model
    return model


class _ModelPlugin(_WorkerPluginBase):  # type: ignore[misc,valid-type]
    """Carries an in-memory model to each worker once (also to workers that join later)."""

    def __init__(self, key: str, model: Any) -> None:
        self.key = key
        self.model = model

    def setup(self, worker: Any) -> None:
        _WORKER_MODELS[self.key] = self.model

    def teardown(self, worker: Any) -> None:
        _WORKER_MODELS.pop(self.key, None)


class _TorchThreads(_WorkerPluginBase):  # type: ignore[misc,valid-type]
    """Sets the number of torch threads of each worker of a cluster rsgan started."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        import torch

        torch.set_num_threads(self.threads)


def _run_scene(
    scene: Scene,
    output: str,
    model_ref: _ModelRef,
    options: Mapping[str, Any],
    replace_existing: bool,
) -> SceneResult:
    """Translate one scene, write its STAC Item, and report; never raises for a bad scene."""
    from rsgan.pipelines.translate import translate_raster

    start = time.perf_counter()
    result = SceneResult(scene.name, scene.source, output, "failed", footprint=scene.footprint)
    out = Path(output)
    written = False
    try:
        model = _worker_model(model_ref)
        translate_raster(
            scene.source, out, model, overwrite=replace_existing, progress=False, **options
        )
        written = True
        checksum = sha256_file(out)
        info = describe(out)
        footprint = _footprint_4326(info) or scene.footprint
        _write_json(out.with_suffix(".json"), _stac_item(scene, info, checksum, footprint))
    except Exception as exc:  # one bad scene is recorded and must not stop the others
        if written:  # without its STAC Item (a full disk): a rerun must redo it, not refuse
            with contextlib.suppress(OSError):
                out.unlink()
        message = str(exc) if isinstance(exc, RsganError) else f"{type(exc).__name__}: {exc}"
        return replace(
            result, error=f"{scene.label}: {message}", seconds=time.perf_counter() - start
        )
    return replace(
        result,
        status="done",
        seconds=time.perf_counter() - start,
        sha256=checksum,
        footprint=footprint,
    )


def _footprint_4326(info: Any) -> Any:
    """The raster's outline in EPSG:4326 (edges densified), or None when it is not placed
    on Earth. A geotransform places the four corners of the pixel grid (a rotated or
    sheared scene's outline is not its bounding box); a raster placed by ground control
    points or RPCs (no geotransform) has its pixel edges mapped through them, as GDAL's
    transformers do."""
    if info.crs is not None:
        outline = _grid_outline(info.transform, info.width, info.height)
        step = max(outline.length / 4 / 8, 1e-9)  # 8 points per edge follow curved edges
        return _outline_4326(info.crs, outline.segmentize(step))
    if not info.placed:
        return None
    rows, cols = pixel_ring(0, 0, info.height, info.width, per_edge=8)
    xs, ys, crs = placed_xy(info, list(rows), list(cols))
    return _outline_4326(crs, Polygon(zip(xs, ys, strict=True)))


def _outline_4326(crs: Any, outline: Polygon) -> Any:
    """``outline`` (a densified ring in ``crs``) in EPSG:4326, cut at the antimeridian
    into a MultiPolygon when it crosses it.

    GDAL's own cutting (``transform_geom``, which GDAL 2.2 and later always applies) gives
    an invalid polygon, or one spanning the globe, for an outline whose edges cross the
    antimeridian on a slant (a rotated scene): the ring's points are reprojected instead,
    their longitudes made continuous, and the parts east and west of 180 degrees clipped
    apart. A ring around a pole (whose longitudes do not close) or with points that do not
    reproject is left to GDAL's cutting."""
    from rasterio.warp import transform, transform_geom

    xs, ys = outline.exterior.xy
    lon, lat = (np.asarray(v) for v in transform(crs, "EPSG:4326", list(xs), list(ys)))
    lon = np.unwrap(lon, period=360.0)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()) or abs(lon[-1] - lon[0]) > 1e-6:
        return shape(transform_geom(crs, "EPSG:4326", mapping(outline)))
    polygon = Polygon(zip(lon, lat, strict=True))
    if -180.0 <= polygon.bounds[0] and polygon.bounds[2] <= 180.0:
        return polygon
    world = box(-180.0, -90.0, 180.0, 90.0)
    parts: list[Polygon] = []
    for shift in (-360.0, 0.0, 360.0):  # the parts past 180 (or -180) moved back
        piece = affinity.translate(polygon, xoff=shift).intersection(world)
        parts += [p for p in getattr(piece, "geoms", [piece]) if isinstance(p, Polygon)]
    parts = [p for p in parts if not p.is_empty]
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


ANTIMERIDIAN_TOLERANCE = 1e-9
"""Degrees within which a part's edge counts as on the antimeridian (+180 or -180)."""


def bbox_4326(geometries: Iterable[Any]) -> list[float] | None:
    """The GeoJSON bbox ``[west, south, east, north]`` (degrees) of EPSG:4326 geometries.

    RFC 7946 section 5.2 (which STAC Items and Collections and the GeoParquet ``bbox``
    follow): geometries cut at the antimeridian, with parts touching both +180 and -180
    degrees, get the bbox that crosses it, ``west > east`` (a scene from 179.5 to
    -179.5 degrees has ``[179.5, south, -179.5, north]``, one degree wide, not the
    globe's width). Its longitude range is the circle less the widest gap between the
    parts' longitude ranges. Everything else, or parts that together cover every
    longitude (a polar cap), keeps the plain bounds, minimum then maximum.

    Args:
        geometries: shapely geometries in EPSG:4326 (longitude, latitude); None and empty
            ones are skipped.

    Returns:
        ``[west, south, east, north]``, or None when there is no geometry.
    """
    parts = [
        p
        for g in geometries
        if g is not None and not g.is_empty
        for p in getattr(g, "geoms", [g])
        if not p.is_empty
    ]
    if not parts:
        return None
    bounds = np.array([p.bounds for p in parts])
    plain = [float(v) for v in (*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))]
    west_edge = bounds[:, 0] <= -180.0 + ANTIMERIDIAN_TOLERANCE
    east_edge = bounds[:, 2] >= 180.0 - ANTIMERIDIAN_TOLERANCE
    if not (west_edge.any() and east_edge.any()):
        return plain
    spans: list[list[float]] = []  # the parts' longitude ranges, overlapping ones merged
    for lo, hi in sorted(zip(bounds[:, 0], bounds[:, 2], strict=True)):
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    if len(spans) == 1:  # every longitude: nothing crosses
        return plain
    # the gap across 180 is closed (parts touch both sides): the widest other gap is left out
    gap = max(range(len(spans) - 1), key=lambda i: spans[i + 1][0] - spans[i][1])
    return [float(spans[gap + 1][0]), plain[1], float(spans[gap][1]), plain[3]]


def _grid_outline(transform: Affine, width: int, height: int) -> Polygon:
    """The outline of a ``width`` x ``height`` pixel grid in its CRS: the corners
    (col, row) = (width, height), (width, 0), (0, 0), (0, height) through ``transform``,
    counter-clockwise. For a north-up grid these are the corners of ``box(*bounds)``, in
    its order."""
    corners = [transform * (c, r) for c, r in ((width, height), (width, 0), (0, 0), (0, height))]
    return orient(Polygon(corners), sign=1.0)


def _stac_item(scene: Scene, info: Any, checksum: str, footprint: Any) -> dict[str, Any]:
    """A STAC Item (with projection, raster and file extensions) for one output."""
    import pystac
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    when = scene.datetime or datetime.now(timezone.utc)
    # the unsigned href, as Planetary Computer's STAC keeps it: a catalog one publishes
    # grants no access, and a signer (planetary_computer.sign) can sign it again
    source = unsigned_url(scene.source)
    item = pystac.Item(
        id=f"{scene.name}{OUTPUT_SUFFIX}",
        geometry=mapping(footprint) if footprint is not None else None,
        bbox=bbox_4326([footprint]),
        datetime=when,
        properties={"rsgan:source": source},
    )
    asset = pystac.Asset(
        href=f"./{info.path.name}",
        media_type=pystac.MediaType.GEOTIFF,
        roles=["data"],
        title=f"{scene.name} translated by rsgan",
    )
    item.add_asset("data", asset)
    item.add_link(pystac.Link("derived_from", source))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.shape = [info.height, info.width]
    proj.transform = list(info.transform)[:6]
    if info.crs is not None:
        epsg = info.crs.to_epsg()
        if epsg is not None:
            proj.code = f"EPSG:{epsg}"
        else:
            proj.wkt2 = info.crs.to_wkt(version="WKT2_2019")  # GDAL's default is WKT1
    else:
        proj.code = None
    bands = [
        RasterBand.create(
            nodata=nd,
            data_type=dt,
            scale=scale if scale != 1.0 else None,
            offset=offset if offset != 0.0 else None,
            unit=unit or None,
        )
        for nd, dt, scale, offset, unit in zip(
            info.nodatavals,
            info.dtypes,
            info.scales,
            info.offsets,
            info.units or (None,) * info.count,
            strict=True,
        )
    ]
    RasterExtension.ext(asset, add_if_missing=True).bands = bands
    FileExtension.ext(asset, add_if_missing=True).checksum = "1220" + checksum
    return item.to_dict(include_self_link=False)


STATS_MEMORY_SHARE = 0.4
"""Largest share of a Dask worker's memory limit that a scene's statistics pass may take
when the caller did not set ``stats_memory_mb`` (Dask pauses a worker at 80 %)."""


def _worker_memory_limit() -> int | None:
    """The memory limit of the Dask worker this runs on, bytes (None: not on a worker, or
    no limit)."""
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        return None
    return int(limit) if limit else None


def _fit_stats_memory(options: Mapping[str, Any], limit: int | None) -> Mapping[str, Any]:
    """Keep the statistics pass within a share of the worker's memory limit, unless the
    caller chose ``stats_memory_mb``: a pass sized for the whole machine would get a worker
    of a many-core cluster paused or killed."""
    from rsgan.pipelines.translate import STATS_MEMORY_MB

    if limit is None or options.get("stats_memory_mb") is not None:
        return options
    share = max(64.0, STATS_MEMORY_SHARE * limit / 2**20)
    if share >= STATS_MEMORY_MB:
        return options
    return {**options, "stats_memory_mb": share}


def _pick_device(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """On a worker of a multi-GPU machine, give each worker its own GPU (by worker name)."""
    device = str(options.get("device", "auto"))
    if device not in ("auto", "cuda"):
        return options
    try:
        import torch
        from distributed import get_worker

        count = torch.cuda.device_count()
        name = get_worker().name
    except (ImportError, ValueError):
        return options
    if count > 1 and isinstance(name, int):
        return {**options, "device": f"cuda:{name % count}"}
    return options


# ---------------------------------------------------------------------------------------
# Running the tasks: in this process, or on Dask
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    index: int
    scene: Scene
    output: str
    replace_existing: bool


def _dask_task(job: _Job, model_ref: _ModelRef, options: Mapping[str, Any]) -> SceneResult:
    options = _fit_stats_memory(_pick_device(options), _worker_memory_limit())
    return _run_scene(job.scene, job.output, model_ref, options, job.replace_existing)


def _run_in_process(
    jobs: list[_Job], model_ref: _ModelRef, options: Mapping[str, Any]
) -> Generator[tuple[_Job, SceneResult], None, None]:
    for job in jobs:
        yield job, _run_scene(job.scene, job.output, model_ref, options, job.replace_existing)


def _run_on_dask(
    client: Any, jobs: list[_Job], model_ref: _ModelRef, options: Mapping[str, Any]
) -> Generator[tuple[_Job, SceneResult], None, None]:
    from distributed import as_completed

    workers = client.scheduler_info().get("workers", {}).values()
    gpus = any(w.get("resources", {}).get("GPU") for w in workers)
    resources = {"GPU": 1} if gpus and options.get("device", "auto") != "cpu" else None
    token = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            _dask_task,
            job,
            model_ref,
            options,
            key=f"rsgan-scene-{job.index}-{token}",
            pure=False,
            resources=resources,
        ): job
        for job in jobs
    }
    try:
        for future in as_completed(futures, loop=client.loop):
            job = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # KilledWorker (worker died too often), lost data, ...
                result = SceneResult(
                    job.scene.name,
                    job.scene.source,
                    job.output,
                    "failed",
                    f"{job.scene.label}: {type(exc).__name__}: {exc}",
                    footprint=job.scene.footprint,
                )
            future.release()
            yield job, result
    finally:  # one request for all (a request per scene took seconds for large catalogs)
        client.cancel(list(futures))


@contextlib.contextmanager
def _dask_client(
    workers: int | None, scheduler: Any, retries: int, n_jobs: int, device: str
) -> Iterator[Any]:
    """A Dask client: on ``scheduler`` (an address or a Client) or on a new LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None and not isinstance(scheduler, str):
        _warn_if_no_workers(scheduler)
        yield scheduler  # a Client the caller owns
        return
    if isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise CatalogError(
                f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS`, or leave the "
                "scheduler out to use a local cluster"
            ) from None
        with client:
            _warn_if_no_workers(client, scheduler)
            yield client
        return
    gpus = _cuda_device_count() if device != "cpu" else 0
    n = workers or (gpus or _cpu_count())
    n = max(1, min(n, n_jobs)) if workers is None else n
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's dynamic
    # mmap threshold: every large tensor is then mmapped and faulted in afresh, and a scene
    # took ~35 % longer in a worker than in this process (measured, 1024 px scenes).
    trim = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(dask.config.get(trim, None)):
        del os.environ["MALLOC_TRIM_THRESHOLD_"]  # left here by an earlier Dask cluster
    settings = {"distributed.scheduler.allowed-failures": retries, trim: None}
    # Ctrl-C or SIGTERM while the cluster starts acts once it has started, and closes it:
    # a cluster stopped half-started was left to Dask's exit handler, which failed on it
    # with a traceback (AssertionError: Status.init)
    signals = _DeferredSignals()
    with contextlib.ExitStack() as stack:
        stack.callback(signals.release)
        with dask.config.set(settings), _workers_start_without_ctrl_c():
            cluster = _local_cluster(LocalCluster, n, gpus)
        with cluster, Client(cluster, set_as_default=False) as client:
            signals.release()
            # Dask starts workers with OMP_NUM_THREADS=1; give torch cores / workers threads
            client.register_plugin(_TorchThreads(max(1, _cpu_count() // n)), name="rsgan-threads")
            yield client


def _local_cluster(local_cluster: Any, n: int, gpus: int) -> Any:
    """A ``LocalCluster`` of ``n`` worker processes (one thread each)."""
    try:
        return local_cluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit="auto",
            dashboard_address=":0",
            resources={"GPU": 1} if gpus else None,
            silence_logs=logging.ERROR,  # no shutdown chatter; errors are in the manifest
            preload=["rsgan.pipelines._dask_preload"],  # workers leave Ctrl-C to us
        )
    except RuntimeError as exc:
        # a worker process starts a new Python that imports the caller's script: a
        # script calling translate_catalog at its top level runs it again there, and
        # multiprocessing refuses ("Nanny failed to start")
        raise CatalogError(
            f"Dask could not start {n} local worker process(es) ({exc}); a script that "
            'calls translate_catalog must do so under `if __name__ == "__main__":` '
            "(each worker imports the script again), or pass workers=0 to run without "
            "Dask"
        ) from exc


@contextlib.contextmanager
def _workers_start_without_ctrl_c() -> Iterator[None]:
    """SIGINT blocked in this thread while a local cluster starts. The threads the cluster
    starts meanwhile (Dask's event loop, the threads that spawn its worker processes)
    take this thread's signal mask, and the worker processes take theirs through fork
    and exec: a worker holds Ctrl-C back from its first instruction on, before Python's
    own start-up, where the preload that ignores it has not run yet and a Ctrl-C to the
    process group ended it with "Fatal Python error: init_import_site" or a traceback
    under the command's one line (about 1 run in 5 when signalled then). This thread
    takes a Ctrl-C that came meanwhile once the mask is restored (by then
    :class:`_DeferredSignals` notes it for after the start)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    from multiprocessing import resource_tracker

    # started first: the start of multiprocessing's resource tracker unblocks SIGINT and
    # SIGTERM in the thread that starts it (Dask's event loop, as its first worker
    # starts), whatever that thread's mask was
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _DeferredSignals:
    """From its creation until :meth:`release`, Ctrl-C and SIGTERM are noted, not acted
    on; ``release`` restores their handlers and raises the signals that came, so they act
    as they would have (KeyboardInterrupt, the CLI's Terminated, or the default). Outside
    the main thread (where Python cannot take signals) it does nothing."""

    def __init__(self) -> None:
        self.arrived: list[int] = []
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if handler is not None and handler is not signal.SIG_IGN:  # None: set outside Python
                self.previous[sig] = signal.signal(sig, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self.arrived.append(signum)

    def release(self) -> None:
        """Restore the handlers; raise the signals that arrived meanwhile (once each)."""
        previous, self.previous = self.previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous:
            for sig in dict.fromkeys(self.arrived):
                signal.raise_signal(sig)


def _warn_if_no_workers(client: Any, address: str | None = None) -> None:
    """Say so when the cluster has no worker: its scenes wait, at 0 %, until one joins
    (workers still starting, or started with another scheduler's address). ``address``:
    the scheduler's as the user gave it (default: the one it reports)."""
    try:
        info = client.scheduler_info()
    except Exception:  # the scheduler's own errors show when the tasks are submitted
        return
    if not info.get("workers"):
        address = address or info.get("address") or "ADDRESS"
        warnings.warn(
            f"the Dask scheduler at {address} has no workers yet: the scenes wait until "
            f"one joins (start them with `dask worker {address}`)",
            RuntimeWarning,
            stacklevel=4,
        )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------


def _model_ref(model: Any) -> tuple[_ModelRef, Any]:
    """The reference tasks carry, and the in-memory model to install per worker (or None)."""
    if model is None:
        from rsgan.pipelines.translate import default_model_path

        model = default_model_path()
    if isinstance(model, (str, os.PathLike)):
        path = _expand_user(Path(model)).absolute()
        if not path.is_file():
            raise ConfigError(
                f"model checkpoint {str(path)!r} does not exist; pass a "
                "checkpoint written by `rsgan train`"
            )
        from rsgan.checkpoint import read_metadata

        read_metadata(path)  # a corrupt file: one error now, not one per scene
        return _ModelRef(f"{path}@{path.stat().st_mtime_ns}", os.fspath(path)), None
    return _ModelRef(f"object-{uuid.uuid4().hex}"), model


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    from rsgan.pipelines.translate import translate_raster

    allowed = set(inspect.signature(translate_raster).parameters) - {
        "src",
        "dst",
        "model",
        "overwrite",
        "progress",
        "quicklook",  # one PNG, which every scene would write: refused below
    }
    if "quicklook" in options:
        raise ConfigError(
            f"quicklook={options['quicklook']!r} names one PNG, which every scene of the "
            "catalog would write; leave it out and make previews of the outputs you want to "
            "see with rsgan.pipelines.translate.write_quicklook(output, png)"
        )
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown translation option(s) {', '.join(unknown)}; translate_catalog passes "
            f"these on to translate_raster: {', '.join(sorted(allowed))}"
        )
    return dict(options)


def translate_catalog(
    catalog: PathLike | Iterable[PathLike],
    out_dir: PathLike,
    model: Any = None,
    *,
    asset_key: str | None = None,
    path_column: str = "path",
    workers: int | None = None,
    scheduler: Any = None,
    overwrite: bool = False,
    retries: int = 2,
    progress: bool = True,
    **translate_kwargs: Any,
) -> gpd.GeoDataFrame:
    """Translate every scene of a catalog into ``out_dir``, one Dask task per scene.

    Each scene ``name`` gives ``<out_dir>/<name>_translated.tif`` and its STAC Item
    ``<name>_translated.json``; ``<out_dir>/manifest.parquet`` records every scene and is
    rewritten atomically as scenes finish. Rerunning skips scenes whose output exists and
    matches the manifest's SHA-256, and redoes the others. A bad scene is recorded as
    failed with its error; the others go on.

    Args:
        catalog: vector/CSV file, folder, glob pattern, STAC JSON file, or a list of paths
            (see :func:`read_catalog`).
        out_dir: output folder (created if missing).
        model: a checkpoint path (loaded once per worker), an in-memory model (a
            ``LoadedModel`` or ``torch.nn.Module``, shipped once per worker in a worker
            plugin), or None for translate_raster's default model.
        asset_key: STAC asset to translate (None: the only raster asset of each item).
        path_column: column of raster paths in a vector or CSV catalog.
        workers: local worker processes; None sizes the cluster to the machine (one per
            CPU core, or one per GPU with CUDA); 0 runs the scenes one by one in this
            process, without Dask. Not allowed together with ``scheduler``.
        scheduler: address of a running Dask scheduler (``"tcp://host:8786"``) or a
            ``distributed.Client``; None starts a LocalCluster for this call.
        overwrite: redo every scene and replace existing outputs.
        retries: how many times a scene is started again after its worker died (a local
            cluster's ``allowed-failures``; an existing cluster keeps its own setting).
        progress: show a progress bar over scenes.
        **translate_kwargs: passed on to :func:`rsgan.pipelines.translate.translate_raster`
            (``tile``, ``overlap``, ``blend``, ``direction``, ``device``, ``bands``, ...).

    Returns:
        The manifest: one row per catalog row with ``scene``, ``source``, ``output``,
        ``status`` (``done``/``skipped``/``failed``), ``error``, ``seconds``, ``sha256`` and
        the footprint geometry (EPSG:4326, None when unknown).

    Raises:
        CatalogError: the catalog cannot be read, the scheduler cannot be reached, or
            the local cluster's workers cannot start (a script calling this outside
            ``if __name__ == "__main__":``).
        ConfigError: bad options (unknown translation option, negative workers/retries,
            a missing checkpoint, workers together with scheduler).
        MissingDependencyError: ``scheduler`` given without Dask installed.
    """
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers={workers!r}; pass a number >= 0 (0 runs without Dask)")
    if workers is not None and scheduler is not None:
        raise ConfigError(
            f"workers={workers} and scheduler={scheduler!r} were both given; the number of "
            "workers of an existing cluster is set where it is started: drop one of them"
        )
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries={retries!r}; pass a number >= 0")
    options = _check_options(translate_kwargs)
    model_ref, carried = _model_ref(model)
    use_dask = workers != 0
    if use_dask and not _dask_available():
        if scheduler is not None:
            raise MissingDependencyError(
                f"scheduler={scheduler!r} needs Dask distributed; install it with "
                "`pip install 'rsgan[dask]'`"
            )
        warnings.warn(
            "Dask is not installed (`pip install 'rsgan[dask]'`); translating the "
            "scenes one by one in this process",
            RuntimeWarning,
            stacklevel=2,
        )
        use_dask = False

    check_local_output(out_dir, "output folder")
    out = _expand_user(Path(out_dir)).absolute()
    scenes = [  # a folder or glob that holds OUT_DIR would list our own outputs
        s
        for s in read_catalog(catalog, asset_key=asset_key, path_column=path_column)
        if not (s.source and Path(s.source).parent == out and s.name.endswith(OUTPUT_SUFFIX))
    ]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RasterWriteError(
            f"cannot create output folder {out} ({exc.strerror}); choose a folder you can write to"
        ) from None
    with _run_lock(out):
        return _translate_scenes(
            scenes, out, overwrite, use_dask, workers, scheduler, retries, progress,
            model_ref, carried, options,
        )  # fmt: skip


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run (:data:`RUN_LOCK_NAME`). Two runs on one folder at once
    (a cron job overlapping the last one, a scheduler's duplicate) each rewrote the
    manifest with its own rows: scenes done by one were recorded as failed by the other,
    and every rerun then refused their outputs as not its own."""
    import socket

    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    holder = f"pid {os.getpid()} on {socket.gethostname()}, since {since}"
    lock = out / RUN_LOCK_NAME
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(lock, holder))
        except BlockingIOError:
            try:
                other = lock.read_text().strip() or "another process"
            except OSError:
                other = "another process"
            raise RasterWriteError(
                f"output folder {out} is in use by another rsgan batch run ({other}); wait "
                "for it to finish, or give this run another output folder"
            ) from None
        except OSError as exc:
            raise RasterWriteError(
                f"cannot write in output folder {out} ({exc.strerror}); choose a folder "
                "you can write to"
            ) from None
        yield


def _translate_scenes(
    scenes: list[Scene],
    out: Path,
    overwrite: bool,
    use_dask: bool,
    workers: int | None,
    scheduler: Any,
    retries: int,
    progress: bool,
    model_ref: _ModelRef,
    carried: Any,
    options: dict[str, Any],
) -> gpd.GeoDataFrame:
    """The body of :func:`translate_catalog`, while ``out`` is held."""
    manifest_path = out / MANIFEST_NAME
    rows, to_run = _plan(scenes, out, read_manifest(out), overwrite)
    jobs = [
        _Job(i, scenes[i], row.output, to_run[row.scene])
        for i, row in enumerate(rows)
        if row.status == "pending"
    ]
    _remove_temporaries(jobs)
    _write_manifest(manifest_path, rows)

    from rsgan._progress import tqdm

    with contextlib.ExitStack() as stack:
        # temporaries of tasks whose worker died (or that closing the cluster on Ctrl-C
        # stopped), a live writer's kept; registered first, so it runs after the close
        stack.callback(_remove_temporaries, jobs)
        if not jobs:
            results: Generator[tuple[_Job, SceneResult], None, None] = _run_in_process(
                [], model_ref, {}
            )
        elif use_dask:
            client = stack.enter_context(
                _dask_client(
                    workers, scheduler, retries, len(jobs), str(options.get("device", "auto"))
                )
            )
            if carried is not None:
                client.register_plugin(
                    _ModelPlugin(model_ref.key, carried), name=f"rsgan-model-{model_ref.key}"
                )
                stack.callback(_unregister_plugin, client, f"rsgan-model-{model_ref.key}")
            results = _run_on_dask(client, jobs, model_ref, options)
        else:
            if carried is not None:
                _WORKER_MODELS[model_ref.key] = carried
                stack.callback(_WORKER_MODELS.pop, model_ref.key, None)
            results = _run_in_process(jobs, model_ref, options)
        # closed (its Dask futures cancelled) before the client when recording a result
        # fails (a full disk) or on Ctrl-C: closed later by the garbage collector, it
        # printed a traceback of a closed IOLoop
        stack.enter_context(contextlib.closing(results))
        bar = stack.enter_context(
            tqdm(total=len(jobs), unit="scene", disable=not progress, desc="translating scenes")
        )
        for job, result in results:
            rows[job.index] = result
            _write_manifest(manifest_path, rows)
            bar.update(1)
    return _manifest_frame(rows)


def _remove_temporaries(jobs: Sequence[_Job]) -> None:
    """The temporaries a killed worker left beside the jobs' outputs (a live writer's are
    kept: :func:`rsgan.io.remove_stale_temporaries`)."""
    for job in jobs:
        remove_stale_temporaries(Path(job.output))


def _unregister_plugin(client: Any, name: str) -> None:
    with contextlib.suppress(Exception):  # the cluster may already be gone
        client.unregister_worker_plugin(name)


def summary_table(manifest: pd.DataFrame) -> str:
    """A plain-text summary of a manifest: counts per status, then each failed scene."""
    counts = manifest["status"].value_counts()
    lines = ["status   scenes"]
    lines += [f"{status:<8} {int(counts.get(status, 0)):>6}" for status in STATUSES[1:]]
    lines.append(f"{'total':<8} {len(manifest):>6}")
    failed = manifest[manifest["status"] == "failed"]
    if len(failed):
        lines.append("")
        lines.append("failed scenes:")
        lines += [f"  {row.scene}: {row.error}" for row in failed.itertuples()]
    return "\n".join(lines)


__all__ = [
    "MANIFEST_NAME",
    "Scene",
    "SceneResult",
    "bbox_4326",
    "output_path",
    "read_catalog",
    "read_manifest",
    "sha256_file",
    "summary_table",
    "translate_catalog",
]
