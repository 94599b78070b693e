"""Tile specifications, window grids, chip indexes and chip export.

A :class:`TileSpec` (size, overlap, edge policy) turns a scene's size into a row-major
grid of :class:`rasterio.windows.Window` that covers every pixel. :func:`chip_index`
lists the grid's chips of one or more scenes as a GeoDataFrame (footprints in CRS units,
valid-pixel fractions), filtered by an area of interest and a maximum nodata fraction;
:func:`export_chips` writes them as georeferenced GeoTIFF chips.

All sizes, offsets and overlaps are in pixels unless a function says CRS units.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry.base import BaseGeometry

from rsgan._progress import tqdm
from rsgan._types import Bands, EdgePolicy, PathLike
from rsgan.errors import AOIError, BandError, ConfigError, RasterReadError, TileSpecError
from rsgan.io import (
    RasterInfo,
    _all_valid,
    absolute_source,
    atomic_output,
    atomic_output_dir,
    check_bands,
    copy_band_metadata,
    copy_placement,
    describe,
    is_virtual,
    list_image_files,
    open_output,
    open_raster,
    pixel_ring,
    placed_crs,
    placed_xy,
    read_valid_mask,
    read_window,
    source_name,
    source_path,
    source_stem,
)

INDEX_COLUMNS: tuple[str, ...] = (
    "scene",
    "row_off",
    "col_off",
    "height",
    "width",
    "valid_fraction",
    "crs",
    "geometry",
)
"""Columns of a chip index (:func:`chip_index`), in order."""

INDEX_SUFFIXES: tuple[str, ...] = (".gpkg", ".parquet")
"""File endings :func:`save_index` and :func:`load_index` accept."""


# --------------------------------------------------------------------------- edge policies


def _offsets_pad(length: int, size: int, stride: int) -> list[int]:
    """Offsets from 0 by ``stride`` until a tile reaches the end; the last tile may
    extend past it."""
    offsets = [0]
    while offsets[-1] + size < length:
        offsets.append(offsets[-1] + stride)
    return offsets


def _offsets_shift(length: int, size: int, stride: int) -> list[int]:
    """As :func:`_offsets_pad`, with the last tile moved back to end at the scene's edge."""
    if length < size:
        raise TileSpecError(
            f"{length} px along one side is smaller than the tile ({size} px) "
            'and edge="shift" cannot fit a tile inside it; use edge="pad" (--edge pad) to pad '
            "it, or a smaller tile size"
        )
    offsets = _offsets_pad(length, size, stride)
    offsets[-1] = min(offsets[-1], length - size)
    return offsets


EDGE_POLICIES: dict[str, Callable[[int, int, int], list[int]]] = {
    "shift": _offsets_shift,
    "pad": _offsets_pad,
}
"""Edge policy name -> function ``(scene length, tile size, stride) -> tile offsets``.

``"shift"`` moves the last row/column of tiles back inside the scene (more overlap
there, every tile full of scene pixels); ``"pad"`` lets it extend past the right/bottom
edge (read such windows with ``boundless=True``; the outside is invalid)."""


