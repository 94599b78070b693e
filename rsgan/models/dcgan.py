"""DCGAN networks (Radford et al. 2016) for any number of bands at 64, 128 or 256 px.

The generator maps a latent ``(N, nz)`` through a 4x4 transposed conv and stride-2
transposed convs (batch norm, ReLU) to ``(N, channels, size, size)`` with tanh; the
discriminator mirrors it with stride-2 convs (batch norm except on the first layer,
LeakyReLU(0.2)) down to one logit per image. No pooling, no fully connected hidden layers.
Each doubling of the image size adds one layer; channel widths are capped at 8x ngf/ndf.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rsgan.errors import ConfigError, ModelError
from rsgan.models._common import check_positive, config_from_dict, init_weights

DCGAN_SIZES = (64, 128, 256)
_MAX_MULT = 8


@dataclass(frozen=True)
class DCGANConfig:
    """Architecture of a DCGAN.

    Attributes:
        channels: bands of the generated images.
        image_size: rows = cols of the images, one of 64, 128, 256.
        nz: size of the latent vector.
        ngf: generator width (filters of its last hidden layer).
        ndf: discriminator width (filters of its first layer).
    """

    channels: int = 3
    image_size: int = 64
    nz: int = 100
    ngf: int = 64
    ndf: int = 64

    def __post_init__(self) -> None:
        check_positive(self, ("channels", "image_size", "nz", "ngf", "ndf"))
        if self.image_size not in DCGAN_SIZES:
            raise ConfigError(
                f"DCGAN image_size {self.image_size} is not supported; use one of "
                f"{', '.join(map(str, DCGAN_SIZES))}"
            )

    @property
    def n_hidden(self) -> int:
        """Stride-2 layers between the 4x4 and the output layer: 3 at 64 px, 5 at 256 px."""
        return self.image_size.bit_length() - 1 - 3

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DCGANConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        return config_from_dict(cls, data)


def _mults(n_hidden: int) -> list[int]:
    """Width multipliers from the 4x4 layer outwards: e.g. [8, 4, 2, 1] for 64 px."""
    return [min(2 ** (n_hidden - i), _MAX_MULT) for i in range(n_hidden + 1)]


class DCGANGenerator(nn.Module):
    """Latent ``(N, nz)`` (or ``(N, nz, 1, 1)``) -> images ``(N, channels, size, size)`` in [-1, 1]."""

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        mults = _mults(config.n_hidden)
        ngf = config.ngf
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.nz, ngf * mults[0], 4, 1, 0, bias=False),  # 1 -> 4 px
            nn.BatchNorm2d(ngf * mults[0]),
            nn.ReLU(inplace=True),
        ]
        for prev, mult in zip(mults[:-1], mults[1:], strict=True):  # doubles rows/cols each
            layers += [
                nn.ConvTranspose2d(ngf * prev, ngf * mult, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * mult),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(ngf * mults[-1], config.channels, 4, 2, 1, bias=False)]
        layers += [nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def latent(
        self, n: int, *, generator: torch.Generator | None = None, device: Any = None
    ) -> Tensor:
        """``n`` latent vectors ``(n, nz)`` from N(0, 1)."""
        return torch.randn(n, self.config.nz, generator=generator, device=device)

    def forward(self, z: Tensor) -> Tensor:
        """Generate from ``z`` ``(N, nz)`` or ``(N, nz, 1, 1)``."""
        if z.ndim == 2:
            z = z[:, :, None, None]
        if z.ndim != 4 or z.shape[1] != self.config.nz or z.shape[-2:] != (1, 1):
            raise ModelError(
                f"DCGANGenerator expects latents of shape (N, {self.config.nz}); got "
                f"{tuple(z.shape)}"
            )
        return self.model(z)


class DCGANDiscriminator(nn.Module):
    """Images ``(N, channels, size, size)`` -> real/fake logits ``(N,)`` (no sigmoid)."""

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        mults = _mults(config.n_hidden)[::-1]  # e.g. [1, 2, 4, 8]
        ndf = config.ndf
        layers: list[nn.Module] = [
            nn.Conv2d(config.channels, ndf * mults[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for prev, mult in zip(mults[:-1], mults[1:], strict=True):  # halves rows/cols each
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(ndf * mults[-1], 1, 4, 1, 0, bias=False)]  # 4 px -> 1
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        size = self.config.image_size
        if x.ndim != 4 or x.shape[1] != self.config.channels or x.shape[-2:] != (size, size):
            raise ModelError(
                f"DCGANDiscriminator expects (N, {self.config.channels}, {size}, {size}); got "
                f"{tuple(x.shape)}: use chips of {size} px with {self.config.channels} band(s)"
            )
        return self.model(x).view(-1)


def build_dcgan(config: DCGANConfig) -> dict[str, nn.Module]:
    """The two nets: ``G`` (generator) and ``D`` (discriminator)."""
    return {"G": DCGANGenerator(config), "D": DCGANDiscriminator(config)}


__all__ = ["DCGAN_SIZES", "DCGANConfig", "DCGANDiscriminator", "DCGANGenerator", "build_dcgan"]
