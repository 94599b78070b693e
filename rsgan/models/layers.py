"""Scene-aware instance normalisation, the layer behind seam-free tiled translation.

:class:`SceneInstanceNorm2d` is an affine-free instance norm (as the CycleGAN reference's
``InstanceNorm2d``) with two additions:

* a valid-pixel **mask**: invalid (nodata) pixels are left out of the statistics. The
  mask is given at input resolution, ``(N, 1, H, W)`` (or ``(N, H, W)``), bool or float in
  [0, 1], through :func:`norm_mask`; each layer resizes it to its own feature resolution by
  area averaging (a feature cell weighs by the fraction of valid input pixels it covers; a
  layer larger than the mask uses nearest neighbour). Statistics are weighted means over
  the cells. A sample (or, when pooling, a batch) with no valid cell at all falls back to
  plain statistics over all its cells, so the output is never NaN.
* a **mode**: ``"instance"`` (per sample, the default), ``"pooled"`` (one set of statistics
  over every valid cell of the whole batch, recorded on the layer) or ``"fixed"`` (recorded
  or given per-channel statistics for every sample). Collect the statistics of a scene once
  with :func:`collect_norm_stats` (or :func:`pooled_forward`, which also keeps the
  outputs and can count one weighted box per sample, :func:`norm_region`), then translate
  every tile with :func:`fixed_norm_stats`, and all tiles are normalised alike.

Statistics are accumulated in float32 or better (float64 sums when pooling), also under
bf16 autocast; the output keeps the input's dtype. Pooled and fixed statistics are
constants for autograd (inference only). Every helper leaves a module without these layers
untouched.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsgan.errors import ConfigError, ModelError

NORM_MODES = ("instance", "pooled", "fixed")

Stats = tuple[Tensor, Tensor]
"""Per-channel ``(mean, var)``, each of shape ``(C,)``, float32."""

Box = tuple[int, int, int, int]
"""``(top, left, bottom, right)`` in input pixels, bottom and right exclusive."""
Region = tuple[list[Box], tuple[int, int], list[float]]
"""One box and one weight per sample and the input's ``(rows, cols)``; see
:func:`norm_region`."""


class SceneInstanceNorm2d(nn.Module):
    """Instance norm without affine parameters, with a valid mask and scene-wide modes.

    Args:
        num_features: number of channels C of the ``(N, C, H, W)`` input.
        eps: added to the variance before the square root.

    Attributes:
        mode: ``"instance"``, ``"pooled"`` or ``"fixed"`` (see the module docstring).
        mask: the valid mask at input resolution, ``(N, 1, H, W)`` float, or None (all
            valid). Set through :func:`norm_mask`, not by hand.
        mean, var: the recorded per-channel statistics ``(C,)`` (non-persistent buffers:
            they are not saved in checkpoints). Written by a ``"pooled"`` forward or by
            :func:`fixed_norm_stats`; read in ``"fixed"`` mode.
    """

    mean: Tensor
    var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.mode = "instance"
        self.mask: Tensor | None = None
        self.region: Region | None = None
        self.lockstep: _Lockstep | None = None
        self.register_buffer("mean", torch.zeros(self.num_features), persistent=False)
        self.register_buffer("var", torch.ones(self.num_features), persistent=False)
        self.has_stats = False

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, mode={self.mode!r}"

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` ``(N, C, H, W)``; returns the same shape and dtype."""
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ModelError(
                f"SceneInstanceNorm2d({self.num_features}) got an input of shape "
                f"{tuple(x.shape)}; expected (N, {self.num_features}, H, W)"
            )
        if self.mode == "instance" and self.mask is None:
            return _instance_norm(x, self.eps)
        if self.mode == "fixed":
            if not self.has_stats:
                raise ModelError(
                    "a norm layer is in 'fixed' mode but has no statistics; collect them "
                    "with collect_norm_stats() and apply them with fixed_norm_stats()"
                )
            return _normalize(x, self.mean, self.var, self.eps)
        if self.mode == "pooled":
            lockstep = self.lockstep
            if lockstep is None:
                mean, var = _finish(*self._sums(x, self.mask, self.region))
            else:  # one sample of a pooled batch run one sample per thread
                i = lockstep.index
                mean, var = lockstep.exchange(i, self._sums(x, *lockstep.sample(i)), self)
            self.mean, self.var, self.has_stats = mean, var, True
            return _normalize(x, mean, var, self.eps)
        xf = x.float()
        mean4, var4 = _weighted_stats(xf, self._weight(x, self.mask))
        return ((xf - mean4) * torch.rsqrt(var4 + self.eps)).to(x.dtype)

    def _sums(self, x: Tensor, mask: Tensor | None, region: Region | None) -> tuple[Sums, Sums]:
        """Sums for pooled statistics over the valid cells of each sample's box, and over
        all cells (the fallback when no box holds a valid cell)."""
        weights = None if region is None else region[2]
        return _box_sums(x, _scale_boxes(x, region), weights, self._weight(x, mask))

    def _weight(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        """``mask`` resized to ``x``'s rows and cols, ``(N, 1, h, w)`` float32; None
        without a mask."""
        if mask is None:
            return None
        if mask.shape[0] != x.shape[0]:
            raise ModelError(
                f"the valid mask has {mask.shape[0]} samples but the batch has {x.shape[0]}; "
                "pass one mask per sample"
            )
        size = tuple(x.shape[-2:])
        mask = mask.to(device=x.device, dtype=torch.float32)
        if tuple(mask.shape[-2:]) != size:
            shrinks = mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]
            mask = F.interpolate(mask, size=size, mode="area" if shrinks else "nearest")
        return mask


Sums = tuple[float, Tensor, Tensor]
"""``(count, sums, sums of squares)`` of cells per channel (float64 tensors ``(C,)``),
weighted; what pooled statistics are combined from."""


