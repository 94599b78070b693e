"""Quality metrics for generated and translated rasters, written from the papers.

FID needs Inception weights (not available offline) and is meaningless for 4- or 13-band
data, so rsgan measures with statistics that work for any band count:

- :func:`sliced_wasserstein_distance`: the multi-scale sliced Wasserstein distance of
  Karras et al. (2018, "Progressive Growing of GANs", appendix D) between two image sets,
  on Laplacian pyramids of random 7x7 neighbourhoods.
- :func:`per_band_wasserstein`: the 1-D Wasserstein-1 distance between the value
  distributions of each band.
- :func:`psnr` and :func:`ssim` (Wang et al. 2004) restricted to a mask, e.g. the unchanged
  pixels of a change-detection pair.
- :func:`histogram_match`: per-band CDF matching, the baseline a translation must beat.
- :func:`seam_score` and :func:`tile_border_mask`: how much two mosaics differ near the tile
  grid's borders compared with elsewhere.
- :func:`checkerboard_score`: how strongly an image repeats a pattern of a few pixels (the
  checkerboard texture of transposed convolutions).
- :func:`nearest_neighbour_distances`: distance of each sample to its closest training image,
  the check that a generator does not copy its training set.

Conventions: single images are ``(bands, rows, cols)``, image sets ``(N, bands, rows, cols)``;
masks are boolean, True where a pixel is valid (counted), ``(rows, cols)`` or
``(N, rows, cols)``. Inputs may be numpy arrays or CPU torch tensors (anything
``numpy.asarray`` accepts); all arithmetic is float64. This module imports numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rsgan.errors import BandError, ConfigError, RsganError

__all__ = [
    "ArrayShapeError",
    "checkerboard_score",
    "histogram_match",
    "nearest_neighbour_distances",
    "per_band_wasserstein",
    "psnr",
    "seam_score",
    "sliced_wasserstein_distance",
    "ssim",
    "tile_border_mask",
]


class ArrayShapeError(RsganError, ValueError):
    """Arrays (or masks) whose shapes do not fit together or have the wrong number of axes."""


# --------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------


def _as_float(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ArrayShapeError(
            f"{name} contains NaN or infinite values; mask them out (mask=...) "
            "or replace them before measuring"
        )
    return arr


def _as_batch(x: Any, name: str) -> np.ndarray:
    """``(bands, rows, cols)`` or ``(N, bands, rows, cols)`` as a float64 4-D batch."""
    arr = _as_float(x, name)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ArrayShapeError(
            f"{name} has shape {arr.shape}; expected (bands, rows, cols) or (N, bands, rows, cols)"
        )
    return arr


def _as_mask(mask: Any, batch: np.ndarray, name: str) -> np.ndarray:
    """A boolean ``(N, rows, cols)`` mask for ``batch`` (all True when ``mask`` is None)."""
    n, _, rows, cols = batch.shape
    if mask is None:
        return np.ones((n, rows, cols), dtype=bool)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask).astype(bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, (n, *m.shape))
    if m.shape != (n, rows, cols):
        raise ArrayShapeError(
            f"{name} has shape {np.shape(mask)}; expected (rows, cols) = {(rows, cols)} "
            f"or (N, rows, cols) = {(n, rows, cols)}, True where a pixel counts"
        )
    return m


def _check_same_shape(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ArrayShapeError(
            f"pred has shape {pred.shape} but target has {target.shape}; compare "
            "co-registered arrays of the same shape (crop or reproject one of them)"
        )


def _check_data_range(data_range: float) -> float:
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(
            f"data_range={data_range!r} must be a positive number: the span of possible "
            "values, e.g. 255 for uint8 or 2.0 for the model range [-1, 1]"
        )
    return value


# --------------------------------------------------------------------------------------
# 1-D Wasserstein distance between empirical distributions
# --------------------------------------------------------------------------------------


def _wasserstein_1d_sorted(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact W1 between empirical distributions, row by row, from sorted samples.

    W1 is the integral over t in [0, 1] of |F_u^-1(t) - F_v^-1(t)|. The quantile functions
    of ``n`` and ``m`` samples are piecewise constant with breaks at i/n and j/m, so the
    integral is a finite sum over the merged breaks (the mean absolute difference of the
    sorted samples when n == m).

    Args:
        u: ``(..., n)`` samples sorted along the last axis.
        v: ``(..., m)`` samples sorted along the last axis.

    Returns:
        ``(...)`` distances, in the samples' units.
    """
    n, m = u.shape[-1], v.shape[-1]
    if n == m:
        return np.mean(np.abs(u - v), axis=-1)
    breaks = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    mids = (breaks[:-1] + breaks[1:]) / 2
    weights = np.diff(breaks)
    iu = np.minimum((mids * n).astype(np.int64), n - 1)
    iv = np.minimum((mids * m).astype(np.int64), m - 1)
    return np.sum(np.abs(u[..., iu] - v[..., iv]) * weights, axis=-1)


