"""Whole-scene translation: :func:`translate_raster`.

A scene of any size is cut into overlapping tiles (:func:`rsgan.mosaic.balanced_windows`),
the tiles are read ahead in a thread, translated in batches (on CPU two tiles at once, each
on its share of torch's threads), and blended back by a :class:`rsgan.mosaic.MosaicWriter`
in a write-behind thread, so reading, blending and writing hide behind the model. Memory
does not depend on the scene's height.

Seams: with ``norm="scene"`` (the default) the instance-norm layers of the generator use
statistics of the whole scene, not of each tile. A scene that fits the statistics budget
(:data:`STATS_MEMORY_MB`) is translated in one whole pass: that is the whole-scene result.
A larger scene is cut into tiles, and a first forward in ``"pooled"`` mode over a set of
its tiles gathers per-layer statistics, each scene pixel counted once (every tile
contributes the part of the scene it owns, :func:`rsgan.mosaic.owned_boxes`) and nodata left
out. As many tiles as the budget allows take part: all of them when they fit, else tiles
chosen to represent the scene (k-means on their colour and texture in a decimated read),
each weighted by the share of the scene it stands for. The outputs of that pass are final
(pooled statistics are exactly the fixed statistics every other tile then uses), so it
costs no model work beyond the tiles themselves. Tiles then agree where they overlap and
the result does not depend on the tile size. ``norm="tile"`` is the reference behaviour
(statistics per tile) for comparison.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import queue
import tempfile
import threading
import warnings
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.windows import Window
from torch import nn

from rsgan import _memory
from rsgan._device import autocast, preferred_precision, resolve_device, resolve_precision
from rsgan._progress import tqdm
from rsgan._types import PathLike
from rsgan.checkpoint import (  # re-exported: the default model's home is rsgan.checkpoint
    DEFAULT_MODEL_ENV,
    DEFAULT_MODEL_PATH,
    default_model_path,
)
from rsgan.errors import (
    BandError,
    ConfigError,
    ModelError,
    OutputExistsError,
    RasterWriteError,
    RsganWarning,
)
from rsgan.io import (
    Normalizer,
    RasterInfo,
    atomic_output,
    check_bands,
    check_local_output,
    copy_band_metadata,
    copy_dataset_tags,
    copy_placement,
    describe,
    files_read_by,
    is_network,
    open_dataset,
    open_output,
    open_raster,
    output_profile,
    preview_bands,
    read_masked,
    rgb_bands,
    same_file,
    source_name,
    source_path,
    warn_if_not_georeferenced,
)
from rsgan.models.layers import (
    BlockProxy,
    Stats,
    block_moments,
    fixed_norm_stats,
    fold_norm_stats,
    norm_layers,
    norm_mask,
    pooled_forward,
    shared_copy,
)
from rsgan.mosaic import (
    BLENDS,
    MosaicStats,
    MosaicWriter,
    balanced_windows,
    owned_boxes,
)

_T = TypeVar("_T")

STATS_MEMORY_MB = 1536
"""Memory the scene-statistics pass may use by default (``stats_memory_mb``), MiB. It bounds
the pixels translated together in that pass (see :func:`stats_budget_px`): a scene of up
to that many pixels is translated in one whole pass; a larger scene pools its statistics
over as many of its own tiles as fit."""
STATS_TILE = 768
"""Tile side of the grid the statistics are gathered on (the default ``tile``)."""
STATS_OVERLAP = 64
"""Overlap of that grid (the default ``overlap``). A run with the default tiling reuses the
outputs of the statistics pass; another tiling translates those blocks on top of its tiles
(at most the budget's pixels more model work)."""
STATS_BYTES_PER_PX = 16
"""Peak bytes per pixel of the pooled pass, per channel of the model's first norm layer
(counted as at least 16; measured ~250 B/px for the bundled 16-channel model, in bf16 and
in fp32)."""
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "zstd": {"compress": "zstd", "ZSTD_LEVEL": 1},
    "deflate": {"compress": "deflate", "ZLEVEL": 1},
    "lzw": {"compress": "lzw"},
    "none": {},
}
"""Output compressions of :func:`translate_raster` and their GDAL creation options (with a
horizontal predictor for all but ``"none"``). ZSTD level 1, the default, encoded a 50 MB
3-band uint8 scene 5x faster than DEFLATE level 1 (0.08 vs 0.39 CPU-s) into a file of the
same size (35.3 vs 34.9 MB; docs/benchmarks.md); on a 2-core CPU every CPU-second the writer
spends is taken from the model. Any GDAL >= 2.3 built with ZSTD reads it (rasterio's
wheels, conda-forge, QGIS); choose ``"deflate"`` for readers without ZSTD."""
GDAL_CACHE_MB = 32
"""GDAL's block cache while translating, in MiB, for scenes up to ~7500 px wide (3-band
uint8); wider ones get room for the input blocks of one tile row (:func:`gdal_cache_bytes`).
Memory grows with the scene's width, never with its height."""
GDAL_CACHE_MAX_MB = 512
"""The most :func:`gdal_cache_bytes` gives."""