@dataclass(frozen=True, slots=True)
class TileSpec:
    """How a scene is cut into tiles.

    Attributes:
        size: Tile side in pixels (square tiles).
        overlap: Pixels shared by neighbouring tiles, ``0 <= overlap < size``.
        edge: Edge policy, a key of :data:`EDGE_POLICIES` (``"shift"`` or ``"pad"``).
    """

    size: int
    overlap: int = 0
    edge: EdgePolicy = "shift"

    def __post_init__(self) -> None:
        for name in ("size", "overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TileSpecError(f"tile {name} {value!r} is not a whole number of pixels")
        if self.size < 1:
            raise TileSpecError(f"tile size {self.size} px must be positive")
        if not 0 <= self.overlap < self.size:
            raise TileSpecError(
                f"overlap {self.overlap} px must be at least 0 and smaller than the tile size "
                f"{self.size} px; pass a smaller overlap or a larger size"
            )
        if self.edge not in EDGE_POLICIES:
            raise TileSpecError(
                f"edge policy {self.edge!r} is unknown; use one of {', '.join(EDGE_POLICIES)}"
            )
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "overlap", int(self.overlap))

    @property
    def stride(self) -> int:
        """Pixels from one tile's start to the next's: ``size - overlap``."""
        return self.size - self.overlap

    @classmethod
    def from_stride(cls, size: int, stride: int, edge: EdgePolicy = "shift") -> TileSpec:
        """A spec from a size and a stride (``0 < stride <= size``), both in pixels."""
        if isinstance(stride, (int, np.integer)) and not 0 < stride <= size:
            raise TileSpecError(
                f"stride {stride} px must be positive and at most the tile size {size} px"
            )
        return cls(size=size, overlap=size - stride, edge=edge)

    @classmethod
    def from_crs_units(
        cls,
        size: float,
        overlap: float,
        transform: Affine,
        edge: EdgePolicy = "shift",
    ) -> TileSpec:
        """A spec from a size and overlap in CRS units (e.g. metres), rounded to whole
        pixels of ``transform``'s pixel size.

        Raises:
            TileSpecError: for a rotated grid or non-square pixels (give pixels then), a
                size or overlap that is not a finite number of pixels, or a size under one
                pixel.
        """
        if transform.b != 0 or transform.d != 0:
            raise TileSpecError(
                f"the grid is rotated ({transform!r}); give the tile size in pixels"
            )
        xres, yres = abs(transform.a), abs(transform.e)
        if not math.isclose(xres, yres, rel_tol=1e-6):
            raise TileSpecError(
                f"pixels are not square ({xres} x {yres} CRS units), so a size in CRS units "
                "is ambiguous; give the tile size and overlap in pixels"
            )
        pixels = {}
        for name, value, example in (("tile size", size, 256), ("overlap", overlap, 32)):
            if not math.isfinite(value / xres):
                raise TileSpecError(
                    f"{name} {value} CRS units is not a finite number of {xres}-unit pixels; "
                    f"pass e.g. {example} (metres)"
                )
            pixels[name] = round(value / xres)
        if pixels["tile size"] < 1:
            raise TileSpecError(
                f"tile size {size} CRS units is under one pixel ({xres} units); pass a larger size"
            )
        return cls(size=pixels["tile size"], overlap=pixels["overlap"], edge=edge)


def tile_grid(
    width: int, height: int, spec: TileSpec, *, scene: PathLike | None = None
) -> list[list[Window]]:
    """Tile windows of a ``width`` x ``height`` px scene, as rows of windows (top to
    bottom, each row left to right). Together they cover every pixel.

    Args:
        width: Scene columns, in pixels.
        height: Scene rows, in pixels.
        spec: Tile size, overlap and edge policy.
        scene: The scene's file, named in errors.

    Raises:
        TileSpecError: with ``edge="shift"``, for a scene smaller than one tile.
    """
    what = f"{scene} ({width} x {height} px)" if scene is not None else f"{width} x {height} px"
    if width < 1 or height < 1:
        raise TileSpecError(f"scene {what} is empty")
    offsets = EDGE_POLICIES[spec.edge]
    try:
        cols = offsets(width, spec.size, spec.stride)
        rows = offsets(height, spec.size, spec.stride)
    except TileSpecError as exc:
        raise TileSpecError(f"scene {what}: {exc}") from None
    return [[Window(c, r, spec.size, spec.size) for c in cols] for r in rows]


def tile_windows(
    width: int, height: int, spec: TileSpec, *, scene: PathLike | None = None
) -> list[Window]:
    """Tile windows of a ``width`` x ``height`` px scene in row-major order (see
    :func:`tile_grid`)."""
    return [w for row in tile_grid(width, height, spec, scene=scene) for w in row]


def random_windows(
    width: int, height: int, size: int, n: int, rng: np.random.Generator
) -> list[Window]:
    """``n`` random ``size`` px windows lying inside a ``width`` x ``height`` scene.

    Raises:
        TileSpecError: for a scene smaller than ``size``.
    """
    if width < size or height < size:
        raise TileSpecError(
            f"the scene ({width} x {height} px) is smaller than the {size} px chip; "
            "pass a smaller size"
        )
    rows = rng.integers(0, height - size + 1, size=n)
    cols = rng.integers(0, width - size + 1, size=n)
    return [Window(int(c), int(r), size, size) for r, c in zip(rows, cols, strict=True)]


