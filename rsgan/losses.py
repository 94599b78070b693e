"""GAN losses, masked so that nodata pixels count for nothing, and the pool of past fakes.

* :func:`lsgan_loss`: least-squares GAN loss (Mao et al. 2017), CycleGAN's adversarial loss.
* :func:`bce_loss`: binary cross-entropy on logits, DCGAN's.
* :func:`masked_l1`: mean absolute error over valid pixels (cycle and identity losses).
* :func:`patch_weights`: which discriminator patches count, from a valid mask.
* :func:`periodic_peaks`: the power a generator adds at the frequencies of its stride
  grid (the dots of transposed convolutions), from :func:`spectral_peaks`.
* :class:`ImagePool`: Shrivastava et al.'s history of generated images (CycleGAN: 50),
  seeded, with a state dict for exact resume.

Losses are computed in float32 whatever the precision of their inputs (bf16 autocast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rsgan.errors import ConfigError

MIN_VALID_PATCH = 0.5
"""A discriminator patch counts when at least this fraction of its pixels is valid."""


def _weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``values`` weighted by ``weight`` (broadcast); 0 when no weight is set."""
    if weight is None:
        return values.mean()
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def lsgan_loss(pred: Tensor, real: bool, weight: Tensor | None = None) -> Tensor:
    """Least-squares loss: mean of ``(pred - 1)**2`` for real, ``pred**2`` for fake targets.

    Args:
        pred: discriminator output, e.g. PatchGAN logits ``(N, 1, h, w)``.
        real: whether the target is "real" (1) or "fake" (0).
        weight: optional ``(N, 1, h, w)`` patch weights (see :func:`patch_weights`); patches
            of weight 0 are left out. All-zero weights give a loss of 0.
    """
    target = 1.0 if real else 0.0
    return _weighted_mean((pred.float() - target).square(), weight)


def bce_loss(logits: Tensor, real: bool, weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy on logits against an all-real (1) or all-fake (0) target."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    values = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return _weighted_mean(values, weight)


GAN_LOSSES: dict[str, Callable[..., Tensor]] = {"lsgan": lsgan_loss, "bce": bce_loss}


def gan_loss(name: str) -> Callable[..., Tensor]:
    """The adversarial loss called ``name`` ("lsgan" or "bce")."""
    try:
        return GAN_LOSSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown GAN loss {name!r}; use one of {', '.join(sorted(GAN_LOSSES))}"
        ) from None


