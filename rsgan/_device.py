"""Device and precision selection shared by training and inference. Torch only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from rsgan.errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a torch device.

    ``"auto"`` picks CUDA when available, else CPU.

    Raises:
        ConfigError: for an unknown name, or CUDA asked for on a machine without it.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} was asked for but this machine has no CUDA GPU; "
                "use device='cpu' or 'auto'"
            )
        return torch.device(name)
    raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None`` means bf16 on CUDA and fp32 on CPU; otherwise validate ``"fp32"``/``"bf16"``."""
    if precision is None or precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast on CUDA or CPU when ``precision == "bf16"``; a no-op for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