def window_of(row: Any) -> Window:
    """The :class:`Window` of a chip index row."""
    return Window(int(row.col_off), int(row.row_off), int(row.width), int(row.height))


def chip_name(scene: PathLike, window: Window) -> str:
    """File name of an exported chip: ``<scene stem>_r<row_off>_c<col_off>.tif`` (the
    stem of a URL's path for a remote scene)."""
    return f"{source_stem(scene)}_r{int(window.row_off)}_c{int(window.col_off)}.tif"


# --------------------------------------------------------------------------- AOI


def _crs_text(crs: CRS | None) -> str:
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def load_aoi(aoi: Any, aoi_crs: Any = None) -> gpd.GeoSeries:
    """An area of interest as a GeoSeries with a CRS.

    Args:
        aoi: A vector file path (anything pyogrio reads), a GeoDataFrame or GeoSeries, or
            a shapely geometry.
        aoi_crs: CRS of a shapely geometry (e.g. ``"EPSG:4326"``); overrides nothing
            for inputs that carry their own.

    Raises:
        AOIError: unreadable file, no CRS, or no geometry.
    """
    if isinstance(aoi, (str, os.PathLike)):
        path = Path(aoi)
        if not path.exists():
            raise AOIError(f"no such AOI file: {path}; check the path")
        try:
            frame = gpd.read_file(path)
        except Exception as exc:  # pyogrio raises several kinds
            raise AOIError(
                f"cannot read AOI {path} as a vector file ({exc}); pass a GeoPackage, "
                "GeoJSON or shapefile"
            ) from exc
        series, name = frame.geometry, str(path)
    elif isinstance(aoi, gpd.GeoDataFrame):
        series, name = aoi.geometry, "the AOI GeoDataFrame"
    elif isinstance(aoi, gpd.GeoSeries):
        series, name = aoi, "the AOI GeoSeries"
    elif isinstance(aoi, BaseGeometry):
        series = gpd.GeoSeries([aoi], crs=aoi_crs)
        name = f"the AOI geometry {aoi.geom_type}"
    else:
        raise AOIError(
            f"AOI {aoi!r} is not a file path, GeoDataFrame, GeoSeries or shapely geometry"
        )
    if series.crs is None:
        raise AOIError(
            f"{name} has no CRS, so it cannot be placed on the scenes; give the file a CRS, "
            "or pass aoi_crs='EPSG:4326' (or the right CRS) with a shapely geometry"
        )
    series = series[~(series.is_empty | series.isna())]
    if series.empty:
        raise AOIError(f"{name} holds no geometry; pass an AOI with at least one shape")
    return series


def aoi_in_crs(aoi: gpd.GeoSeries, crs: CRS) -> BaseGeometry:
    """The union of an AOI's shapes, reprojected to ``crs``."""
    return shapely.union_all(aoi.to_crs(ProjCRS.from_user_input(crs.to_wkt())).values)


def aoi_keep(footprints: np.ndarray, aoi: BaseGeometry, within: bool) -> np.ndarray:
    """Chips that overlap the AOI's interior (or lie within it, with ``within``)."""
    if within:
        return shapely.within(footprints, aoi)
    return shapely.intersects(footprints, aoi) & ~shapely.touches(footprints, aoi)


# --------------------------------------------------------------------------- chip index


def _footprints(windows: Sequence[Window], transform: Affine) -> np.ndarray:
    """Footprint polygons (CRS units) of windows; handles rotated grids."""
    polys = []
    for w in windows:
        t = window_transform(w, transform)
        corners = [t @ (0, 0), t @ (w.width, 0), t @ (w.width, w.height), t @ (0, w.height)]
        polys.append(shapely.Polygon(corners))
    return np.array(polys, dtype=object)


def _scene_crs(info: RasterInfo) -> CRS | None:
    """The CRS a scene's chip footprints are in: its own, or for a scene placed by ground
    control points or RPCs theirs (:func:`rsgan.io.placed_xy`); None for a plain image
    (footprints in pixels)."""
    return info.crs if info.crs is not None else placed_crs(info)


