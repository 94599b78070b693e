"""Blend windows, the balanced tile grid and the streaming MosaicWriter (no model, no GDAL)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from rsgan.errors import ConfigError, TileSpecError
from rsgan.mosaic import (
    BLENDS,
    MosaicWriter,
    balanced_windows,
    blend_weights,
    owned_boxes,
    window_weights,
)


class ArraySink:
    """Stands in for a rasterio dataset: records every write into an array."""

    def __init__(self, count: int, height: int, width: int, dtype: str = "float32") -> None:
        self.array = np.full((count, height, width), 7, dtype)
        self.mask = np.full((height, width), 7, np.uint8)
        self.windows: list[Window] = []

    def write(self, arr: np.ndarray, window: Window) -> None:
        r, c = int(window.row_off), int(window.col_off)
        self.array[:, r : r + int(window.height), c : c + int(window.width)] = arr
        self.windows.append(window)

    def write_mask(self, arr: np.ndarray, window: Window) -> None:
        r = int(window.row_off)
        self.mask[r : r + int(window.height)] = arr


def _mosaic(image, windows, *, overlap, blend="hann", block_rows=16, valid=None, **kw):
    count, height, width = image.shape
    sink = ArraySink(count, height, width, kw.pop("dtype", "float32"))
    writer = MosaicWriter(
        sink,
        windows,
        overlap=overlap,
        blend=blend,
        block_rows=block_rows,
        width=width,
        height=height,
        count=count,
        dtype=str(sink.array.dtype),
        **kw,
    )
    for w in windows:
        r, c, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
        tile_arr = np.zeros((count, h, wd), np.float32)
        part = image[:, r : r + h, c : c + wd]
        tile_arr[:, : part.shape[1], : part.shape[2]] = part
        tile_valid = None
        if valid is not None:
            tile_valid = np.zeros((h, wd), bool)
            vpart = valid[r : r + h, c : c + wd]
            tile_valid[: vpart.shape[0], : vpart.shape[1]] = vpart
        writer.add(w, tile_arr, tile_valid)
    stats = writer.close()
    return sink, writer, stats


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("blend", sorted(BLENDS))
def test_weights_positive_and_full_on_scene_borders(blend):
    w = blend_weights(blend, 40, 30, overlap=8, at_top=True, at_left=True)
    assert w.shape == (40, 30) and w.dtype == np.float32
    assert (w > 0).all() and (w <= 1).all()
    # a side on the scene border keeps full weight up to the inner ramps
    assert np.allclose(w[0, :22], 1.0)
    assert np.allclose(w[:32, 0], 1.0)
    if blend != "none":
        assert w[-1, -1] < 0.05  # inner corner ramps down (but not to zero)


def test_hann_ramps_of_neighbours_sum_to_one():
    left = blend_weights("hann", 1, 32, overlap=8, at_left=True)[0]
    right = blend_weights("hann", 1, 32, overlap=8, at_right=True)[0]
    shared = left[-8:] + right[:8]
    np.testing.assert_allclose(shared, 1.0, atol=1e-6)


def test_unknown_blend_and_negative_overlap():
    with pytest.raises(ConfigError, match="hann"):
        blend_weights("cosine", 8, 8, overlap=2)
    with pytest.raises(TileSpecError):
        blend_weights("hann", 8, 8, overlap=-1)


# --------------------------------------------------------------------------- grid


@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 3000),
    tile=st.sampled_from([64, 128, 256, 768]),
    overlap=st.sampled_from([0, 16, 32, 64]),
)
def test_balanced_windows_cover_the_scene_with_enough_overlap(width, height, tile, overlap):
    if overlap >= tile:
        overlap = 0
    try:
        windows = balanced_windows(width, height, tile, overlap, multiple=4, min_size=8)
    except TileSpecError:
        assert 3 * overlap + 18 > tile  # only overlaps above a third of the tile may fail
        return
    th, tw = int(windows[0].height), int(windows[0].width)
    assert th % 4 == 0 and tw % 4 == 0 and th >= 8 and tw >= 8
    assert all((int(w.height), int(w.width)) == (th, tw) for w in windows)
    rows = sorted({int(w.row_off) for w in windows})
    cols = sorted({int(w.col_off) for w in windows})
    assert rows[0] == 0 and cols[0] == 0
    assert rows[-1] + th >= height and cols[-1] + tw >= width
    if len(rows) > 1:
        assert th <= tile
        assert min(a + th - b for a, b in zip(rows, rows[1:], strict=False)) >= overlap
    if len(cols) > 1:
        assert min(a + tw - b for a, b in zip(cols, cols[1:], strict=False)) >= overlap
    # row-major order
    keys = [(int(w.row_off), int(w.col_off)) for w in windows]
    assert keys == sorted(keys)


@settings(max_examples=400, deadline=None)
@given(
    length=st.integers(1, 6000),
    tile=st.integers(64, 1024),
    share=st.floats(0, 1 / 3),
    multiple=st.sampled_from([1, 2, 4, 8]),
)
@example(length=1437, tile=768, share=97.5 / 768, multiple=4)  # refused before
def test_overlaps_up_to_a_third_of_the_tile_always_work(length, tile, share, multiple):
    """Any overlap up to a third of the tile (of 8 size multiples or more) gives a grid
    on any scene size, with no pixel in three tiles. Overlaps off the model's size multiple were refused on some
    sizes: a tile added to a full-size row kept the full size, and the row's n + 1 tiles
    then stepped by less than half a tile (overlap 97 at tile 768, multiple 4: scenes of
    1437-1439 px)."""
    tile = tile // multiple * multiple
    overlap = int(share * tile)
    windows = balanced_windows(length, 1, tile, overlap, multiple=multiple)
    size = int(windows[0].width)
    offsets = [int(w.col_off) for w in windows]
    assert size <= max(tile, -(-length // multiple) * multiple)
    assert offsets[-1] + size >= length
    assert all(c >= a + size for a, c in zip(offsets, offsets[2:], strict=False))
    assert all(a + size - b >= overlap for a, b in zip(offsets, offsets[1:], strict=False))


def test_a_tile_added_to_a_row_shares_the_scene_evenly():
    """When the row needs one tile more, the tiles shrink to an even share again (three
    tiles of 548 px on a 1437 px scene at tile 768, overlap 97), not three of 768 px."""
    windows = balanced_windows(1437, 1437, 768, 97, multiple=4)
    assert {(int(w.width), int(w.height)) for w in windows} == {(548, 548)}
    assert sorted({int(w.col_off) for w in windows}) == [0, 448, 892]


@pytest.mark.parametrize("size", [4096, 16384, 5000])
def test_balanced_windows_overlap_waste_at_default(size):
    windows = balanced_windows(size, size, 768, 64, multiple=4)
    waste = sum(int(w.height * w.width) for w in windows) / size**2
    assert waste <= (1 + 64 / (768 - 64)) ** 2 + 0.01


def test_balanced_windows_bad_tile():
    with pytest.raises(TileSpecError, match="multiple of 4"):
        balanced_windows(100, 100, 30, 4, multiple=4)
    with pytest.raises(TileSpecError, match="overlap"):
        balanced_windows(100, 100, 32, 32, multiple=4)


def _follow_suggestions(width: int, height: int, tile: int, overlap: int, **kw: int) -> None:
    """Follow each error's tile= / overlap= suggestions; fail if a grid never results."""
    for _ in range(3):
        try:
            assert balanced_windows(width, height, tile, overlap, **kw)
            return
        except TileSpecError as exc:
            message = str(exc)
            found = dict(re.findall(r"\b(tile|overlap)=(\d+) \(--", message))
            assert found, message
            tile, overlap = int(found.get("tile", tile)), int(found.get("overlap", overlap))
    pytest.fail(f"still refused after following the suggestions: tile {tile}, overlap {overlap}")


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "kw"),
    [
        ((300, 200), 4, 64, {}),
        ((300, 200), 30, 4, {}),
        ((300, 200), 8, 64, {}),
        ((300, 200), 100, 64, {}),
        ((300, 200), 96, 40, {}),
        ((109, 1), 64, 19, {"multiple": 2}),  # suggested 19, the overlap refused, before
        ((433, 433), 256, 79, {}),
        ((1285, 700), 768, 250, {}),
        ((300, 200), 7, 0, {"min_size": 10}),  # suggested tile=10, itself refused, before
        ((948, 300), 748, 747, {}),  # an overlap within 4 px of the tile looped forever
    ],
)
def test_the_tile_and_overlap_an_error_suggests_work(size, tile, overlap, kw) -> None:
    """Following the suggestion of each error (tile=, overlap=) gives a grid."""
    _follow_suggestions(*size, tile, overlap, **{"multiple": 4, "min_size": 8, **kw})


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 2500),
    height=st.integers(1, 2500),
    tile=st.integers(24, 1100),  # from 24 px: tiny tiles make grids of 10**5 windows
    overlap=st.integers(0, 1100),
    multiple=st.sampled_from([1, 2, 4, 8]),
    min_size=st.integers(1, 40),
)
def test_any_error_suggestion_works(width, height, tile, overlap, multiple, min_size) -> None:
    _follow_suggestions(width, height, tile, overlap, multiple=multiple, min_size=min_size)


