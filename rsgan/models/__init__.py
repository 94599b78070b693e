"""The GAN architectures (torch only; never imports rasterio).

A small registry maps a model kind to its config class and its builder, so checkpoints,
training and the CLI pick architectures by name without if/elif chains::

    nets = build_nets("cyclegan", CycleGANConfig(in_channels_a=4, in_channels_b=4, ngf=32))
    nets["G_AB"]  # ResnetGenerator
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from rsgan.errors import ConfigError
from rsgan.models.cyclegan import (
    CycleGANConfig,
    PatchDiscriminator,
    ResnetGenerator,
    build_cyclegan,
)
from rsgan.models.dcgan import (
    DCGAN_SIZES,
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
    build_dcgan,
)
from rsgan.models.layers import (
    NORM_MODES,
    BlockProxy,
    SceneInstanceNorm2d,
    block_moments,
    collect_norm_stats,
    fixed_norm_stats,
    norm_layers,
    norm_mask,
    norm_region,
    pooled_forward,
    set_norm_mode,
)


@dataclass(frozen=True)
class ModelKind:
    """One registered architecture.

    Attributes:
        name: the registry key ("cyclegan", "dcgan").
        config_cls: its config dataclass (with ``to_dict``/``from_dict``).
        build: config -> ``{net name: module}``.
        generators: names of the nets needed for inference.
        directions: inference direction -> (generator name, input domain or None for a
            latent, output domain); the first is the default direction.
        domain_channels: config -> ``{domain name: band count}`` ("a"/"b" or "data").
    """

    name: str
    config_cls: type[Any]
    build: Callable[[Any], dict[str, nn.Module]]
    generators: tuple[str, ...]
    directions: Mapping[str, tuple[str, str | None, str]]
    domain_channels: Callable[[Any], dict[str, int]]


MODEL_KINDS: dict[str, ModelKind] = {
    "cyclegan": ModelKind(
        name="cyclegan",
        config_cls=CycleGANConfig,
        build=build_cyclegan,
        generators=("G_AB", "G_BA"),
        directions={"a2b": ("G_AB", "a", "b"), "b2a": ("G_BA", "b", "a")},
        domain_channels=lambda c: {"a": c.in_channels_a, "b": c.in_channels_b},
    ),
    "dcgan": ModelKind(
        name="dcgan",
        config_cls=DCGANConfig,
        build=build_dcgan,
        generators=("G",),
        directions={"generate": ("G", None, "data")},
        domain_channels=lambda c: {"data": c.channels},
    ),
}


def model_kind(kind: str) -> ModelKind:
    """The registry entry for ``kind``; ConfigError naming the known kinds otherwise."""
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown model kind {kind!r}; use one of {', '.join(sorted(MODEL_KINDS))}"
        ) from None


def make_config(kind: str, config: Any = None) -> Any:
    """``config`` as the kind's config dataclass: None gives defaults, a dict is converted."""
    spec = model_kind(kind)
    if config is None:
        return spec.config_cls()
    if isinstance(config, Mapping):
        return spec.config_cls.from_dict(dict(config))
    if not isinstance(config, spec.config_cls):
        raise ConfigError(
            f"a {kind} model needs a {spec.config_cls.__name__}; got {type(config).__name__}"
        )
    return config


def build_nets(kind: str, config: Any = None) -> dict[str, nn.Module]:
    """Build the nets of ``kind``: G_AB, G_BA, D_A, D_B (cyclegan) or G, D (dcgan)."""
    return model_kind(kind).build(make_config(kind, config))


__all__ = [
    "DCGAN_SIZES",
    "MODEL_KINDS",
    "NORM_MODES",
    "BlockProxy",
    "CycleGANConfig",
    "DCGANConfig",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "ModelKind",
    "PatchDiscriminator",
    "ResnetGenerator",
    "SceneInstanceNorm2d",
    "block_moments",
    "build_nets",
    "collect_norm_stats",
    "fixed_norm_stats",
    "make_config",
    "model_kind",
    "norm_layers",
    "norm_mask",
    "norm_region",
    "pooled_forward",
    "set_norm_mode",
]