def _scale_boxes(x: Tensor, region: Region | None) -> list[Box]:
    """The region's boxes on ``x``'s grid (whole samples without a region)."""
    n, _, h, w = x.shape
    if region is None:
        return [(0, 0, h, w)] * n
    boxes, (in_h, in_w), _ = region
    if len(boxes) != n:
        raise ModelError(
            f"the norm region has {len(boxes)} boxes but the batch has {n} samples; "
            "pass one box per sample"
        )
    sy, sx = h / in_h, w / in_w
    return [
        (round(top * sy), round(left * sx), round(bottom * sy), round(right * sx))
        for top, left, bottom, right in boxes
    ]


def _finish(boxed: Sums, whole: Sums) -> Stats:
    """Mean and biased variance (float32 ``(C,)``) from sums; the whole samples' when no
    box holds a (valid) cell."""
    count, sums, squares = boxed if boxed[0] > 0 else whole
    count = max(count, 1e-12)
    mean = sums / count
    var = (squares / count - mean.square()).clamp_min(0.0)
    return mean.float(), var.float()


def _add(a: Sums, b: Sums) -> Sums:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _pool_sums(parts: Sequence[tuple[Sums, Sums]], proxy: _LayerProxy | None = None) -> Stats:
    """Pooled statistics from every sample's ``(boxed, whole)`` sums, corrected by the
    layer's ``proxy`` when given (:func:`_regression_stats`)."""
    boxed, whole = parts[0]
    for b, w in parts[1:]:
        boxed, whole = _add(boxed, b), _add(whole, w)
    if proxy is not None and boxed[0] > 0:
        corrected = _regression_stats(boxed, [b for b, _ in parts], proxy)
        if corrected is not None:
            return corrected
    return _finish(boxed, whole)


PER_CHANNEL_SLOPES_FROM = 6
"""Samples from which :func:`_regression_stats` fits one slope per channel; fewer share
one slope across the channels of a layer (per-channel slopes through 2-3 samples threw
NAIP patchworks 35-52 DN off; docs/benchmarks.md, twenty-second session)."""
MAX_SLOPE = 1.5
"""The largest slope :func:`_regression_stats` extrapolates with."""


@dataclass(frozen=True)
class BlockProxy:
    """What the statistics of a pooled batch of a scene's blocks are corrected with: per
    norm layer, the moments of a cheap pass over the whole scene (a downsampled view of
    it) within every block of the grid the batch was picked from (:func:`block_moments`),
    and which of those blocks each sample of the batch is (see :func:`pooled_forward`)."""

    moments: Mapping[str, Tensor]
    """Layer name -> ``(blocks, 3, C)`` float64: valid cells, sums, sums of squares."""
    samples: Sequence[int]
    """The block of each sample of the pooled batch."""


_LayerProxy = tuple[Tensor, Sequence[int], Sequence[float]]
"""One layer's block moments, the block of each sample, and each sample's weight."""


def _slope(x: Tensor, y: Tensor, weight: Tensor, per_channel: bool) -> Tensor:
    """Weighted least-squares slope of ``y`` on ``x`` (``(samples, C)``), per channel or
    one for all channels; 0 where ``x`` does not vary; within 0..:data:`MAX_SLOPE`."""
    w = weight[:, None]
    dx = x - (w * x).sum(0) / w.sum()
    dy = y - (w * y).sum(0) / w.sum()
    cov, var = (w * dx * dy).sum(0), (w * dx.square()).sum(0)
    if not per_channel:
        cov, var = cov.sum().expand_as(cov), var.sum().expand_as(var)
    slope = torch.where(var > 0, cov / torch.where(var > 0, var, 1.0), 0.0)
    return slope.clamp(0.0, MAX_SLOPE)


def _regression_stats(boxed: Sums, parts: Sequence[Sums], proxy: _LayerProxy) -> Stats | None:
    """Statistics of the whole scene estimated from a weighted sample of its blocks
    (``boxed``: the sample's pooled sums; ``parts``: each sample's) and a cheap pass over
    the whole scene (``proxy``), or None when the proxy cannot say (a sample's block
    without a valid cell in it).

    The regression estimator of survey sampling: the sample's mean of a cell's value and
    of its square, each moved by the slope of the samples' block means on their proxy
    means times how far the sample's proxy mean lies from the whole scene's. Blocks the
    sample over-represents (brighter water, more fields) show it in the proxy, so their
    share is taken back out. Slopes are fitted per channel from
    :data:`PER_CHANNEL_SLOPES_FROM` samples, one per layer below; the variance stays at
    least a quarter of the sample's own. With every block in the sample at weight 1 the
    correction is nil."""
    moments, samples, weights = proxy
    total = moments.sum(0)  # (3, C)
    picked = moments[list(samples)]  # (samples, 3, C)
    counts = torch.tensor([float(p[0]) for p in parts], dtype=torch.float64)
    if total[0, 0] <= 0 or (picked[:, 0] <= 0).any() or (counts <= 0).any():
        return None
    w = torch.tensor([float(v) for v in weights], dtype=torch.float64, device=total.device)
    w = w[:, None]
    counts = counts.to(total.device)
    count, sums, squares = boxed
    estimates = []
    for k, sample_sum in ((1, sums), (2, squares)):
        scene_proxy = total[k] / total[0]
        sample_proxy = (w * picked[:, k]).sum(0) / (w * picked[:, 0]).sum(0)
        block_means = torch.stack([cast(Tensor, p[k]) / p[0] for p in parts]).to(total.device)
        block_proxies = picked[:, k] / picked[:, 0]
        beta = _slope(block_proxies, block_means, counts, len(parts) >= PER_CHANNEL_SLOPES_FROM)
        estimates.append(sample_sum / count + beta * (scene_proxy - sample_proxy))
    mean, mean_square = estimates
    sample_var = (squares / count - (sums / count).square()).clamp_min(0.0)
    var = torch.maximum(mean_square - mean.square(), sample_var / 4)
    return mean.float(), var.float()


def _make_region(
    boxes: Sequence[Box] | None, size: Sequence[int], weights: Sequence[float] | None
) -> Region | None:
    """A checked :data:`Region` (one box and one weight >= 0 per sample), or None."""
    if boxes is None:
        return None
    listed = [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in boxes]
    given = [1.0] * len(listed) if weights is None else [float(v) for v in weights]
    if len(given) != len(listed) or any(not v >= 0 for v in given):
        raise ModelError(
            f"a norm region needs one weight >= 0 per box; got {len(given)} for {len(listed)} boxes"
        )
    return listed, (int(size[0]), int(size[1])), given