def _scene_footprints(windows: Sequence[Window], info: RasterInfo) -> np.ndarray:
    """Footprint polygons of windows in :func:`_scene_crs`: through the geotransform, or
    each window's edges (4 points a side) mapped through the scene's ground control
    points or RPCs."""
    if info.crs is not None or not info.placed:
        return _footprints(windows, info.transform)
    per_edge = 4
    rings = [
        pixel_ring(float(w.row_off), float(w.col_off), float(w.height), float(w.width), per_edge)
        for w in windows
    ]
    rows = np.concatenate([r for r, _ in rings])
    cols = np.concatenate([c for _, c in rings])
    xs, ys, _ = placed_xy(info, list(rows), list(cols))
    points = np.column_stack([xs, ys]).reshape(len(windows), 4 * per_edge, 2)
    return np.array([shapely.Polygon(p) for p in points], dtype=object)


_MASK_STRIP_PIXELS = 2**22
"""Most pixels of one mask read in :func:`_valid_fractions` (a ``size``-row strip is read
in column pieces of this many pixels, so memory stays flat with the scene's width)."""


def _valid_by_definition(src: Any, bands: Bands) -> bool:
    """True when every pixel of ``bands`` is valid without reading it: integer data with
    no nodata value, mask or alpha band (floats may hold NaN)."""
    integer = all(np.issubdtype(np.dtype(src.dtypes[b - 1]), np.integer) for b in bands)
    return integer and _all_valid(src, bands)


def _inside_fractions(grid: list[list[Window]], width: int, height: int, size: int) -> np.ndarray:
    """Fraction of each window that lies inside a ``width`` x ``height`` scene."""
    fractions = []
    for row in grid:
        r0 = int(row[0].row_off)
        rows = min(r0 + size, height) - max(r0, 0)
        for w in row:
            c0 = int(w.col_off)
            fractions.append(rows * (min(c0 + size, width) - max(c0, 0)) / (size * size))
    return np.array(fractions, dtype=np.float64)


