"""Torch datasets over chips of georeferenced scenes or plain image folders.

:class:`ChipDataset` reads chips lazily by window from the scenes themselves (no export
needed) and returns normalised float tensors in the models' range [-1, 1] with their
valid masks. Dataset handles are opened lazily in each process, so a DataLoader with
``num_workers > 0`` works (no open handle is pickled). :class:`UnpairedDataset` pairs
two domains for CycleGAN.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely import Polygon
from shapely.geometry.base import BaseGeometry
from torch.utils.data import Dataset

from rsgan._types import Bands, EdgePolicy
from rsgan.errors import BandError, ConfigError, NoChipsError
from rsgan.io import (
    Normalizer,
    NotGeoreferencedWarning,
    RasterInfo,
    compute_band_stats,
    describe,
    open_dataset,
    read_masked,
    read_valid_mask,
    source_path,
)
from rsgan.tiling import (
    INDEX_SUFFIXES,
    TileSpec,
    aoi_in_crs,
    aoi_keep,
    check_scenes_alike,
    chip_index,
    load_aoi,
    load_index,
    scene_label,
    scene_paths,
)

MAX_OPEN_SCENES = 64
"""Dataset handles kept open per process; the least recently opened is closed beyond it."""

_RANDOM_TRIES = 10


def _expand_sources(
    sources: Any,
) -> tuple[list[Path | str] | None, gpd.GeoDataFrame | None]:
    """``(scene paths, None)`` or ``(None, chip index)`` from the ``sources`` argument
    (URLs and ``/vsi`` paths kept as given: :func:`rsgan.io.source_path`)."""
    if isinstance(sources, gpd.GeoDataFrame):
        return None, sources
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items = [source_path(s) for s in sources]
    if not items:
        raise ConfigError("no source given; pass a raster, a folder, a list or a chip index")
    first = items[0]
    if len(items) == 1 and isinstance(first, Path) and first.suffix.lower() in INDEX_SUFFIXES:
        return None, load_index(first)
    return scene_paths(items), None  # folders as their rasters, as rsgan chips reads them


def _warn_plain(infos: Sequence[RasterInfo]) -> None:
    plain = [i.path for i in infos if not i.placed]  # no CRS, ground control points or RPCs
    if plain:
        warnings.warn(
            NotGeoreferencedWarning(
                f"{len(plain)} of {len(infos)} source image(s) have no CRS (e.g. {plain[0]}); "
                "they are used as plain images and their chips carry pixel coordinates only"
            ),
            stacklevel=3,
        )


def _filter_index(
    index: gpd.GeoDataFrame,
    *,
    aoi: Any,
    aoi_crs: Any,
    aoi_within: bool,
    max_nodata: float | None,
) -> gpd.GeoDataFrame:
    keep = np.ones(len(index), dtype=bool)
    if max_nodata is not None:
        keep &= (1.0 - index["valid_fraction"].to_numpy()) <= max_nodata + 1e-12
    if aoi is not None:
        if index.crs is None:
            raise ConfigError("the chip index has no CRS, so an AOI cannot filter it")
        geom = aoi_in_crs(load_aoi(aoi, aoi_crs), CRS.from_user_input(index.crs))
        keep &= aoi_keep(index.geometry.to_numpy(), geom, aoi_within)
    return index[keep].reset_index(drop=True)


class ChipDataset(Dataset):
    """Chips of scenes (or plain images) as normalised tensors with valid masks.

    Args:
        sources: A raster path, a list of raster paths, a folder of rasters or plain
            PNG/JPEG/TIFF images (a warning says when they carry no CRS), a chip index file
            (``.gpkg``/``.parquet``) or a chip index GeoDataFrame.
        size: Chip side in pixels.
        bands: 1-based band indexes, None for all.
        normalizer: Maps source values to [-1, 1]. None: the dtype's range for uint8
            (0..255), else the 0.5/99.5 percentiles of a sample of the sources
            (:func:`rsgan.io.compute_band_stats`).
        overlap: Overlap of grid chips in pixels.
        edge: Edge policy of the grid. With ``"shift"`` (default) an image smaller than
            ``size`` is an error (a :class:`~rsgan.errors.TileSpecError` that says so);
            with ``"pad"`` such images are padded and the mask is False on the padding.
        max_nodata: Leave out chips whose invalid fraction exceeds this (0..1).
        aoi: Keep chips overlapping this area of interest (see
            :func:`rsgan.tiling.load_aoi`); ``aoi_crs`` for a shapely geometry;
            ``aoi_within`` keeps chips wholly within it.
        random_chips: Draw this many random windows (seeded, changing with
            :meth:`set_epoch`) instead of the grid, for training. They are placed anywhere
            in scenes that have grid chips passing the filters, and redrawn (up to 10
            times) until they meet the AOI and nodata filters.
        seed: Seed of the random windows and of the statistics sample.

    Items are ``{"image": float32 tensor (C, H, W), "mask": bool tensor (H, W)}``; the
    image is 0 where the mask is False.

    Attributes:
        index: GeoDataFrame of grid chips (:func:`rsgan.tiling.chip_index` columns).
        scenes: The source files.
        bands: Selected 1-based band indexes; ``count`` their number.
        dtype: Source data type.
        normalizer: The :class:`~rsgan.io.Normalizer` in use.
    """

    def __init__(
        self,
        sources: Any,
        *,
        size: int = 256,
        bands: Sequence[int] | None = None,
        normalizer: Normalizer | None = None,
        overlap: int = 0,
        edge: EdgePolicy = "shift",
        max_nodata: float | None = None,
        aoi: Any = None,
        aoi_crs: Any = None,
        aoi_within: bool = False,
        random_chips: int | None = None,
        seed: int = 0,
    ) -> None:
        self.spec = TileSpec(size, overlap, edge)
        scene_paths, given_index = _expand_sources(sources)
        if given_index is not None:
            index = _filter_index(
                given_index, aoi=aoi, aoi_crs=aoi_crs, aoi_within=aoi_within, max_nodata=max_nodata
            )
            sizes = set(index["height"]) | set(index["width"])
            if sizes and sizes != {size}:
                raise ConfigError(
                    f"the chip index holds chips of {sorted(sizes)} px but size={size}; "
                    f"pass size={min(sizes)} or re-index"
                )
            scene_paths = [source_path(s) for s in dict.fromkeys(given_index["scene"])]
        assert scene_paths is not None  # _expand_sources gives scenes whenever no index
        infos = [describe(p) for p in scene_paths]
        _warn_plain(infos)
        self.bands: Bands = check_scenes_alike(infos, bands)
        if given_index is None:
            index = chip_index(
                scene_paths,
                self.spec,
                bands=self.bands,
                aoi=aoi,
                aoi_crs=aoi_crs,
                aoi_within=aoi_within,
                max_nodata=max_nodata,
            )
        if len(index) == 0:
            raise NoChipsError(
                f"no chip of {size} px passes the filters (max_nodata={max_nodata}, "
                f"aoi={'given' if aoi is not None else 'none'}); relax them"
            )
        self.index: gpd.GeoDataFrame = index
        self.scenes: list[str] = [scene_label(p) for p in scene_paths]
        self._infos = dict(zip(self.scenes, infos, strict=True))
        first = infos[0]
        self.count = len(self.bands)
        self.dtype = first.dtypes[self.bands[0] - 1]
        if normalizer is None:
            normalizer = self._default_normalizer(seed)
        if normalizer.count != self.count:
            raise BandError(
                f"the normaliser has {normalizer.count} band(s) but the dataset has "
                f"{self.count} ({self.bands}); pass a normaliser made for these bands"
            )
        self.normalizer = normalizer
        self.random_chips = random_chips
        if random_chips is not None and random_chips < 1:
            raise ConfigError(f"random_chips={random_chips}: pass a positive number or None")
        self.seed = seed
        self.epoch = 0
        self.max_nodata = max_nodata
        self._aoi = (
            {
                s: aoi_in_crs(load_aoi(aoi, aoi_crs), self._infos[s].crs)
                for s in self.index.scene.unique()
            }
            if aoi is not None and random_chips is not None
            else {}
        )
        self._aoi_within = aoi_within
        # compact arrays for fast item lookup
        self._scene_of = self.index["scene"].astype(str).to_numpy()
        self._offsets = self.index[["row_off", "col_off"]].to_numpy(dtype=np.int64)
        counts = self.index["scene"].value_counts()
        self._random_scenes = [str(s) for s in counts.index]
        self._random_weights = counts.to_numpy(dtype=np.float64) / counts.sum()
        self._handles: dict[str, DatasetReader] = {}
        self._pid = os.getpid()

    def _default_normalizer(self, seed: int) -> Normalizer:
        if self.dtype == "uint8":
            return Normalizer.for_dtype(self.dtype, self.count)
        stats = compute_band_stats(self.scenes, self.bands, seed=seed)
        return Normalizer.from_stats(stats)

    # ---------------------------------------------------------------- handles

    def _dataset(self, scene: str) -> DatasetReader:
        """This process's open handle of ``scene`` (opened on first use)."""
        if self._pid != os.getpid():  # a forked worker: never reuse the parent's handles
            self._handles = {}
            self._pid = os.getpid()
        src = self._handles.get(scene)
        if src is None or src.closed:
            if len(self._handles) >= MAX_OPEN_SCENES:
                oldest = next(iter(self._handles))
                self._handles.pop(oldest).close()
            src = open_dataset(scene)
            self._handles[scene] = src
        return src

    def close(self) -> None:
        """Close this process's open dataset handles."""
        for src in self._handles.values():
            src.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # ---------------------------------------------------------------- items

    def set_epoch(self, epoch: int) -> None:
        """Choose the random windows of ``epoch`` (no effect on grid chips)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.random_chips if self.random_chips is not None else len(self.index)

    def chip(self, i: int) -> tuple[str, Window]:
        """The scene and window of item ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"chip {i} is out of range for {len(self)} chips")
        i %= len(self)
        if self.random_chips is None:
            row_off, col_off = self._offsets[i]
            size = self.spec.size
            return str(self._scene_of[i]), Window(int(col_off), int(row_off), size, size)
        return self._random_chip(i)

    def transform(self, i: int) -> tuple[Affine, CRS | None]:
        """Affine transform and CRS of item ``i``'s chip."""
        scene, window = self.chip(i)
        info = self._infos[scene]
        return window_transform(window, info.transform), info.crs

    def _random_chip(self, i: int) -> tuple[str, Window]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        size = self.spec.size
        for _ in range(_RANDOM_TRIES):
            scene = self._random_scenes[
                rng.choice(len(self._random_scenes), p=self._random_weights)
            ]
            info = self._infos[scene]
            row = int(rng.integers(0, max(info.height - size, 0) + 1))
            col = int(rng.integers(0, max(info.width - size, 0) + 1))
            window = Window(col, row, size, size)
            if self._acceptable(scene, window):
                return scene, window
        j = int(rng.integers(0, len(self.index)))  # fall back to a grid chip that passed
        row_off, col_off = self._offsets[j]
        return str(self._scene_of[j]), Window(int(col_off), int(row_off), size, size)

    def _acceptable(self, scene: str, window: Window) -> bool:
        aoi: BaseGeometry | None = self._aoi.get(scene)
        if aoi is not None:
            t = window_transform(window, self._infos[scene].transform)
            corners = [t @ (0, 0), t @ (window.width, 0), t @ (window.width, window.height)]
            corners.append(t @ (0, window.height))
            if not aoi_keep(np.array([Polygon(corners)], dtype=object), aoi, self._aoi_within)[0]:
                return False
        if self.max_nodata is not None:
            mask = read_valid_mask(self._dataset(scene), window, self.bands, boundless=True)
            if 1.0 - mask.mean() > self.max_nodata + 1e-12:
                return False
        return True

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Source pixels ``(bands, rows, cols)`` and valid mask ``(rows, cols)`` of item ``i``."""
        scene, window = self.chip(i)
        return read_masked(self._dataset(scene), window, self.bands, boundless=True)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        data, mask = self.read(i)
        image = self.normalizer.normalize(data)
        if not mask.all():
            image[:, ~mask] = 0.0
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask)}


class _DomainChips(Protocol):
    """What :class:`UnpairedDataset` needs of a domain (a :class:`ChipDataset` or alike)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Mapping[str, Any]: ...

    def set_epoch(self, epoch: int) -> None: ...