def _sample_region(region: Region | None, i: int) -> Region | None:
    """Sample ``i``'s box of ``region`` as a one-sample region."""
    return None if region is None else ([region[0][i]], region[1], [region[2][i]])


class _Lockstep:
    """Pooled statistics of a batch run one sample per thread, in turns.

    Each thread runs the model on its own sample. At every norm layer it leaves its sums,
    hands the turn on and waits for the others; the last to arrive pools the sums; all
    then normalise with the pooled statistics and go on, one at a time. The result equals
    a pooled forward of the whole batch, but every tensor is one sample's: on CPU a batch
    of many large tiles otherwise spends most of its time page-faulting fresh memory.
    """

    def __init__(
        self,
        n: int,
        masks: Sequence[Tensor | None] | None,
        region: Region | None,
        proxies: Mapping[SceneInstanceNorm2d, _LayerProxy] | None = None,
    ) -> None:
        self.turn = threading.Lock()
        self._barrier = threading.Barrier(n, action=self._pool)
        self._parts: list[tuple[Sums, Sums] | None] = [None] * n
        self._result: Stats | None = None
        self._local = threading.local()
        self._masks = masks
        self._region = region
        self._proxies = proxies or {}
        self._layer: SceneInstanceNorm2d | None = None

    @property
    def index(self) -> int:
        return int(self._local.index)

    @index.setter
    def index(self, value: int) -> None:
        self._local.index = value

    def sample(self, i: int) -> tuple[Tensor | None, Region | None]:
        """Sample ``i``'s mask and one-box region."""
        mask = None if self._masks is None else self._masks[i]
        return mask, _sample_region(self._region, i)

    def _pool(self) -> None:
        proxy = None if self._layer is None else self._proxies.get(self._layer)
        self._result = _pool_sums([p for p in self._parts if p is not None], proxy)

    def exchange(
        self, i: int, sums: tuple[Sums, Sums], layer: SceneInstanceNorm2d | None = None
    ) -> Stats:
        """Leave sample ``i``'s sums at ``layer``, wait for every sample's, return the
        pooled stats."""
        self._parts[i] = sums
        self._layer = layer
        self.turn.release()
        try:
            self._barrier.wait()
        finally:
            self.turn.acquire()
        assert self._result is not None
        return self._result

    def abort(self) -> None:
        self._barrier.abort()


def _instance_norm(x: Tensor, eps: float) -> Tensor:
    """Plain instance norm of ``x`` ``(N, C, H, W)``, in its own layout and dtype.

    ``F.instance_norm`` returns a channels-last input channels-first, and is slow on it:
    for a 32 x 368 x 368 layer on one thread 31.5 against 2.7 ms in fp32, 5.5 against 2.0
    in bf16, and the next convolution then reorders its input back (the bundled generator
    on a 736 px channels-last tile in bf16: 1.45x the time of a forward with fixed
    statistics, against 1.03-1.08x so). A channels-last input is therefore normalised
    sample by sample, which keeps the layout: out of autograd from torch's batch-norm statistics
    kernel and the fused normalisation of the other modes (float32 statistics and
    arithmetic, as torch's instance norm); with autograd by training-mode batch norm
    without running statistics, which is instance norm for one sample (biased variance)
    and has its gradients. Channels-first inputs keep torch's kernel (as fast). Sums over
    channels-last activations come in an order that depends on torch's thread count (float
    rounding: 0.006 DN on average between one and two threads in a bf16 test), as the
    pooled mode's do; channels-first ones do not."""
    if not _channels_last_only(x):
        # torch's kernel keeps bf16 inputs in bf16 but accumulates its statistics in fp32
        return F.instance_norm(x, eps=eps)
    parts = []
    for sample in x.split(1):
        if torch.is_grad_enabled() and sample.requires_grad:
            parts.append(F.batch_norm(sample, None, None, training=True, eps=eps))
        else:
            sums = _moment_sums(sample)
            mean, var = _finish(sums, sums)  # the whole sample is its own box
            parts.append(_normalize(sample, mean, var, eps))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _channels_last_only(x: Tensor) -> bool:
    """Whether ``x`` is laid out channels-last and not also channels-first (one channel,
    or one pixel, is both)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _normalize(x: Tensor, mean: Tensor, var: Tensor, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` per channel in one fused kernel (batch norm in
    inference form): float32 statistics, arithmetic in float32, output in ``x``'s dtype
    (bf16 stays bf16 without a float32 copy of the activations)."""
    mean = mean.to(device=x.device, dtype=torch.float32)
    var = var.to(device=x.device, dtype=torch.float32)
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        x = x.float()
    return F.batch_norm(x, mean, var, training=False, eps=eps)


def _moment_sums(x: Tensor) -> Sums:
    """``(count, sums, sums of squares)`` per channel over a one-sample ``(1, C, h, w)``
    tensor (or the rows of a ``(cells, C)`` one), from torch's batch-norm statistics kernel
    (float32 accumulation, no float32 copy of bf16 activations).
    ``torch.batch_norm_update_stats`` gives the training-mode batch norm's statistics bit
    for bit without writing the normalised tensor: 2.36 against 5.42 ms for a 16 x 736 x
    736 bf16 layer on two threads. Its accuracy depends on the layout: over 450 000 cells
    of float32 (16 channels of means -1..2, spread 0.3), channels-first sums came within
    6e-8 of float64 ones, channels-last ones (the generator's layout) within 1.6e-5 and
    their squares 5.7e-5, which moves a mean by ~1e-4 of its spread: far below a DN."""
    c = x.shape[1]
    cells = x.numel() // max(c, 1)
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        x = x.float()
    mean = torch.zeros(c, dtype=torch.float32, device=x.device)
    var = torch.ones_like(mean)
    torch.batch_norm_update_stats(x, mean, var, 1.0)
    if cells > 1:
        var = var * ((cells - 1) / cells)  # torch keeps the unbiased variance
    return (
        float(cells),
        mean.double() * cells,
        (var.double() + mean.double().square()) * cells,
    )