def per_band_wasserstein(a: Any, b: Any, mask_a: Any = None, mask_b: Any = None) -> np.ndarray:
    """Wasserstein-1 distance between the value distributions of each band.

    The distributions are those of all valid pixels of each band (pooled over the batch);
    ``a`` and ``b`` may differ in size (they need not be co-registered). The distance is
    exact for the empirical distributions (integral of the absolute difference of the
    quantile functions), in the inputs' value units: shifting every value of a band by
    ``d`` gives a distance of ``|d|`` for that band.

    Args:
        a: ``(bands, rows, cols)`` or ``(N, bands, rows, cols)``.
        b: the same number of bands as ``a``; any size.
        mask_a: optional boolean ``(rows, cols)`` or ``(N, rows, cols)`` for ``a``, True
            where a pixel counts (e.g. valid data); masked-out pixels are ignored.
        mask_b: the same for ``b``.

    Returns:
        ``(bands,)`` float64 distances.

    Raises:
        BandError: if the band counts differ.
        ArrayShapeError: if a mask does not fit, or a mask leaves no pixel.
    """
    xa, xb = _as_batch(a, "a"), _as_batch(b, "b")
    if xa.shape[1] != xb.shape[1]:
        raise BandError(
            f"a has {xa.shape[1]} bands but b has {xb.shape[1]}; compare arrays with the "
            "same bands (select them first)"
        )
    va = _valid_values(xa, _as_mask(mask_a, xa, "mask_a"), "mask_a")
    vb = _valid_values(xb, _as_mask(mask_b, xb, "mask_b"), "mask_b")
    return _wasserstein_1d_sorted(np.sort(va, axis=1), np.sort(vb, axis=1))