# --------------------------------------------------------------------------- writer


@given(
    width=st.integers(5, 90),
    height=st.integers(5, 130),
    tile=st.sampled_from([32, 48, 64]),
    overlap=st.sampled_from([0, 4, 8]),
    blend=st.sampled_from(sorted(BLENDS)),
    block_rows=st.sampled_from([8, 16, 256]),
)
def test_writer_reproduces_the_image(width, height, tile, overlap, blend, block_rows):
    rng = np.random.default_rng(width * 1000 + height)
    image = rng.uniform(-1, 1, size=(2, height, width)).astype(np.float32)
    windows = balanced_windows(width, height, tile, overlap, multiple=4)
    sink, writer, stats = _mosaic(
        image,
        windows,
        overlap=overlap,
        blend=blend,
        block_rows=block_rows,
    )
    np.testing.assert_allclose(sink.array, image, atol=2e-6)
    assert stats.written_rows == height and stats.tiles == len(windows)
    # every write but the last starts on a block row and is whole blocks tall
    for w in sink.windows[:-1]:
        assert w.row_off % min(block_rows, height) == 0
        assert w.height % min(block_rows, height) == 0


def _reference_blend(tiles, windows, width, height, blend, overlap):
    """A whole-scene accumulator: weighted sums and weights of every tile, then divided."""
    count = tiles[0][0].shape[0]
    sums = np.zeros((count, height, width), np.float64)
    total = np.zeros((height, width), np.float64)
    for w, (tile, valid) in zip(windows, tiles, strict=True):
        r, c, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
        weights = window_weights(w, width, height, blend, overlap).astype(np.float64)
        if valid is not None:
            weights = weights * valid
        rows, cols = min(h, height - r), min(wd, width - c)
        sums[:, r : r + rows, c : c + cols] += (tile * weights)[:, :rows, :cols]
        total[r : r + rows, c : c + cols] += weights[:rows, :cols]
    seen = total > 0
    return np.where(seen, sums / np.where(seen, total, 1), np.nan), seen


