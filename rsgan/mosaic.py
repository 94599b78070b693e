"""Blend windows and a streaming mosaicking writer for tiled translation.

Translated tiles overlap; where they do, the output is their weighted mean, normalised by
the accumulated weight (never by a constant). The weight windows are *edge-aware*: a tile
ramps its weight down only on the sides where a neighbouring tile takes over, and keeps
full weight on the sides that lie on the scene border, so the outermost rows and columns
of a scene are never left without weight. Every weight is strictly positive, so a pixel
covered by one tile only keeps that tile's value.

:class:`MosaicWriter` takes the tiles in row-major order and keeps only a strip of the
output in memory: float32 sums and weights for the current tile row (``tile`` rows tall)
and the finished rows, already in the output dtype, until a whole row of output blocks
is complete; then it writes those rows to the open dataset. Its memory depends on the
scene's width and the tile size, never on the scene's height.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from rsgan.errors import ConfigError, TileSpecError

FINISH_ROWS = 64
"""Rows normalised and converted at a time when a strip is finished."""

Ramp = Callable[[int], np.ndarray]
"""``ramp(n)`` -> ``(n,)`` float64 weights rising from near 0 to near 1, all in (0, 1]."""


def _hann_ramp(n: int) -> np.ndarray:
    # Half a Hann window sampled at pixel centres: sin^2 rises from ~0 to ~1 and two
    # opposite ramps over the same n pixels sum to exactly 1 (sin^2 + cos^2).
    return np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2


def _linear_ramp(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def _flat_ramp(n: int) -> np.ndarray:
    return np.ones(n)


BLENDS: dict[str, Ramp] = {
    "hann": _hann_ramp,
    "linear": _linear_ramp,
    "none": _flat_ramp,
}
"""Blend windows by name: each maps a ramp length to the weights along it. ``"none"``
averages overlapping tiles with equal weight."""


def _profile(name: str, length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D weights along one tile axis: ones, ramped over ``overlap`` px at inner sides."""
    try:
        ramp = BLENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown blend {name!r}; use one of {', '.join(sorted(BLENDS))}"
        ) from None
    weights = np.ones(length)
    n = min(int(overlap), length // 2)
    if n > 0:
        rise = ramp(n)
        if ramp_start:
            weights[:n] = rise
        if ramp_end:
            weights[length - n :] = rise[::-1]
    return weights


def blend_weights(
    name: str,
    tile_h: int,
    tile_w: int,
    *,
    overlap: int,
    at_top: bool = False,
    at_bottom: bool = False,
    at_left: bool = False,
    at_right: bool = False,
) -> np.ndarray:
    """The blend weights of one tile, ``(tile_h, tile_w)`` float32, all in (0, 1].

    Args:
        name: a key of :data:`BLENDS` (``"hann"``, ``"linear"``, ``"none"``).
        tile_h, tile_w: tile rows and cols (pixels).
        overlap: pixels over which the weight ramps on a side shared with another tile
            (capped at half the tile).
        at_top, at_bottom, at_left, at_right: the side lies on the scene border; it keeps
            full weight there.

    Raises:
        ConfigError: for an unknown blend name.
    """
    if overlap < 0:
        raise TileSpecError(f"overlap must be >= 0 pixels; got {overlap}")
    rows = _profile(name, tile_h, overlap, not at_top, not at_bottom)
    cols = _profile(name, tile_w, overlap, not at_left, not at_right)
    return np.outer(rows, cols).astype(np.float32)


def _borders(window: Window, width: int, height: int) -> tuple[bool, bool, bool, bool]:
    """Which sides of ``window`` lie on (or past) the scene border: top, bottom, left, right."""
    row, col = int(window.row_off), int(window.col_off)
    return (
        row <= 0,
        row + int(window.height) >= height,
        col <= 0,
        col + int(window.width) >= width,
    )


def window_weights(window: Window, width: int, height: int, blend: str, overlap: int) -> np.ndarray:
    """:func:`blend_weights` of a tile placed at ``window`` in a ``width`` x ``height`` scene:
    full weight on its sides that lie on the scene border. ``(rows, cols)`` float32."""
    top, bottom, left, right = _borders(window, width, height)
    return blend_weights(
        blend,
        int(window.height),
        int(window.width),
        overlap=overlap,
        at_top=top,
        at_bottom=bottom,
        at_left=left,
        at_right=right,
    )


@dataclass(frozen=True, slots=True)
class MosaicStats:
    """What a writer has done.

    Attributes:
        tiles: tiles added.
        tile_pixels: pixels of those tiles (rows x cols, counting any part off the scene).
        scene_pixels: pixels of the scene.
        written_rows: output rows written so far.
    """

    tiles: int
    tile_pixels: int
    scene_pixels: int
    written_rows: int

    @property
    def overlap_waste(self) -> float:
        """Generator pixels computed per scene pixel (1.0 without overlap)."""
        return self.tile_pixels / self.scene_pixels if self.scene_pixels else 0.0


class MosaicWriter:
    """Blend translated tiles into an open raster, one strip at a time.

    Tiles must come in row-major order (by row offset, then column offset), as
    :func:`rsgan.tiling.tile_windows` yields them. Rows above the current tile row can no
    longer change; they are normalised by their accumulated weight, converted to the
    output dtype and written once a whole row of output blocks is complete.

    Args:
        dst: the output, a rasterio dataset opened for writing (``width``, ``height``,
            ``count``, ``dtypes``, ``nodata`` and ``block_shapes`` are read from it), or
            any object with ``write(arr, window=...)`` when ``width``, ``height``,
            ``count`` and ``dtype`` are all given.
        tile: tile rows (the tallest window that will be added), pixels.
        overlap: pixels over which tile weights ramp where tiles meet.
        blend: a key of :data:`BLENDS`.
        denormalize: maps blended values ``(bands, rows, cols)`` float32 in the model's
            range to the output dtype (e.g. ``Normalizer.denormalize``); None casts.
        nodata: value written where no valid pixel contributed; None writes 0 there and
            relies on the dataset mask (``write_mask``).
        write_mask: also write the dataset mask (255 valid, 0 invalid), e.g. when the
            output has no nodata value.
        block_rows: rows of one output block; None reads it from ``dst``.
        width, height, count, dtype: the output's size and dtype when ``dst`` is not a
            rasterio dataset.
    """

    def __init__(
        self,
        dst: Any,
        *,
        tile: int,
        overlap: int,
        blend: str = "hann",
        denormalize: Callable[[np.ndarray], np.ndarray] | None = None,
        nodata: float | None = None,
        write_mask: bool = False,
        block_rows: int | None = None,
        width: int | None = None,
        height: int | None = None,
        count: int | None = None,
        dtype: str | None = None,
    ) -> None:
        if blend not in BLENDS:
            raise ConfigError(f"unknown blend {blend!r}; use one of {', '.join(sorted(BLENDS))}")
        if tile < 1 or overlap < 0:
            raise TileSpecError(f"tile must be >= 1 and overlap >= 0; got {tile} and {overlap}")
        self.dst = dst
        self.width = int(width if width is not None else dst.width)
        self.height = int(height if height is not None else dst.height)
        self.count = int(count if count is not None else dst.count)
        self.dtype = np.dtype(dtype if dtype is not None else dst.dtypes[0])
        if block_rows is None:
            block_rows = dst.block_shapes[0][0] if hasattr(dst, "block_shapes") else 256
        self.block_rows = max(1, min(int(block_rows), self.height))
        self.tile = int(tile)
        self.overlap = int(overlap)
        self.blend = blend
        self.nodata = nodata
        self.write_mask = bool(write_mask)
        self._denormalize = denormalize or (lambda a: a.astype(self.dtype))
        # float32 accumulators for the rows [self._top, self._top + tile)
        self._sum = np.zeros((self.count, self.tile, self.width), np.float32)
        self._weight = np.zeros((self.tile, self.width), np.float32)
        self._top = 0
        # finished rows in the output dtype, from row self._written, until a block row is full
        stage_rows = self.block_rows + self.tile
        self._stage = np.zeros((self.count, stage_rows, self.width), self.dtype)
        self._stage_valid = np.zeros((stage_rows, self.width), bool)
        self._staged = 0
        self._written = 0
        self._tiles = 0
        self._tile_pixels = 0
        self._last = (-1, -1)
        self._weights_cache: dict[tuple[int, int, bool, bool, bool, bool], np.ndarray] = {}
        self._closed = False

    # -- introspection ---------------------------------------------------------------
    @property
    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the in-memory buffers (none depends on the scene's height)."""
        return {
            "sum": self._sum.shape,
            "weight": self._weight.shape,
            "stage": self._stage.shape,
            "stage_valid": self._stage_valid.shape,
        }

    @property
    def buffer_nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(a.nbytes for a in (self._sum, self._weight, self._stage, self._stage_valid))

    @property
    def stats(self) -> MosaicStats:
        """Counts of tiles and pixels so far."""
        return MosaicStats(self._tiles, self._tile_pixels, self.width * self.height, self._written)

    # -- adding tiles ----------------------------------------------------------------
    def _weights(self, window: Window) -> np.ndarray:
        key = (int(window.height), int(window.width), *_borders(window, self.width, self.height))
        weights = self._weights_cache.get(key)
        if weights is None:
            weights = window_weights(window, self.width, self.height, self.blend, self.overlap)
            self._weights_cache[key] = weights
        return weights

    def add(self, window: Window, tile: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Blend one translated tile into the mosaic.

        Args:
            window: where the tile lies in the scene (pixels; may extend past the border,
                the part outside is dropped).
            tile: ``(bands, window.height, window.width)`` values in the model's range.
            valid: ``(window.height, window.width)`` bool, False where the input was
                invalid (those pixels get no weight); None: all valid.

        Raises:
            TileSpecError: for a tile out of row-major order, taller than ``tile`` rows, or
                whose shape does not match its window.
        """
        if self._closed:
            raise TileSpecError("this MosaicWriter is closed; make a new one")
        row, col = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        if tile.shape != (self.count, h, w):
            raise TileSpecError(
                f"tile of shape {tile.shape} does not match its window {h}x{w} with "
                f"{self.count} band(s)"
            )
        if h > self.tile:
            raise TileSpecError(f"tile of {h} rows is taller than the writer's {self.tile} rows")
        if (row, col) < self._last:
            raise TileSpecError(
                f"tile at row {row}, col {col} came after row {self._last[0]}, col "
                f"{self._last[1]}; add tiles in row-major order"
            )
        self._last = (row, col)
        self._tiles += 1
        self._tile_pixels += h * w
        if row > self._top:
            self._advance(row)
        weights = self._weights(window)
        if valid is not None:
            weights = weights * valid
        # clip to the scene (pad-edge tiles reach past it)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, self.height), min(col + w, self.width)
        if r1 <= r0 or c1 <= c0:
            return
        tr, tc = slice(r0 - row, r1 - row), slice(c0 - col, c1 - col)
        br, bc = slice(r0 - self._top, r1 - self._top), slice(c0, c1)
        wt = weights[tr, tc]
        self._sum[:, br, bc] += tile[:, tr, tc].astype(np.float32, copy=False) * wt
        self._weight[br, bc] += wt

    def _advance(self, row: int) -> None:
        """Finish rows [self._top, row): no later tile can reach them."""
        row = min(row, self.height)
        while self._top < row:
            n = min(row - self._top, self.tile)
            self._finish(n)
            # shift the accumulators up by n rows
            keep = self.tile - n
            self._sum[:, :keep] = self._sum[:, n:]
            self._sum[:, keep:] = 0
            self._weight[:keep] = self._weight[n:]
            self._weight[keep:] = 0
            self._top += n

    def _finish(self, n: int) -> None:
        """Normalise the first ``n`` buffer rows, convert them and stage them (in chunks of
        :data:`FINISH_ROWS` rows, so temporaries stay small)."""
        n = min(n, self.height - self._top)
        for start in range(0, max(n, 0), FINISH_ROWS):
            rows = slice(start, min(start + FINISH_ROWS, n))
            weight = self._weight[rows]
            valid = weight > 0
            # in place: these buffer rows are dropped right after
            values = np.divide(self._sum[:, rows], weight, out=self._sum[:, rows], where=valid)
            out = np.asarray(self._denormalize(values), dtype=self.dtype)
            if self.nodata is not None:
                nodata = np.asarray(self.nodata).astype(self.dtype)
                out = _avoid_value(out, nodata, valid)
                out[:, ~valid] = nodata
            else:
                out[:, ~valid] = 0
            s, m = self._staged, out.shape[1]
            self._stage[:, s : s + m] = out
            self._stage_valid[s : s + m] = valid
            self._staged += m
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write whole block rows of staged output (all staged rows when ``final``)."""
        n = self._staged if final else (self._staged // self.block_rows) * self.block_rows
        if n <= 0:
            return
        for start in range(0, n, self.block_rows):  # one block row at a time: small copies
            stop = min(start + self.block_rows, n)
            window = Window(0, self._written + start, self.width, stop - start)
            self.dst.write(self._stage[:, start:stop], window=window)
            if self.write_mask:
                mask = self._stage_valid[start:stop].astype(np.uint8) * 255
                self.dst.write_mask(mask, window=window)
        rest = self._staged - n
        self._stage[:, :rest] = self._stage[:, n : self._staged]
        self._stage_valid[:rest] = self._stage_valid[n : self._staged]
        self._staged = rest
        self._written += n

    def close(self) -> MosaicStats:
        """Finish and write every remaining row; returns the writer's :attr:`stats`."""
        if not self._closed:
            self._advance(self.height)
            self._flush(final=True)
            self._closed = True
        return self.stats

    def __enter__(self) -> MosaicWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()


def _avoid_value(out: np.ndarray, value: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Move valid pixels off the nodata value (by one step) so they are not read as nodata."""
    if np.issubdtype(out.dtype, np.floating) and np.isnan(value):
        hit = np.isnan(out) & valid
        step = np.zeros((), out.dtype)
    else:
        hit = (out == value) & valid
        if np.issubdtype(out.dtype, np.floating):
            step = np.nextafter(value, np.inf).astype(out.dtype)
        else:
            step = np.asarray(value + 1 if value < np.iinfo(out.dtype).max else value - 1)
    if hit.any():
        out = np.where(hit, step.astype(out.dtype), out)
    return out


# --------------------------------------------------------------------------- tile grid


def _axis_tiles(
    length: int, tile: int, overlap: int, multiple: int, min_size: int
) -> tuple[int, list[int]]:
    """Tile size and offsets along one axis: as few tiles of at most ``tile`` px as cover
    ``length`` px with at least ``overlap`` px between neighbours, shrunk to share the
    slack evenly (sizes rounded up to ``multiple``)."""
    if length <= tile:
        size = max(-(-length // multiple) * multiple, -(-min_size // multiple) * multiple)
        return size, [0]
    n = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (n - 1) * overlap) // n)
    size = min(-(-size // multiple) * multiple, tile)
    slack = length - size
    return size, [i * slack // (n - 1) for i in range(n)]


def balanced_windows(
    width: int,
    height: int,
    tile: int,
    overlap: int,
    *,
    multiple: int = 1,
    min_size: int = 1,
) -> list[Window]:
    """Tile windows covering a scene in row-major order, with the least overlap waste.

    Unlike a fixed-stride grid whose last tile is shifted back (and may overlap its
    neighbour almost entirely), the tiles here are as few as a ``tile`` px grid with
    ``overlap`` px would need, then shrunk so that the scene is shared evenly: each is at
    most ``tile`` px, neighbours overlap by at least ``overlap`` px, and generator pixels
    per scene pixel fall to about ``(1 + overlap / (tile - overlap))**2`` at any scene size.
    A scene side shorter than one tile gets a single tile rounded up to ``multiple`` (at
    least ``min_size``); that window reaches past the scene (read it boundless).

    Args:
        width, height: scene size, pixels.
        tile: largest tile side, pixels (a multiple of ``multiple``).
        overlap: least overlap between neighbouring tiles, pixels (``0 <= overlap < tile``).
        multiple: tile sides are multiples of this (the model's size multiple).
        min_size: smallest tile side the model accepts.

    Returns:
        Windows of one common size, row-major (top to bottom, left to right).

    Raises:
        TileSpecError: for a tile that is not a multiple of ``multiple`` or under
            ``min_size``, or an overlap outside ``0 <= overlap < tile``.
    """
    if width < 1 or height < 1:
        raise TileSpecError(f"scene size {width} x {height} px is empty")
    if tile % multiple or tile < min_size:
        raise TileSpecError(
            f"tile size {tile} px does not suit the model: it needs a multiple of {multiple} "
            f"px of at least {min_size} px; use e.g. tile={max(min_size, tile // multiple * multiple, multiple)}"
        )
    if not 0 <= overlap < tile:
        raise TileSpecError(
            f"overlap {overlap} px must be at least 0 and smaller than the tile size {tile} px"
        )
    th, rows = _axis_tiles(height, tile, overlap, multiple, min_size)
    tw, cols = _axis_tiles(width, tile, overlap, multiple, min_size)
    return [Window(c, r, tw, th) for r in rows for c in cols]


__all__ = [
    "BLENDS",
    "MosaicStats",
    "MosaicWriter",
    "balanced_windows",
    "blend_weights",
    "window_weights",
]