def _minus(part: Sums, pieces: Sequence[Tensor]) -> Sums:
    """``part`` less the cells of ``pieces`` (``(C, h, w)`` views).

    Each piece is copied into a dense tensor of its own and summed by
    :func:`_moment_sums`: the pieces are thin strips beside a box (a few % of its cells),
    and float64 reductions over them as strided views took as long as summing the box
    itself (3.1 ms for the 32 px strips of a 16 x 736 x 736 bf16 layer; 0.39 ms so)."""
    count, sums, squares = part
    for piece in pieces:
        if piece.numel():
            layout = torch.channels_last if piece.stride(0) == 1 else torch.contiguous_format
            cells, piece_sums, piece_squares = _moment_sums(
                piece[None].contiguous(memory_format=layout)
            )
            count -= cells
            sums = sums - piece_sums
            squares = squares - piece_squares
    return count, sums, squares


def _is_dense(x: Tensor) -> bool:
    return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def _box_sums(
    x: Tensor,
    boxes: list[Box],
    weights: Sequence[float] | None = None,
    mask: Tensor | None = None,
) -> tuple[Sums, Sums]:
    """Sums over the given box of every sample (its cells weighted by ``weights[i]``,
    default 1, and by ``mask``, see :func:`_masked_box_sums`), and over all cells of the
    samples whose box holds no (valid) cell (what the statistics fall back to when no box
    does).

    Fast for large tiles in bf16: the box's rows are summed by torch's batch-norm statistics
    kernel when they are one dense block of memory (channels-last activations, or a box
    of whole rows), and the columns left and right of the box are taken off exactly, in
    float64; otherwise the whole sample is summed and the frame around the box taken off.
    """
    n, c, h, w = x.shape
    zeros = torch.zeros(c, dtype=torch.float64, device=x.device)
    boxed: Sums = (0.0, zeros, zeros)
    whole: Sums = (0.0, zeros, zeros)
    for i, box in enumerate(boxes):
        xi = x[i : i + 1]
        weight = 1.0 if weights is None else float(weights[i])
        box = _clip_box(box, h, w)
        top, left, bottom, right = box
        part = None
        if bottom > top and right > left and weight != 0:
            if mask is None:
                part = _one_box_sums(xi, box)
            else:
                part = _masked_part(xi, box, mask[i, 0, top:bottom, left:right])
        if part is None:
            whole = _add(whole, _moment_sums(xi))
        else:
            boxed = _add(boxed, _scaled(part, weight))
    return boxed, whole


def _clip_box(box: Box, h: int, w: int) -> Box:
    top, left, bottom, right = box
    return max(0, min(top, h)), max(0, min(left, w)), max(0, min(bottom, h)), max(0, min(right, w))


def _scaled(part: Sums, weight: float) -> Sums:
    return weight * part[0], weight * part[1], weight * part[2]


def _one_box_sums(xi: Tensor, box: Box) -> Sums:
    """Sums over the (clipped, non-empty) ``box`` of the one-sample ``xi``: its rows by
    the batch-norm kernel when they are dense in memory, less the columns beside it."""
    top, left, bottom, right = box
    band = xi[:, :, top:bottom]
    if _is_dense(band):
        return _minus(_moment_sums(band), [band[0, :, :, :left], band[0, :, :, right:]])
    frame = [
        xi[0, :, :top],
        xi[0, :, bottom:],
        xi[0, :, top:bottom, :left],
        xi[0, :, top:bottom, right:],
    ]
    return _minus(_moment_sums(xi), frame)


def _cells(xi: Tensor, box: Box, select: Tensor) -> Tensor:
    """The cells of ``box`` where ``select`` ``(rows, cols)`` is True, as ``(cells, C)``
    (one copy; rows of C contiguous values for channels-last activations)."""
    top, left, bottom, right = box
    return xi[0, :, top:bottom, left:right].permute(1, 2, 0)[select]


CELL_CHUNK = 1 << 16
"""Cells :func:`_cell_sums` takes at a time: its float64 copies of 64 channels stay within
~32 MB whatever the number of cells (half a 736 px block's cells took ~100 MB at once)."""


def _cell_sums(cells: Tensor, weight: Tensor) -> Sums:
    """Sums over ``(cells, C)`` weighted by ``weight`` ``(cells,)``, in float64."""
    c = cells.shape[1]
    total = torch.zeros(2, c, dtype=torch.float64, device=cells.device)
    for start in range(0, cells.shape[0], CELL_CHUNK):
        v = cells[start : start + CELL_CHUNK].double()
        fv = weight[start : start + CELL_CHUNK].double()[:, None] * v
        total[0] += fv.sum(0)
        total[1] += (fv * v).sum(0)
    return float(weight.double().sum()), total[0], total[1]


def _masked_box_sums(
    x: Tensor, mask: Tensor, boxes: list[Box], weights: Sequence[float] | None = None
) -> tuple[Sums, Sums]:
    """:func:`_box_sums` with each cell of a box also weighted by ``mask`` ``(N, 1, h, w)``
    (float >= 0 on ``x``'s grid: valid pixels, area-averaged on coarser layers).

    The same sums as weighting every cell one by one (to float rounding), in
    a fraction of its time: a box mostly valid is summed whole by the batch-norm kernel
    (:func:`_one_box_sums`) less each cell of weight ``m != 1`` times ``1 - m``; a box mostly
    invalid sums its cells of weight 1, gathered into one dense tensor, by the same kernel,
    plus the other cells of positive weight (:func:`_masked_part`). Both touch the smaller
    part of the box beyond the kernel. Measured on the bundled model's statistics pass
    over 11 blocks of a 4096 px scene with a nodata footprint, 3.6-4.1 s went to ~1.9 s,
    the unmasked pass's time (docs/benchmarks.md). A sample whose box holds no valid cell
    adds its whole to the fallback sums (:func:`_finish`), as in :func:`_box_sums`.
    """
    return _box_sums(x, boxes, weights, mask)