def _column_counts(src: Any, row_off: int, size: int, bands: Bands) -> np.ndarray:
    """Valid pixels per scene column of a ``size``-row strip, read in block-aligned column
    pieces of at most :data:`_MASK_STRIP_PIXELS` pixels."""
    block_cols = int(src.block_shapes[bands[0] - 1][1])
    step = max(block_cols, _MASK_STRIP_PIXELS // size // block_cols * block_cols)
    counts = np.zeros(src.width, dtype=np.int64)
    for c0 in range(0, src.width, step):
        piece = Window(c0, row_off, min(step, src.width - c0), size)
        mask = read_valid_mask(src, piece, bands, boundless=True)
        counts[c0 : c0 + int(piece.width)] = mask.sum(axis=0)
    return counts


def _valid_fractions(
    src: Any, grid: list[list[Window]], bands: Bands, size: int, needed: np.ndarray
) -> np.ndarray:
    """Valid-pixel fraction of every window (pixels outside the scene are invalid).

    Scenes valid by definition (:func:`_valid_by_definition`) are not read. Others are
    read one ``size``-row strip at a time, in column pieces, skipping strips where no
    window is ``needed`` (their fractions stay 0).
    """
    if _valid_by_definition(src, bands):
        return _inside_fractions(grid, src.width, src.height, size)
    fractions = np.zeros(len(needed))
    start = 0
    for row in grid:
        stop = start + len(row)
        if needed[start:stop].any():
            columns = _column_counts(src, int(row[0].row_off), size, bands)
            counts = np.concatenate([[0], np.cumsum(columns)])
            for k, w in enumerate(row):
                c0 = max(int(w.col_off), 0)
                c1 = min(int(w.col_off) + size, src.width)
                fractions[start + k] = float(counts[c1] - counts[c0]) / (size * size)
        start = stop
    return fractions


def scene_label(path: PathLike) -> str:
    """The ``scene`` column value: an absolute path, so a saved index works from any
    folder; a GDAL virtual path or URL as given, but for a relative local file in it
    (``/vsizip/a.zip/b.tif``: :func:`rsgan.io.absolute_source`)."""
    text = os.fspath(path)
    return absolute_source(text) if is_virtual(text) else os.path.abspath(text)


def check_scenes_alike(infos: Sequence[RasterInfo], bands: Sequence[int] | None) -> Bands:
    """The selected bands, after checking that the scenes agree on band count, data type
    and georeferencing.

    Raises:
        BandError: bands out of range, or scenes with different band counts or dtypes.
        ConfigError: georeferenced and plain images mixed.
    """
    first = infos[0]
    first_bands = check_bands(first.count, bands, path=first.path)
    first_dtypes = {first.dtypes[b - 1] for b in first_bands}
    for info in infos[1:]:
        sel = check_bands(info.count, bands, path=info.path)
        if len(sel) != len(first_bands):
            raise BandError(
                f"{info.path} has {info.count} band(s) but {first.path} has {first.count}; "
                "scenes of one call or domain need the same bands: pass scenes alike, or "
                "select the same bands of each with bands=(...)"
            )
        dtypes = {info.dtypes[b - 1] for b in sel}
        if dtypes != first_dtypes:
            raise BandError(
                f"{info.path} holds {sorted(dtypes)} data but {first.path} holds "
                f"{sorted(first_dtypes)}; scenes of one call or domain need one data type"
            )
    georef = {info.placed for info in infos}
    if len(georef) > 1:
        plain = next(i.path for i in infos if not i.placed)
        raise ConfigError(
            f"{plain} has no CRS but other scenes have one; chip georeferenced and plain "
            "images in separate calls"
        )
    return first_bands


def scene_paths(scenes: PathLike | Sequence[PathLike]) -> list[Path | str]:
    """Local scenes as Paths, a local folder as the image files directly in it (as the
    training data reads one: :func:`rsgan.io.list_image_files`), URLs and ``/vsi`` paths
    as given (:func:`rsgan.io.source_path`).

    Raises:
        ConfigError: no scene given.
        RasterReadError: a folder holding no image file.
    """
    if isinstance(scenes, (str, os.PathLike)):
        scenes = [scenes]
    paths: list[Path | str] = []
    for scene in scenes:
        path = source_path(scene)
        is_folder = isinstance(path, Path) and path.is_dir()
        paths.extend(list_image_files(path) if is_folder else [path])
    if not paths:
        raise ConfigError("no scene given; pass at least one raster")
    return paths


def chip_index(
    scenes: PathLike | Sequence[PathLike],
    spec: TileSpec,
    *,
    bands: Sequence[int] | None = None,
    aoi: Any = None,
    aoi_crs: Any = None,
    aoi_within: bool = False,
    max_nodata: float | None = None,
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """List the tile grid's chips of one or more scenes, filtered by AOI and nodata.

    Args:
        scenes: Raster paths or URLs, or folders of rasters (:func:`scene_paths`). They must
            have the same number of (selected) bands and one data type.
        spec: Tile size, overlap and edge policy.
        bands: 1-based band indexes whose validity counts, None for all.
        aoi: Area of interest (see :func:`load_aoi`), in any CRS; it is reprojected to each
            scene's CRS. A chip is kept when it overlaps the AOI's interior.
        aoi_crs: CRS of a shapely ``aoi``.
        aoi_within: Keep only chips lying wholly within the AOI.
        max_nodata: Keep only chips whose invalid fraction is at most this (0..1).
        progress: Show a progress bar over scenes.

    Returns:
        A GeoDataFrame with :data:`INDEX_COLUMNS`: ``scene`` (path), ``row_off``,
        ``col_off``, ``height``, ``width`` (pixels), ``valid_fraction`` (0..1, pixels
        outside the scene count as invalid), ``crs`` (the scene's CRS as ``"EPSG:n"`` or
        WKT) and ``geometry`` (the chip footprint). The frame's CRS is the first scene's;
        footprints of scenes in another CRS are reprojected to it. ``attrs`` holds
        ``chips_total``, ``skipped_aoi`` and ``skipped_nodata`` counts.

    Raises:
        RasterReadError: a scene is missing or not a raster.
        BandError: bands out of range, or scenes with different band counts or dtypes.
        TileSpecError: a scene smaller than a tile with ``edge="shift"``.
        AOIError: the AOI has no CRS, or misses every scene, or (``aoi_within``) no whole
            chip lies within it.
        ConfigError: ``max_nodata`` outside 0..1.
    """
    paths = scene_paths(scenes)
    if max_nodata is not None and not 0 <= max_nodata <= 1:
        raise ConfigError(f"max_nodata {max_nodata} is a fraction; pass a value from 0 to 1")
    infos = [describe(p) for p in paths]
    selected = check_scenes_alike(infos, bands)
    aoi_series = load_aoi(aoi, aoi_crs) if aoi is not None else None
    if aoi_series is not None and _scene_crs(infos[0]) is None:
        raise AOIError(
            f"{infos[0].path} has no CRS, so an AOI cannot select its chips; drop the AOI"
        )
    frame_crs = _scene_crs(infos[0])
    parts: list[gpd.GeoDataFrame] = []
    total = skipped_aoi = skipped_nodata = 0
    touched = False  # with aoi_within: some chip overlaps the AOI, though none lies within
    for path, info in tqdm(
        list(zip(paths, infos, strict=True)),
        desc="indexing scenes",
        unit="scene",
        disable=not progress,
    ):
        grid = tile_grid(info.width, info.height, spec, scene=path)
        windows = [w for row in grid for w in row]
        total += len(windows)
        crs = _scene_crs(info)
        footprints = _scene_footprints(windows, info)
        keep = np.ones(len(windows), dtype=bool)
        if aoi_series is not None:
            scene_aoi = aoi_in_crs(aoi_series, crs)
            keep = aoi_keep(footprints, scene_aoi, aoi_within)
            skipped_aoi += int((~keep).sum())
            if aoi_within and not keep.any():
                touched = touched or bool(aoi_keep(footprints, scene_aoi, False).any())
        with open_raster(path) as src:
            fractions = _valid_fractions(src, grid, selected, spec.size, keep)
        if max_nodata is not None:
            ok = (1.0 - fractions) <= max_nodata + 1e-12
            skipped_nodata += int((keep & ~ok).sum())
            keep &= ok
        part = gpd.GeoDataFrame(
            {
                "scene": scene_label(path),
                "row_off": np.array([int(w.row_off) for w in windows], dtype=np.int64)[keep],
                "col_off": np.array([int(w.col_off) for w in windows], dtype=np.int64)[keep],
                "height": np.full(int(keep.sum()), spec.size, dtype=np.int64),
                "width": np.full(int(keep.sum()), spec.size, dtype=np.int64),
                "valid_fraction": fractions[keep],
                "crs": _crs_text(crs),
            },
            geometry=gpd.GeoSeries(footprints[keep], crs=crs),
        )
        if crs is not None and frame_crs is not None and crs != frame_crs:
            part = part.to_crs(frame_crs)
        parts.append(part)
    if aoi_series is not None and skipped_aoi == total:
        if touched:
            raise AOIError(
                f"no whole chip of {spec.size} px lies within the AOI, which overlaps the "
                f"scene(s) ({', '.join(source_name(p) for p in paths)}); use smaller chips, "
                "or keep the chips that overlap it (aoi_within=False, no --within)"
            )
        b = aoi_series.total_bounds
        raise AOIError(
            f"the AOI (bounds {b[0]:.6g}, {b[1]:.6g}, {b[2]:.6g}, {b[3]:.6g} in "
            f"{aoi_series.crs.to_string()}) misses every scene "
            f"({', '.join(source_name(p) for p in paths)}); check the AOI's extent and CRS"
        )
    index = gpd.GeoDataFrame(
        pd.concat(parts, ignore_index=True), geometry="geometry", crs=frame_crs
    )[list(INDEX_COLUMNS)]
    index.attrs.update(chips_total=total, skipped_aoi=skipped_aoi, skipped_nodata=skipped_nodata)
    return index


def save_index(index: gpd.GeoDataFrame, path: PathLike, *, overwrite: bool = False) -> Path:
    """Save a chip index as GeoPackage (``.gpkg``, layer ``chips``) or GeoParquet
    (``.parquet``), atomically.

    Raises:
        ConfigError: another file ending.
        OutputExistsError: the file exists and ``overwrite`` is False.
    """
    dst = Path(path)
    suffix = dst.suffix.lower()
    if suffix not in INDEX_SUFFIXES:
        raise ConfigError(
            f"chip index {dst}: unknown file ending {dst.suffix!r}; use "
            f"{' or '.join(INDEX_SUFFIXES)}"
        )
    frame = index.copy()
    frame.attrs = {}
    with atomic_output(dst, overwrite=overwrite) as tmp:
        if suffix == ".gpkg":
            # GDAL's GeoPackage driver (SQLite) rolls a failed page write back and then
            # reports a later, unrelated error ("no such table"), nothing of a full disk:
            # the file is built in memory and written here, where that is an OSError
            buffer = io.BytesIO()
            frame.to_file(buffer, driver="GPKG", layer="chips")
            tmp.write_bytes(buffer.getbuffer())
        else:
            frame.to_parquet(tmp)
    return dst


def load_index(path: PathLike) -> gpd.GeoDataFrame:
    """Load a chip index saved by :func:`save_index` (or :func:`export_chips`).

    Raises:
        RasterReadError: the file is missing or unreadable.
        ConfigError: the file lacks chip index columns.
    """
    src = Path(path)
    if not src.exists():
        raise RasterReadError(f"no such file: {src}; check the path")
    try:
        if src.suffix.lower() == ".parquet":
            frame = gpd.read_parquet(src)
        else:
            frame = gpd.read_file(src)
    except Exception as exc:  # pyogrio and pyarrow raise several kinds
        raise RasterReadError(f"cannot read chip index {src} ({exc})") from exc
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{src} is not a chip index: it lacks column(s) {', '.join(missing)}; "
            "make one with rsgan.tiling.chip_index or `rsgan chips`"
        )
    for col in ("row_off", "col_off", "height", "width"):
        frame[col] = frame[col].astype(np.int64)
    frame["crs"] = frame["crs"].fillna("").astype(str)
    return frame


def sample_chips(
    index: gpd.GeoDataFrame, n: int, *, seed: int = 0, replace: bool = False
) -> gpd.GeoDataFrame:
    """``n`` chips drawn at random (seeded) from an index.

    Raises:
        ConfigError: ``n`` larger than the index without ``replace``.
    """
    if n < 0:
        raise ConfigError(f"cannot sample {n} chips; pass a count of 0 or more")
    if n > len(index) and not replace:
        raise ConfigError(
            f"the index has {len(index)} chips, fewer than the {n} asked; ask for fewer "
            "or pass replace=True"
        )
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(index), size=n, replace=replace)
    return index.iloc[np.sort(rows) if not replace else rows].reset_index(drop=True)