@given(
    width=st.integers(5, 140),
    height=st.integers(5, 140),
    tile=st.sampled_from([32, 48, 64]),
    overlap=st.sampled_from([0, 4, 8, 12]),
    blend=st.sampled_from(sorted(BLENDS)),
    holes=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_writer_matches_a_whole_scene_accumulator(width, height, tile, overlap, blend, holes, seed):
    # tiles that disagree where they overlap (as translated tiles do), some with invalid
    # pixels: the streaming writer (whose tile interiors skip the weighting) gives the
    # weighted mean a whole-scene accumulator gives, nodata where no valid pixel fell
    rng = np.random.default_rng(seed)
    windows = balanced_windows(width, height, tile, overlap, multiple=4)
    tiles = []
    for _ in windows:
        h, wd = int(windows[0].height), int(windows[0].width)
        valid = rng.random((h, wd)) >= holes if holes and rng.random() < 0.5 else None
        tiles.append((rng.uniform(-1, 1, (2, h, wd)).astype(np.float32), valid))
    expected, seen = _reference_blend(tiles, windows, width, height, blend, overlap)
    sink = ArraySink(2, height, width)
    writer = MosaicWriter(
        sink, windows, overlap=overlap, blend=blend, block_rows=16, nodata=-9.0,
        width=width, height=height, count=2, dtype="float32",
    )  # fmt: skip
    for w, (t, valid) in zip(windows, tiles, strict=True):
        before = t.copy()
        writer.add(w, t, valid)
        assert np.array_equal(t, before)  # the tile is read, not modified
    writer.close()
    np.testing.assert_allclose(sink.array[:, seen], expected[:, seen], atol=3e-6)
    assert (sink.array[:, ~seen] == -9.0).all()


def test_writer_memory_does_not_depend_on_scene_height():
    shapes = []
    for height in (200, 4096, 100_000):
        windows = balanced_windows(500, height, 64, 8, multiple=4)
        writer = MosaicWriter(
            ArraySink(1, 1, 1),
            windows,
            overlap=8,
            block_rows=32,
            width=500,
            height=height,
            count=3,
            dtype="uint8",
        )
        shapes.append(writer.buffer_shapes)
    # float sums only for the rows and columns shared with tiles still to come: a few
    # rows over the overlap (offsets on the model's 4 px grid add up to 4), whatever the height
    for shape in shapes:
        assert shape["carry"][0] == 4 and 8 <= shape["carry"][1] <= 8 + 4
        assert shape["stage"][0] == 3 and shape["stage"][1] <= 32 + 64
    assert shapes[2]["col_carry"][1:] == (64, shapes[2]["col_carry"][2])
    assert shapes[2]["col_carry"][2] <= 8 + 4
    assert shapes[2]["stage"] == (3, 32 + 64, 500)
    # one buffer of row sums (shared by the tile rows above and below), and no valid flags
    # for the stage when no mask is written (nodata goes into the stage itself)
    assert set(shapes[2]) == {"carry", "col_carry", "acc", "scratch", "stage", "stage_valid"}
    assert shapes[2]["stage_valid"] == (0, 500)


def test_writer_streams_a_tall_scene_in_bounded_memory():
    # 50 tile rows through a writer whose buffers hold about two: all rows come out right
    height, width = 1600, 40
    image = np.tile(np.linspace(-1, 1, height, dtype=np.float32)[None, :, None], (1, 1, width))
    windows = balanced_windows(width, height, 48, 8, multiple=4)
    sink, writer, _ = _mosaic(image, windows, overlap=8, block_rows=16)
    np.testing.assert_allclose(sink.array, image, atol=2e-6)
    assert writer.buffer_shapes["carry"][1] <= 8 + 4


def test_writer_nodata_where_invalid_and_valid_pixels_moved_off_nodata():
    image = np.zeros((1, 20, 20), np.float32)  # -> denormalised value 0 everywhere
    valid = np.ones((20, 20), bool)
    valid[:, :5] = False
    sink, _, _ = _mosaic(
        image,
        balanced_windows(20, 20, 12, 4, multiple=4),
        overlap=4,
        valid=valid,
        nodata=0,
        dtype="uint8",
        denormalize=lambda a: np.zeros(a.shape, np.uint8),
        write_mask=True,
    )
    assert (sink.array[:, :, :5] == 0).all()
    assert (sink.array[:, :, 5:] == 1).all()  # a valid 0 would read as nodata: moved to 1
    assert (sink.mask[:, :5] == 0).all() and (sink.mask[:, 5:] == 255).all()


def test_writer_refuses_tiles_out_of_order_misshapen_or_missing():
    windows = balanced_windows(40, 40, 16, 0, multiple=4)
    writer = MosaicWriter(
        ArraySink(1, 40, 40), windows, overlap=0, width=40, height=40, count=1, dtype="float32"
    )
    with pytest.raises(TileSpecError, match="row-major"):
        writer.add(windows[1], np.zeros((1, 16, 16), np.float32))
    with pytest.raises(TileSpecError, match="does not match"):
        writer.add(windows[0], np.zeros((2, 16, 16), np.float32))
    writer.add(windows[0], np.zeros((1, 16, 16), np.float32))
    with pytest.raises(TileSpecError, match="add them all"):
        writer.close()


def test_writer_refuses_grids_with_gaps():
    gap = [Window(0, 0, 16, 16), Window(20, 0, 16, 16)]
    with pytest.raises(TileSpecError, match="gap"):
        MosaicWriter(
            ArraySink(1, 16, 36), gap, overlap=0, width=36, height=16, count=1, dtype="uint8"
        )


@pytest.mark.parametrize("width", [300, 1000, 2048, 3073, 5000])
@pytest.mark.parametrize(("tile", "overlap"), [(768, 64), (256, 32), (512, 64)])
def test_balanced_offsets_sit_on_the_model_stride(width, tile, overlap):
    """Offsets and sizes on the model's 4 px grid (the sampling phase of its strided
    convolutions), neighbours overlapping by at least ``overlap``, the scene covered and
    nothing past it but less than 4 px."""
    windows = balanced_windows(width, 700, tile, overlap, multiple=4, min_size=8)
    for w in windows:
        assert w.col_off % 4 == 0 and w.row_off % 4 == 0
        assert w.width % 4 == 0 and w.height % 4 == 0
    cols = sorted({int(w.col_off) for w in windows})
    size = int(windows[0].width)
    assert cols[0] == 0 and width <= cols[-1] + size < width + 4
    for a, b in zip(cols, cols[1:], strict=False):
        assert a + size - b >= overlap


@pytest.mark.parametrize(("width", "height"), [(2048, 2048), (3072, 2048), (1000, 777), (300, 200)])
def test_owned_boxes_partition_the_scene(width, height):
    windows = balanced_windows(width, height, 768, 64, multiple=4, min_size=8)
    cover = np.zeros((height, width), int)
    boxes = owned_boxes(windows, width, height, 4)
    for w, (top, left, bottom, right) in zip(windows, boxes, strict=True):
        assert 0 <= top < bottom <= w.height and 0 <= left < right <= w.width
        r, c = int(w.row_off), int(w.col_off)
        cover[r + top : r + bottom, c + left : c + right] += 1
        interior = [v for v, edge in ((top, r), (left, c)) if edge > 0]
        assert all(v % 4 == 0 and v >= 16 for v in interior)  # the middle of the overlap
    assert (cover == 1).all()


@pytest.mark.parametrize("write_mask", [False, True])
def test_a_tile_given_as_none_is_one_without_a_valid_pixel(write_mask):
    """``add(window, None)`` (a tile the pipeline did not translate: no valid pixel)
    writes what the same tile with any values and an all-False mask writes: nodata where
    no other tile covers, the neighbours' values in the overlaps."""
    rng = np.random.default_rng(3)
    count, height, width = 2, 70, 90
    image = rng.uniform(-1, 1, (count, height, width)).astype(np.float32)
    windows = balanced_windows(width, height, 32, 8)
    empty = {3, 4, len(windows) - 1}
    outs = []
    for as_none in (False, True):
        sink = ArraySink(count, height, width)
        writer = MosaicWriter(
            sink, windows, overlap=8, block_rows=16, width=width, height=height, count=count,
            dtype="float32", nodata=-9.0, write_mask=write_mask,
        )  # fmt: skip
        for k, w in enumerate(windows):
            r, c, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
            tile = np.zeros((count, h, wd), np.float32)
            part = image[:, r : r + h, c : c + wd]
            tile[:, : part.shape[1], : part.shape[2]] = part
            valid = np.ones((h, wd), bool)
            if k in empty:
                valid[:] = False
                tile = None if as_none else rng.uniform(-1, 1, tile.shape).astype(np.float32)
            writer.add(w, tile, valid)
        writer.close()
        outs.append((sink.array.copy(), sink.mask.copy()))
    np.testing.assert_array_equal(outs[1][0], outs[0][0])
    np.testing.assert_array_equal(outs[1][1], outs[0][1])
    assert (outs[1][0] == -9.0).any() and (outs[1][0] != -9.0).any()