def _valid_values(batch: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    """The valid pixels of each band: ``(bands, n_valid)``."""
    if not mask.any():
        raise ArrayShapeError(f"{name} leaves no valid pixel; nothing to measure")
    return np.moveaxis(batch, 1, 0)[:, mask]


# --------------------------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian pyramids (Karras et al. 2018, appendix D)
# --------------------------------------------------------------------------------------

_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
"""The 5-tap binomial approximation of a Gaussian used by the Burt-Adelson pyramid."""


def _blur_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """Convolve ``x`` along ``axis`` with the 5-tap kernel, reflecting at the borders."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    xp = np.pad(x, pad, mode="reflect")
    size = x.shape[axis]
    out = np.zeros_like(x)
    for k, w in enumerate(_BINOMIAL_5):
        out += w * np.take(xp, np.arange(k, k + size), axis=axis)
    return out


def _blur(x: np.ndarray) -> np.ndarray:
    """Separable 5x5 Gaussian blur over the last two axes of ``(..., rows, cols)``."""
    return _blur_axis(_blur_axis(x, -1), -2)


def _downsample(x: np.ndarray) -> np.ndarray:
    """Blur, then keep every second row and column."""
    return _blur(x)[..., ::2, ::2]


def _upsample(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Insert zeros between samples up to ``shape`` and blur with 4x the kernel."""
    up = np.zeros((*x.shape[:-2], *shape))
    up[..., ::2, ::2] = x
    return 4.0 * _blur(up)


def _laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` Laplacian bands of ``(N, C, H, W)``, finest first; the last is low-pass."""
    pyramid = []
    current = x
    for _ in range(levels - 1):
        smaller = _downsample(current)
        pyramid.append(current - _upsample(smaller, current.shape[-2:]))
        current = smaller
    pyramid.append(current)
    return pyramid


def _default_levels(rows: int, cols: int, patch_size: int) -> int:
    """Levels until the coarsest side would fall below 16 px (the paper's 16x16 level)."""
    floor = max(16, patch_size)
    levels, side = 1, min(rows, cols)
    while (side + 1) // 2 >= floor:
        side = (side + 1) // 2
        levels += 1
    return levels


def _random_descriptors(
    level: np.ndarray, patch_size: int, n_patches: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_patches`` random ``patch_size`` neighbourhoods per image: ``(N*n_patches, C, p, p)``."""
    n, _, rows, cols = level.shape
    windows = np.lib.stride_tricks.sliding_window_view(
        level, (patch_size, patch_size), axis=(2, 3)
    )  # (N, C, rows-p+1, cols-p+1, p, p), a view
    img = np.repeat(np.arange(n), n_patches)
    y = rng.integers(0, rows - patch_size + 1, size=n * n_patches)
    x = rng.integers(0, cols - patch_size + 1, size=n * n_patches)
    return windows[img, :, y, x]


def sliced_wasserstein_distance(
    a: Any,
    b: Any,
    *,
    levels: int | None = None,
    patch_size: int = 7,
    n_patches: int = 128,
    n_projections: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Multi-scale sliced Wasserstein distance between two image sets (Karras et al. 2018).

    For each set, a Laplacian pyramid of every image is built (5-tap binomial Gaussian,
    downsampling by 2; the coarsest level is the low-pass residual). From each level,
    ``n_patches`` random ``patch_size x patch_size`` neighbourhoods per image give
    descriptors of ``bands * patch_size**2`` values. Each band of the descriptors is
    normalised to zero mean and unit standard deviation per level, with statistics pooled
    over *both* sets (so a global colour or brightness difference between the sets is
    measured, not normalised away; normalising each set by its own statistics would hide
    it). The distance at a level is the sliced Wasserstein distance: the Wasserstein-1
    distance of the descriptors projected onto ``n_projections`` random unit directions,
    averaged over the directions (the paper: 512 directions; its tables show the value
    x 1e3, rsgan reports it unscaled).

    Inputs may be in any value range (typically the model range [-1, 1]); because of the
    per-level normalisation, an affine rescaling of both sets by the same factor per band
    leaves the result unchanged. Both sets must have the same bands; the image sizes and
    counts may differ, but every image must be at least ``patch_size`` px at the coarsest
    level. Lower is more similar; two samples of one distribution give a small positive
    value (sampling noise), which is the floor to compare against, e.g. SWD(train,
    held-out).

    Args:
        a: ``(N, bands, rows, cols)`` images (or one ``(bands, rows, cols)`` image).
        b: ``(M, bands, rows', cols')`` images with the same number of bands.
        levels: pyramid levels; default: halve until the coarsest side would drop below
            16 px (64 px images give 3 levels: 64, 32, 16).
        patch_size: side of the neighbourhoods, in pixels (paper: 7).
        n_patches: neighbourhoods drawn per image and level (paper: 128).
        n_projections: random projection directions per level (paper: 512).
        seed: seeds the neighbourhood positions and the directions. Both sets use the
            same position stream and the same directions, so ``a`` against itself gives
            exactly 0.

    Returns:
        ``{"per_level": [float, ...]`` finest level first, ``"mean": float`` over levels,
        ``"level_shapes": [(rows, cols), ...]`` of the first set's levels``}``.

    Raises:
        BandError: if the band counts differ.
        ConfigError: if a parameter is out of range or the images are too small.
    """
    xa, xb = _as_batch(a, "a"), _as_batch(b, "b")
    if xa.shape[1] != xb.shape[1]:
        raise BandError(
            f"a has {xa.shape[1]} bands but b has {xb.shape[1]}; both image sets need "
            "the same bands"
        )
    for name, value in (
        ("patch_size", patch_size),
        ("n_patches", n_patches),
        ("n_projections", n_projections),
    ):
        if int(value) != value or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    min_side = min(*xa.shape[2:], *xb.shape[2:])
    if levels is None:
        levels = _default_levels(min_side, min_side, patch_size)
    coarsest = min_side
    for _ in range(levels - 1):
        coarsest = (coarsest + 1) // 2
    if levels < 1 or coarsest < patch_size:
        raise ConfigError(
            f"levels={levels} with patch_size={patch_size}: images of {min_side} px shrink "
            f"to {coarsest} px at the coarsest level, smaller than a patch; use fewer levels "
            "or larger images"
        )
    pyr_a = _laplacian_pyramid(xa, levels)
    pyr_b = _laplacian_pyramid(xb, levels)
    per_level = []
    for index, (la, lb) in enumerate(zip(pyr_a, pyr_b, strict=True)):
        # The same position stream for both sets (common random numbers): identical sets
        # give identical descriptors and a distance of exactly 0.
        da = _random_descriptors(la, patch_size, n_patches, np.random.default_rng([seed, index]))
        db = _random_descriptors(lb, patch_size, n_patches, np.random.default_rng([seed, index]))
        rng = np.random.default_rng([seed, index, 1])
        both = np.concatenate([da, db])
        mean = both.mean(axis=(0, 2, 3), keepdims=True)
        std = both.std(axis=(0, 2, 3), keepdims=True)
        std = np.where(std > 0, std, 1.0)
        da = ((da - mean) / std).reshape(len(da), -1)
        db = ((db - mean) / std).reshape(len(db), -1)
        directions = rng.standard_normal((da.shape[1], n_projections))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        proj_a = np.sort(da @ directions, axis=0).T  # (n_projections, N*n_patches)
        proj_b = np.sort(db @ directions, axis=0).T
        per_level.append(float(np.mean(_wasserstein_1d_sorted(proj_a, proj_b))))
    return {
        "per_level": per_level,
        "mean": float(np.mean(per_level)),
        "level_shapes": [tuple(int(s) for s in lv.shape[-2:]) for lv in pyr_a],
    }


# --------------------------------------------------------------------------------------
# PSNR and SSIM restricted to a mask
# --------------------------------------------------------------------------------------


def psnr(pred: Any, target: Any, *, mask: Any = None, data_range: float) -> float:
    """Peak signal-to-noise ratio over the valid pixels, in dB.

    ``10 * log10(data_range**2 / MSE)`` where the mean squared error is taken over every
    band of every pixel where ``mask`` is True (pooled over the batch).

    Args:
        pred: ``(bands, rows, cols)`` or ``(N, bands, rows, cols)``.
        target: the same shape as ``pred``, co-registered.
        mask: optional boolean ``(rows, cols)`` or ``(N, rows, cols)``, True where a pixel
            counts (e.g. unchanged pixels of a change-detection pair).
        data_range: span of possible values (255 for uint8, 2.0 for [-1, 1]).

    Returns:
        PSNR in dB; ``inf`` when the valid pixels are identical.

    Raises:
        ArrayShapeError: shapes that differ, a mask that does not fit or leaves no pixel.
        ConfigError: a non-positive ``data_range``.
    """
    p, t = _as_batch(pred, "pred"), _as_batch(target, "target")
    _check_same_shape(p, t)
    peak = _check_data_range(data_range)
    m = _as_mask(mask, p, "mask")
    err = _valid_values(p - t, m, "mask")
    mse = float(np.mean(err**2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(peak**2 / mse))


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    k = np.exp(-(r**2) / (2 * sigma**2))
    return k / k.sum()


def _filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable correlation over the last two axes, keeping only full-window positions."""
    size = len(kernel)
    rows, cols = x.shape[-2:]
    tmp = sum(w * x[..., :, k : k + cols - size + 1] for k, w in enumerate(kernel))
    return sum(w * tmp[..., k : k + rows - size + 1, :] for k, w in enumerate(kernel))


def ssim(
    pred: Any,
    target: Any,
    *,
    mask: Any = None,
    data_range: float,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    min_window_fraction: float = 0.5,
) -> float:
    """Mean structural similarity (Wang et al. 2004), restricted to a mask.

    Local means, variances and the covariance are Gaussian-weighted (``window`` taps,
    ``sigma`` px; the paper's 11 / 1.5), computed per band at every position where the
    whole window lies inside the image (the paper's "valid" filtering, so an image
    needs at least ``window`` rows and columns). The SSIM map
    ``(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` is averaged over bands and positions.

    How the mask is applied: masked-out pixels are left out of the local statistics
    themselves (each window's Gaussian weights are restricted to valid pixels and
    renormalised, i.e. normalised convolution), and the map is averaged over window
    centres that are valid and whose window keeps at least ``min_window_fraction`` of its
    weight. So the values of masked-out pixels never influence the result; without a mask
    this is exactly the paper's SSIM.

    Args:
        pred: ``(bands, rows, cols)`` or ``(N, bands, rows, cols)``.
        target: the same shape as ``pred``, co-registered.
        mask: optional boolean ``(rows, cols)`` or ``(N, rows, cols)``, True where a pixel
            counts.
        data_range: span of possible values ``L`` (255 for uint8, 2.0 for [-1, 1]).
        window: side of the Gaussian window, in pixels (odd).
        sigma: standard deviation of the window, in pixels.
        k1: constant of the luminance term.
        k2: constant of the contrast-structure term.
        min_window_fraction: share of a window's weight that must be valid for its centre
            to count, in (0, 1].

    Returns:
        The mean SSIM, 1.0 for identical valid pixels; at most 1.

    Raises:
        ArrayShapeError: shapes that differ, images smaller than the window, a mask that
            does not fit or leaves no window to average.
        ConfigError: a bad ``data_range``, ``window`` or ``min_window_fraction``.
    """
    p, t = _as_batch(pred, "pred"), _as_batch(target, "target")
    _check_same_shape(p, t)
    big_l = _check_data_range(data_range)
    if int(window) != window or window < 1 or window % 2 == 0:
        raise ConfigError(f"window={window!r} must be a positive odd integer (paper: 11)")
    if not 0 < min_window_fraction <= 1:
        raise ConfigError(f"min_window_fraction={min_window_fraction!r} must be in (0, 1]")
    if min(p.shape[2:]) < window:
        raise ArrayShapeError(
            f"images of {p.shape[2:]} px are smaller than the {window} px SSIM window; "
            "use larger images or a smaller window"
        )
    m = _as_mask(mask, p, "mask").astype(np.float64)[:, None]  # (N, 1, rows, cols)
    kernel = _gaussian_kernel(window, sigma)
    weight = _filter_valid(m, kernel)  # share of each window's weight that is valid
    safe = np.where(weight > 0, weight, 1.0)

    def local_mean(x: np.ndarray) -> np.ndarray:
        return _filter_valid(m * x, kernel) / safe

    mu_p, mu_t = local_mean(p), local_mean(t)
    var_p = np.maximum(local_mean(p * p) - mu_p**2, 0.0)
    var_t = np.maximum(local_mean(t * t) - mu_t**2, 0.0)
    cov = local_mean(p * t) - mu_p * mu_t
    c1, c2 = (k1 * big_l) ** 2, (k2 * big_l) ** 2
    smap = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )
    half = window // 2
    centre_valid = m[..., half : m.shape[-2] - half, half : m.shape[-1] - half] > 0
    counted = centre_valid & (weight >= min_window_fraction - 1e-12)
    counted = np.broadcast_to(counted, smap.shape)
    if not counted.any():
        raise ArrayShapeError(
            "the mask leaves no SSIM window to average (no valid centre with enough valid "
            f"pixels around it); lower min_window_fraction={min_window_fraction} or use a "
            "larger mask"
        )
    return float(np.mean(smap[counted]))


# --------------------------------------------------------------------------------------
# Histogram matching, the translation baseline
# --------------------------------------------------------------------------------------


def histogram_match(
    source: Any,
    reference: Any,
    *,
    mask_source: Any = None,
    mask_reference: Any = None,
) -> np.ndarray:
    """Map each band of ``source`` so that its value distribution matches ``reference``.

    Classic CDF matching: a valid source value whose (mid-rank) cumulative frequency is
    ``t`` becomes the ``t``-quantile of the valid reference values of the same band
    (linear interpolation between reference samples). Equal source values map to equal
    outputs, and the mapping is monotonic. Masked-out source pixels are returned unchanged.

    Args:
        source: ``(bands, rows, cols)`` or ``(N, bands, rows, cols)``.
        reference: the same number of bands; any size.
        mask_source: optional boolean mask of ``source`` (True = valid).
        mask_reference: optional boolean mask of ``reference``.

    Returns:
        float64 array of ``source``'s shape, in the reference's value units (round and clip
        it yourself to store it as integers).

    Raises:
        BandError: if the band counts differ.
        ArrayShapeError: if a mask does not fit or leaves no pixel.
    """
    src_in = _as_float(source, "source")
    xs, xr = _as_batch(src_in, "source"), _as_batch(reference, "reference")
    if xs.shape[1] != xr.shape[1]:
        raise BandError(
            f"source has {xs.shape[1]} bands but reference has {xr.shape[1]}; match arrays "
            "with the same bands"
        )
    ms = _as_mask(mask_source, xs, "mask_source")
    vs = _valid_values(xs, ms, "mask_source")
    vr = np.sort(
        _valid_values(xr, _as_mask(mask_reference, xr, "mask_reference"), "mask_reference"), axis=1
    )
    out = xs.copy()
    ref_t = (np.arange(vr.shape[1]) + 0.5) / vr.shape[1]
    for band in range(xs.shape[1]):
        values, inverse, counts = np.unique(vs[band], return_inverse=True, return_counts=True)
        t = (np.cumsum(counts) - counts / 2) / vs.shape[1]
        mapped = np.interp(t, ref_t, vr[band])
        band_view = out[:, band]
        band_view[ms] = mapped[inverse.ravel()]
    return out.reshape(src_in.shape)


# --------------------------------------------------------------------------------------
# Seams of tiled inference
# --------------------------------------------------------------------------------------


def _tile_edges(size: int, tile: int, overlap: int) -> list[int]:
    """Interior tile edges (pixel offsets) of a grid along one axis.

    Tiles of ``tile`` px start every ``tile - overlap`` px from 0; when the last one
    would run past the scene, it is shifted back to end at the scene's edge (rsgan's
    ``"shift"`` edge policy). The scene's own borders (0 and ``size``) are not seams.
    """
    if size <= tile:
        return []
    stride = tile - overlap
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    edges = {s for s in starts} | {s + tile for s in starts}
    return sorted(e for e in edges if 0 < e < size)


def tile_border_mask(
    height: int, width: int, tile: int, overlap: int, band_px: int = 4
) -> np.ndarray:
    """Pixels within ``band_px`` of an interior edge of a fixed-stride tile grid.

    The grid is :mod:`rsgan.tiling`'s ``"shift"`` one (tiles every ``tile - overlap`` px,
    the last shifted back), not the one :func:`rsgan.pipelines.translate.translate_raster`
    translates with (:func:`rsgan.mosaic.balanced_windows`, ``multiple=4, min_size=8`` for
    the ResNet generator): for its mosaics, mark the edges of those windows.

    Args:
        height: scene rows, in pixels.
        width: scene columns, in pixels.
        tile: tile side, in pixels.
        overlap: overlap between neighbouring tiles, in pixels (``0 <= overlap < tile``).
        band_px: half-width of the band around each edge, in pixels.

    Returns:
        Boolean ``(height, width)``, True near a tile edge (both the start and the end edge
        of every tile; with overlap these are different lines).

    Raises:
        ConfigError: if the sizes are not positive or ``overlap >= tile``.
    """
    if min(height, width, tile) < 1 or band_px < 1:
        raise ConfigError(
            f"height={height}, width={width}, tile={tile}, band_px={band_px} must all be positive"
        )
    if not 0 <= overlap < tile:
        raise ConfigError(f"overlap={overlap} must be in [0, tile={tile})")
    mask = np.zeros((height, width), dtype=bool)
    for edge in _tile_edges(height, tile, overlap):
        mask[max(edge - band_px, 0) : edge + band_px, :] = True
    for edge in _tile_edges(width, tile, overlap):
        mask[:, max(edge - band_px, 0) : edge + band_px] = True
    return mask


def seam_score(a: Any, b: Any, tile: int, overlap: int, *, band_px: int = 4) -> float:
    """How much two mosaics differ near tile edges relative to elsewhere.

    ``mean |a - b|`` within ``band_px`` of the interior edges of the tile grid (see
    :func:`tile_border_mask`) divided by ``mean |a - b|`` over the other pixels. Compare,
    e.g., a mosaic made with tiles of ``tile`` px against one made at another tile size
    (or a whole-scene pass): about 1 means the differences do not follow the tile grid;
    well above 1 means seams.

    Args:
        a: ``(rows, cols)``, ``(bands, rows, cols)`` or ``(N, bands, rows, cols)``.
        b: the same shape as ``a``.
        tile: tile side of the grid whose edges are tested, in pixels.
        overlap: overlap of that grid, in pixels.
        band_px: half-width of the band around each edge, in pixels.

    Returns:
        The ratio; 1.0 when ``a`` and ``b`` are identical, ``inf`` when they differ only
        near the edges.

    Raises:
        ArrayShapeError: shapes that differ, or a grid with no interior edge.
    """
    xa, xb = _as_float(a, "a"), _as_float(b, "b")
    _check_same_shape(xa, xb)
    if xa.ndim < 2:
        raise ArrayShapeError(f"a has shape {xa.shape}; expected (..., rows, cols)")
    border = tile_border_mask(xa.shape[-2], xa.shape[-1], tile, overlap, band_px)
    if not border.any() or border.all():
        raise ArrayShapeError(
            f"a {xa.shape[-2]}x{xa.shape[-1]} px scene with tile={tile}, overlap={overlap}, "
            f"band_px={band_px} has no pixels {'near' if not border.any() else 'away from'} "
            "tile edges; use a smaller tile or band_px"
        )
    diff = np.abs(xa - xb)
    near = float(np.mean(diff[..., border]))
    far = float(np.mean(diff[..., ~border]))
    if far == 0:
        return 1.0 if near == 0 else float("inf")
    return near / far


def checkerboard_score(image: Any, period: int = 4, *, mask: Any = None) -> float:
    """How strongly ``image`` repeats a pattern of ``period`` px, e.g. the checkerboard
    texture of transposed convolutions (Odena, Dumoulin and Olah 2016).

    The pixels are split into the ``period x period`` phases of the grid (those at rows
    ``i + period * k`` and cols ``j + period * l`` for each ``(i, j)``); the score is the
    range (largest minus smallest) of the phases' means, averaged over the bands, in the
    image's units (DN). A natural image's phases hold the same content, so their means
    differ by chance only: 0.16 DN on a 1024 px Joplin aerial tile. A generator whose
    output stamps a fixed pattern on every tile of its grid moves them apart: 6.7 DN for
    the output of a CycleGAN with transposed convolutions on the same tile
    (docs/model-card.md). Compare against the input's own score. A period of 4 also holds
    the patterns of 2 px (a generator's two stride-2 upsamplings give both).

    Args:
        image: ``(rows, cols)`` or ``(bands, rows, cols)``; rows and cols beyond the last
            whole period are left out.
        period: the pattern's period in pixels (>= 2).
        mask: boolean ``(rows, cols)``, True where a pixel counts (e.g. not nodata).

    Returns:
        The mean over bands of the range of the phase means.

    Raises:
        ArrayShapeError: an image smaller than ``period`` in rows or cols, or a mask
            that leaves some phase without a valid pixel.
        ConfigError: ``period`` < 2.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 2:
        raise ConfigError(f"period must be an integer >= 2; got {period!r}")
    x = _as_float(image, "image")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ArrayShapeError(
            f"image has shape {x.shape}; expected (rows, cols) or (bands, rows, cols)"
        )
    valid = _as_mask(mask, x[None], "mask")[0]
    rows, cols = x.shape[-2] // period * period, x.shape[-1] // period * period
    if rows == 0 or cols == 0:
        raise ArrayShapeError(
            f"image is {x.shape[-2]}x{x.shape[-1]} px; it needs at least {period} px in rows "
            f"and cols for period={period}"
        )
    grid = (x.shape[0], rows // period, period, cols // period, period)
    weight = valid[:rows, :cols].reshape(grid[1:]).astype(np.float64)
    counts = weight.sum(axis=(0, 2))
    if (counts == 0).any():
        raise ArrayShapeError(
            f"the mask leaves some of the {period}x{period} phases without a valid pixel"
        )
    means = (x[:, :rows, :cols].reshape(grid) * weight[None]).sum(axis=(1, 3)) / counts
    spread = means.max(axis=(1, 2)) - means.min(axis=(1, 2))
    return float(spread.mean())


# --------------------------------------------------------------------------------------
# Memorisation check
# --------------------------------------------------------------------------------------


def _average_pool(x: np.ndarray, factor: int) -> np.ndarray:
    n, c, rows, cols = x.shape
    rows, cols = rows // factor * factor, cols // factor * factor
    x = x[..., :rows, :cols].reshape(n, c, rows // factor, factor, cols // factor, factor)
    return x.mean(axis=(3, 5))


def nearest_neighbour_distances(
    samples: Any,
    train: Any,
    *,
    downsample: int = 1,
    return_index: bool = False,
    chunk: int = 256,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Distance from each sample to its nearest training image, in pixel space.

    The distance is the root-mean-square difference over all values
    (``||s - t||_2 / sqrt(bands * rows * cols)``), i.e. the L2 distance in the inputs'
    value units per value, so it reads like a typical per-pixel error. Compare the
    distribution of sample-to-train distances with held-out-to-train distances: samples
    much closer to the training set than held-out real images are copies.

    Args:
        samples: ``(N, bands, rows, cols)``.
        train: ``(M, bands, rows, cols)`` with the same shape per image.
        downsample: average-pool both sets by this factor first (ignores exact pixel
            alignment, cheaper).
        return_index: also return the index of the nearest training image.
        chunk: samples processed at once (bounds memory to ``chunk * M`` floats).

    Returns:
        ``(N,)`` distances, and the ``(N,)`` nearest indexes if ``return_index``.

    Raises:
        ArrayShapeError: if the per-image shapes differ.
        ConfigError: if ``downsample`` or ``chunk`` is not a positive integer.
    """
    xs, xt = _as_batch(samples, "samples"), _as_batch(train, "train")
    if xs.shape[1:] != xt.shape[1:]:
        raise ArrayShapeError(
            f"samples are {xs.shape[1:]} per image but train images are {xt.shape[1:]}; "
            "compare images of the same bands and size"
        )
    for name, value in (("downsample", downsample), ("chunk", chunk)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if downsample > 1:
        xs, xt = _average_pool(xs, downsample), _average_pool(xt, downsample)
    fs = xs.reshape(len(xs), -1)
    ft = xt.reshape(len(xt), -1)
    sq_t = np.sum(ft**2, axis=1)
    dist = np.empty(len(fs))
    index = np.empty(len(fs), dtype=np.int64)
    for start in range(0, len(fs), chunk):
        block = fs[start : start + chunk]
        d2 = np.sum(block**2, axis=1)[:, None] + sq_t[None] - 2.0 * block @ ft.T
        nearest = np.argmin(d2, axis=1)
        index[start : start + chunk] = nearest
        exact = np.sum((block - ft[nearest]) ** 2, axis=1)  # no cancellation error
        dist[start : start + chunk] = np.sqrt(exact / fs.shape[1])
    return (dist, index) if return_index else dist
