"""Helpers shared by the model modules: config validation, the papers' weight init, and
a reflection pad that keeps bf16 activations in bf16 under autocast."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


_LOW_PRECISION = (torch.bfloat16, torch.float16)


class ReflectionPad2d(nn.ReflectionPad2d):
    """:class:`torch.nn.ReflectionPad2d` that pads bf16/fp16 activations in their own dtype
    under autocast.

    CPU autocast lists ``reflection_pad2d`` among the ops it runs in float32, so a bf16
    activation was copied to float32 (twice the bytes) and the convolution after it cast
    it back: on the 2-core CPU those two copies took a quarter of the bundled generator's
    bf16 forward (docs/benchmarks.md). Padding copies values, so padding in bf16 gives the
    float32 result's values exactly and the convolution sees the same bf16 input: the
    outputs are the same bit for bit. float32 inputs (and everything outside autocast) go
    through torch's module unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        kind = x.device.type
        if x.dtype in _LOW_PRECISION and torch.is_autocast_enabled(kind):
            with torch.autocast(kind, enabled=False):
                return F.pad(x, self.padding, mode="reflect")
        return super().forward(x)