def _masked_part(xi: Tensor, box: Box, m: Tensor) -> Sums | None:
    """Sums over the (clipped, non-empty) ``box`` of ``xi`` weighted by ``m`` (the mask on
    the box), or None when no cell of it has weight."""
    full = m == 1
    n_full = int(full.sum())
    partial = (m > 0) & ~full  # fractions (and any other positive weight)
    if n_full == 0 and not partial.any():
        return None
    cells = m.numel()
    if 2 * n_full >= cells:  # mostly valid: the box, less what is not wholly valid
        part = _one_box_sums(xi, box)
        if n_full < cells:
            rest = ~full
            off = _cell_sums(_cells(xi, box, rest), 1.0 - m[rest])
            part = (part[0] - off[0], part[1] - off[1], part[2] - off[2])
        return part
    zeros = torch.zeros(xi.shape[1], dtype=torch.float64, device=xi.device)
    part = _moment_sums(_cells(xi, box, full)) if n_full else (0.0, zeros, zeros)
    if partial.any():  # mostly invalid: the valid cells, gathered, and the fractions
        part = _add(part, _cell_sums(_cells(xi, box, partial), m[partial]))
    return part


def _weighted_stats(x: Tensor, weight: Tensor | None) -> Stats:
    """Mean and biased variance of each sample of ``x`` over its rows and cols.

    ``weight`` ``(N, 1, H, W)`` in [0, 1] weighs each cell; where a sample has zero total
    weight, every cell counts equally instead. Returns ``(N, C, 1, 1)`` tensors.
    """
    dims = (2, 3)
    if weight is None:
        mean = x.mean(dim=dims, keepdim=True)
        var = (x - mean).square().mean(dim=dims, keepdim=True)
        return mean, var
    total = weight.sum(dim=dims, keepdim=True)
    empty = total <= 0
    weight = torch.where(empty, torch.ones_like(weight), weight)
    total = weight.sum(dim=dims, keepdim=True)
    mean = (x * weight).sum(dim=dims, keepdim=True) / total
    var = ((x - mean).square() * weight).sum(dim=dims, keepdim=True) / total
    return mean, var


def norm_layers(model: nn.Module) -> dict[str, SceneInstanceNorm2d]:
    """The model's :class:`SceneInstanceNorm2d` layers by module name (may be empty)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, SceneInstanceNorm2d)
    }


def set_norm_mode(model: nn.Module, mode: str) -> dict[str, str]:
    """Set every norm layer of ``model`` to ``mode``; returns the previous modes by name.

    Raises:
        ConfigError: for a mode other than ``"instance"``, ``"pooled"``, ``"fixed"``.
    """
    if mode not in NORM_MODES:
        raise ConfigError(f"unknown norm mode {mode!r}; use one of {', '.join(NORM_MODES)}")
    previous = {}
    for name, layer in norm_layers(model).items():
        previous[name] = layer.mode
        layer.mode = mode
    return previous


def _as_mask(mask: Tensor) -> Tensor:
    """Validate a mask and return it as ``(N, 1, H, W)`` float32 in [0, 1]."""
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ModelError(
            f"a valid mask must have shape (N, 1, H, W) or (N, H, W); got {tuple(mask.shape)}"
        )
    return mask.to(torch.float32)


@contextlib.contextmanager
def norm_mask(model: nn.Module, mask: Tensor | None) -> Iterator[None]:
    """Within the block, every norm layer of ``model`` leaves out pixels where ``mask`` is 0.

    Args:
        model: any module; one without norm layers is left untouched.
        mask: valid pixels, ``(N, 1, H, W)`` or ``(N, H, W)``, bool or float in [0, 1], at
            the model's input resolution; None means every pixel is valid.
    """
    prepared = None if mask is None or not norm_layers(model) else _as_mask(mask)
    with _layer_attribute(model, "mask", prepared):
        yield


@contextlib.contextmanager
def norm_region(
    model: nn.Module,
    boxes: Sequence[Box] | None,
    size: tuple[int, int],
    weights: Sequence[float] | None = None,
) -> Iterator[None]:
    """Within the block, ``"pooled"`` statistics count only a box of each sample.

    Used to pool over overlapping tiles of a scene with each scene pixel counted once: each
    tile contributes the part of the scene it owns. Each layer scales the boxes to its own
    grid (give box edges as multiples of the model's size multiple to keep them exact).

    Args:
        model: any module; one without norm layers is left untouched.
        boxes: ``(top, left, bottom, right)`` per sample in input pixels, or None (whole
            samples).
        size: the input's ``(rows, cols)``.
        weights: how much each sample's box counts (e.g. how many tiles of a scene it
            stands for); default 1 each.
    """
    with _layer_attribute(model, "region", _make_region(boxes, size, weights)):
        yield


@contextlib.contextmanager
def _layer_attribute(model: nn.Module, name: str, value: Any) -> Iterator[None]:
    """Within the block, every norm layer's attribute ``name`` is ``value``."""
    layers = norm_layers(model)
    previous = {key: getattr(layer, name) for key, layer in layers.items()}
    try:
        for layer in layers.values():
            setattr(layer, name, value)
        yield
    finally:
        for key, layer in layers.items():
            setattr(layer, name, previous[key])


@contextlib.contextmanager
def _modes(model: nn.Module, mode: str) -> Iterator[dict[str, SceneInstanceNorm2d]]:
    layers = norm_layers(model)
    previous = set_norm_mode(model, mode)
    try:
        yield layers
    finally:
        for name, layer in layers.items():
            layer.mode = previous[name]


def collect_norm_stats(model: nn.Module, x: Tensor, mask: Tensor | None = None) -> dict[str, Stats]:
    """Scene statistics: one forward in ``"pooled"`` mode over the batch ``x``.

    All samples of ``x`` ``(N, C, H, W)`` (e.g. tiles drawn from one scene) are treated as
    one image: each norm layer pools its statistics over every valid pixel of the batch.

    Args:
        model: the network (its modes are restored afterwards).
        x: the input batch, in the model's input range.
        mask: optional valid mask ``(N, 1, H, W)`` or ``(N, H, W)``.

    Returns:
        ``{module name: (mean, var)}`` with float32 tensors of shape ``(C,)``; empty for a
        model without norm layers (no forward is run then).
    """
    layers = norm_layers(model)
    if not layers:
        return {}
    with _modes(model, "pooled"), norm_mask(model, mask), torch.no_grad():
        model(x)
    return {name: (layer.mean.clone(), layer.var.clone()) for name, layer in layers.items()}


