"""CycleGAN networks (Zhu et al. 2017) for any number of bands.

* :class:`ResnetGenerator`: 7x7 conv, two stride-2 downsamples, residual blocks with
  reflection padding, two transposed-conv upsamples, 7x7 conv, tanh; instance norm is
  :class:`~rsgan.models.layers.SceneInstanceNorm2d` (masked, scene-consistent).
* :class:`PatchDiscriminator`: the 70x70 PatchGAN (with ``n_layers=3``).

Inputs are ``(N, C, H, W)`` in [-1, 1]; the generator's outputs are too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from rsgan.errors import ConfigError, ModelError
from rsgan.models._common import (
    BinomialBlur2d,
    NarrowConv2d,
    ReflectionPad2d,
    check_positive,
    config_from_dict,
    init_weights,
)
from rsgan.models.layers import SceneInstanceNorm2d, norm_mask

UPSAMPLE_MODES = ("deconv", "resize", "blur")
"""How a :class:`ResnetGenerator` upsamples (see :class:`CycleGANConfig`)."""


def _check_upsample(upsample: str) -> None:
    if upsample not in UPSAMPLE_MODES:
        raise ConfigError(f"unknown upsample {upsample!r}; use one of {', '.join(UPSAMPLE_MODES)}")


@dataclass(frozen=True)
class CycleGANConfig:
    """Architecture and objective of a CycleGAN.

    Attributes:
        in_channels_a: bands of domain A.
        in_channels_b: bands of domain B (may differ from A).
        ngf: generator width (filters of the first conv).
        ndf: discriminator width.
        n_blocks: residual blocks in each generator (the paper: 6 at 128 px, 9 at 256 px).
        n_layers_d: stride-2 conv layers of the PatchGAN (3 gives 70x70 patches).
        lambda_cycle: weight of the cycle-consistency L1 loss (paper: 10).
        lambda_identity: identity loss weight as a fraction of ``lambda_cycle`` (paper:
            0.5); used only when A and B have the same band count.
        pool_size: size of each pool of past fakes shown to the discriminators (paper: 50).
        upsample: how the generators upsample: ``"deconv"`` (stride-2 transposed
            convolutions, as the paper; their uneven overlap stamps a 2-4 px checkerboard
            pattern, Odena et al. 2016), ``"blur"`` (the same, each followed after its
            activation by a fixed binomial low-pass, :class:`BinomialBlur2d`, which
            removes its 2 px part at 1.04-1.07x the time in bf16) or ``"resize"``
            (nearest-neighbour 2x, then a 3x3 convolution: 1.25x the time). Measured for
            the bundled model's size on the 2-core CPU, docs/model-card.md.
        lambda_periodic: weight of a loss against the dot pattern of the generators'
            4 px stride grid (:func:`rsgan.losses.periodic_peaks`): the power each
            output adds at that grid's frequencies, relative to the frequencies around
            them, beyond its input's. 0 (the paper, the default) leaves it out. Trained
            into the bundled model's recipe at 1, it took that grid's peaks away but not
            every artefact (docs/model-card.md).
    """

    in_channels_a: int = 3
    in_channels_b: int = 3
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    upsample: str = "deconv"
    lambda_periodic: float = 0.0

    def __post_init__(self) -> None:
        check_positive(
            self, ("in_channels_a", "in_channels_b", "ngf", "ndf", "n_blocks", "n_layers_d")
        )
        if self.lambda_cycle < 0 or self.lambda_identity < 0 or self.lambda_periodic < 0:
            raise ConfigError(
                f"loss weights must be >= 0; got lambda_cycle={self.lambda_cycle}, "
                f"lambda_identity={self.lambda_identity}, "
                f"lambda_periodic={self.lambda_periodic}"
            )
        if not isinstance(self.pool_size, int) or self.pool_size < 0:
            raise ConfigError(f"pool_size must be an integer >= 0; got {self.pool_size!r}")
        _check_upsample(self.upsample)

    @property
    def uses_identity(self) -> bool:
        """Whether the identity loss applies (same band count in A and B, weight > 0)."""
        return self.in_channels_a == self.in_channels_b and self.lambda_identity > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CycleGANConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        return config_from_dict(cls, data)


class _ResidualBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, pad, conv3x3, norm)(x); channels unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            SceneInstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            SceneInstanceNorm2d(channels),
        )

    @property
    def residual_body(self) -> nn.Module:
        """The forward is ``x + residual_body(x)`` (for layer-by-layer pooled passes)."""
        return self.body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _check_input(net: nn.Module, x: Tensor, channels: int, multiple: int, min_size: int) -> None:
    name = type(net).__name__
    if x.ndim != 4:
        raise ModelError(f"{name} expects a batch (N, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ModelError(
            f"{name} expects {channels} band(s) but the input has {x.shape[1]}; select "
            f"{channels} bands (bands=...) or use a model trained on {x.shape[1]} bands"
        )
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h < min_size or w < min_size:
        raise ModelError(
            f"{name} needs rows and cols that are multiples of {multiple} and at least "
            f"{min_size}; got {h}x{w}: use a tile size such as 256"
        )


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator.

    Args:
        in_channels: bands of the input.
        out_channels: bands of the output.
        ngf: filters of the first conv (doubled at each downsample).
        n_blocks: residual blocks at 1/4 resolution.
        upsample: ``"deconv"`` (transposed convolutions), ``"blur"`` (the same, each
            followed by a binomial low-pass) or ``"resize"`` (nearest 2x and a 3x3
            convolution); see :class:`CycleGANConfig`.

    Input ``(N, in_channels, H, W)`` in [-1, 1] with H and W multiples of
    :attr:`size_multiple` and at least :attr:`min_size`; output
    ``(N, out_channels, H, W)`` in [-1, 1].
    """

    size_multiple = 4
    """Rows and cols of the input must be multiples of this (two stride-2 downsamples)."""
    min_size = 8
    """Smallest rows/cols: reflection padding at 1/4 resolution needs at least 2 px there."""
    prefers_channels_last = True
    """Inference is faster with channels-last inputs: oneDNN's convolutions then skip their
    layout reorders (measured on the 2-core CPU, 736 px tiles of the bundled model: 11-15 %
    less time in bf16, ~20 % in fp32; docs/benchmarks.md). Outputs agree with a
    channels-first run to float rounding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_blocks: int = 9,
        upsample: str = "deconv",
    ):
        super().__init__()
        _check_upsample(upsample)
        self.in_channels = in_channels
        self.out_channels = out_channels
        layers: list[nn.Module] = [
            ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7),
            SceneInstanceNorm2d(ngf),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):  # downsample: ngf -> 2 ngf -> 4 ngf, H -> H/4
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                SceneInstanceNorm2d(ngf * mult * 2),
                nn.ReLU(inplace=True),
            ]
        layers += [_ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):  # upsample: 4 ngf -> 2 ngf -> ngf, H/4 -> H
            if upsample == "resize":  # every output pixel sees the same kernel
                layers += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    ReflectionPad2d(1),
                    nn.Conv2d(ngf * mult, ngf * mult // 2, 3),
                ]
            else:
                layers.append(
                    nn.ConvTranspose2d(
                        ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1
                    )
                )
            layers += [SceneInstanceNorm2d(ngf * mult // 2), nn.ReLU(inplace=True)]
            if upsample == "blur":  # the uneven overlap's 2 px pattern filtered out
                layers.append(BinomialBlur2d(ngf * mult // 2))
        layers += [ReflectionPad2d(3), NarrowConv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    @property
    def layer_sequence(self) -> nn.Module:
        """The forward is this chain of layers (for layer-by-layer pooled passes)."""
        return self.model

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Translate ``x`` ``(N, C_in, H, W)``; ``mask`` ``(N, 1, H, W)`` marks valid pixels
        for the norm statistics (None: use what :func:`norm_mask` set, or all pixels)."""
        _check_input(self, x, self.in_channels, self.size_multiple, self.min_size)
        if mask is None:
            return self.model(x)
        with norm_mask(self, mask):
            return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: a map of real/fake logits, one per overlapping patch.

    Args:
        in_channels: bands of the images it judges.
        ndf: filters of the first conv (doubled per layer, at most 8x).
        n_layers: stride-2 conv layers; 3 gives 70x70 receptive fields.

    Input ``(N, in_channels, H, W)``, H and W at least :meth:`min_input_size`; output
    ``(N, 1, H / 2**n_layers - 2, W / 2**n_layers - 2)`` logits (no sigmoid: LSGAN).
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.n_layers = n_layers
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1),
                SceneInstanceNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def min_input_size(self) -> int:
        """Smallest rows/cols giving at least one output patch."""
        return 3 * 2**self.n_layers

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Patch logits for ``x`` ``(N, C, H, W)``; ``mask`` as :meth:`ResnetGenerator.forward`."""
        _check_input(self, x, self.in_channels, 1, self.min_input_size())
        if mask is None:
            return self.model(x)
        with norm_mask(self, mask):
            return self.model(x)


def build_cyclegan(config: CycleGANConfig) -> dict[str, nn.Module]:
    """The four nets: ``G_AB`` (A -> B), ``G_BA`` (B -> A), ``D_A`` and ``D_B``."""
    a, b = config.in_channels_a, config.in_channels_b
    return {
        "G_AB": ResnetGenerator(a, b, config.ngf, config.n_blocks, config.upsample),
        "G_BA": ResnetGenerator(b, a, config.ngf, config.n_blocks, config.upsample),
        "D_A": PatchDiscriminator(a, config.ndf, config.n_layers_d),
        "D_B": PatchDiscriminator(b, config.ndf, config.n_layers_d),
    }


__all__ = [
    "CycleGANConfig",
    "PatchDiscriminator",
    "ResnetGenerator",
    "build_cyclegan",
]
