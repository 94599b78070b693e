"""Tests of rsgan.metrics: properties that a wrong implementation would break."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsgan.errors import BandError, ConfigError, RsganError
from rsgan.metrics import (
    ArrayShapeError,
    checkerboard_score,
    histogram_match,
    nearest_neighbour_distances,
    per_band_wasserstein,
    psnr,
    seam_score,
    sliced_wasserstein_distance,
    ssim,
    tile_border_mask,
)


def _textures(n: int, bands: int, size: int, seed: int) -> np.ndarray:
    """Random smooth-plus-detail images, ``(n, bands, size, size)``, roughly in [-1, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, bands, size // 8, size // 8))
    smooth = np.kron(coarse, np.ones((8, 8)))
    return np.tanh(0.5 * smooth + 0.3 * rng.standard_normal((n, bands, size, size)))


def _box_blur(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[..., 1:-1, 1:-1] = (
        sum(
            x[..., 1 + dy : x.shape[-2] - 1 + dy, 1 + dx : x.shape[-1] - 1 + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        / 9.0
    )
    return out


# ---------------------------------------------------------------- sliced Wasserstein


def test_swd_of_a_set_with_itself_is_zero() -> None:
    x = _textures(6, 3, 32, seed=0)
    result = sliced_wasserstein_distance(x, x, n_patches=32, n_projections=64)
    assert result["mean"] == 0.0
    assert result["per_level"] == [0.0, 0.0]
    assert result["level_shapes"] == [(32, 32), (16, 16)]


def test_swd_grows_with_a_shift_and_a_blur_beyond_sampling_noise() -> None:
    a = _textures(12, 3, 32, seed=1)
    b = _textures(12, 3, 32, seed=2)  # same distribution, other images
    kw = {"n_patches": 64, "n_projections": 128}
    floor = sliced_wasserstein_distance(a, b, **kw)["mean"]
    small = sliced_wasserstein_distance(a, b + 0.2, **kw)["mean"]
    large = sliced_wasserstein_distance(a, b + 0.6, **kw)["mean"]
    assert floor < small < large
    blurred = sliced_wasserstein_distance(a, _box_blur(b), **kw)
    same = sliced_wasserstein_distance(a, b, **kw)
    # A blur removes detail: the finest (high-pass) level moves most.
    assert blurred["per_level"][0] > 3 * same["per_level"][0]


def test_swd_is_invariant_to_a_common_rescaling_per_band() -> None:
    a = _textures(4, 2, 32, seed=3)
    b = _textures(4, 2, 32, seed=4)
    scale = np.array([3.0, 0.5])[None, :, None, None]
    kw = {"n_patches": 32, "n_projections": 64}
    plain = sliced_wasserstein_distance(a, b, **kw)["per_level"]
    scaled = sliced_wasserstein_distance(a * scale + 7, b * scale + 7, **kw)["per_level"]
    np.testing.assert_allclose(scaled, plain, rtol=1e-9)


@pytest.mark.parametrize("bands", [1, 4, 13])
def test_swd_accepts_any_band_count_and_tells_sets_apart(bands: int) -> None:
    a = _textures(3, bands, 32, seed=5)
    b = _textures(3, bands, 32, seed=6)
    kw = {"n_patches": 32, "n_projections": 32}
    near = sliced_wasserstein_distance(a, b, **kw)["mean"]
    far = sliced_wasserstein_distance(a, b * 0.2, **kw)["mean"]
    assert 0 < near < far


def test_swd_default_levels_stop_at_16_px_and_sizes_may_differ() -> None:
    a = _textures(2, 1, 64, seed=7)
    b = _textures(3, 1, 32, seed=8)  # smaller images, other count: levels follow the smaller
    result = sliced_wasserstein_distance(a, b, n_patches=8, n_projections=8)
    assert result["level_shapes"] == [(64, 64), (32, 32)]
    assert len(result["per_level"]) == 2


def test_swd_rejects_mismatched_bands_and_tiny_images() -> None:
    with pytest.raises(BandError, match="3 bands but b has 4"):
        sliced_wasserstein_distance(np.zeros((1, 3, 16, 16)), np.zeros((1, 4, 16, 16)))
    with pytest.raises(ConfigError, match="smaller than a patch"):
        sliced_wasserstein_distance(np.zeros((1, 1, 16, 16)), np.zeros((1, 1, 16, 16)), levels=3)
    with pytest.raises(ConfigError, match="n_patches"):
        sliced_wasserstein_distance(np.zeros((1, 1, 16, 16)), np.zeros((1, 1, 16, 16)), n_patches=0)


# ---------------------------------------------------------------- per-band Wasserstein


@given(shift=st.floats(-50, 50, allow_nan=False), seed=st.integers(0, 1000))
def test_per_band_w1_of_a_shift_is_the_shift(shift: float, seed: int) -> None:
    x = np.random.default_rng(seed).uniform(0, 100, (2, 9, 7))
    offsets = np.array([shift, -2 * shift])[:, None, None]
    np.testing.assert_allclose(
        per_band_wasserstein(x, x + offsets), [abs(shift), 2 * abs(shift)], atol=1e-9
    )
    np.testing.assert_allclose(per_band_wasserstein(x, x.copy()), [0.0, 0.0], atol=0)


def test_per_band_w1_of_unequal_samples_matches_hand_computation() -> None:
    # Quantile functions: u is 0 on [0, 1/2) and 1 after; v is 0 on [0, 2/3) and 1 after.
    u = np.array([0.0, 1.0]).reshape(1, 1, 2)
    v = np.array([0.0, 0.0, 1.0]).reshape(1, 1, 3)
    np.testing.assert_allclose(per_band_wasserstein(u, v), [1 / 6])


def test_per_band_w1_ignores_masked_out_pixels() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (3, 20, 20))
    b = a.copy()
    mask = np.ones((20, 20), dtype=bool)
    mask[:5] = False
    b[:, :5] = 1000.0  # garbage where masked out
    np.testing.assert_allclose(per_band_wasserstein(a, b, mask, mask), 0.0, atol=0)
    assert np.all(per_band_wasserstein(a, b) > 100)


def test_per_band_w1_rejects_bad_inputs() -> None:
    with pytest.raises(BandError):
        per_band_wasserstein(np.zeros((3, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ArrayShapeError, match="no valid pixel"):
        per_band_wasserstein(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.zeros((4, 4), bool))
    with pytest.raises(ArrayShapeError, match="NaN"):
        per_band_wasserstein(np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4)))
    assert issubclass(ArrayShapeError, RsganError)


# ---------------------------------------------------------------- PSNR and SSIM


def test_psnr_of_a_known_error_and_masking() -> None:
    target = np.random.default_rng(1).uniform(0, 200, (4, 16, 16))
    pred = target + 5.0  # MSE = 25
    expected = 10 * math.log10(255**2 / 25)
    assert psnr(pred, target, data_range=255) == pytest.approx(expected)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    pred[:, ~mask] += 90.0  # large errors outside the mask must not count
    assert psnr(pred, target, mask=mask, data_range=255) == pytest.approx(expected)
    assert psnr(pred, target, data_range=255) < expected - 10
    assert psnr(target, target, data_range=255) == math.inf


def test_ssim_of_identical_images_is_one_and_falls_with_noise() -> None:
    rng = np.random.default_rng(2)
    x = _textures(1, 3, 48, seed=9)[0]
    assert ssim(x, x, data_range=2.0) == pytest.approx(1.0, abs=1e-12)
    values = [ssim(x + rng.normal(0, s, x.shape), x, data_range=2.0) for s in (0.02, 0.1, 0.4)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_of_constant_images_matches_the_formula() -> None:
    c1 = (0.01 * 255) ** 2
    a, b = 100.0, 140.0
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # contrast-structure term is C2/C2 = 1
    got = ssim(np.full((1, 20, 20), a), np.full((1, 20, 20), b), data_range=255)
    assert got == pytest.approx(expected, rel=1e-12)


def test_ssim_on_a_single_window_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (1, 11, 11))
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
    r = np.arange(11) - 5.0
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()
    mx, my = (w * x[0]).sum(), (w * y[0]).sum()
    vx, vy = (w * (x[0] - mx) ** 2).sum(), (w * (y[0] - my) ** 2).sum()
    cxy = (w * (x[0] - mx) * (y[0] - my)).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(y, x, data_range=255) == pytest.approx(expected, rel=1e-10)


def test_ssim_values_of_masked_out_pixels_change_nothing() -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (2, 40, 40))
    y = np.clip(x + rng.normal(0, 15, x.shape), 0, 255)
    mask = np.ones((40, 40), dtype=bool)
    mask[10:25, 5:30] = False  # a "changed" block
    before = ssim(y, x, mask=mask, data_range=255)
    y2 = y.copy()
    y2[:, ~mask] = rng.uniform(0, 255, (2, int((~mask).sum())))
    assert ssim(y2, x, mask=mask, data_range=255) == pytest.approx(before, rel=1e-12)
    assert ssim(y2, x, data_range=255) != pytest.approx(before, rel=1e-3)


def test_psnr_ssim_batched_and_errors() -> None:
    x = _textures(3, 2, 24, seed=10)
    assert ssim(x, x, data_range=2.0) == pytest.approx(1.0)
    with pytest.raises(ArrayShapeError, match="same shape"):
        psnr(x, x[:, :1], data_range=2.0)
    with pytest.raises(ConfigError, match="data_range"):
        ssim(x, x, data_range=0)
    with pytest.raises(ArrayShapeError, match="smaller than the 11 px"):
        ssim(x[..., :8, :8], x[..., :8, :8], data_range=2.0)
    with pytest.raises(ArrayShapeError, match="mask"):
        psnr(x, x, mask=np.ones((5, 5), bool), data_range=2.0)


# ---------------------------------------------------------------- histogram matching


def test_histogram_match_reaches_the_reference_distribution() -> None:
    rng = np.random.default_rng(5)
    source = rng.gamma(2.0, 10.0, (3, 40, 40))
    reference = rng.normal(100.0, 5.0, (3, 30, 50)) * np.array([1.0, 2.0, 3.0])[:, None, None]
    before = per_band_wasserstein(source, reference)
    matched = histogram_match(source, reference)
    after = per_band_wasserstein(matched, reference)
    assert matched.shape == source.shape
    assert np.all(before > 50)
    assert np.all(after < 0.02 * before)
    # Monotonic: the order of the source values is kept in every band.
    for band in range(3):
        order = np.argsort(source[band], axis=None)
        assert np.all(np.diff(matched[band].ravel()[order]) >= 0)


def test_histogram_match_respects_masks() -> None:
    rng = np.random.default_rng(6)
    source = rng.uniform(0, 1, (1, 20, 20))
    reference = rng.uniform(50, 60, (1, 20, 20))
    mask = np.ones((20, 20), bool)
    mask[:4] = False
    ref_mask = np.ones((20, 20), bool)
    ref_mask[-4:] = False
    reference[:, -4:] = -1000.0  # masked-out reference pixels must not pull the mapping
    out = histogram_match(source, reference, mask_source=mask, mask_reference=ref_mask)
    np.testing.assert_array_equal(out[:, :4], source[:, :4])
    assert out[:, mask].min() >= 50 - 1e-9
    assert per_band_wasserstein(out, reference, mask, ref_mask)[0] < 0.2


# ---------------------------------------------------------------- seams


def test_tile_border_mask_marks_interior_tile_edges() -> None:
    # Width 10, tile 4, no overlap: tiles start at 0, 4 and (shifted) 6; edges at 4, 6, 8.
    mask = tile_border_mask(3, 10, tile=4, overlap=0, band_px=1)
    np.testing.assert_array_equal(mask[0], [0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    assert not mask[:, 0].any()  # rows: the scene is smaller than a tile, no row edges
    assert mask.shape == (3, 10)


def test_seam_score_flags_errors_on_tile_edges_only() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0, 1, (2, 64, 64))
    border = tile_border_mask(64, 64, tile=16, overlap=4, band_px=2)
    b = a + 0.01 * rng.standard_normal(a.shape)
    b[:, border] += 0.5
    assert seam_score(a, b, 16, 4, band_px=2) > 10
    noisy = a + rng.standard_normal(a.shape)
    assert seam_score(a, noisy, 16, 4, band_px=2) == pytest.approx(1.0, abs=0.1)
    assert seam_score(a, a, 16, 4) == 1.0


def test_seam_score_rejects_a_grid_without_edges() -> None:
    with pytest.raises(ArrayShapeError, match="no pixels near"):
        seam_score(np.zeros((8, 8)), np.ones((8, 8)), tile=16, overlap=0)
    with pytest.raises(ConfigError, match="overlap"):
        tile_border_mask(8, 8, tile=4, overlap=4)


# ---------------------------------------------------------------- checkerboard


def test_checkerboard_score_measures_a_stamped_pattern() -> None:
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (3, 256, 256))
    # chance alone: 4096 px per phase, std 74 DN, so each phase mean is off by ~1.2 DN
    assert checkerboard_score(image) < 6
    stamp = np.zeros((4, 4))
    stamp[1, 2] = 20.0
    assert checkerboard_score(image + np.tile(stamp, (64, 64))) == pytest.approx(20, abs=6)
    flat = np.full((2, 64, 64), 100.0)
    assert checkerboard_score(flat) == 0.0
    # a 4 px pattern of amplitude 6 DN on one band, 0 on the other: 3 DN on average
    stamp = np.zeros((4, 4))
    stamp[0, 0] = 6.0
    patterned = flat.copy()
    patterned[0] += np.tile(stamp, (16, 16))
    assert checkerboard_score(patterned) == pytest.approx(3.0)
    # seen at period 2, the 6 DN px is one of the 4 its phase holds: 1.5 DN, 0.75 on average
    assert checkerboard_score(patterned, 2) == pytest.approx(0.75)
    # rows and cols past the last whole period are left out; 2-D images are one band
    assert checkerboard_score(patterned[0, :66, :67]) == pytest.approx(6.0)


def test_checkerboard_score_counts_valid_pixels_only() -> None:
    flat = np.full((1, 32, 32), 50.0)
    stamp = np.zeros((4, 4))
    stamp[1, 1] = 8.0
    image = flat + np.tile(stamp, (8, 8))
    mask = np.ones((32, 32), bool)
    mask[:, :16] = False
    image[:, :, :16] = 255.0  # nodata: would mask the pattern if counted
    assert checkerboard_score(image, mask=mask) == pytest.approx(8.0)
    with pytest.raises(ArrayShapeError, match="phases"):
        checkerboard_score(image, mask=np.eye(32, dtype=bool) & False)
    with pytest.raises(ArrayShapeError, match="mask has shape"):
        checkerboard_score(image, mask=mask[:16])
    with pytest.raises(ArrayShapeError, match="at least 4 px"):
        checkerboard_score(np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="period"):
        checkerboard_score(image, 1)


# ---------------------------------------------------------------- nearest neighbours


def test_nearest_neighbour_finds_copies_and_measures_offsets() -> None:
    train = _textures(10, 3, 16, seed=11)
    samples = np.stack([train[7], train[2] + 0.25])
    dist, index = nearest_neighbour_distances(samples, train, return_index=True)
    np.testing.assert_array_equal(index, [7, 2])
    np.testing.assert_allclose(dist, [0.0, 0.25], atol=1e-9)
    # Downsampling keeps a constant offset (the mean of an offset block is the offset).
    down = nearest_neighbour_distances(samples, train, downsample=4, chunk=1)
    np.testing.assert_allclose(down, [0.0, 0.25], atol=1e-9)


def test_nearest_neighbour_rejects_mismatched_shapes() -> None:
    with pytest.raises(ArrayShapeError, match="same bands and size"):
        nearest_neighbour_distances(np.zeros((2, 3, 8, 8)), np.zeros((2, 4, 8, 8)))


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(10, 4, 0), (100, 32, 8), (256, 64, 16), (97, 40, 5)]
)
def test_tile_border_mask_follows_the_tiling_grid(length: int, tile: int, overlap: int) -> None:
    from rsgan.tiling import TileSpec, tile_windows

    windows = tile_windows(length, tile, TileSpec(tile, overlap))  # one row of tiles
    edges = {int(w.col_off) for w in windows} | {int(w.col_off + w.width) for w in windows}
    expected = np.zeros(length, dtype=bool)
    for edge in edges - {0, length}:
        expected[edge - 1 : edge + 1] = True
    mask = tile_border_mask(1, length, tile, overlap, band_px=1)
    np.testing.assert_array_equal(mask[0], expected)