def pooled_forward(
    model: nn.Module,
    x: Tensor,
    mask: Tensor | None = None,
    *,
    boxes: Sequence[Box] | None = None,
    weights: Sequence[float] | None = None,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    proxy: BlockProxy | None = None,
) -> tuple[Tensor, dict[str, Stats]]:
    """A forward in ``"pooled"`` mode over the batch ``x``: its outputs and statistics.

    The outputs equal those of a forward with the returned statistics fixed, so a caller
    that translates a scene can keep them. A batch of several samples runs from norm layer
    to norm layer over per-sample tensors (:func:`_layer_major_forward`) when the model
    declares its chain of layers (``layer_sequence``, ``residual_body``, or a plain
    ``nn.Sequential``), else one sample
    per thread in turns (:class:`_Lockstep`): the same result as one batched forward, with
    tensors of one sample each (several times faster on CPU for large tiles, which as one
    batch spend most of their time page-faulting fresh memory).

    Args:
        model: the network (its modes are restored afterwards).
        x: the batch ``(N, C, H, W)`` in the model's input range.
        mask: valid pixels ``(N, 1, H, W)`` (or ``(N, H, W)``), or None.
        boxes, weights: as :func:`norm_region` (each scene pixel counted once).
        context: a context entered around each forward (e.g. autocast, which is per thread).
        proxy: when the batch is a weighted sample of a scene's blocks (``weights``: how
            many blocks each stands for), the moments of a cheap pass over the whole scene
            within every block (:func:`block_moments`): each layer's pooled statistics are
            then regression estimates of the whole scene's (:func:`_regression_stats`),
            and the outputs those of a forward with them fixed. Ignored for one sample.

    Returns:
        The outputs ``(N, C_out, H, W)`` and ``{layer name: (mean, var)}``.
    """
    layers = norm_layers(model)
    n = int(x.shape[0])
    size = (int(x.shape[-2]), int(x.shape[-1]))
    prepared = None if mask is None else _as_mask(mask)
    region = _make_region(boxes, size, weights)
    proxies = _layer_proxies(layers, proxy, n, weights)
    with _modes(model, "pooled"):
        if n == 1 or not layers:
            with norm_mask(model, prepared), _layer_attribute(model, "region", region):
                with torch.no_grad(), context():
                    out = model(x)
        elif _supports_layer_major(model):
            with torch.no_grad(), context():
                out = _layer_major_forward(model, x, prepared, region, proxies)
        else:
            out = _lockstep_forward(model, x, prepared, region, context, proxies)
    stats = {name: (layer.mean.clone(), layer.var.clone()) for name, layer in layers.items()}
    return out, stats


def _layer_proxies(
    layers: Mapping[str, SceneInstanceNorm2d],
    proxy: BlockProxy | None,
    n: int,
    weights: Sequence[float] | None,
) -> dict[SceneInstanceNorm2d, _LayerProxy]:
    """Each norm layer's share of ``proxy`` (none for one sample or no proxy)."""
    if proxy is None or n < 2:
        return {}
    if len(proxy.samples) != n or set(proxy.moments) != set(layers):
        raise ModelError(
            f"the block proxy covers {len(proxy.samples)} samples and layers "
            f"{sorted(proxy.moments)}; the batch has {n} samples and norm layers "
            f"{sorted(layers)}: make it with block_moments() on the same model"
        )
    samples = list(proxy.samples)
    given = [1.0] * n if weights is None else [float(v) for v in weights]
    return {layer: (proxy.moments[name], samples, given) for name, layer in layers.items()}