# --------------------------------------------------------------------------- export


def _chip_profile(info: RasterInfo, window: Window, count: int, dtype: str) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": int(window.width),
        "height": int(window.height),
        "count": count,
        "dtype": dtype,
        "transform": window_transform(window, info.transform),
        "nodata": info.nodata,
        "compress": "deflate",
        "predictor": 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2,
    }
    if info.crs is not None:
        profile["crs"] = info.crs
    return profile


def _needs_mask(info: RasterInfo, bands: Bands, spec: TileSpec) -> bool:
    """Chips need their own mask when the scene masks pixels without a nodata value
    (internal masks, alpha) or padding adds outside pixels a nodata value cannot mark."""
    if info.nodata is not None:
        return False
    if spec.edge == "pad":
        return True
    return any([f.name for f in info.mask_flags[b - 1]] != ["all_valid"] for b in bands)


def export_chips(
    scenes: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    spec: TileSpec,
    *,
    bands: Sequence[int] | None = None,
    aoi: Any = None,
    aoi_crs: Any = None,
    aoi_within: bool = False,
    max_nodata: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> gpd.GeoDataFrame:
    """Cut scenes into GeoTIFF chips, each with its own transform and the scene's CRS.

    Writes ``out_dir/<scene stem>_r<row>_c<col>.tif`` per chip (nodata, band
    descriptions, colour interpretation, colour tables, units, scales, offsets and tags
    copied, as :func:`rsgan.io.copy_band_metadata`; pixels outside the scene with
    ``edge="pad"`` are nodata, or masked when the scene has no nodata value) and
    ``out_dir/index.gpkg`` (the :func:`chip_index` columns plus ``chip``, the chip's file
    name). The folder is built aside and renamed into place at the end, so a failed or
    interrupted run leaves nothing.

    Args:
        scenes: Raster paths or URLs, or folders of rasters (:func:`scene_paths`; same band
            count and dtype).
        out_dir: Output folder; it must not exist unless ``overwrite``.
        spec: Tile size, overlap and edge policy.
        bands: 1-based band indexes to export, None for all.
        aoi, aoi_crs, aoi_within, max_nodata: Filters, as :func:`chip_index`.
        overwrite: Replace an existing ``out_dir``.
        progress: Show a progress bar over chips.

    Returns:
        The index of the written chips (``attrs`` as :func:`chip_index`).

    Raises:
        OutputExistsError: ``out_dir`` exists and ``overwrite`` is False (checked first).
        RasterWriteError: ``out_dir`` holds a scene or the AOI file (checked first).
        ConfigError: two scenes share a file name stem.
        The errors of :func:`chip_index`.
    """
    paths = scene_paths(scenes)
    stems = [source_stem(p) for p in paths]
    for stem in set(stems):
        if stems.count(stem) > 1:
            clash = [str(p) for p, s in zip(paths, stems, strict=True) if s == stem]
            raise ConfigError(
                f"scenes {', '.join(clash)} share the name {stem!r}, so their chips would "
                "collide; rename one or export them into separate folders"
            )
    out = Path(out_dir)
    inputs = [*paths, *([aoi] if isinstance(aoi, (str, os.PathLike)) else [])]
    with atomic_output_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        index = chip_index(
            paths,
            spec,
            bands=bands,
            aoi=aoi,
            aoi_crs=aoi_crs,
            aoi_within=aoi_within,
            max_nodata=max_nodata,
        )
        index["chip"] = [chip_name(r.scene, window_of(r)) for r in index.itertuples()]
        with tqdm(total=len(index), desc="writing chips", unit="chip", disable=not progress) as bar:
            for scene, rows in index.groupby("scene", sort=False):
                bar.set_postfix_str(source_stem(scene))
                _write_scene_chips(source_path(scene), rows, tmp, spec, bands, bar)
        save_index(index, tmp / "index.gpkg")
    return index


def _write_scene_chips(
    scene: Path | str,
    rows: gpd.GeoDataFrame,
    folder: Path,
    spec: TileSpec,
    bands: Sequence[int] | None,
    bar: Any,
) -> None:
    with open_raster(scene) as src:
        info = RasterInfo.from_dataset(src)
        selected = check_bands(info.count, bands, path=scene)
        dtype = info.dtypes[selected[0] - 1]
        with_mask = _needs_mask(info, selected, spec)
        for row in rows.itertuples():
            window = window_of(row)
            data = read_window(src, window, selected, boundless=True)
            with open_output(
                folder / row.chip, **_chip_profile(info, window, len(selected), dtype)
            ) as dst:
                # colour interpretation must be set before pixels are written (libtiff
                # cannot change PhotometricInterpretation afterwards)
                copy_band_metadata(info, dst, selected)
                copy_placement(info, dst, int(window.row_off), int(window.col_off))
                dst.write(data)
                if with_mask:
                    mask = read_valid_mask(src, window, selected, boundless=True, data=data)
                    dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
            bar.update(1)


__all__ = [
    "EDGE_POLICIES",
    "INDEX_COLUMNS",
    "TileSpec",
    "aoi_in_crs",
    "aoi_keep",
    "chip_index",
    "check_scenes_alike",
    "chip_name",
    "export_chips",
    "load_aoi",
    "load_index",
    "random_windows",
    "sample_chips",
    "save_index",
    "scene_label",
    "scene_paths",
    "tile_grid",
    "tile_windows",
    "window_of",
]
