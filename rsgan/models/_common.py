"""Helpers shared by the model modules: config validation and the papers' weight init."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from rsgan.errors import ConfigError


def check_positive(config: Any, names: tuple[str, ...]) -> None:
    """Raise ConfigError unless each named field of ``config`` is an int >= 1."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"{type(config).__name__}.{name} must be a positive integer; got {value!r}"
            )


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build the config dataclass ``cls`` from a dict, refusing unknown keys."""
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field(s) {', '.join(unknown)}; known fields: "
            f"{', '.join(sorted(known))}"
        )
    return cls(**data)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise as the papers: conv weights N(0, std), biases 0, batch-norm scale N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