def masked_l1(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean ``|x - y|`` over channels and the valid pixels.

    Args:
        x, y: ``(N, C, H, W)``.
        mask: ``(N, 1, H, W)`` (or ``(N, H, W)``) valid pixels, bool or float; None: all.

    Returns:
        A float32 scalar; 0 when no pixel is valid.
    """
    diff = (x.float() - y.float()).abs()
    if mask is None:
        return diff.mean()
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    return _weighted_mean(diff, mask.to(diff.dtype))


PERIODIC_WINDOW = 32
"""Side (px) of the squares whose power spectra :func:`periodic_peaks` averages: 8 bins
between the frequencies of a 4 px grid, so each has neighbours free of it, and 16
squares per 128 px training chip."""


def window_power(x: Tensor, period: int, window: int, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Welch's periodogram of each image and band over its ``window`` px squares (each
    square's mean taken off), counting only the squares whose pixels are all valid:
    ``(N, C, side, side)`` powers and ``(N,)`` whether any square counted. ``window`` must
    be a multiple of ``period`` (at least two periods), so that a pattern of ``period`` px
    falls on whole frequency bins; images smaller than ``window`` use their own side."""
    if window < 2 * period or window % period:
        raise ConfigError(
            f"window must be a multiple of period={period} and at least {2 * period}; got {window}"
        )
    n, c, h, w = x.shape
    side = min(window, h // period * period, w // period * period)
    if side < 2 * period:
        raise ConfigError(f"images of {h}x{w} px are too small for period {period}")
    rows, cols = h // side, w // side
    x = x[..., : rows * side, : cols * side].float().reshape(n, c, rows, side, cols, side)
    x = x.permute(0, 1, 2, 4, 3, 5)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square()  # (N, C, rows, cols, side, side)
    if mask is None:
        return power.mean(dim=(2, 3)), torch.ones(n, dtype=torch.bool, device=x.device)
    if mask.ndim == 4:
        mask = mask[:, 0]
    cells = mask[:, : rows * side, : cols * side].reshape(n, rows, side, cols, side)
    whole = cells.all(dim=4).all(dim=2).float()  # (N, rows, cols)
    count = whole.sum(dim=(1, 2))
    weight = (whole / count.clamp_min(1.0).view(n, 1, 1))[:, None, :, :, None, None]
    return (power * weight).sum(dim=(2, 3)), count > 0


def spectral_peaks(
    x: Tensor,
    period: int,
    mask: Tensor | None = None,
    *,
    window: int = PERIODIC_WINDOW,
    eps: float = 1e-2,
) -> Tensor:
    """How far the power at a ``period`` px grid's frequencies stands above the power
    around it, per image and band.

    Each image is cut into squares of ``window`` px (a multiple of ``period``; rows and
    cols beyond the last whole square are left out, a square larger than the image is
    the whole image), each square's mean is taken off, and the squares' power spectra
    (2-D DFT) are averaged (Welch's periodogram). A pattern repeated every ``period`` px
    puts its power on the bins ``(k, l) * window / period`` and on no other; natural
    content spreads its power smoothly over the bins. For each of those bins but the
    zero frequency, the result is ``log(P + eps)`` minus ``log(mean P of the 8 bins
    around it + eps)``: about 0 for natural images, above 0 for a grid pattern. Powers
    are summed, so dots whose sign follows the content (light on grass, dark on roofs)
    count fully.

    Args:
        x: ``(N, C, H, W)``.
        period: the pattern's period in pixels.
        mask: ``(N, 1, H, W)`` or ``(N, H, W)`` valid pixels, or None: all. Only squares
            whose pixels are all valid count; an image with none gives 0.
        window: side of the squares.
        eps: added to the powers (in the squared units of ``x`` times ``window ** 4``)
            so that flat images give 0.

    Returns:
        float32 ``(N, C, period ** 2 - 1)``.
    """
    power, valid = window_power(x, period, window, mask)
    side = power.shape[-1]
    step = side // period
    bins = [(u, v) for u in range(0, side, step) for v in range(0, side, step) if u or v]
    rows = torch.tensor([u for u, _ in bins], device=x.device)
    cols = torch.tensor([v for _, v in bins], device=x.device)
    around = [(du, dv) for du in (-1, 0, 1) for dv in (-1, 0, 1) if du or dv]
    peak = power[..., rows, cols]
    ring = torch.stack(
        [power[..., (rows + du) % side, (cols + dv) % side] for du, dv in around]
    ).mean(0)
    ratio = torch.log(peak + eps) - torch.log(ring + eps)
    return ratio * valid.view(-1, 1, 1)


def periodic_peaks(
    fake: Tensor,
    source: Tensor,
    period: int,
    mask: Tensor | None = None,
    *,
    window: int = PERIODIC_WINDOW,
) -> Tensor:
    """Mean of ``relu(p(fake) - p(source))`` over the :func:`spectral_peaks` ``p``: the
    power a generator adds at its stride grid's frequencies, relative to the frequencies
    around them, beyond what its input has there. Texture and colour changes move the
    power of neighbouring frequencies alike and cost little; a dot pattern costs
    whatever its sign. When the band counts differ, each band of ``fake`` is compared
    with the mean over the source's bands.

    Args:
        fake: the generator's output ``(N, C_out, H, W)``.
        source: its input ``(N, C_in, H, W)``.
        period: the generator's stride (4 for rsgan's).
        mask: valid pixels of ``source`` (see :func:`spectral_peaks`).
        window: side of the squares (see :func:`spectral_peaks`).

    Returns:
        A float32 scalar (natural log of power ratios).
    """
    with torch.no_grad():
        target = spectral_peaks(source, period, mask, window=window)
    if target.shape[1] != fake.shape[1]:
        target = target.mean(dim=1, keepdim=True)
    return torch.relu(spectral_peaks(fake, period, mask, window=window) - target).mean()


def patch_weights(
    mask: Tensor | None, pred: Tensor, min_valid: float = MIN_VALID_PATCH
) -> Tensor | None:
    """Which discriminator outputs count: 1 where the patch is mostly valid, else 0.

    The valid mask is area-averaged onto the output grid of ``pred`` (each output cell
    covers an equal share of the image; a PatchGAN cell's receptive field is larger, so
    this approximates "mostly valid"), then thresholded at ``min_valid``.

    Args:
        mask: ``(N, 1, H, W)`` float/bool valid mask of the judged images, or None.
        pred: the discriminator output ``(N, 1, h, w)``.

    Returns:
        ``(N, 1, h, w)`` float32 weights, or None when ``mask`` is None.
    """
    if mask is None:
        return None
    fraction = F.interpolate(mask.float(), size=tuple(pred.shape[-2:]), mode="area")
    return (fraction >= min_valid).float()


class ImagePool:
    """A buffer of past generated images (and their masks) shown to the discriminator.

    With probability 1/2 a query returns a stored image (replacing it by the new one),
    else the new image itself; until the pool is full every new image is stored and
    returned. Size 0 disables it. Randomness comes from the pool's own seeded generator,
    so the pool is reproducible and :meth:`state_dict` / :meth:`load_state_dict` restore
    it exactly.

    Args:
        size: how many images to keep.
        seed: seed of the pool's generator.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ConfigError(f"image pool size must be >= 0; got {size}")
        self.size = int(size)
        self.images: list[Tensor] = []
        self.masks: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """Exchange a batch ``(N, C, H, W)`` with masks ``(N, 1, H, W)`` against the pool.

        Returns:
            A batch of the same shape (detached), and its masks.
        """
        images, masks = images.detach(), masks.detach()
        if self.size == 0:
            return images, masks
        out_images, out_masks = [], []
        for image, mask in zip(images, masks, strict=True):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                self.masks.append(mask.clone())
                out_images.append(image)
                out_masks.append(mask)
                continue
            if float(torch.rand((), generator=self.generator)) < 0.5:
                i = int(torch.randint(0, self.size, (), generator=self.generator))
                out_images.append(self.images[i])
                out_masks.append(self.masks[i])
                self.images[i], self.masks[i] = image.clone(), mask.clone()
            else:
                out_images.append(image)
                out_masks.append(mask)
        return torch.stack(out_images), torch.stack(out_masks)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors (loadable with ``torch.load(weights_only=True)``)."""
        stack = (lambda xs: torch.stack(xs).cpu()) if self.images else (lambda xs: None)
        return {
            "size": self.size,
            "images": stack(self.images),
            "masks": stack(self.masks),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: Any = "cpu") -> None:
        """Restore what :meth:`state_dict` returned (images go to ``device``)."""
        self.size = int(state["size"])
        images, masks = state["images"], state["masks"]
        self.images = [] if images is None else [t.to(device) for t in images]
        self.masks = [] if masks is None else [t.to(device) for t in masks]
        self.generator.set_state(state["generator"])


__all__ = [
    "GAN_LOSSES",
    "MIN_VALID_PATCH",
    "PERIODIC_WINDOW",
    "ImagePool",
    "bce_loss",
    "gan_loss",
    "lsgan_loss",
    "masked_l1",
    "patch_weights",
    "periodic_peaks",
    "spectral_peaks",
    "window_power",
]
