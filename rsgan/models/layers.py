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
  with :func:`collect_norm_stats`, then translate every tile with :func:`fixed_norm_stats`,
  and all tiles are normalised alike.

Statistics are always computed in float32, also under bf16 autocast (explicitly, or by
torch's own instance-norm kernel, which accumulates in float32, on the unmasked per-sample
path); the output keeps the input's dtype. Every helper leaves a module without these layers untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsgan.errors import ConfigError, ModelError

NORM_MODES = ("instance", "pooled", "fixed")

Stats = tuple[Tensor, Tensor]
"""Per-channel ``(mean, var)``, each of shape ``(C,)``, float32."""


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
            # torch's kernel keeps bf16 inputs in bf16 but accumulates its statistics in
            # fp32; 4x faster than a round trip through fp32 here
            return F.instance_norm(x, eps=self.eps)
        xf = x.float()
        if self.mode == "fixed":
            if not self.has_stats:
                raise ModelError(
                    "a norm layer is in 'fixed' mode but has no statistics; collect them "
                    "with collect_norm_stats() and apply them with fixed_norm_stats()"
                )
            mean = self.mean.to(xf.device).view(1, -1, 1, 1)
            var = self.var.to(xf.device).view(1, -1, 1, 1)
        else:
            weight = self._weight(xf)
            pooled = self.mode == "pooled"
            mean, var = _weighted_stats(xf, weight, pooled=pooled)
            if pooled:
                self.mean = mean.detach().view(-1).clone()
                self.var = var.detach().view(-1).clone()
                self.has_stats = True
        out = (xf - mean) * torch.rsqrt(var + self.eps)
        return out.to(x.dtype)

    def _weight(self, x: Tensor) -> Tensor | None:
        """The mask resized to ``x``'s rows and cols, ``(N, 1, h, w)`` float32, or None."""
        if self.mask is None:
            return None
        mask = self.mask
        if mask.shape[0] != x.shape[0]:
            raise ModelError(
                f"the valid mask has {mask.shape[0]} samples but the batch has {x.shape[0]}; "
                "pass one mask per sample"
            )
        size = tuple(x.shape[-2:])
        mask = mask.to(device=x.device, dtype=torch.float32)
        if tuple(mask.shape[-2:]) == size:
            return mask
        shrinks = mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]
        return F.interpolate(mask, size=size, mode="area" if shrinks else "nearest")


def _weighted_stats(x: Tensor, weight: Tensor | None, *, pooled: bool) -> Stats:
    """Mean and biased variance of ``x`` over rows/cols (and samples when ``pooled``).

    ``weight`` ``(N, 1, H, W)`` in [0, 1] weighs each cell; where a sample (or the batch,
    when pooled) has zero total weight, every cell counts equally instead.
    Returns tensors broadcastable to ``x``: ``(N, C, 1, 1)``, or ``(1, C, 1, 1)`` pooled.
    """
    dims = (0, 2, 3) if pooled else (2, 3)
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
    layers = norm_layers(model)
    prepared = None if mask is None or not layers else _as_mask(mask)
    previous = {name: layer.mask for name, layer in layers.items()}
    try:
        for layer in layers.values():
            layer.mask = prepared
        yield
    finally:
        for name, layer in layers.items():
            layer.mask = previous[name]


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


__all__ = [
    "NORM_MODES",
    "SceneInstanceNorm2d",
    "Stats",
    "collect_norm_stats",
    "fixed_norm_stats",
    "norm_layers",
    "norm_mask",
    "set_norm_mode",
]