def gdal_cache_bytes(info: RasterInfo, tile_rows: int) -> int:
    """GDAL's block cache for translating ``info`` in tiles ``tile_rows`` px tall: at least
    :data:`GDAL_CACHE_MB`, and 1.5 times the input blocks one tile row decodes (across the
    width, all bands of the file), at most :data:`GDAL_CACHE_MAX_MB`. The next tile row
    reads the last of those blocks again; evicted, they are decoded twice: a 16384 px wide
    3-band uint8 scene read its 768 px tiles in 5.3 ms each with 32 MB and 3.7 ms with
    128 MB (one core; docs/benchmarks.md)."""
    block_rows = info.block_shapes[0][0] if info.block_shapes else 256
    itemsize = max(np.dtype(d).itemsize for d in info.dtypes)
    row_bytes = info.width * info.count * itemsize
    need = int(1.5 * (tile_rows + block_rows) * row_bytes)
    return min(max(GDAL_CACHE_MB * 2**20, need), GDAL_CACHE_MAX_MB * 2**20)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Translator:
    """A generator with what is needed to feed it and to read its output.

    Attributes:
        net: maps ``(N, C_in, H, W)`` in [-1, 1] to ``(N, C_out, H, W)`` in [-1, 1].
        in_normalizer: source values -> [-1, 1]; None: the source dtype's natural range
            (:meth:`rsgan.io.Normalizer.for_dtype`).
        out_normalizer: [-1, 1] -> output values; None: the input's normaliser when the
            band counts match, else the output dtype's natural range.
        in_count: bands the net reads (None: unknown, any).
        in_dtype: source dtype the net was trained on (None: any).
        out_dtype: data type of the domain the net writes, the output's default (None:
            the source's).
        out_descriptions, out_colorinterp: band descriptions and colour interpretation
            (names) of the domain the net writes, for a model whose two domains differ in
            them (another sensor's bands); None: the source bands' are copied.
        in_bands: source bands used in training (None: unknown).
        precision: preferred inference precision ("fp32" or "bf16"), or None.
        name: for messages.
    """

    net: nn.Module
    in_normalizer: Normalizer | None = None
    out_normalizer: Normalizer | None = None
    in_count: int | None = None
    in_dtype: str | None = None
    in_bands: tuple[int, ...] | None = None
    precision: str | None = None
    name: str = "model"
    out_dtype: str | None = None
    out_descriptions: tuple[str | None, ...] | None = None
    out_colorinterp: tuple[str, ...] | None = None

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.net, "size_multiple", 1))

    @property
    def min_size(self) -> int:
        return int(getattr(self.net, "min_size", 1))

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout inputs are given in: channels-last for a net that declares it runs
        faster so (``prefers_channels_last``, as rsgan's ResNet generator), else
        channels-first (any other module may e.g. ``view`` its input)."""
        if getattr(self.net, "prefers_channels_last", False):
            return torch.channels_last
        return torch.contiguous_format


def _from_loaded(loaded: Any, direction: str, name: str) -> Translator:
    """A Translator from a :class:`rsgan.checkpoint.LoadedModel`.

    Raises:
        ConfigError: for a model none of whose generators reads images (a DCGAN's read
            latent vectors: it is for :func:`rsgan.training.generate`).
    """
    from rsgan.models import model_kind

    if all(src is None for _, src, _ in model_kind(loaded.kind).directions.values()):
        raise ConfigError(
            f"translation needs a cyclegan checkpoint; {name} is a {loaded.kind}, whose "
            "generator makes images from random vectors: use it with `rsgan generate` "
            "(rsgan.training.generate)"
        )
    net = loaded.generator(direction)
    src, dst = loaded.in_domain(direction), loaded.out_domain(direction)
    meta = loaded.metadata or {}
    precision = (meta.get("extra") or {}).get("inference_precision")
    crosses = (src.count, src.descriptions, src.colorinterp) != (
        dst.count,
        dst.descriptions,
        dst.colorinterp,
    )
    return Translator(
        net=net,
        in_normalizer=src.normalizer,
        out_normalizer=dst.normalizer,
        in_count=src.count,
        in_dtype=src.dtype,
        in_bands=src.bands,
        precision=precision,
        name=name,
        # the type of the values its normaliser gives back (a domain without one was
        # trained on float Datasets: its recorded dtype says nothing of a raster's)
        out_dtype=dst.dtype if dst.normalizer is not None else None,
        # bands of another sensor (NAIP R, G, B -> Sentinel-2 B08, B04, B03) are named as
        # the model's output domain names them, not as the source's
        out_descriptions=dst.descriptions if crosses else None,
        out_colorinterp=dst.colorinterp if crosses else None,
    )


def resolve_translator(model: Any, direction: str = "a2b") -> Translator:
    """Turn ``model`` (None, a checkpoint path, a LoadedModel, an ``nn.Module`` or a
    :class:`Translator`) into a :class:`Translator`.

    Raises:
        CheckpointError: for a missing or corrupt checkpoint.
        ModelError: for an object that is none of these, or (None) a ``$RSGAN_MODEL``
            that is not a file, or no bundled default model.
    """
    from rsgan.checkpoint import LoadedModel, load_model

    if isinstance(model, Translator):
        return model
    if model is None:
        loaded = load_model(None)
        name = loaded.path.name if loaded.path is not None else "default model"
        return _from_loaded(loaded, direction, name)
    if isinstance(model, (str, os.PathLike)):
        return _from_loaded(load_model(model), direction, Path(model).name)
    if isinstance(model, LoadedModel):
        name = model.path.name if model.path is not None else "model"
        return _from_loaded(model, direction, name)
    if isinstance(model, nn.Module):
        return Translator(
            net=model,
            in_count=getattr(model, "in_channels", None),
            name=type(model).__name__,
        )
    raise ModelError(
        f"model {model!r} is not a checkpoint path, a loaded rsgan model or a torch.nn.Module"
    )


def _bands_hint(bands: Sequence[int]) -> str:
    """How to select ``bands`` from Python and from the CLI."""
    return f"bands={tuple(bands)} (--bands {','.join(map(str, bands))})"


def _conversion_hint(
    src: Path | str,
    dtype: str,
    bands: tuple[int, ...] | None,
    name: str,
    scaled: bool = False,
) -> str:
    """How to read ``src`` as ``dtype`` (and ``bands``) without a converted copy: a GDAL
    ``vrt://`` name that rsgan reads like a file, or gdal_translate for a source whose name
    cannot take a ``vrt://`` query (a URL, a ``/vsi`` path, a name with ``?``). An integer
    ``dtype`` gets a linear scale from the source values LOW..HIGH onto its range; with
    ``scaled`` (the source's bands have a scale or offset, which GDAL keeps through that
    rescaling, where they no longer describe the values) scale 1 and offset 0 too."""
    gdal_type = rasterio.dtypes.typename_fwd[rasterio.dtypes.dtype_rev[dtype]]  # uint8: Byte
    kind = np.dtype(dtype)
    target = (int(np.iinfo(kind).min), int(np.iinfo(kind).max)) if kind.kind in "iu" else None
    onto = (
        f" (LOW..HIGH: the source values that map onto {target[0]}..{target[1]})" if target else ""
    )
    text = str(src)
    if "://" in text or "?" in text or text.startswith("/vsi"):
        selection = "".join(f" -b {b}" for b in bands or ())
        scale = f" -scale LOW HIGH {target[0]} {target[1]}" if target else ""
        if target and scaled:
            scale += " -a_scale 1 -a_offset 0"
        readable = f"/vsicurl/{text}" if text.startswith(("http://", "https://")) else text
        return (
            f"convert it first, e.g. gdal_translate{selection} -ot {gdal_type}{scale} "
            f"'{readable}' {Path(name).stem}_{dtype}.tif{onto}"
        )
    query = (f"bands={','.join(map(str, bands))}&" if bands else "") + f"ot={gdal_type}"
    if target is not None:
        query += f"&scale=LOW,HIGH,{target[0]},{target[1]}"
        if scaled:
            query += "&a_scale=1&a_offset=0"
    own_bands = "; that name selects the bands itself: leave out bands= / --bands" if bands else ""
    return f'read it converted: "vrt://{text}?{query}"{onto}{own_bands}'


def _check_fit(
    translator: Translator, info: RasterInfo, bands: tuple[int, ...], src: Path | str
) -> None:
    """Refuse band counts and dtypes the model cannot take, naming the bands to pass and,
    when both are wrong, both problems in one message."""
    name = source_name(src)
    want = translator.in_count
    scaled = any(s != 1.0 for s in info.scales) or any(o != 0.0 for o in info.offsets)
    wrong_type = translator.in_dtype is not None and any(
        np.dtype(info.dtypes[b - 1]) != np.dtype(translator.in_dtype) for b in bands
    )
    if want is not None and len(bands) != want:
        suggested: tuple[int, ...] | None = None
        if translator.in_bands and max(translator.in_bands) <= info.count:
            suggested = tuple(translator.in_bands)
            hint = f"pass {_bands_hint(suggested)} (the bands it was trained on)"
        elif info.count >= want:
            suggested = tuple(range(1, want + 1))
            hint = f"pass {_bands_hint(suggested)} or the {want} bands that match its training data"
        else:
            hint = f"use a model trained on {len(bands)} band(s)"
        rgb = rgb_bands(info.descriptions, info.colorinterp) if want == 3 else None
        if rgb is not None and rgb != suggested:
            hint += f"; its red, green and blue bands, in that order, are {_bands_hint(rgb)}"
            suggested = rgb
        if wrong_type and suggested is not None:
            dtype = info.dtypes[suggested[0] - 1]
            hint += (
                f". It also needs {translator.in_dtype} data and {name} is {dtype}: "
                + _conversion_hint(src, str(translator.in_dtype), suggested, name, scaled)
            )
        raise BandError(
            f"{translator.name} expects {want} band(s); {name} gives {len(bands)} "
            f"(bands {bands}); {hint}"
        )
    dtype = info.dtypes[bands[0] - 1]
    if any(info.dtypes[b - 1] != dtype for b in bands):
        raise BandError(
            f"{name}: the selected bands {bands} have different data types "
            f"{tuple(info.dtypes[b - 1] for b in bands)}; select bands of one type"
        )
    if wrong_type:
        selected = None if bands == tuple(range(1, info.count + 1)) else bands
        raise ModelError(
            f"{translator.name} was trained on {translator.in_dtype} data but {name} is "
            f"{dtype}; {_conversion_hint(src, str(translator.in_dtype), selected, name, scaled)}, "
            f"or use a model trained on {dtype} data"
        )


# --------------------------------------------------------------------------- reading


def _read_tile(src: Any, window: Window, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and valid mask of a window that may reach past the scene; the part outside
    is a mirror image of the inside (so convolutions see no hard edge). A source with a
    mask or nodata value marks that part invalid, and :func:`fill_nodata` then fills it
    from the inside like nodata; the statistics' boxes and the writer leave it out either
    way."""
    data, valid = read_masked(src, window, bands, boundless=True)
    r0, c0 = int(window.row_off), int(window.col_off)
    rows = min(src.height - r0, int(window.height))
    cols = min(src.width - c0, int(window.width))
    if rows < window.height or cols < window.width:
        inner = data[:, :rows, :cols]
        pad = ((0, 0), (0, int(window.height) - rows), (0, int(window.width) - cols))
        data = np.pad(inner, pad, mode="symmetric")
    return data, valid


FILL_CELL = 4
"""Side (px) of the finest cells whose valid means :func:`fill_nodata` fills from."""

FILL_REACH = 32
"""Side (px) of its coarsest cells, on the scene's grid (multiples of it from the scene's
origin): a nodata pixel's fill comes from the valid pixels within about this distance,
the same in every tile that holds them whole. Only cells cut by a tile's edge differ
between tilings: 32 px kept the tile-size invariance of a real scene with a collar at
0.090 DN (0.088 with the mid-grey fill; 16 px: 0.089, whole tiles: 0.121), and fills a
flat image's first nodata column 3 DN off its value (16 px: 13 DN)."""


def fill_nodata(
    data: np.ndarray, valid: np.ndarray, row_off: int, col_off: int, mid: Sequence[float]
) -> np.ndarray:
    """``data`` ``(C, H, W)`` (a tile at ``row_off, col_off`` of the scene) with its
    invalid pixels filled from the valid pixels around them; valid pixels unchanged.

    Pull-push (Gortler et al., SIGGRAPH 1996) over the means of the valid pixels in cells of
    :data:`FILL_CELL` px, then 2 x 2 of those, up to :data:`FILL_REACH` px, the cells on the
    scene's grid; each invalid pixel takes, bilinearly, the finest level's mean that holds
    any valid pixel, and ``mid`` (per band) beyond the coarsest cells with one. The
    generator's convolutions then see the image go on past a nodata edge instead of a
    mid-grey wall: next to a rotated nodata collar on a real Joplin mosaic the first valid
    pixel's distance to translating the scene without the collar fell from 11.1 to 7.5 DN,
    the first 8 px from 7.6 to 5.5 DN (docs/translate.md). Integers are rounded."""
    k, top = FILL_CELL, FILL_REACH
    c, h, w = data.shape
    pr, pc = row_off % top, col_off % top  # the scene grid's phase in this tile
    hp, wp = -(-(pr + h) // top) * top, -(-(pc + w) // top) * top
    # float32 sums, but float64 for data float32 holds to no rounding step (float64, 32-
    # and 64-bit integers) and for float32 data so large that its sums overflow (inf, NaN)
    wide = data.dtype.itemsize > 4 or (data.dtype.kind in "iu" and data.dtype.itemsize == 4)
    values = np.zeros((c, hp, wp), np.float64 if wide else np.float32)
    inner = values[:, pr : pr + h, pc : pc + w]
    if data.dtype.kind == "f":
        np.copyto(inner, data, casting="unsafe", where=valid)  # NaN nodata stays out
        if not wide and max(-inner.min(), inner.max()) > _FILL_FLOAT32_MAX:
            values = values.astype(np.float64)
    else:
        np.multiply(data, valid, out=inner, casting="unsafe")  # 10x faster than copyto
    work = values.dtype
    weights = np.zeros((1, hp, wp), work)
    weights[0, pr : pr + h, pc : pc + w] = valid

    def cells(a: np.ndarray, f: int) -> np.ndarray:
        """Sums over ``f`` x ``f`` cells, as sums of strided slices (numpy's ``sum`` over
        an axis of 4 took 12 ms for a 768 px tile, this 0.7 ms)."""
        rows = a[:, 0::f].copy()
        for j in range(1, f):
            rows += a[:, j::f]
        out = rows[..., 0::f].copy()
        for j in range(1, f):
            out += rows[..., j::f]
        return out

    sums, counts = [cells(values, k)], [cells(weights, k)]
    while k * 2 ** (len(sums) - 1) < top:
        sums.append(cells(sums[-1], 2))
        counts.append(cells(counts[-1], 2))
    mids = np.asarray(mid, work).reshape(c, 1, 1)
    fill = np.where(counts[-1] > 0, sums[-1] / np.maximum(counts[-1], 1e-12), mids)
    for total, count in zip(reversed(sums[:-1]), reversed(counts[:-1]), strict=True):
        share = np.minimum(count, 1.0)  # any valid pixel: the cell's own mean
        fill = total / np.maximum(count, 1e-12) * share + _upsample2(fill) * (1.0 - share)
    invalid = ~valid
    out = data.copy()
    if np.count_nonzero(invalid) <= FILL_GATHER_SHARE * invalid.size:
        rows, cols = np.nonzero(invalid)
        picked = _bilinear_at(fill, (rows + pr + 0.5) / k - 0.5, (cols + pc + 0.5) / k - 0.5)
        out[:, rows, cols] = _rounded(picked, out.dtype)
    else:  # the whole tile upsampled: the same values, without a gather per pixel
        held = np.flatnonzero(invalid.any(axis=1))
        r0, r1 = int(held[0]), int(held[-1]) + 1
        up = _upsample_rows(fill, k)[:, pr + r0 : pr + r1]
        up = _upsample_rows(up.transpose(0, 2, 1), k).transpose(0, 2, 1)[:, :, pc : pc + w]
        np.copyto(out[:, r0:r1], _rounded(up, out.dtype), where=invalid[r0:r1])
    return out


_FILL_FLOAT32_MAX = float(np.finfo(np.float32).max) / (4 * FILL_REACH**2)
"""Largest magnitude whose sums over :data:`FILL_REACH` px cells float32 holds."""


FILL_GATHER_SHARE = 0.15
"""Share of a tile's pixels up to which :func:`fill_nodata` picks each invalid pixel's
value on its own (bilinear, a gather per pixel); above it, it upsamples the filled cells
over the tile's rows that hold invalid pixels, which costs about the same whatever their
number: on a 736 x 740 px 3-band uint8 tile, 9.2 against 20.4 ms at 50 % invalid, 9.9
against 55.8 ms at 86 %, 4.2 against 6.2 ms (the gather faster) at 4 % (one thread, other
jobs on the machine). The two give the same values to float rounding (at most 1 DN apart after
rounding, on a few pixels)."""


def _rounded(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` (float) in ``dtype``: integers rounded and clipped to its range."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def _upsample_rows(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` ``(C, h, w)`` upsampled ``k`` times along its rows, bilinear between pixel
    centres, edges clamped (``F.interpolate(..., mode="bilinear", align_corners=False)``
    along one axis, to float rounding): output row ``k i + p`` lies ``(p + 0.5) / k - 0.5``
    rows from row ``i``, so each phase ``p`` is one weighted sum of two shifted slices
    (numpy's fancy indexing took 4x as long)."""
    c, h, w = a.shape
    padded = np.concatenate([a[:, :1], a, a[:, -1:]], axis=1)  # rows -1 and h clamped
    out = np.empty((c, h * k, w), np.result_type(a.dtype, np.float32))
    for p in range(k):
        off = (p + 0.5) / k - 0.5
        lo = 0 if off < 0 else 1  # padded row lo + i is row i - 1 (off < 0) or row i
        near = 1.0 + off if off < 0 else off  # weight of the second row
        target = out[:, p::k]
        np.multiply(padded[:, lo : lo + h], 1.0 - near, out=target)
        target += padded[:, lo + 1 : lo + 1 + h] * near
    return out


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear x2 upsampling of ``(C, h, w)`` (pixel centres, edges clamped)."""
    for axis in (1, 2):
        n = a.shape[axis]
        before = np.take(a, np.maximum(np.arange(n) - 1, 0), axis=axis)
        after = np.take(a, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
        pair = np.stack((0.25 * before + 0.75 * a, 0.75 * a + 0.25 * after), axis=axis + 1)
        shape = list(a.shape)
        shape[axis] = 2 * n
        a = pair.reshape(shape)
    return a


def _bilinear_at(a: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values of ``a`` ``(C, h, w)`` at fractional ``(y, x)`` (clamped to its edges):
    ``(C, len(y))``."""
    h, w = a.shape[1:]
    y = np.clip(y, 0.0, h - 1.0).astype(np.float32)
    x = np.clip(x, 0.0, w - 1.0).astype(np.float32)
    y0 = np.minimum(y.astype(np.intp), max(h - 2, 0))
    x0 = np.minimum(x.astype(np.intp), max(w - 2, 0))
    fy, fx = y - y0, x - x0
    dy, dx = (h > 1) * w, int(w > 1)
    flat = a.reshape(a.shape[0], -1)
    i = y0 * w + x0
    top = flat.take(i, axis=1) * (1 - fx) + flat.take(i + dx, axis=1) * fx
    bottom = flat.take(i + dy, axis=1) * (1 - fx) + flat.take(i + dy + dx, axis=1) * fx
    return top * (1 - fy) + bottom * fy


def _prepare(data: np.ndarray, valid: np.ndarray, normalizer: Normalizer) -> np.ndarray:
    """Normalised float32 model input. Invalid pixels come filled (:func:`fill_nodata`);
    any that are not finite (NaN nodata read without its fill) become 0 (mid-range)."""
    x = normalizer.normalize(data)
    if not valid.all():
        x[~np.isfinite(x)] = 0.0
    return x


def _in_one_pass(dtype: np.dtype) -> bool:
    """Whether source values of ``dtype`` are normalised on their way into the model's
    input tensor (:func:`_model_input`): 8- and 16-bit integers, which float32 holds
    exactly; wider types go through :meth:`Normalizer.normalize` in float64."""
    return dtype.kind in "ui" and dtype.itemsize <= 2


def _source(data: np.ndarray, valid: np.ndarray, normalizer: Normalizer) -> np.ndarray:
    """What a reader hands on for :func:`_model_input`: 8- and 16-bit integers as read,
    other dtypes normalised (:func:`_prepare`)."""
    return data if _in_one_pass(data.dtype) else _prepare(data, valid, normalizer)


def _model_input(
    arrays: Sequence[np.ndarray],
    normalizer: Normalizer,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """The float32 batch ``(N, C, H, W)`` in ``memory_format`` for sources from
    :func:`_source`, invalid pixels as they come (filled by :func:`fill_nodata`). Integers are scaled and shifted straight into the
    batch (one pass that also changes the layout: ``x * 2 / (hi - lo) - (2 lo / (hi - lo)
    + 1)``, :meth:`Normalizer.normalize` to float rounding) instead of normalising in numpy
    (five passes) and copying into the layout."""
    first = arrays[0]
    x = torch.empty(
        (len(arrays), *first.shape), dtype=torch.float32, device=device, memory_format=memory_format
    )
    scale = offset = None
    if _in_one_pass(first.dtype):
        lo = np.asarray(normalizer.lo, np.float64)
        span = np.asarray(normalizer.hi, np.float64) - lo
        shape = (len(lo), 1, 1)
        scale = torch.tensor(2.0 / span, dtype=torch.float32, device=device).view(shape)
        offset = torch.tensor(-2.0 * lo / span - 1.0, dtype=torch.float32, device=device)
        offset = offset.view(shape)
    for i, a in enumerate(arrays):
        source = torch.from_numpy(a).to(device)
        if scale is None or offset is None:
            x[i].copy_(source)  # normalised by _source
            continue
        torch.addcmul(offset, source, scale, out=x[i])
    return x


class _Stop(Exception):
    """Internal: a worker thread was asked to stop."""


_DONE = object()


def _put(
    q: queue.Queue[Any], item: Any, stop: threading.Event, worker: _Worker | None = None
) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        if worker is not None:
            worker.check()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event, worker: _Worker | None = None) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if worker is not None:
                worker.check()
            if stop.is_set():
                raise _Stop from None


class _Worker(threading.Thread):
    """A daemon thread that keeps its exception for the main thread."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Stop:
            pass
        except BaseException as exc:  # re-raised in the main thread
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------- statistics


def stats_budget_px(net: nn.Module, memory_mb: float = STATS_MEMORY_MB) -> int:
    """Pixels the scene-statistics pass of ``net`` may translate at once in ``memory_mb``
    MiB (0 for a model without scene-aware norm layers, which needs no such pass)."""
    layers = norm_layers(net)
    if not layers:
        return 0
    channels = max(next(iter(layers.values())).num_features, 16)
    return int(memory_mb * 2**20 // (STATS_BYTES_PER_PX * channels))


def _kmeans(z: np.ndarray, k: int, *, iterations: int = 30) -> np.ndarray:
    """Cluster labels of the rows of ``z`` (k-means++ seeding, fixed seed: reproducible)."""
    rng = np.random.default_rng(0)
    centres = [z[rng.integers(len(z))]]
    for _ in range(1, k):
        d2 = np.min(((z[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(z[rng.choice(len(z), p=d2 / d2.sum())] if d2.sum() > 0 else z[0])
    c = np.asarray(centres)
    labels = np.zeros(len(z), int)
    for _ in range(iterations):
        labels = np.argmin(((z[:, None] - c[None]) ** 2).sum(-1), axis=1)
        c = np.asarray([z[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
    return labels


SPARSE_VIEW_FACTOR = 16
"""Views of at least this many pixels per cell (scenes from ~8000 px on) may decode
every other block row and column of a file without overviews (:func:`_thumbnail`)."""


def _thumbnail(
    run: _Run, factor: int, sample: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The scene's bands averaged over ``factor`` x ``factor`` px cells (normalised to
    the model's range; the mean of each cell's valid pixels) and which cells hold any valid
    pixel: ``((bands, ceil(H / factor), ceil(W / factor)), (rows, cols))``.

    ``sample``: the smallest rows and columns of the parts the view is looked at in (tile
    boxes). A file without overviews is then decoded in every other strip of block rows
    (and every other block column) where each part still holds whole strips (columns) of
    what was read: a quarter of the decoding at 256 px blocks. Cells not read are NaN in
    the data and not valid.

    A file with overviews (a COG) is read from the overview nearest the cells (GDAL's
    average over the cell, masks by nearest neighbour): a fraction of the file. One without
    must be decoded whole: it is read at full resolution in pieces of ~2 MB (whole blocks,
    whole cells), one thread per core (nothing else runs yet), and averaged in numpy.
    GDAL's own decimated read took 0.34 s for a 4096 px 3-band scene (it goes band by band,
    decoding a scene larger than its block cache once per band) and 5.8-7.5 s at 16384 px,
    against 0.10 s and 1.1 s like this on two cores.
    """
    info = run.info
    shape = (-(-info.height // factor), -(-info.width // factor))
    with open_raster(run.src) as src:
        overviews = src.overviews(run.bands[0])
        if factor > 1 and overviews and min(overviews) <= factor:
            out = (len(run.bands), *shape)
            data = src.read(list(run.bands), out_shape=out, resampling=Resampling.average)
            valid = src.read_masks(list(run.bands), out_shape=out).min(0) > 0
            return run.in_norm.normalize(data), valid
    block_rows, block_cols = (
        info.block_shapes[run.bands[0] - 1] if info.block_shapes else (256, 256)
    )
    px_bytes = len(run.bands) * np.dtype(info.dtypes[run.bands[0] - 1]).itemsize
    strip = factor * max(1, -(-block_rows // factor))  # whole cells, at least a block row
    # pieces of ~2 MB, whole blocks and whole cells wide: larger reads raise glibc's
    # adaptive mmap threshold and the pipeline's arenas then keep more (16384 px strips
    # of 12.6 MB raised the run's peak RSS from 826 to ~1000 MB)
    step = math.lcm(factor, block_cols) if block_cols < info.width else factor
    width = max(step, (2 * 2**20 // (strip * px_bytes)) // step * step)
    tops = range(0, info.height, strip)
    lefts = range(0, info.width, width)
    if sample is not None:
        # every other strip / block column; a part of at least two periods holds a whole one
        if 2 * strip <= sample[0] and strip < info.height:
            tops = tops[::2]
        if 2 * step <= sample[1] and block_cols < info.width:
            width = step
            lefts = range(0, info.width, step)[::2]
    pieces = [(top, left) for top in tops for left in lefts]
    threads = _read_threads(run, len(pieces))
    sparse = len(tops) * strip < info.height or len(lefts) * width < info.width
    data = np.full((len(run.bands), *shape), np.nan if sparse else 0.0, np.float32)
    valid = np.zeros(shape, bool)

    def pool(a: np.ndarray) -> np.ndarray:
        """Float64 sums over cells of ``(..., rows, cols)`` (a partial last cell sums
        what it has)."""
        pad_r, pad_c = -a.shape[-2] % factor, -a.shape[-1] % factor
        if pad_r or pad_c:
            a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, pad_r), (0, pad_c)])
        lead = a.shape[:-2]
        # rows first (whole contiguous rows added: fast), then columns of the smaller sum
        by_rows = a.reshape(*lead, a.shape[-2] // factor, factor, a.shape[-1])
        summed = by_rows.sum(axis=-2, dtype=np.float64)
        return summed.reshape(*lead, summed.shape[-2], -1, factor).sum(axis=-1)

    def read(share: list[tuple[int, int]]) -> None:
        with open_raster(run.src) as src:
            for top, left in share:
                window = Window(
                    left, top, min(width, info.width - left), min(strip, info.height - top)
                )
                pixels, ok = read_masked(src, window, run.bands)
                if not ok.all():
                    pixels = np.where(ok, pixels, np.zeros((), pixels.dtype))
                count = pool(ok)
                means = pool(pixels) / np.maximum(count, 1.0)
                rows = slice(top // factor, top // factor + count.shape[0])
                cols = slice(left // factor, left // factor + count.shape[1])
                # normalising is affine per band: the normalised mean is the mean normalised
                data[:, rows, cols] = run.in_norm.normalize(means)
                valid[rows, cols] = count > 0

    shares = [pieces[i * len(pieces) // threads : (i + 1) * len(pieces) // threads]
              for i in range(threads)]  # fmt: skip
    with ThreadPoolExecutor(threads, thread_name_prefix="rsgan-thumb") as workers:
        list(workers.map(read, shares))
    return data, valid


_View = tuple[np.ndarray, np.ndarray, int]
"""A view of the scene (:func:`_thumbnail`'s data and valid cells) and its cell size."""


def _scene_view(run: _Run, boxes: list[tuple[int, int, int, int]]) -> _View:
    """The ~512 px view of the scene the statistics blocks are picked from and the
    statistics pass corrects its estimates with (``boxes``: the blocks' owned boxes)."""
    info = run.info
    factor = max(1, round(max(info.width, info.height) / 512))  # a ~512 px view
    sample = None
    if factor >= SPARSE_VIEW_FACTOR:
        sample = (min(b[2] - b[0] for b in boxes), min(b[3] - b[1] for b in boxes))
    data, valid = _thumbnail(run, factor, sample)
    return data, valid, factor


def _representative_tiles(
    run: _Run,
    windows: list[Window],
    boxes: list[tuple[int, int, int, int]],
    k: int,
    view: _View | None = None,
) -> tuple[list[int], list[float]]:
    """``k`` tiles that stand for the scene and the weight of each: k-means over each
    tile's owned part in a ~512 px view of the scene (``view``, else
    :func:`_scene_view`; band means and spreads, edge strength), the tile nearest each
    centre, weighted by the valid pixels its cluster holds over its own."""
    data, valid, factor = _scene_view(run, boxes) if view is None else view
    seen = ~np.isnan(data[0])
    sparse = not seen.all()
    fy = fx = 1 / factor
    features, pixels = [], []
    for window, (top, left, bottom, right) in zip(windows, boxes, strict=True):
        r0 = int(window.row_off)
        c0 = int(window.col_off)
        rows = slice(int((r0 + top) * fy), max(int((r0 + top) * fy) + 1, round((r0 + bottom) * fy)))
        cols = slice(
            int((c0 + left) * fx), max(int((c0 + left) * fx) + 1, round((c0 + right) * fx))
        )
        part, ok = data[:, rows, cols], valid[rows, cols]
        read = int(seen[rows, cols].sum())
        share = float(ok.sum() / read) if read else 0.0
        pixels.append(share * (bottom - top) * (right - left))
        if not ok.any():
            features.append(np.zeros(3 * len(run.bands)))
            continue
        values = part[:, ok]
        steps = np.abs(np.diff(part, axis=2))
        if steps.shape[2] == 0 or np.isnan(steps[0]).all():
            edges = 0 * values[:, 0]
        elif sparse:  # between neighbours both read
            edges = np.nanmean(steps, axis=(1, 2))
        else:
            edges = steps.mean((1, 2))
        features.append(np.concatenate([values.mean(1), values.std(1), edges]))
    weight = np.asarray(pixels)
    candidates = np.flatnonzero(weight > 0)
    if len(candidates) == 0:
        return [0], [1.0]
    if len(candidates) <= k:
        return [int(i) for i in candidates], [1.0] * len(candidates)
    z = np.asarray(features)[candidates]
    z = (z - z.mean(0)) / np.where(z.std(0) > 0, z.std(0), 1.0)
    labels = _kmeans(z, k)
    picks, weights = [], []
    for j in np.unique(labels):
        members = np.flatnonzero(labels == j)
        centre = z[members].mean(0)
        best = members[np.argmin(((z[members] - centre) ** 2).sum(-1))]
        picks.append(int(candidates[best]))
        weights.append(float(weight[candidates[members]].sum() / weight[candidates[best]]))
    order = np.argsort(picks)
    return [picks[i] for i in order], [weights[i] for i in order]


# --------------------------------------------------------------------------- the run


class EmptyEdgeWarning(RsganWarning):
    """Much of a scene's edge is 0 in every band, and the source has no nodata value: most
    likely an empty collar (a reprojected or clipped scene), which then enters the
    statistics and the output like image pixels; ``nodata=0`` (``--nodata 0``) fixes it."""


EMPTY_EDGE_SHARE = 0.05
"""Share of a scene's edge pixels (its outermost rows and columns) that are 0 in every band
from which :func:`translate_raster` warns (:class:`EmptyEdgeWarning`) for a source with no
nodata value and no mask."""


class _EdgeZeros:
    """Which pixels of the scene's four edges are 0 in every band, as tiles are read (each
    read tile looks at the parts of the edges it holds; a thread-safe record)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.lock = threading.Lock()
        self.zero = {side: np.zeros(n, bool) for side, n in self._sides()}
        self.seen = {side: np.zeros(n, bool) for side, n in self._sides()}

    def _sides(self) -> list[tuple[str, int]]:
        w, h = self.width, self.height
        return [("top", w), ("bottom", w), ("left", h), ("right", h)]

    def look(self, window: Window, data: np.ndarray) -> None:
        r0, c0 = int(window.row_off), int(window.col_off)
        rows = min(self.height - r0, int(window.height))
        cols = min(self.width - c0, int(window.width))
        lines = []
        if r0 == 0:
            lines.append(("top", c0, data[:, 0, :cols]))
        if r0 + rows == self.height:
            lines.append(("bottom", c0, data[:, rows - 1, :cols]))
        if c0 == 0:
            lines.append(("left", r0, data[:, :rows, 0]))
        if c0 + cols == self.width:
            lines.append(("right", r0, data[:, :rows, cols - 1]))
        with self.lock:
            for side, start, line in lines:
                part = slice(start, start + line.shape[1])
                self.seen[side][part] = True
                self.zero[side][part] = ~line.any(axis=0)

    def share(self) -> float:
        """Share of the edge pixels read that are 0 in every band (0 when none was read)."""
        seen = sum(int(v.sum()) for v in self.seen.values())
        zero = sum(int((z & self.seen[k]).sum()) for k, z in self.zero.items())
        return zero / seen if seen else 0.0


def _edge_watch(info: RasterInfo, bands: tuple[int, ...]) -> _EdgeZeros | None:
    """An :class:`_EdgeZeros` for a source whose empty collar nothing would mark: unsigned
    integers, no nodata value and no mask or alpha band; None otherwise."""
    if info.nodata is not None or np.dtype(info.dtypes[bands[0] - 1]).kind != "u":
        return None
    if any(list(info.mask_flags[b - 1]) != [MaskFlags.all_valid] for b in bands):
        return None
    return _EdgeZeros(info.width, info.height)


@dataclass(frozen=True)
class _Run:
    """Everything a translation needs, resolved and checked."""

    src: Path | str  # a local file, or a URL or /vsi path as given (io.source_path)
    info: RasterInfo
    bands: tuple[int, ...]
    translator: Translator
    in_norm: Normalizer
    windows: list[Window]
    device: torch.device
    precision: str
    batch_size: int
    norm: str
    overlap: int
    blend: str
    budget_px: int
    compress: str = "zstd"
    edges: _EdgeZeros | None = None  # see _edge_watch


def _to_tensor(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """One channels-first batch tensor of ``arrays`` (the valid masks), with one copy at
    most (a single array is used as it is)."""
    tensors = [torch.from_numpy(a)[None] for a in arrays]
    x = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
    return x.to(device)


def _forward(
    run: _Run,
    xs: list[np.ndarray],
    valids: list[np.ndarray],
    outputs: _memory.MappedArrays | None = None,
) -> np.ndarray:
    """Translate one batch of sources (:func:`_source`) -> numpy float32
    ``(N, C_out, H, W)``, from ``outputs`` when given."""
    x = _model_input(xs, run.in_norm, run.device, run.translator.memory_format)
    # an all-valid batch needs no mask (masked statistics cost extra passes)
    mask = (
        None if all(v.all() for v in valids) else _to_tensor([v[None] for v in valids], run.device)
    )
    with torch.no_grad(), autocast(run.device, run.precision), norm_mask(run.translator.net, mask):
        y = run.translator.net(x)
    _check_output(run, y, x)
    return _output_array(y, outputs)


def _check_output(run: _Run, y: Any, x: torch.Tensor) -> None:
    if (
        not isinstance(y, torch.Tensor)
        or y.ndim != 4
        or y.shape[0] != x.shape[0]
        or y.shape[-2:] != x.shape[-2:]
    ):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ModelError(
            f"{run.translator.name} returned {shape} for an input of shape {tuple(x.shape)}; "
            "a translation model must map (N, C, H, W) to (N, C_out, H, W)"
        )


def _output_array(y: torch.Tensor, outputs: _memory.MappedArrays | None = None) -> np.ndarray:
    """Model outputs (a batch, or one of its samples) as numpy float32 in channels-first
    order (the writer reads rows of each band), in one copy; from ``outputs`` when given
    (a tile worker's, held until the writer takes them while the worker goes on)."""
    if outputs is None:
        return y.to(dtype=torch.float32, memory_format=torch.contiguous_format).cpu().numpy()
    out = outputs.empty(tuple(y.shape), np.float32)
    torch.from_numpy(out).copy_(y)
    return out


def stats_windows(info: RasterInfo, translator: Translator) -> list[Window]:
    """The grid the scene statistics are gathered on: the default tile grid, whatever tile
    size the run uses, so the statistics (and the output) do not depend on it."""
    return balanced_windows(
        info.width,
        info.height,
        STATS_TILE,
        STATS_OVERLAP,
        multiple=translator.size_multiple,
        min_size=translator.min_size,
    )


@dataclass(frozen=True)
class _StatsPlan:
    """What the statistics pass translates: ``blocks`` (the statistics grid), the
    ``picks`` among them with their ``weights``, each block's owned ``boxes``, and whether
    the run's tiles are those blocks (``reuse``: their outputs are kept)."""

    blocks: list[Window]
    picks: list[int]
    weights: list[float]
    boxes: list[tuple[int, int, int, int]]
    reuse: bool
    view: _View | None = None
    """The view the picks came from, when they are a sample of the blocks: the pass then
    corrects its statistics with a pass over it (:func:`_block_proxy`)."""

    @property
    def reused(self) -> set[int]:
        """The run's tiles whose outputs the pass gives."""
        return set(self.picks) if self.reuse else set()


def _stats_plan(run: _Run) -> _StatsPlan | None:
    """The blocks of the statistics pass (None: the run needs none)."""
    net = run.translator.net
    if run.norm != "scene" or not norm_layers(net):
        return None
    if len(run.windows) == 1:
        blocks = run.windows  # the whole scene in one pass
    else:
        blocks = stats_windows(run.info, run.translator)
    boxes = owned_boxes(blocks, run.info.width, run.info.height, run.translator.size_multiple)
    block_px = int(blocks[0].height) * int(blocks[0].width)
    # the same blocks whatever the run's tiling (tile-size invariance); a tiling other than
    # the default cannot reuse their outputs and translates them on top of its tiles
    k = max(1, run.budget_px // block_px)
    view = None
    if k >= len(blocks):
        picks, weights = list(range(len(blocks))), [1.0] * len(blocks)
    else:
        view = _scene_view(run, boxes)
        picks, weights = _representative_tiles(run, blocks, boxes, k, view)
        if len(picks) < 2 or len(picks) == len(blocks):
            view = None  # one block: no slope to fit; every block: nothing to correct
    return _StatsPlan(blocks, picks, weights, boxes, reuse=blocks == run.windows, view=view)


def _block_proxy(run: _Run, plan: _StatsPlan) -> BlockProxy | None:
    """The moments of a pass of the model over the plan's view of the whole scene within
    every statistics block (:func:`rsgan.models.layers.block_moments`), which the pass
    over the picked blocks corrects its statistics with; None without a view.

    Picked blocks stand for their k-means clusters, but a cluster's blocks differ, and a
    heterogeneous scene's picks over- or under-represent some of it. Over patchworks of
    unrelated scenes (UC Merced chips, NAIP dates) sampled statistics sat 2-8 DN from a
    whole pass; corrected by this pass over the view (~0.26 Mpx at any scene size), 1.3-2.9
    DN, and on the Joplin mosaics 0.2-1.2 DN against 0.55-1.4; on held-out patchworks the
    mean 1.92 -> 1.59 DN, farther in 3 of 9 cases (docs/benchmarks.md,
    twenty-second session)."""
    if plan.view is None:
        return None
    data, valid, factor = plan.view
    net, translator = run.translator.net, run.translator
    rows, cols = valid.shape
    multiple = translator.size_multiple
    height = max(-(-rows // multiple) * multiple, translator.min_size)
    width = max(-(-cols // multiple) * multiple, translator.min_size)
    ok = valid & np.isfinite(data).all(0)
    pixels = np.where(ok[None], data, 0.0).astype(np.float32)
    # mirrored out to the model's grid; the added cells are not valid
    pad = ((0, 0), (0, height - rows), (0, width - cols))
    pixels = np.pad(pixels, pad, mode="symmetric")
    mask = np.pad(ok, pad[1:]).astype(np.float32)
    x = torch.from_numpy(pixels)[None].to(run.device)
    x = x.contiguous(memory_format=translator.memory_format)
    boxes = []
    for window, (top, left, bottom, right) in zip(plan.blocks, plan.boxes, strict=True):
        r0, c0 = int(window.row_off), int(window.col_off)
        boxes.append(
            (
                round((r0 + top) / factor),
                round((c0 + left) / factor),
                round((r0 + bottom) / factor),
                round((c0 + right) / factor),
            )
        )
    # no mask for a view all valid (each layer would resize it and weigh every cell)
    cells = None if mask.all() else torch.from_numpy(mask)[None, None].to(run.device)
    moments = block_moments(
        net, x, boxes, cells, context=lambda: autocast(run.device, run.precision)
    )
    return BlockProxy(moments, plan.picks)


def _stats_pass(
    run: _Run,
    plan: _StatsPlan,
    read: Callable[[], None] | None = None,
    outputs: _memory.MappedArrays | None = None,
    hold: Callable[[int, np.ndarray], Any] | None = None,
) -> tuple[dict[str, Stats], dict[int, tuple[Any, np.ndarray]]]:
    """Scene-wide norm statistics, and the outputs of the run's tiles translated on the way
    (those of ``plan.reused``; final: the pooled statistics are the ones every other tile
    then gets). ``read`` is called once the blocks are read and in the batch, before the
    model runs. Each output is made from ``outputs`` (when given) and handed to ``hold``
    (tile index, array -> what to keep; :meth:`_Spill.hold`) before the next is made, so
    the outputs ``hold`` writes away reuse one buffer."""
    blocks, picks = plan.blocks, plan.picks
    items = _read_blocks(run, [blocks[i] for i in picks])
    valids = [v for _, v in items]
    x = _model_input([d for d, _ in items], run.in_norm, run.device, run.translator.memory_format)
    # the boxes leave out what lies past the scene: a mask only for nodata inside it
    inside = [
        v[: run.info.height - int(blocks[i].row_off), : run.info.width - int(blocks[i].col_off)]
        for i, v in zip(picks, valids, strict=True)
    ]
    needs_mask = not all(v.all() for v in inside)
    mask = _to_tensor([v[None] for v in valids], run.device) if needs_mask else None
    if read is not None:
        read()
    y, stats = pooled_forward(
        run.translator.net,
        x,
        mask,
        boxes=[plan.boxes[i] for i in picks],
        weights=plan.weights,
        context=lambda: autocast(run.device, run.precision),
        proxy=_block_proxy(run, plan),
    )
    if not plan.reuse:
        return stats, {}
    _check_output(run, y, x)
    # one array per tile: views of one array for the batch would keep all of it until
    # the last of them is written (at 16384 px, ~70 MB to the end of the run)
    kept: dict[int, tuple[Any, np.ndarray]] = {}
    for j, i in enumerate(picks):
        out = _output_array(y[j : j + 1], outputs)[0]
        kept[i] = (out if hold is None else hold(i, out), valids[j])
        del out  # a spilled output's buffer goes back to ``outputs`` for the next
    return stats, kept


def _scene_stats(
    run: _Run,
) -> tuple[dict[str, Stats] | None, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """:func:`_stats_plan`, then :func:`_stats_pass` (None and no outputs for a run that
    needs no statistics)."""
    plan = _stats_plan(run)
    return (None, {}) if plan is None else _stats_pass(run, plan)


NETWORK_READ_THREADS = 8
"""Threads that read a source over the network (:func:`rsgan.io.is_network`) at once: the
view of the scene, the statistics blocks, and the tiles ahead of the model. Such reads
wait on the network's latency, not on the CPU: against a server answering after 200 ms,
the 4096 px benchmark scene took 7.8 s to translate so and 10.6 s with a local file's
thread counts (two, and one reader of tiles); as a COG 6.9 against 8.2 s; at 50 ms or no
delay the same either way (docs/translate.md)."""


def _read_threads(run: _Run, jobs: int) -> int:
    """Threads for ``jobs`` reads of the run's source: one per core (at most 4) for a local
    file, :data:`NETWORK_READ_THREADS` over the network."""
    most = NETWORK_READ_THREADS if is_network(run.src) else min(os.cpu_count() or 1, 4)
    return max(1, min(most, jobs))


def _read_source(run: _Run, src: Any, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """A tile of the open source as the model's input wants it (:func:`_source`) and its
    valid mask."""
    data, valid = _read_tile(src, window, run.bands)
    if run.edges is not None:
        run.edges.look(window, data)
    if not valid.all():
        mid = (np.asarray(run.in_norm.lo) + np.asarray(run.in_norm.hi)) / 2
        if valid.any():
            data = fill_nodata(data, valid, int(window.row_off), int(window.col_off), mid)
        else:  # nothing to fill from (and skipped unless it is the first tile): mid-grey
            data = np.broadcast_to(mid.reshape(-1, 1, 1), data.shape).astype(data.dtype)
    return _source(data, valid, run.in_norm), valid


def _read_blocks(run: _Run, windows: list[Window]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sources (:func:`_source`) and valid masks of the statistics pass's blocks, read on
    every core (a handle per thread; nothing else runs yet)."""
    threads = _read_threads(run, len(windows))

    def read(share: list[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        out = []
        with open_raster(run.src) as src:
            for i in share:
                out.append((i, *_read_source(run, src, windows[i])))
        return out

    shares = [list(range(t, len(windows), threads)) for t in range(threads)]
    items: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(windows)
    with ThreadPoolExecutor(threads, thread_name_prefix="rsgan-stats-read") as workers:
        for part in workers.map(read, shares):
            for i, x, valid in part:
                items[i] = (x, valid)
    return items


def _plan_windows(
    info: RasterInfo, translator: Translator, tile: int, overlap: int, norm: str, budget_px: int
) -> list[Window]:
    """The tiles of a run. In scene mode a scene of at most ``budget_px`` pixels (see
    :func:`stats_budget_px`) is one tile: its single pass is exactly the whole-scene result."""
    multiple, min_size = translator.size_multiple, translator.min_size
    windows = balanced_windows(
        info.width, info.height, tile, overlap, multiple=multiple, min_size=min_size
    )
    whole = max(info.width, info.height, min_size)
    whole = -(-whole // multiple) * multiple
    fits = (-(-info.width // multiple) * -(-info.height // multiple)) * multiple**2
    if len(windows) > 1 and norm == "scene" and norm_layers(translator.net):
        if fits <= budget_px:
            return balanced_windows(
                info.width, info.height, whole, 0, multiple=multiple, min_size=min_size
            )
    return windows


SKIP_EMPTY_TILES = True
"""Tiles without a valid input pixel (all nodata, masked or NaN) are not translated: their
pixels would get no weight in the blend, so the output is the same byte for byte, and
scenes with large empty areas (a satellite scene's rotated footprint in its grid, a
mosaic cut to an area of interest) take that much less model time."""


def _translated_tiles(
    run: _Run, progress: bool, spill_dir: Path | None = None
) -> Generator[tuple[Window, np.ndarray | None, np.ndarray], None, None]:
    """Translated tiles ``(window, (C_out, h, w) in [-1, 1], valid (h, w))`` in row-major
    order, with reading ahead in a thread. A tile without a valid pixel comes with None
    for its output (:data:`SKIP_EMPTY_TILES`), except the first, which always has one.
    ``spill_dir``: where the statistics pass's far outputs wait (:class:`_Spill`)."""
    # shown once the run has taken a second: a bad file fails before with one line only
    bar = tqdm(
        total=len(run.windows), unit="tile", desc="translate", disable=not progress, delay=1.0
    )
    stop = threading.Event()
    tiles: queue.Queue[Any] = queue.Queue(maxsize=2 * run.batch_size + 2)
    reader: _Worker | None = None
    forwarders: _Forwarders | None = None
    spill: _Spill | None = None  # where the statistics pass's far outputs wait
    try:
        # a tiled scene's statistics pass takes a while: say so at once; a scene in one
        # pass shows nothing unless it takes over a second (no stale "0/1" line in logs)
        tiled = run.norm == "scene" and len(run.windows) > 1 and norm_layers(run.translator.net)
        if tiled:
            bar.set_description("translate (scene statistics)")
            bar.refresh()
        plan = _stats_plan(run)
        reused = plan.reused if plan is not None else set()
        last_todo = max(set(range(len(run.windows))) - reused, default=-1)

        def read() -> None:
            if is_network(run.src):
                _read_ahead(run, reused, tiles, stop)
                return
            with open_raster(run.src) as src:
                for i, window in enumerate(run.windows):
                    if i in reused:
                        _put(tiles, (i, window, None, None), stop)
                        continue
                    _put(tiles, (i, window, *_read_source(run, src, window)), stop)
            _put(tiles, _DONE, stop)

        # the first tiles are read while the statistics pass's model runs (after it, the
        # workers waited ~0.02 s for the file to open and the first tile to be read; from
        # the start, it slowed the reading of the pass's blocks as much)
        reader = _Worker(read, "rsgan-read")
        stats: dict[str, Stats] | None = None
        # outputs ready before their turn: the statistics pass's tiles, and None for the
        # tiles without a valid pixel (not translated, :data:`SKIP_EMPTY_TILES`)
        done: dict[int, tuple[np.ndarray | _Spilled | None, np.ndarray]] = {}
        # the tiles' outputs, held until the writer has them, in pages of their own:
        # from the workers' heaps they made the heaps grow through a long run (a
        # 16384 px scene's peak memory 1.05-1.07 GB against 0.93-0.96 GB)
        outputs = _memory.MappedArrays()
        if plan is None:
            reader.start()
        else:
            spill = _Spill(run.windows, spill_dir)
            stats, passed = _stats_pass(run, plan, reader.start, outputs, spill.hold)
            done.update(passed)
        # the statistics pass's activations were freed into this thread's heap, which the
        # tile workers (threads of their own, with glibc arenas of their own) do not reuse:
        # hand them back, or they stay in the run's peak memory (docs/benchmarks.md, ninth
        # session; run beside the first tiles instead, it saved 0.02 s at 4096 px and
        # raised the peak by ~20 MB)
        _memory.trim()
        bar.set_description("translate", refresh=bool(tiled))
        fixed = (
            fixed_norm_stats(run.translator.net, stats)
            if stats is not None
            else contextlib.nullcontext()
        )
        with fixed:
            # made inside ``fixed``: the model's copies take its fixed statistics with them
            main = _folded(run, stats) if len(done) < len(run.windows) else run
            forwarders = _Forwarders(main, _tile_workers(run.device, run.precision))
            # batches in flight, in row-major order: (tiles, their outputs to come or None)
            inflight: collections.deque[tuple[list[Any], Future[np.ndarray] | None]]
            inflight = collections.deque()
            pending: list[tuple[int, Window, np.ndarray | None, np.ndarray | None]] = []
            finished = False
            while True:
                # hand on the batches at the head that are done, in order; wait for the head
                # once there are two batches per worker in flight (or all are read). With one
                # batch per worker and one more, a worker whose tiles ran faster than the
                # head's finished its batch and the queued one and then stood idle until
                # the head was done (nothing new is submitted while this thread waits): in
                # bf16 the two workers were idle 3-6 % of the main pass, and a 4096 px scene
                # took 4 % longer end to end (2 % at 8192 px). A head that is ready waits
                # until every worker has a batch: the first tiles handed on (the
                # statistics pass's) let the writer open the output while the workers had
                # nothing to do, ~0.02 s at each run's start
                while inflight and (
                    finished
                    or len(inflight) > 2 * forwarders.count
                    or (
                        (inflight[0][1] is None or inflight[0][1].done())
                        and _running(inflight) >= forwarders.count
                    )
                ):
                    items, future = inflight.popleft()
                    translated = iter(future.result() if future is not None else [])
                    for i, window, x, valid in items:
                        if x is None:
                            held, valid = done.pop(i)
                            y = held.load(outputs) if isinstance(held, _Spilled) else held
                        else:
                            y = next(translated)
                        assert valid is not None  # every pending tile has its mask
                        yield window, y, valid
                        bar.update(1)
                if finished:
                    break
                item = _get(tiles, stop, reader)
                if item is _DONE:
                    finished = True
                else:
                    i, window, x, valid = item
                    if SKIP_EMPTY_TILES and i > 0 and valid is not None and not valid.any():
                        # no valid pixel: its output would get no weight anywhere (the
                        # first tile is translated all the same: it tells the writer the
                        # model's band count)
                        done[i] = (None, valid)
                        item = (i, window, None, valid)
                    pending.append(item)
                todo = [p for p in pending if p[2] is not None]
                if pending and (finished or len(todo) >= run.batch_size or todo == []):
                    # a tile still to translate has its pixels and its mask
                    xs = [cast(np.ndarray, p[2]) for p in todo]
                    vs = [cast(np.ndarray, p[3]) for p in todo]
                    # the last tile to translate runs on all threads: with one tile per
                    # worker to the end, one worker stood idle for up to a tile's time
                    # (0.14 core-s at 4096 px)
                    last = any(p[0] == last_todo for p in todo)
                    inflight.append(
                        (
                            pending,
                            forwarders.submit(_forward, xs, vs, outputs, last=last)
                            if todo
                            else None,
                        )
                    )
                    pending = []
        reader.check()
    finally:
        bar.close()
        stop.set()
        if forwarders is not None:
            forwarders.close()
        if reader is not None and reader.ident is not None:  # started
            reader.join(timeout=5)
        if spill is not None:
            spill.close()


SPILL_AFTER_ROWS = 1
"""The statistics pass's outputs for tiles more than this many tile rows below the scene's
first wait for their turn in a temporary file, not in memory: a 16384 px scene's are
spread over all its rows, and held ~70 MB (3 bands) until the last of them was written."""


class _Spilled:
    """An array written to ``file`` (a temporary file), read back by :meth:`load`."""

    __slots__ = ("_dtype", "_file", "_offset", "_shape")

    def __init__(self, file: Any, array: np.ndarray) -> None:
        file.seek(0, os.SEEK_END)
        self._file, self._offset = file, file.tell()
        self._shape, self._dtype = array.shape, array.dtype
        # its bytes as they lie (``tobytes`` made a copy of each first)
        file.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)

    def load(self, outputs: _memory.MappedArrays | None = None) -> np.ndarray:
        """The array, read into a buffer of ``outputs`` when given (a reused mapping: the
        nine of a 4096 px scene took 0.010-0.025 s so, 0.043 s into fresh memory)."""
        self._file.seek(self._offset)
        if outputs is None:
            out = np.empty(self._shape, self._dtype)
        else:
            out = outputs.empty(tuple(self._shape), self._dtype)
        if self._file.readinto(out.reshape(-1).view(np.uint8).data) != out.nbytes:
            raise RasterWriteError(
                "a temporary file of the scene-statistics pass's outputs (in the output's "
                "folder) was cut short; check that folder's free space and run again"
            )
        return out


class _Spill:
    """Where the statistics pass's outputs wait for their turn: those of tiles more than
    :data:`SPILL_AFTER_ROWS` tile rows down the scene in an unnamed temporary file in
    ``folder`` (translate_raster: the output's, on disk where the output goes, not a
    ``/tmp`` that may be memory; None: the system's temporary folder), made at the first
    such output and removed when closed or when the process ends however it ends; the
    others in memory. Where the file cannot be made or written, outputs stay in memory."""

    def __init__(self, windows: Sequence[Window], folder: Path | None = None) -> None:
        rows = sorted({int(w.row_off) for w in windows})
        self._near = set(rows[: SPILL_AFTER_ROWS + 1])
        self._windows = windows
        self._folder = folder
        self.file: Any = None
        self._failed = False

    def hold(self, i: int, array: np.ndarray) -> np.ndarray | _Spilled:
        """What to keep of tile ``i``'s output ``array``: itself, or where it was written."""
        if int(self._windows[i].row_off) in self._near or self._failed:
            return array
        try:
            if self.file is None:
                self.file = tempfile.TemporaryFile(prefix=".rsgan-", dir=self._folder)
            return _Spilled(self.file, array)
        except OSError:  # e.g. a full folder: this output and the rest stay in memory
            self._failed = True
            return array

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


READ_AHEAD_MB = 128
"""Memory for the tiles a network source's readers hold ahead of the queue (at least two
tiles): 16 RGB uint8 tiles of 768 px, 4 of 13 float32 bands."""


def _read_ahead(
    run: _Run, reused: set[int], tiles: queue.Queue[Any], stop: threading.Event
) -> None:
    """The reader of a source read over the network: the tiles' reads run on
    :func:`_read_threads` threads (a dataset handle each) and go into ``tiles`` in
    row-major order, as the single reader of a local file puts them."""
    threads = _read_threads(run, max(1, len(run.windows) - len(reused)))
    dtype = np.dtype(run.info.dtypes[run.bands[0] - 1])
    px_bytes = len(run.bands) * (dtype.itemsize if _in_one_pass(dtype) else 4) + 1  # + mask
    tile_bytes = int(run.windows[0].height) * int(run.windows[0].width) * px_bytes
    # reads in flight or done beyond the queue: two per thread, within READ_AHEAD_MB
    most = max(2, min(2 * threads, READ_AHEAD_MB * 2**20 // max(1, tile_bytes)))
    local = threading.local()
    handles: list[Any] = []
    lock = threading.Lock()

    def fetch(window: Window) -> tuple[np.ndarray, np.ndarray]:
        src = getattr(local, "src", None)
        if src is None:
            src = local.src = open_dataset(run.src)
            with lock:
                handles.append(src)
        return _read_source(run, src, window)

    ahead: collections.deque[tuple[int, Window, Future[Any] | None]] = collections.deque()
    order = iter(enumerate(run.windows))
    pool = ThreadPoolExecutor(threads, thread_name_prefix="rsgan-read-net")
    try:
        while True:
            while len(ahead) < most:
                nxt = next(order, None)
                if nxt is None:
                    break
                i, window = nxt
                ahead.append((i, window, None if i in reused else pool.submit(fetch, window)))
            if not ahead:
                break
            i, window, future = ahead.popleft()
            if future is None:
                _put(tiles, (i, window, None, None), stop)
            else:
                source, valid = future.result()
                _put(tiles, (i, window, source, valid), stop)
        _put(tiles, _DONE, stop)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for src in handles:
            src.close()


def _running(inflight: collections.deque[tuple[list[Any], Future[Any] | None]]) -> int:
    """Batches in flight that are not done yet (running or queued for a worker)."""
    return sum(future is not None and not future.done() for _, future in inflight)


def _folded(run: _Run, stats: dict[str, Stats] | None) -> _Run:
    """``run`` with the scene statistics folded into its model's convolutions
    (:func:`fold_norm_stats`) in fp32, where that equals the fixed-statistics forward to
    float rounding; the run itself otherwise (bf16: the folded weights round to other bf16
    values, which would set the statistics pass's tiles apart by ~0.15 DN)."""
    if stats is None or run.precision != "fp32":
        return run
    net = fold_norm_stats(run.translator.net, stats)
    if net is None:
        return run
    return dataclasses.replace(run, translator=dataclasses.replace(run.translator, net=net))


CPU_TILE_WORKERS = 2
"""Tiles translated at once on a CPU in bf16, with at least as many torch threads, each on
its share of the threads (:class:`_Forwarders`). Measured on the 2-core CPU, the bundled
model on 736 px tiles, same process: in bf16 the main pass of a 4096 px scene ran 2 %
faster so (a reader or writer thread then holds up one tile rather than a parallel region
of both threads; the bare model alone was within a few % either way); in fp32 two at once
ran 5-12 % slower, so fp32 runs one tile at a time (docs/benchmarks.md, fifth session).
With the sixth session's faster generator the two ways measured equal in bf16 (end to end
1.002, bare 1.005, 6 rounds)."""


def _tile_workers(device: torch.device, precision: str) -> int:
    """How many tiles to translate at once: :data:`CPU_TILE_WORKERS` on a CPU in bf16 with
    as many torch threads, else 1 (fp32 on CPU was slower so; a GPU runs batches)."""
    if device.type != "cpu" or precision != "bf16":
        return 1
    return max(1, min(CPU_TILE_WORKERS, torch.get_num_threads()))


class _Forwarders:
    """Translate batches on ``count`` threads, ``torch.get_num_threads() // count`` torch
    threads each, in the order they are submitted (the caller keeps the order).

    Each thread has its own copy of the model that shares its parameters and buffers: the
    norm layers' valid mask is set per forward, so a model with norm layers cannot be
    shared between threads. With ``count == 1`` (or a model that cannot be copied) batches
    run in the caller's thread, which keeps a CUDA device the caller's current one.
    """

    def __init__(self, run: _Run, count: int) -> None:
        self._threads = torch.get_num_threads()
        runs = [run]
        if count > 1:
            copies = [_run_copy(run) for _ in range(count - 1)]
            runs += [r for r in copies if r is not None]
        self.count = len(runs)
        self._runs = runs
        self._next = iter(runs)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool = (
            ThreadPoolExecutor(
                self.count, thread_name_prefix="rsgan-model", initializer=self._start
            )
            if self.count > 1
            else None
        )

    def _start(self) -> None:
        with self._lock:
            self._local.run = next(self._next)
        torch.set_num_threads(max(1, self._threads // self.count))

    def submit(self, fn: Callable[..., _T], *args: Any, last: bool = False) -> Future[_T]:
        """``fn(run, *args)`` with this thread's run (its own copy of the model), e.g.
        :func:`_forward` on one batch; the result comes in the future. The ``last`` batch
        of a run gets all of torch's threads: the other workers have nothing left to do
        once their batches end."""
        if self._pool is None:
            future: Future[_T] = Future()
            future.set_result(fn(self._runs[0], *args))
            return future
        if last:
            return self._pool.submit(self._on_all_threads, fn, args)
        return self._pool.submit(lambda: fn(self._local.run, *args))

    def _on_all_threads(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        torch.set_num_threads(self._threads)
        try:
            return fn(self._local.run, *args)
        finally:
            torch.set_num_threads(max(1, self._threads // self.count))

    def close(self) -> None:
        """Cancel what has not started, wait for what has, and give torch back its thread
        count (``torch.set_num_threads`` in a worker also set the count new threads start
        with)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(self._threads)


def _run_copy(run: _Run) -> _Run | None:
    """``run`` with a copy of its model for another thread, sharing the parameters,
    buffers and forward hooks; the run itself for a model without norm layers (nothing of
    it changes per forward); None when the model cannot be copied."""
    net = run.translator.net
    if not norm_layers(net):
        return run
    twin = shared_copy(net)
    if twin is None:  # a module holding something that cannot be copied: one thread
        return None
    translator = dataclasses.replace(run.translator, net=twin)
    return dataclasses.replace(run, translator=translator)


_MODEL_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def _model_lock(net: nn.Module) -> threading.Lock:
    """The lock of ``net`` that runs of a model that cannot be copied (:func:`_run_copy`)
    hold for their whole run."""
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(net)
        if lock is None:
            lock = _MODEL_LOCKS[net] = threading.Lock()
        return lock


def _fast_denormalize(normalizer: Normalizer, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """:meth:`Normalizer.denormalize` in float32 and in place on the blended rows (which
    are scratch): the same rounding and clipping, a third of the time. float32 keeps
    integers exact up to 2**24, so uint16/int16 values round back exactly."""
    lo = np.asarray(normalizer.lo, np.float32)[:, None, None]
    half = (np.asarray(normalizer.hi, np.float32)[:, None, None] - lo) / 2
    target = np.dtype(dtype)
    is_int = np.issubdtype(target, np.integer)
    limits = np.iinfo(target) if is_int else None

    def denormalize(arr: np.ndarray) -> np.ndarray:
        arr = np.asarray(arr, np.float32)
        arr += 1.0
        arr *= half
        arr += lo
        if limits is not None:
            nan = np.isnan(arr)  # only a broken model writes NaN: a cheap test, rarely a fix
            if nan.any():
                arr[nan] = 0.0
            np.rint(arr, out=arr)
            np.clip(arr, limits.min, limits.max, out=arr)
        return arr.astype(target)

    return denormalize


def _name_output_bands(ds: Any, translator: Translator, info: RasterInfo) -> None:
    """The scene's tags, and the band descriptions and colour interpretation of the
    domain ``translator`` writes (before any pixel: libtiff cannot change the colour
    interpretation afterwards)."""
    copy_dataset_tags(info, ds)
    names = translator.out_colorinterp or ()
    if len(names) == ds.count and all(name in ColorInterp.__members__ for name in names):
        ds.colorinterp = [ColorInterp[name] for name in names]
    descriptions = translator.out_descriptions or ()
    if len(descriptions) == ds.count:
        for band, text in enumerate(descriptions, start=1):
            if text:
                ds.set_band_description(band, text)


def _holds(dtype: str, value: float | None) -> bool:
    """Whether rasters of ``dtype`` can hold the nodata ``value`` (None: no value, held)."""
    if value is None or not np.issubdtype(np.dtype(dtype), np.integer):
        return True
    limits = np.iinfo(dtype)
    return math.isfinite(value) and limits.min <= value <= limits.max and value == int(value)


def _write_mosaic(
    run: _Run,
    dst_path: Path,
    tiles: Iterator[tuple[Window, np.ndarray | None, np.ndarray]],
    out_dtype: str | None,
) -> MosaicStats:
    """Blend the tiles into a tiled GeoTIFF at ``dst_path`` (write-behind thread)."""
    info, translator = run.info, run.translator
    first = next(tiles)
    assert first[1] is not None  # the first tile is always translated
    out_count = first[1].shape[0]
    dtype = np.dtype(out_dtype or info.dtypes[run.bands[0] - 1]).name
    out_norm = translator.out_normalizer
    if out_norm is None:
        out_norm = (
            run.in_norm
            if out_count == run.in_norm.count
            else Normalizer.for_dtype(run.in_norm.dtype, out_count)
        )
    if out_norm.count != out_count:
        raise ModelError(
            f"{translator.name} wrote {out_count} band(s) but its output normaliser has "
            f"{out_norm.count}; the checkpoint's metadata does not fit its generator"
        )
    options = COMPRESSIONS[run.compress]
    # a source nodata value the output type cannot hold (65535 of a uint16 scene, written
    # as uint8): the output marks its invalid pixels with a mask instead
    nodata = info.nodata if _holds(dtype, info.nodata) else None
    profile = output_profile(
        info, count=out_count, dtype=dtype, nodata=nodata, compress=options.get("compress")
    )
    profile.update({k: v for k, v in options.items() if k != "compress"})
    needs_mask = (info.nodata is not None and nodata is None) or (
        info.nodata is None
        and any(list(info.mask_flags[b - 1]) != [MaskFlags.all_valid] for b in run.bands)
    )
    fill = nodata
    if fill is None and np.issubdtype(np.dtype(dtype), np.floating) and not needs_mask:
        fill = float("nan")
    stop = threading.Event()
    blended: queue.Queue[Any] = queue.Queue(maxsize=4)
    with open_output(dst_path, **profile) as ds:
        if translator.out_descriptions or translator.out_colorinterp:
            _name_output_bands(ds, translator, info)
        elif out_count == len(run.bands):
            # a model whose output domain holds another data type (uint16 reflectance to
            # uint8 DN) writes values the source's scale, offset and unit do not describe
            same_units = translator.out_normalizer is None or (
                translator.out_normalizer.dtype == run.in_norm.dtype
            )
            copy_band_metadata(info, ds, run.bands, same_units=same_units)
        else:
            copy_dataset_tags(info, ds)
        copy_placement(info, ds)  # ground control points / RPCs: the same pixel grid
        writer = MosaicWriter(
            ds,
            run.windows,
            overlap=run.overlap,
            blend=run.blend,
            denormalize=_fast_denormalize(out_norm, dtype),
            nodata=fill,
            write_mask=needs_mask,
        )

        def write() -> None:
            while True:
                item = _get(blended, stop)
                if item is _DONE:
                    return
                writer.add(*item)

        worker = _Worker(write, "rsgan-write")
        worker.start()
        try:
            for item in _chain(first, tiles):
                _put(blended, item, stop, worker)
            _put(blended, _DONE, stop, worker)
            worker.join()
            worker.check()
        finally:
            stop.set()
            worker.join(timeout=10)
        return writer.close()


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- outputs


def _overview_factors(width: int, height: int, blocksize: int = 256) -> list[int]:
    factors, factor = [], 2
    while max(width, height) / factor >= blocksize // 2 and factor <= 2**16:
        factors.append(factor)
        factor *= 2
    return factors


def _finish_cog(gtiff: Path, dst: Path, compress: str) -> None:
    """Build overviews on the tiled GTiff and copy it into a Cloud Optimized GeoTIFF
    (``compress`` a key of :data:`COMPRESSIONS`, at the COG driver's default level)."""
    with open_output(gtiff, "r+") as ds:
        factors = _overview_factors(ds.width, ds.height)
        if factors:
            # class values of a paletted band must not be averaged into other classes
            paletted = ColorInterp.palette in ds.colorinterp
            resampling = Resampling.nearest if paletted else Resampling.average
            ds.build_overviews(factors, resampling)
            ds.update_tags(ns="rio_overview", resampling=resampling.name)
            ds.update_tags(OVR_RESAMPLING_ALG=resampling.name.upper())  # as GDAL's COG does
    rasterio.shutil.copy(
        gtiff,
        dst,
        driver="COG",
        COMPRESS=COMPRESSIONS[compress].get("compress", "none").upper(),
        PREDICTOR="NO" if compress == "none" else "YES",  # 2 for integers, 3 for floats
        BLOCKSIZE=512,
        BIGTIFF="IF_SAFER",
        OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE",
        NUM_THREADS=2,
    )


NORM_MODES: dict[str, str] = {
    "scene": "statistics of the whole scene for every tile (seam-free)",
    "tile": "statistics per tile (the reference behaviour; shows seams)",
}
"""Normalisation modes of :func:`translate_raster`."""


def translate_raster(
    src: PathLike,
    dst: PathLike,
    model: Any = None,
    *,
    direction: str = "a2b",
    tile: int = STATS_TILE,
    overlap: int = STATS_OVERLAP,
    blend: str = "hann",
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    bands: Sequence[int] | None = None,
    overwrite: bool = False,
    cog: bool = False,
    progress: bool = True,
    norm: str = "scene",
    dtype: str | None = None,
    precision: str | None = None,
    quicklook: PathLike | None = None,
    stats_memory_mb: float | None = None,
    compress: str = "zstd",
    nodata: float | None = None,
) -> Path:
    """Translate a whole georeferenced scene with a generator, tile by tile, seam-free.

    Args:
        src: the input raster: a local file, or a URL (``https://``, ``s3://``,
            ``zip+https://``...) or GDAL ``/vsi...`` path, kept as given (GDAL reads it
            through its virtual file systems; a Cloud Optimized GeoTIFF is read fastest,
            the statistics view then coming from its overviews).
        dst: the output GeoTIFF (written atomically; never left half-written).
        model: a checkpoint path, a :class:`rsgan.checkpoint.LoadedModel`, any
            ``torch.nn.Module`` mapping ``(N, C, H, W)`` in [-1, 1] to ``(N, C_out, H, W)``,
            or None: ``$RSGAN_MODEL``, else the bundled default model. A plain module has
            no stored normalisation: source values are mapped by their dtype's natural
            range (:meth:`rsgan.io.Normalizer.for_dtype`) and back, so
            ``torch.nn.Identity()`` reproduces the input.
        direction: ``"a2b"`` or ``"b2a"`` for a CycleGAN checkpoint.
        tile: largest tile side in pixels (a multiple of the model's size multiple, 4 for
            the ResNet generator); tiles are shrunk to share the scene evenly.
        overlap: least overlap between neighbouring tiles, pixels; blended over this width.
        blend: blend window, a key of :data:`rsgan.mosaic.BLENDS`.
        batch_size: tiles per forward pass; None: 1 on CPU (larger batches of large tiles
            page-fault fresh memory and ran ~10 % slower here), 4 on CUDA.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device.
        bands: 1-based source bands to translate (default all).
        overwrite: replace an existing ``dst``.
        cog: write a Cloud Optimized GeoTIFF with overviews.
        progress: show a progress bar over tiles.
        norm: ``"scene"`` (seam-free, default) or ``"tile"`` (per-tile statistics).
        dtype: output data type (default the data type of the domain the model writes,
            e.g. uint16 for a model from uint8 aerial photos to Sentinel-2; the source's
            for a model that records none; e.g. ``"float32"``). Values stay in source
            units (not rescaled), so a given integer type must hold the range the output
            is mapped back to (else ``ConfigError`` before any work); a source nodata
            value it cannot hold becomes a mask, as with the default.
        precision: ``"fp32"`` or ``"bf16"``; None: the model's preference (the bundled
            model: bf16) where the device computes bf16 natively (a CPU with AVX512-BF16
            or AMX, a CUDA GPU of compute capability 8.0+; emulated bf16 ran 2.5-8.7x the
            fp32 time), else bf16 on such a GPU and fp32 otherwise.
        quicklook: also write a PNG preview of the output here (checked before any work:
            it may be neither ``src`` nor ``dst``).
        stats_memory_mb: memory for the scene-statistics pass in ``norm="scene"`` mode, MiB
            (default :data:`STATS_MEMORY_MB`). A scene of up to ``stats_budget_px(model)``
            pixels is translated in one whole pass; a larger one pools its statistics over
            as many of its tiles as fit, corrected by a pass over a 512 px view of the
            scene when those are a sample. More memory: closer to a whole-scene pass.
        compress: output compression, a key of :data:`COMPRESSIONS`: ``"zstd"`` (default;
            fast to write), ``"deflate"`` (for readers without ZSTD), ``"lzw"`` or
            ``"none"``.
        nodata: read the source as if its nodata value were this (``gdal_translate
            -a_nodata``; it replaces the source's own nodata, mask or alpha): for scenes
            with an empty collar and no nodata set, e.g. after reprojection. Such pixels
            stay out of the statistics and the blend and are ``nodata`` in the output.
            A value of the source's dtype (NaN for float sources).

    Returns:
        ``dst`` as a Path. The output has the source's size, CRS, transform (or ground
        control points / RPCs), nodata (a mask instead where the output dtype cannot hold
        it), dataset tags and ``IMAGERY`` domain (except in a COG). Where the band counts
        match, its bands keep the source bands' descriptions, colour interpretation and
        tags (not cached statistics, see :func:`rsgan.io.copy_band_metadata`), and their
        units, scales and offsets unless the model writes a domain of another data type;
        a model whose two domains are different bands names the output's bands as its
        output domain does instead. Pixels that were invalid in the source are nodata (or
        masked) in the output.

    Raises:
        RasterReadError: ``src`` is missing or not a raster.
        OutputExistsError: ``dst`` exists and ``overwrite`` is False.
        RasterWriteError: ``dst`` is a folder, unwritable, a URL or ``/vsi`` path, or the
            input itself.
        CheckpointError: a missing or corrupt checkpoint.
        BandError, ModelError: bands or dtype the model cannot take.
        TileSpecError, ConfigError: bad tile, overlap, blend, norm, batch size or nodata.
    """
    src_path, dst_path = source_path(src), Path(dst)
    check_local_output(dst)
    if blend not in BLENDS:
        raise ConfigError(f"unknown blend {blend!r}; use one of {', '.join(BLENDS)}")
    if norm not in NORM_MODES:
        raise ConfigError(f"unknown norm {norm!r}; use one of {', '.join(NORM_MODES)}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    if dtype is not None:
        _check_dtype(dtype)
    if compress not in COMPRESSIONS:
        raise ConfigError(f"unknown compress {compress!r}; use one of {', '.join(COMPRESSIONS)}")
    if stats_memory_mb is not None and (
        isinstance(stats_memory_mb, bool)
        or not isinstance(stats_memory_mb, (int, float))
        or not stats_memory_mb > 0
    ):
        raise ConfigError(
            f"stats_memory_mb must be a positive number of MiB; got {stats_memory_mb!r}"
        )
    info = describe(src_path)
    read_from: Path | str = src_path
    if nodata is not None:
        read_from = _with_nodata(src_path, nodata, info)
        # GDAL's vrt:// keeps the default metadata domain only
        info = dataclasses.replace(describe(read_from), path=info.path, imagery=info.imagery)
    if quicklook is not None:
        _check_quicklook(Path(quicklook), src_path, dst_path, overwrite)
    if dst_path.is_dir():
        raise RasterWriteError(
            f"output {dst_path} is a folder; pass a file path such as {dst_path / 'out.tif'}"
        )
    if dst_path.suffix and dst_path.suffix.lower() not in TIFF_SUFFIXES:
        picture = " (for a PNG picture of it, add quicklook= / --quicklook)"
        raise RasterWriteError(
            f"output {dst_path}: translate_raster writes a GeoTIFF; name it "
            f"{dst_path.with_suffix('.tif')}{picture if dst_path.suffix.lower() == '.png' else ''}"
        )
    selected = check_bands(info.count, bands, path=src_path)
    translator = resolve_translator(model, direction)
    _check_fit(translator, info, selected, src_path)
    src_dtype = info.dtypes[selected[0] - 1]
    in_norm = translator.in_normalizer or Normalizer.for_dtype(src_dtype, len(selected))
    if dtype is not None:
        _check_output_dtype(dtype, translator.out_normalizer or in_norm)
    dtype = dtype or translator.out_dtype  # a uint8 -> uint16 model writes uint16
    budget_px = stats_budget_px(translator.net, stats_memory_mb or STATS_MEMORY_MB)
    windows = _plan_windows(info, translator, tile, overlap, norm, budget_px)
    torch_device = resolve_device(device)
    if batch_size is None:
        batch_size = 4 if torch_device.type == "cuda" else 1
    run = _Run(
        src=read_from,
        info=info,
        bands=selected,
        translator=translator,
        in_norm=in_norm,
        windows=windows,
        device=torch_device,
        precision=resolve_precision(precision, torch_device)
        if precision
        else preferred_precision(translator.precision, torch_device),
        batch_size=batch_size,
        norm=norm,
        overlap=overlap,
        blend=blend,
        budget_px=budget_px,
        compress=compress,
        edges=_edge_watch(info, selected),
    )
    warn_if_not_georeferenced(info)
    translator.net.to(torch_device).eval()
    # the run's own copy of the model's modules (parameters shared): the norm layers'
    # modes, statistics and masks change through a run, and a model shared by runs at
    # once (threads of one process, a Dask worker's threads over scenes) gave each run
    # the other's statistics (28.7 DN off on average, measured); a model that cannot be
    # copied runs one run at a time
    own = _run_copy(run)
    exclusive = _model_lock(translator.net) if own is None else contextlib.nullcontext()
    run = own or run
    cache = gdal_cache_bytes(info, int(windows[0].height))
    env = rasterio.Env(GDAL_CACHEMAX=cache, GDAL_TIFF_INTERNAL_MASK=True)
    with exclusive, env, atomic_output(dst_path, overwrite=overwrite, inputs=[src_path]) as tmp:
        tiles = contextlib.closing(_translated_tiles(run, progress, spill_dir=tmp.parent))
        if not cog:
            with tiles as stream:
                _write_mosaic(run, tmp, stream, dtype)
        else:
            gtiff = tmp.with_name(tmp.name + ".gtiff.tif")
            try:
                with tiles as stream:
                    _write_mosaic(run, gtiff, stream, dtype)
                _finish_cog(gtiff, tmp, compress)
            finally:
                gtiff.unlink(missing_ok=True)
                gtiff.with_name(gtiff.name + ".ovr").unlink(missing_ok=True)
    if run.edges is not None and (share := run.edges.share()) >= EMPTY_EDGE_SHARE:
        warnings.warn(
            EmptyEdgeWarning(
                f"{source_name(src_path)}: {share:.0%} of the scene's edge pixels are 0 in "
                "every band and it has no nodata value; if that is an empty collar (e.g. "
                "after reprojection) it was translated as image and weighed in the "
                "statistics: translate again with nodata=0 (--nodata 0)"
            ),
            stacklevel=2,
        )
    if quicklook is not None:
        write_quicklook(dst_path, quicklook, overwrite=overwrite)
    return dst_path


TIFF_SUFFIXES = (".tif", ".tiff", ".gtif", ".gtiff")
"""Endings an output of :func:`translate_raster` may have (or none): it writes a GeoTIFF,
and a TIFF named ``out.png`` would open in GDAL but in no image viewer."""

_OUTPUT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def _with_nodata(src: Path | str, nodata: Any, info: RasterInfo) -> str:
    """A GDAL ``vrt://`` name that reads ``src`` with ``nodata`` as its nodata value
    (GDAL keeps the CRS, transform, blocks, descriptions, colour interpretation, tags,
    scales and offsets, and computes the mask from the value; reading through it took
    the same time as reading the file, 25 tiles of a 4096 px scene)."""
    dtype = np.dtype(info.dtypes[0])
    if isinstance(nodata, bool) or not isinstance(nodata, (int, float, np.number)):
        raise ConfigError(f"nodata must be a number; got {nodata!r}")
    value = float(nodata)
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        if not (value.is_integer() and limits.min <= value <= limits.max):
            raise ConfigError(
                f"nodata {nodata!r} is not a {dtype} value ({limits.min}..{limits.max}), the "
                f"dtype of {source_name(info.path)}; pass a whole number in that range"
            )
        text = str(int(value))
    else:
        text = "nan" if math.isnan(value) else repr(value)
    name = os.fspath(src)
    if "?" in name:
        raise ConfigError(
            f"nodata cannot be set on {name}: its name holds a query string ('?'), which "
            "GDAL's vrt:// syntax cannot carry; write a VRT with the nodata value "
            "(gdal_translate -of VRT -a_nodata ...) and translate that"
        )
    return f"vrt://{name}?a_nodata={text}"


def _check_dtype(dtype: str) -> None:
    """Refuse an output data type a GeoTIFF of rsgan cannot hold, before any work."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _OUTPUT_DTYPES:
        raise ConfigError(
            f"dtype {dtype!r} is not a raster data type rsgan writes; use one of "
            f"{', '.join(_OUTPUT_DTYPES)}"
        )


def _check_output_dtype(dtype: str, out_norm: Normalizer) -> None:
    """Refuse, before any work, an output dtype that cannot hold the range the model's
    output is mapped back to (``out_norm``: source units; an integer dtype would clip
    every value beyond it, e.g. uint16 reflectances written as uint8 all 255). A source
    nodata value the dtype cannot hold is no reason: the output marks its invalid pixels
    with a mask instead (:func:`_write_mosaic`), as it does for the default dtype."""
    target = np.dtype(dtype)
    if not np.issubdtype(target, np.integer):
        return
    limits = np.iinfo(target)
    lo, hi = min(out_norm.lo), max(out_norm.hi)
    if lo < limits.min or hi > limits.max:
        raise ConfigError(
            f"dtype {target.name} ({limits.min}..{limits.max}) cannot hold the output's "
            f"values, which span {lo:g}..{hi:g} in source units (dtype only changes the "
            f"storage type; it does not rescale): every value beyond would be clipped; use "
            f"float32 or {out_norm.dtype}, or rescale the output afterwards"
        )


def _check_quicklook(png: Path, src: Path | str, dst: Path, overwrite: bool) -> None:
    """The preview is a ``.png`` and may replace neither the input (nor a file it reads)
    nor the output."""
    if png.suffix.lower() != ".png":
        raise RasterWriteError(
            f"quicklook {png}: a quicklook is a PNG picture; name it {png.with_suffix('.png')}"
        )
    # checked before the translation, which would otherwise run and leave its output
    if png.is_dir():
        raise RasterWriteError(f"quicklook {png} is a folder; name a PNG file in it")
    if not png.parent.is_dir():
        raise RasterWriteError(
            f"cannot write quicklook {png}: folder {png.parent} does not exist; create it first"
        )
    if not os.access(png.parent, os.W_OK | os.X_OK):
        raise RasterWriteError(
            f"cannot write quicklook {png}: folder {png.parent} is not writable; choose "
            "another path for the PNG"
        )
    for path, given in files_read_by([src]):
        if same_file(png, path):
            what = f"the input ({given})" if path == given else f"{path}, which the input reads"
            raise RasterWriteError(f"quicklook {png} is {what}; choose another path for the PNG")
    if same_file(png, dst):
        raise RasterWriteError(
            f"quicklook {png} is the output ({dst}); choose another path for the PNG"
        )
    if png.exists() and not overwrite:
        raise OutputExistsError(f"quicklook {png} exists; pass overwrite=True / --overwrite")


# --------------------------------------------------------------------------- quicklooks


def _preview(
    path: PathLike, max_size: int, rgb: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """A decimated ``(3 or 1, rows, cols)`` read of the bands shown as red, green and blue
    (:func:`rsgan.io.preview_bands`) and its valid mask."""
    with open_raster(path) as ds:
        scale = max(ds.width, ds.height) / max_size
        shape = (max(1, round(ds.height / max(scale, 1))), max(1, round(ds.width / max(scale, 1))))
        indexes = list(preview_bands(ds.count, ds.descriptions, ds.colorinterp, rgb=rgb))
        data = ds.read(indexes, out_shape=(len(indexes), *shape), resampling=Resampling.average)
        mask = ds.read_masks(1, out_shape=shape) > 0
    return data, mask


def write_before_after(
    before: PathLike,
    after: PathLike,
    png: PathLike,
    *,
    max_size: int = 1024,
    rgb: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG with ``before`` and ``after`` side by side (2-98 % stretch of each,
    decimated so each side is at most ``max_size`` px).

    Each side shows the bands its raster names red, green and blue (colour interpretation
    or band descriptions such as ``"B04 red"``, see :func:`rsgan.io.rgb_bands`), else
    its bands 1, 2, 3, else band 1 in grey; ``rgb=(red, green, blue)`` (1-based) chooses
    them for both.
    """
    from rsgan.io import write_quicklook_png

    a, ma = _preview(before, max_size, rgb)
    b, mb = _preview(after, max_size, rgb)
    if a.shape[0] != b.shape[0] or a.shape[1:] != b.shape[1:]:
        raise ConfigError(
            f"before {a.shape} and after {b.shape} previews differ; pass rasters of one grid"
        )

    def stretch(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # one stretch for all bands keeps the colours; uint8 is shown as it is
        if arr.dtype == np.uint8:
            out = arr.copy()
        else:
            values = arr[:, mask] if mask.any() else arr.reshape(arr.shape[0], -1)
            lo, hi = np.percentile(values, (2, 98))
            scaled = (arr.astype(np.float64) - lo) / max(hi - lo, 1e-12) * 255
            out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        out[:, ~mask] = 0
        return out

    gap = np.zeros((a.shape[0], a.shape[1], 8), np.uint8)
    side = np.concatenate([stretch(a, ma), gap, stretch(b, mb)], axis=2)
    return write_quicklook_png(side, png, stretch=None, overwrite=overwrite)


def write_quicklook(
    raster: PathLike,
    png: PathLike,
    *,
    max_size: int = 1024,
    rgb: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG preview of a raster (2-98 % stretch, decimated to at most ``max_size``
    px).

    It shows the bands the raster names red, green and blue (colour interpretation or
    band descriptions such as ``"B04 red"``, see :func:`rsgan.io.rgb_bands`), else bands
    1, 2, 3, else band 1 in grey; ``rgb=(red, green, blue)`` (1-based) chooses them.

    Raises:
        BandError: ``rgb`` is not three bands of the raster.
    """
    from rsgan.io import write_quicklook_png

    data, mask = _preview(raster, max_size, rgb)
    return write_quicklook_png(data, png, mask=mask, overwrite=overwrite)


__all__ = [
    "COMPRESSIONS",
    "DEFAULT_MODEL_ENV",
    "DEFAULT_MODEL_PATH",
    "EMPTY_EDGE_SHARE",
    "FILL_CELL",
    "FILL_REACH",
    "NORM_MODES",
    "STATS_MEMORY_MB",
    "EmptyEdgeWarning",
    "Translator",
    "default_model_path",
    "fill_nodata",
    "resolve_translator",
    "stats_budget_px",
    "translate_raster",
    "write_before_after",
    "write_quicklook",
]