@torch.no_grad()
def block_moments(
    model: nn.Module,
    x: Tensor,
    boxes: Sequence[Box],
    mask: Tensor | None = None,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Tensor]:
    """One ``"pooled"`` forward of the single sample ``x`` ``(1, C, H, W)`` (e.g. a
    downsampled view of a scene), and at each norm layer the moments of its input within
    each of ``boxes`` (input pixels; each layer scales them to its grid, at least one
    cell): ``{layer name: (len(boxes), 3, C)}`` float64, the valid cells (by ``mask``,
    as the layer weighs them), their sums and their sums of squares. What
    :class:`BlockProxy` holds."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ModelError(f"block_moments takes one sample (1, C, H, W); got {tuple(x.shape)}")
    layers = norm_layers(model)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    moments: dict[str, Tensor] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            layer = cast(SceneInstanceNorm2d, module)
            inner = args[0]
            moments[name] = _box_moments(inner, layer._weight(inner, layer.mask), boxes, size)

        return hook

    handles = [layer.register_forward_pre_hook(record(name)) for name, layer in layers.items()]
    try:
        prepared = None if mask is None else _as_mask(mask)
        with _modes(model, "pooled"), norm_mask(model, prepared), context():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return moments


def _box_moments(
    x: Tensor, weight: Tensor | None, boxes: Sequence[Box], size: tuple[int, int]
) -> Tensor:
    """``(len(boxes), 3, C)`` float64 moments of the one-sample ``x`` within each box
    (given on a ``size`` grid, scaled to ``x``'s, at least one cell): the rows of every
    distinct row span summed at once (one float32 matrix product of the span indicators
    and the layer laid out ``(rows, cols x C)``), then each box's columns taken from a
    running float64 sum along its span. Summed-area tables of the whole layer in float64
    took 0.47 s over the bundled model's 512 px view, a loop over the spans 0.12 s, this
    0.05 s."""
    _, c, h, w = x.shape
    sy, sx = h / size[0], w / size[1]
    spans: dict[tuple[int, int], int] = {}
    rows_of, cols = [], []
    for top, left, bottom, right in boxes:
        y0 = min(max(round(top * sy), 0), h - 1)
        x0 = min(max(round(left * sx), 0), w - 1)
        span = (y0, max(y0 + 1, min(round(bottom * sy), h)))
        rows_of.append(spans.setdefault(span, len(spans)))
        cols.append((x0, max(x0 + 1, min(round(right * sx), w))))
    pick = torch.zeros((len(spans), h), dtype=torch.float32, device=x.device)
    for (first, stop), j in spans.items():
        pick[j, first:stop] = 1.0
    values = x[0].permute(1, 2, 0).float()  # (rows, cols, C): no copy for channels-last
    if weight is None:
        cells = torch.ones((h, w), dtype=torch.float32, device=x.device)
        weighted = values
    else:
        cells = weight[0, 0].float()
        weighted = values * cells[:, :, None]
    planes = torch.cat(
        [
            (pick @ cells)[:, :, None],
            (pick @ weighted.reshape(h, w * c)).view(-1, w, c),
            (pick @ (weighted * values).reshape(h, w * c)).view(-1, w, c),
        ],
        dim=2,
    ).double()  # (spans, cols, 1 + 2C)
    running = F.pad(planes.cumsum(1), (0, 0, 1, 0))  # (spans, cols + 1, 1 + 2C)
    span_of = torch.tensor(rows_of, device=x.device)
    starts = torch.tensor([a for a, _ in cols], device=x.device)
    ends = torch.tensor([b for _, b in cols], device=x.device)
    sums = running[span_of, ends] - running[span_of, starts]  # (boxes, 1 + 2C)
    out = torch.empty((len(boxes), 3, c), dtype=torch.float64, device=x.device)
    out[:, 0] = sums[:, :1].expand(-1, c)
    out[:, 1] = sums[:, 1 : 1 + c]
    out[:, 2] = sums[:, 1 + c :]
    return out


def _supports_layer_major(module: nn.Module) -> bool:
    """Whether :func:`_layer_major` can run ``module``: its forward is a plain chain of
    children (``nn.Sequential``, or a module naming its chain in ``layer_sequence``), a
    residual ``x + body(x)`` (``residual_body``), a norm layer, or free of norm layers."""
    if isinstance(module, SceneInstanceNorm2d) or not norm_layers(module):
        return True
    for attribute in ("residual_body", "layer_sequence"):
        inner = getattr(module, attribute, None)
        if isinstance(inner, nn.Module):
            return _supports_layer_major(inner)
    if type(module) is nn.Sequential:
        return all(_supports_layer_major(child) for child in module)
    return False


_Op = Callable[[int, Tensor], Tensor]
"""One step of a pooled pass applied to sample ``i``'s tensor."""
_Step = tuple[str, Any]
"""``("op", _Op)`` or ``("pool", SceneInstanceNorm2d)``."""


def _program(module: nn.Module, skips: dict[tuple[object, int], Tensor]) -> list[_Step]:
    """``module``'s forward as a flat list of per-sample steps and norm layers (a module
    that :func:`_supports_layer_major`). A residual ``x + body(x)`` keeps each sample's
    input in ``skips`` until it is added."""
    if isinstance(module, SceneInstanceNorm2d):
        return [("pool", module)]
    if not norm_layers(module):
        return [("op", lambda i, x: module(x))]
    body = getattr(module, "residual_body", None)
    if isinstance(body, nn.Module):
        slot = object()  # this residual's own key

        def keep(i: int, x: Tensor) -> Tensor:
            skips[slot, i] = x
            return x

        def add(i: int, x: Tensor) -> Tensor:
            return x + skips.pop((slot, i))

        return [("op", keep), *_program(body, skips), ("op", add)]
    chain = getattr(module, "layer_sequence", None)
    if isinstance(chain, nn.Module):
        return _program(chain, skips)
    return [step for child in cast(nn.Sequential, module) for step in _program(child, skips)]


def _normalizing(mean: Tensor, var: Tensor, eps: float) -> _Op:
    """The step that normalises a sample with fixed statistics."""
    return lambda i, x: _normalize(x, mean, var, eps)


def _layer_major_forward(
    model: nn.Module,
    x: Tensor,
    mask: Tensor | None,
    region: Region | None,
    proxies: Mapping[SceneInstanceNorm2d, _LayerProxy] | None = None,
) -> Tensor:
    """A pooled forward of the batch ``x``, each sample a tensor of its own (no threads).

    The layers between two norm layers run sample by sample, each sample's sums taken
    right after (its activations still in cache); at each norm layer the sums are pooled
    and the pooled normalisation becomes the first step of the next stretch. Only the
    inputs of the norm layers (and of residual blocks) are held for every sample. Running
    each layer over all samples in turn instead streamed every intermediate tensor through
    memory: for 11 tiles of 736 px of the bundled model it took 1.20x (bf16) and 1.27x
    (fp32) their forward in fixed mode, against 1.12x and 1.24x this way, and its peak
    memory was 1.7x (bf16) and 1.2x (fp32) this way's (docs/benchmarks.md).
    """
    n = int(x.shape[0])
    xs = [x[i : i + 1] for i in range(n)]
    stretch: list[_Op] = []

    def run(layer: SceneInstanceNorm2d | None) -> list[tuple[Sums, Sums]]:
        parts = []
        for i in range(n):
            xi = xs[i]
            for op in stretch:
                xi = op(i, xi)
            xs[i] = xi
            if layer is not None:
                sample_mask = None if mask is None else mask[i : i + 1]
                parts.append(layer._sums(xi, sample_mask, _sample_region(region, i)))
        return parts

    for kind, step in _program(model, {}):
        if kind == "op":
            stretch.append(step)
            continue
        layer = cast(SceneInstanceNorm2d, step)
        mean, var = _pool_sums(run(layer), (proxies or {}).get(layer))
        layer.mean, layer.var, layer.has_stats = mean, var, True
        stretch = [_normalizing(mean, var, layer.eps)]
    run(None)
    return torch.cat(xs)


def _lockstep_forward(
    model: nn.Module,
    x: Tensor,
    mask: Tensor | None,
    region: Region | None,
    context: Callable[[], contextlib.AbstractContextManager[Any]],
    proxies: Mapping[SceneInstanceNorm2d, _LayerProxy] | None = None,
) -> Tensor:
    n = int(x.shape[0])
    masks = None if mask is None else [mask[i : i + 1] for i in range(n)]
    lockstep = _Lockstep(n, masks, region, proxies)
    layers = norm_layers(model)
    outs: list[Tensor | None] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def work(i: int) -> None:
        try:
            with lockstep.turn:
                lockstep.index = i
                with torch.no_grad(), context():
                    outs[i] = model(x[i : i + 1])
        except BaseException as exc:  # re-raised by the caller's thread
            errors[i] = exc
            lockstep.abort()

    for layer in layers.values():
        layer.lockstep = lockstep
    threads = [
        threading.Thread(target=work, args=(i,), name=f"rsgan-pool-{i}", daemon=True)
        for i in range(n)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:
        lockstep.abort()
        raise
    finally:
        for layer in layers.values():
            layer.lockstep = None
    raised = [e for e in errors if e is not None]
    if raised:
        first = next(
            (e for e in raised if not isinstance(e, threading.BrokenBarrierError)), raised[0]
        )
        raise first
    return torch.cat([o for o in outs if o is not None])


@contextlib.contextmanager
def fixed_norm_stats(model: nn.Module, stats: Mapping[str, Stats]) -> Iterator[None]:
    """Within the block, every norm layer uses the given statistics (mode ``"fixed"``).

    Args:
        model: the network; its modes and recorded statistics are restored afterwards.
        stats: as returned by :func:`collect_norm_stats` for the same architecture.

    Raises:
        ModelError: if ``stats`` lacks a layer of ``model`` or has the wrong channel count.
    """
    layers = norm_layers(model)
    missing = sorted(set(layers) - set(stats))
    if missing:
        raise ModelError(
            f"the norm statistics lack {len(missing)} layer(s) of this model (e.g. "
            f"{missing[0]!r}); collect them with collect_norm_stats() on the same model"
        )
    saved = {name: (layer.mean, layer.var, layer.has_stats) for name, layer in layers.items()}
    try:
        for name, layer in layers.items():
            mean, var = stats[name]
            if mean.numel() != layer.num_features or var.numel() != layer.num_features:
                raise ModelError(
                    f"norm statistics for {name!r} have {mean.numel()} channels; the layer "
                    f"has {layer.num_features}"
                )
            layer.mean = mean.detach().to(torch.float32).reshape(-1)
            layer.var = var.detach().to(torch.float32).reshape(-1)
            layer.has_stats = True
        with _modes(model, "fixed"):
            yield
    finally:
        for name, layer in layers.items():
            layer.mean, layer.var, layer.has_stats = saved[name]


def shared_copy(model: nn.Module) -> nn.Module | None:
    """A copy of ``model``'s modules that shares its parameters, buffers and forward hooks
    (a hook still sees every call), e.g. for another thread, whose per-forward state (the
    norm layers' valid mask) is then its own; None when the model cannot be copied."""
    shared: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    for module in model.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            shared.update((id(hook), hook) for hook in hooks.values())
    try:
        return copy.deepcopy(model, shared)
    except Exception:  # a module holding something that cannot be copied
        return None


_FOLDABLE = (nn.Conv2d, nn.ConvTranspose2d)


def fold_norm_stats(model: nn.Module, stats: Mapping[str, Stats]) -> nn.Module | None:
    """A copy of ``model`` for inference with the fixed ``stats`` folded into the
    convolutions before its norm layers, or None where that is not possible.

    A norm layer in fixed mode computes ``(y - mean) / sqrt(var + eps)`` of the convolution
    ``y = w * x + b`` before it, which is the convolution with weights ``w / sqrt(var +
    eps)`` and bias ``(b - mean) / sqrt(var + eps)``: the copy has those convolutions and an
    ``nn.Identity`` for each norm layer, and skips one pass over every normalised
    activation. On the 2-core CPU the bundled generator took 0.89x the time in fp32 (6
    rounds). The result equals the fixed-statistics forward to float rounding in float32
    (1.5e-5 DN on average for the bundled model); in bf16 the folded weights round to
    other bf16 values (0.15 DN on average, 2.8 DN at most), so use it in float32.

    The copy shares every other parameter and buffer with ``model`` (which is not
    changed). None when some norm layer is not directly after a convolution with a bias
    in an ``nn.Sequential``, lacks statistics, or a forward hook is set on it or on its
    convolution (the hook would not see what it saw).
    """
    layers = norm_layers(model)
    if not layers:
        return None
    names = {id(m): n for n, m in model.named_modules()}
    pairs: list[tuple[str, str, SceneInstanceNorm2d]] = []
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.children())
        for conv, norm in zip(children, children[1:], strict=False):
            if not isinstance(norm, SceneInstanceNorm2d):
                continue
            name = names[id(norm)]
            hooked = any(m._forward_hooks or m._forward_pre_hooks for m in (conv, norm))
            if (
                not isinstance(conv, _FOLDABLE)
                or conv.bias is None
                or conv.groups != 1
                or name not in stats
                or hooked
            ):
                return None
            pairs.append((names[id(conv)], name, norm))
    if len(pairs) != len(layers):
        return None
    twin = shared_copy(model)
    if twin is None:
        return None
    with torch.no_grad():
        for conv_name, norm_name, norm in pairs:
            conv = cast(nn.Conv2d | nn.ConvTranspose2d, twin.get_submodule(conv_name))
            mean, var = (t.detach().double().reshape(-1) for t in stats[norm_name])
            scale = torch.rsqrt(var + norm.eps)
            # output channels: dim 0 of a Conv2d's weight, dim 1 of a ConvTranspose2d's
            shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
            weight = conv.weight.double() * scale.reshape(shape)
            bias = (cast(Tensor, conv.bias).double() - mean) * scale
            conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
            conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
            parent_name, _, child = norm_name.rpartition(".")
            setattr(twin.get_submodule(parent_name), child, nn.Identity())
    return twin


__all__ = [
    "NORM_MODES",
    "BlockProxy",
    "SceneInstanceNorm2d",
    "block_moments",
    "Stats",
    "collect_norm_stats",
    "fixed_norm_stats",
    "fold_norm_stats",
    "norm_layers",
    "norm_mask",
    "norm_region",
    "pooled_forward",
    "set_norm_mode",
    "shared_copy",
]
