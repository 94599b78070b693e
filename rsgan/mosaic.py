"""Blend windows and a streaming mosaicking writer for tiled translation.

Translated tiles overlap; where they do, the output is their weighted mean, normalised by
the accumulated weight (never by a constant). The weight windows are *edge-aware*: a tile
ramps its weight down only on the sides where a neighbouring tile takes over, and keeps
full weight on the sides that lie on the scene border, so the outermost rows and columns
of a scene are never left without weight. Every weight is strictly positive, so a pixel
covered by one tile only keeps that tile's value.

:class:`MosaicWriter` takes the tiles of a known grid in row-major order. It keeps as
float32 sums only the parts of each tile that later tiles still add to (the rows shared with
the next tile row, across the scene's width, and the columns shared with the next tile);
everything else is final at once and is staged in the output dtype until a whole row of
output blocks is complete, then written. Its memory depends on the scene's width, never on
its height.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from rsgan.errors import ConfigError, TileSpecError

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


def owned_boxes(
    windows: Sequence[Window], width: int, height: int, multiple: int = 1
) -> list[tuple[int, int, int, int]]:
    """The part of the scene each tile of a grid owns: every scene pixel in exactly one.

    Neighbouring tiles split their overlap in the middle (rounded to ``multiple``, so the
    split is exact at every resolution of a model that downsamples by ``multiple``); tiles
    on the scene border own up to the border, and no box reaches past the scene.

    Args:
        windows: a grid of equal windows, as :func:`balanced_windows` returns.
        width, height: scene size, pixels.
        multiple: round the splits to multiples of this.

    Returns:
        ``(top, left, bottom, right)`` per window, in the window's own pixels.
    """
    rows = sorted({int(w.row_off) for w in windows})
    cols = sorted({int(w.col_off) for w in windows})

    def splits(offsets: list[int], size: int, length: int) -> dict[int, tuple[int, int]]:
        cuts = [0]
        for a, b in zip(offsets, offsets[1:], strict=False):
            mid = (b + a + size) / 2  # the middle of the overlap [b, a + size)
            cuts.append(min(max(int(round(mid / multiple)) * multiple, b), a + size))
        cuts.append(length)
        return {o: (cuts[i] - o, min(cuts[i + 1], length) - o) for i, o in enumerate(offsets)}

    if not windows:
        return []
    th, tw = int(windows[0].height), int(windows[0].width)
    by_row, by_col = splits(rows, th, height), splits(cols, tw, width)
    boxes = []
    for w in windows:
        top, bottom = by_row[int(w.row_off)]
        left, right = by_col[int(w.col_off)]
        boxes.append((max(top, 0), max(left, 0), min(bottom, th), min(right, tw)))
    return boxes


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


def _grid_offsets(offsets: list[int], size: int, length: int, axis: str) -> list[int]:
    """Sorted distinct offsets of a grid axis, checked: no gap, scene covered, and each
    pixel shared by at most two neighbouring tiles."""
    grid = sorted(set(offsets))
    if grid[0] > 0 or grid[-1] + size < length:
        raise TileSpecError(
            f"the tile {axis}s ({size} px from offsets {grid[0]}..{grid[-1]}) do not cover the "
            f"scene's {length} px; use rsgan.mosaic.balanced_windows"
        )
    for a, b in zip(grid, grid[1:], strict=False):
        if b > a + size:
            raise TileSpecError(f"tile {axis}s at {a} and {b} leave a gap; tiles must overlap")
    for a, c in zip(grid, grid[2:], strict=False):
        if c < a + size:
            raise TileSpecError(
                f"tile {axis}s at {a} and {c} overlap although a tile lies between them; "
                "use an overlap under half the tile"
            )
    return grid


class MosaicWriter:
    """Blend translated tiles into an open raster, streaming.

    The writer is given the tile grid (as :func:`balanced_windows` or
    :func:`rsgan.tiling.tile_windows` yield it: tiles of one size, row-major). Each tile is
    weighted by its blend window; the parts it shares with tiles still to come are kept
    as float32 sums (a few overlap rows the width of the scene, and the overlap columns
    with the next tile); the rest is final: it is normalised by its accumulated weight,
    converted to the output dtype and staged until a whole row of output blocks is
    complete, then written. Memory is about ``(bands + 1) x overlap x width`` floats plus
    ``bands x (block rows + tile) x width`` output values (and as many valid flags when
    a mask is written): it does not depend on the
    scene's height, and the float part not on the tile size.

    Args:
        dst: the output, a rasterio dataset opened for writing (``width``, ``height``,
            ``count``, ``dtypes`` and ``block_shapes`` are read from it), or any object
            with ``write(arr, window=...)`` (and ``write_mask``) when ``width``,
            ``height``, ``count`` and ``dtype`` are all given.
        windows: the tile windows, all of one size, covering the scene; tiles are added
            in row-major order of these.
        overlap: pixels over which tile weights ramp where tiles meet.
        blend: a key of :data:`BLENDS`.
        denormalize: maps blended values ``(bands, rows, cols)`` float32 in the model's
            range to the output dtype (e.g. ``Normalizer.denormalize``); None casts. It
            may work in place on its argument.
        nodata: value written where no valid pixel contributed; None writes 0 there and
            relies on the dataset mask (``write_mask``).
        write_mask: also write the dataset mask (255 valid, 0 invalid), e.g. when the
            output has no nodata value.
        block_rows: rows of one output block; None reads it from ``dst``.
        width, height, count, dtype: the output's size and dtype when ``dst`` is not a
            rasterio dataset.

    Raises:
        TileSpecError: windows of different sizes, with gaps, or not covering the scene.
    """

    def __init__(
        self,
        dst: Any,
        windows: list[Window],
        *,
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
        if overlap < 0 or not windows:
            raise TileSpecError(
                f"need tile windows and overlap >= 0; got {len(windows)}, {overlap}"
            )
        self.dst = dst
        self.width = int(width if width is not None else dst.width)
        self.height = int(height if height is not None else dst.height)
        self.count = int(count if count is not None else dst.count)
        self.dtype = np.dtype(dtype if dtype is not None else dst.dtypes[0])
        if block_rows is None:
            block_rows = dst.block_shapes[0][0] if hasattr(dst, "block_shapes") else 256
        self.block_rows = max(1, min(int(block_rows), self.height))
        sizes = {(int(w.height), int(w.width)) for w in windows}
        if len(sizes) != 1:
            raise TileSpecError(f"tile windows have several sizes {sorted(sizes)}; use one size")
        self.tile_h, self.tile_w = sizes.pop()
        self.rows = _grid_offsets(
            [int(w.row_off) for w in windows], self.tile_h, self.height, "row"
        )
        self.cols = _grid_offsets(
            [int(w.col_off) for w in windows], self.tile_w, self.width, "column"
        )
        self.overlap = int(overlap)
        self.blend = blend
        self.nodata = nodata
        self.write_mask = bool(write_mask)
        self._denormalize = denormalize or (lambda a: a.astype(self.dtype))
        # rows shared by consecutive tile rows; columns shared by consecutive tiles
        carry_h = max(
            [a + self.tile_h - b for a, b in zip(self.rows, self.rows[1:], strict=False)] + [0]
        )
        carry_w = max(
            [a + self.tile_w - b for a, b in zip(self.cols, self.cols[1:], strict=False)] + [0]
        )
        planes = self.count + 1  # weighted sums of each band, and the weight
        # one buffer for the rows shared with the tile row above and those shared with the
        # next: a tile reads its columns' sums from it before it writes the next tile row's
        # (columns the tiles after it no longer read; every column is written again before
        # the next tile row reads it)
        self._carry = np.zeros((planes, carry_h, self.width), np.float32)
        self._col_carry = np.zeros((planes, self.tile_h, carry_w), np.float32)
        self._acc = np.empty((planes, self.tile_h, self.tile_w), np.float32)
        self._scratch = np.empty(self.count * self.tile_h * self.tile_w, np.float32)
        # finished rows in the output dtype, from row self._written, until a block row is full
        stage_rows = self.block_rows + self.tile_h
        self._stage = np.zeros((self.count, stage_rows, self.width), self.dtype)
        # which staged pixels are valid, for the mask (invalid pixels are otherwise
        # written as nodata in the stage itself)
        self._stage_valid = np.zeros((stage_rows if self.write_mask else 0, self.width), bool)
        self._staged = 0
        self._written = 0
        self._k = 0  # index of the current tile row
        self._j = 0  # index of the next tile in it
        self._tiles = 0
        self._tile_pixels = 0
        self._weights_cache: dict[
            tuple[int, int, bool, bool, bool, bool],
            tuple[np.ndarray, tuple[int, int, int, int]],
        ] = {}
        self._closed = False

    # -- introspection ---------------------------------------------------------------
    @property
    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the in-memory buffers (none depends on the scene's height)."""
        return {
            "carry": self._carry.shape,
            "col_carry": self._col_carry.shape,
            "acc": self._acc.shape,
            "scratch": self._scratch.shape,
            "stage": self._stage.shape,
            "stage_valid": self._stage_valid.shape,
        }

    @property
    def buffer_nbytes(self) -> int:
        """Bytes held by the buffers."""
        arrays = (
            self._carry,
            self._col_carry,
            self._acc,
            self._scratch,
            self._stage,
            self._stage_valid,
        )
        return sum(a.nbytes for a in arrays)

    @property
    def stats(self) -> MosaicStats:
        """Counts of tiles and pixels so far."""
        return MosaicStats(self._tiles, self._tile_pixels, self.width * self.height, self._written)

    # -- adding tiles ---------------------------------------------------------------
    def _weights(self, window: Window) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The tile's blend weights, and the box ``(top, left, bottom, right)`` where
        they are exactly 1 (between the ramps)."""
        key = (int(window.height), int(window.width), *_borders(window, self.width, self.height))
        cached = self._weights_cache.get(key)
        if cached is None:
            weights = window_weights(window, self.width, self.height, self.blend, self.overlap)
            rows, cols = weights.max(1) == 1, weights.max(0) == 1
            # the profiles are 1 on one middle stretch (outer products of ramps < 1 are < 1)
            top, left = int(rows.argmax()), int(cols.argmax())
            bottom = len(rows) - int(rows[::-1].argmax()) if rows.any() else top
            right = len(cols) - int(cols[::-1].argmax()) if cols.any() else left
            cached = weights, (top, left, bottom, right)
            self._weights_cache[key] = cached
        return cached

    def add(self, window: Window, tile: np.ndarray | None, valid: np.ndarray | None = None) -> None:
        """Blend the next tile (row-major order of the writer's windows) into the mosaic.

        Args:
            window: where the tile lies in the scene (pixels; may extend past the border,
                the part outside is dropped).
            tile: ``(bands, window.height, window.width)`` values in the model's range
                (read, never modified), or None for a tile without a valid pixel (the
                same as any values with ``valid`` all False; ``valid`` is then ignored).
            valid: ``(window.height, window.width)`` bool, False where the input was
                invalid (those pixels get no weight); None: all valid.

        Raises:
            TileSpecError: for a tile out of row-major order or of the wrong shape.
        """
        if self._closed:
            raise TileSpecError("this MosaicWriter is closed; make a new one")
        th, tw = self.tile_h, self.tile_w
        if self._k >= len(self.rows):
            raise TileSpecError("all tiles of the grid were already added")
        r0, c0 = self.rows[self._k], self.cols[self._j]
        row, col = int(window.row_off), int(window.col_off)
        if (row, col) != (r0, c0):
            raise TileSpecError(
                f"tile at row {row}, col {col} came where the tile at row {r0}, col {c0} was "
                "expected; add tiles in row-major order"
            )
        shape = (self.count, th, tw) if tile is None else tile.shape
        if shape != (self.count, th, tw) or (int(window.height), int(window.width)) != (th, tw):
            raise TileSpecError(
                f"tile of shape {shape} does not match its window {th}x{tw} with "
                f"{self.count} band(s)"
            )
        self._tiles += 1
        self._tile_pixels += th * tw
        weights, ones = self._weights(window)
        last_col = self._j + 1 == len(self.cols)
        last_row = self._k + 1 == len(self.rows)
        # what earlier tiles left on this one: the columns shared with the tile to the
        # left (all rows), the rows shared with the tile row above
        taken = self.cols[self._j - 1] + tw - c0 if self._j > 0 else 0
        above = self.rows[self._k - 1] + th - r0 if self._k > 0 else 0
        # what later tiles still add to: the next tile's columns, the next tile row's rows
        col_end = tw if last_col else self.cols[self._j + 1] - c0
        row_end = th if last_row else self.rows[self._k + 1] - r0
        final_rows = min(row_end, self.height - r0)
        final_cols = min(col_end, self.width - c0)
        # the interior: full weight, no other tile, final; it goes from the tile to the
        # output as it is (no weighting, no division), the rest is blended as sums
        acc = self._acc
        if tile is None:  # nothing of it counts: no sums, no weight
            inner = (0, 0, 0, 0)
            acc.fill(0.0)
        elif valid is None or valid.all():
            inner = (
                max(ones[0], above),
                max(ones[1], taken),
                min(ones[2], final_rows),
                min(ones[3], final_cols),
            )
            if inner[0] >= inner[2] or inner[1] >= inner[3]:
                inner = (0, 0, 0, 0)
        else:
            weights = weights * valid
            inner = (0, 0, 0, 0)
        if tile is not None:
            for box in _around(inner, th, tw):
                part = (slice(None), slice(box[0], box[2]), slice(box[1], box[3]))
                np.multiply(tile[part], weights[part[1:]], out=acc[: self.count][part])
                acc[self.count][part[1:]] = weights[part[1:]]
        if taken > 0:
            acc[:, :, :taken] += self._col_carry[:, :, :taken]
        if above > 0:
            stop = min(tw, self.width - c0)
            if stop > taken:
                acc[:, :above, taken:stop] += self._carry[:, :above, c0 + taken : c0 + stop]
        if not last_col:
            self._col_carry[:, :, : tw - col_end] = acc[:, :, col_end:]
        if not last_row:
            stop = min(col_end, self.width - c0)
            self._carry[:, : th - row_end, c0 : c0 + stop] = acc[:, row_end:, :stop]
        if final_rows > 0 and final_cols > 0:
            # valid unless a part finds pixels without weight
            final = (0, 0, final_rows, final_cols)
            if self.write_mask:
                self._stage_valid[self._rows_of(final), c0 : c0 + final_cols] = True
            for box in _around(inner, final_rows, final_cols):
                self._finish(acc, box, c0)
            if inner[2] > inner[0] and tile is not None:
                self._finish(tile, inner, c0, weighted=False)
        self._j += 1
        if last_col:
            self._end_row(row_end)

    def _rows_of(self, box: tuple[int, int, int, int]) -> slice:
        """The stage rows of the tile rows ``box[0]:box[2]``."""
        return slice(self._staged + box[0], self._staged + box[2])

    def _finish(
        self, acc: np.ndarray, box: tuple[int, int, int, int], c0: int, weighted: bool = True
    ) -> None:
        """Normalise the final part ``box`` (top, left, bottom, right) of a tile into the
        stage: from the weighted sums ``acc`` (``weighted``; the last plane is the weight)
        or from the tile itself."""
        top, left, bottom, right = box
        rows, cols = bottom - top, right - left
        # the quotient goes to a contiguous buffer: numpy's loops over a strided 3-D view
        # of the tile run ~3x slower than over contiguous rows, and denormalising takes
        # several passes
        values = self._scratch[: self.count * rows * cols].reshape(self.count, rows, cols)
        sums = acc[: self.count, top:bottom, left:right]
        valid = None
        if weighted:
            weight = acc[self.count, top:bottom, left:right]
            valid = weight > 0
            if valid.all():  # the common case: skip the masked passes
                valid = None
                np.divide(sums, weight, out=values)
            else:
                np.divide(sums, np.where(valid, weight, 1.0), out=values)
        else:
            np.copyto(values, sums)
        out = np.asarray(self._denormalize(values), dtype=self.dtype)
        if self.nodata is not None:
            nodata = np.asarray(self.nodata).astype(self.dtype)
            out = _avoid_value(out, nodata, True if valid is None else valid)
            if valid is not None:
                out[:, ~valid] = nodata
        elif valid is not None:
            out[:, ~valid] = 0
        stage_rows = self._rows_of(box)
        self._stage[:, stage_rows, c0 + left : c0 + right] = out
        if valid is not None and self.write_mask:
            self._stage_valid[stage_rows, c0 + left : c0 + right] = valid

    def _end_row(self, rows: int) -> None:
        """The current tile row is complete: its final rows are staged; move on."""
        self._staged += max(0, min(rows, self.height - self.rows[self._k]))
        self._k += 1
        self._j = 0
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
        if self.write_mask:
            self._stage_valid[:rest] = self._stage_valid[n : self._staged]
        self._staged = rest
        self._written += n

    def close(self) -> MosaicStats:
        """Write every remaining row; returns the writer's :attr:`stats`.

        Raises:
            TileSpecError: if not every tile of the grid was added.
        """
        if not self._closed:
            if self._k < len(self.rows):
                raise TileSpecError(
                    f"{self._tiles} of {len(self.rows) * len(self.cols)} tiles were added; "
                    "add them all before closing"
                )
            self._flush(final=True)
            self._closed = True
        return self.stats

    def __enter__(self) -> MosaicWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()


def _around(
    inner: tuple[int, int, int, int], rows: int, cols: int
) -> list[tuple[int, int, int, int]]:
    """Boxes ``(top, left, bottom, right)`` covering ``rows`` x ``cols`` but ``inner``
    (the whole of it for an empty ``inner``): the rows above and below it, then the
    columns beside it."""
    top, left, bottom, right = inner
    if top >= bottom or left >= right:
        return [(0, 0, rows, cols)]
    boxes = [
        (0, 0, top, cols),
        (bottom, 0, rows, cols),
        (top, 0, bottom, left),
        (top, right, bottom, cols),
    ]
    return [b for b in boxes if b[0] < b[2] and b[1] < b[3]]


def _avoid_value(out: np.ndarray, value: np.ndarray, valid: np.ndarray | bool) -> np.ndarray:
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
    slack evenly. Sizes and offsets are multiples of ``multiple``: a model that downsamples
    by ``multiple`` then sees every tile on the same sampling phase as the whole scene (an
    offset off that grid shifts its strided convolutions and changes the output by several
    DN). The last tile may reach past the end by less than ``multiple`` px."""
    if length <= tile:
        size = max(-(-length // multiple) * multiple, -(-min_size // multiple) * multiple)
        return size, [0]
    n = -(-(length - overlap) // (tile - overlap))
    while True:
        if n > length // multiple + 2:  # more tiles than offsets on the grid: no grid
            raise _NoGrid
        # each count of tiles starts from its own even share (kept at the largest size
        # when a tile was added, n + 1 tiles of the full size stepped by less than half
        # of it: with overlap 97 at tile 768 a 1437 px scene was refused as three tiles
        # sharing pixels, where three tiles of 548 px share none)
        size = -(-(length + (n - 1) * overlap) // n)
        size = min(-(-size // multiple) * multiple, tile)
        while True:
            last = -(-(length - size) // multiple) * multiple
            offsets = [round(i * last / (n - 1) / multiple) * multiple for i in range(n)]
            steps = zip(offsets, offsets[1:], strict=False)
            if min(size - (b - a) for a, b in steps) >= overlap:
                return size, offsets
            if size + multiple > tile:
                break
            size += multiple
        n += 1


class _NoGrid(Exception):
    """Internal: no grid of ``multiple``-aligned tiles keeps the overlap asked for (its
    neighbours would have to step by less than ``multiple`` px)."""


def _three_share(size: int, offsets: Sequence[int]) -> bool:
    """Whether three consecutive tiles of one axis share a pixel."""
    return any(c < a + size for a, c in zip(offsets, offsets[2:], strict=False))


def _working_overlap(
    width: int, height: int, tile: int, multiple: int, min_size: int, most: int
) -> int:
    """The largest overlap up to ``most`` px with which the balanced grid of this scene
    has no pixel in three tiles (about four tenths of the tile; a third always works for
    tiles of 8 multiples and more; the grid's rounding to ``multiple`` makes the exact
    bound depend on the scene's size)."""
    for overlap in range(min(most, tile - 1), 0, -1):
        try:
            axes = [_axis_tiles(n, tile, overlap, multiple, min_size) for n in (height, width)]
        except _NoGrid:
            continue
        if not any(_three_share(size, offsets) for size, offsets in axes):
            return overlap
    return 0


def _overlap_hint(
    width: int, height: int, tile: int, multiple: int, min_size: int, most: int | None = None
) -> str:
    """``overlap=N (--overlap N)`` for an overlap that works with ``tile`` on this scene."""
    limit = tile // 3 if most is None else most
    ok = _working_overlap(width, height, tile, multiple, min_size, limit)
    return f"overlap={ok} (--overlap {ok})"


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
            ``min_size``, an overlap outside ``0 <= overlap < tile``, or an overlap so
            large that three tiles would share pixels (about four tenths of the tile;
            up to a third always works for tiles of 8 ``multiple`` and more; the error
            names the largest overlap that works on this scene).
    """
    if width < 1 or height < 1:
        raise TileSpecError(f"scene size {width} x {height} px is empty")
    if tile % multiple or tile < min_size:
        smallest = -(-min_size // multiple) * multiple
        fit = max(smallest, tile // multiple * multiple, multiple)
        hint = _overlap_hint(width, height, fit, multiple, min_size, most=overlap)
        also = "" if hint == f"overlap={overlap} (--overlap {overlap})" else f" with {hint}"
        raise TileSpecError(
            f"tile size {tile} px does not suit the model: it needs a multiple of {multiple} "
            f"px of at least {min_size} px; use e.g. tile={fit} (--tile {fit}){also}"
        )
    if not 0 <= overlap < tile:
        raise TileSpecError(
            f"overlap {overlap} px must be at least 0 and smaller than the tile size {tile} px; "
            f"use e.g. {_overlap_hint(width, height, tile, multiple, min_size)}"
        )
    try:
        th, rows = _axis_tiles(height, tile, overlap, multiple, min_size)
        tw, cols = _axis_tiles(width, tile, overlap, multiple, min_size)
    except _NoGrid:  # an overlap within `multiple` of the tile: it looped forever before
        th, rows = tw, cols = tile, [0, 0, 0]
    if _three_share(th, rows) or _three_share(tw, cols):
        hint = _overlap_hint(width, height, tile, multiple, min_size, most=overlap - 1)
        raise TileSpecError(
            f"overlap {overlap} px is too large for tile {tile} px on this "
            f"{width} x {height} px scene: three tiles would overlap; use at most {hint} "
            "or a larger tile"
        )
    return [Window(c, r, tw, th) for r in rows for c in cols]


__all__ = [
    "BLENDS",
    "MosaicStats",
    "MosaicWriter",
    "balanced_windows",
    "blend_weights",
    "owned_boxes",
    "window_weights",
]