class UnpairedDataset(Dataset):
    """Two domains without pixel pairing, for CycleGAN.

    Item ``i`` holds chip ``i % len(a)`` of ``a`` and chip ``perm[i % len(b)]`` of ``b``,
    where ``perm`` is a permutation of ``b`` drawn from ``seed`` and the epoch (see
    :meth:`set_epoch`), so b's partner changes every epoch but is reproducible.
    The length is the longer domain's.

    Items: ``{"a": (C_a, H, W) float32, "a_mask": (H, W) bool, "b": ..., "b_mask": ...}``.
    """

    def __init__(self, a: _DomainChips, b: _DomainChips, *, seed: int = 0) -> None:
        if len(a) == 0 or len(b) == 0:
            raise ConfigError(f"domains hold {len(a)} and {len(b)} chips; both need at least one")
        self.a = a
        self.b = b
        self.seed = seed
        self.epoch = 0
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.b))

    def set_epoch(self, epoch: int) -> None:
        """Draw the b permutation (and both domains' random windows) of ``epoch``."""
        self.epoch = int(epoch)
        self._perm = self._permutation()
        self.a.set_epoch(epoch)
        self.b.set_epoch(epoch)

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} is out of range for {len(self)} items")
        a = self.a[i % len(self.a)]
        b = self.b[int(self._perm[i % len(self.b)])]
        return {"a": a["image"], "a_mask": a["mask"], "b": b["image"], "b_mask": b["mask"]}


__all__ = ["MAX_OPEN_SCENES", "ChipDataset", "UnpairedDataset"]
