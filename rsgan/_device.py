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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU of compute capability 8.0 or
    later, or an x86 CPU with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and slower than
    fp32: the bundled generator on the 2-core EPYC, oneDNN and ATen limited to AVX-512
    without BF16, ran 2.45x the fp32 time in bf16, limited to AVX2 (most laptops) 8.7x;
    with AVX512-BF16 it takes 0.51x (docs/benchmarks.md, sixth session)."""
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # older torch: no emulation argument
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None`` (or ``"auto"``) means bf16 on a CUDA GPU that computes it natively, else
    fp32; otherwise validate ``"fp32"``/``"bf16"`` (an explicit bf16 is kept everywhere)."""
    if precision is None or precision == "auto":
        return "bf16" if device.type == "cuda" and native_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def preferred_precision(preference: str | None, device: torch.device) -> str:
    """The precision to run a model in when the user did not choose one: the model's
    stored ``preference`` where ``device`` computes it natively (bf16 on a CPU without
    AVX512-BF16 or AMX falls back to fp32, see :func:`native_bf16`), else
    :func:`resolve_precision`'s default."""
    if preference == "bf16" and not native_bf16(device):
        return "fp32"
    return resolve_precision(preference, device)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast on CUDA or CPU when ``precision == "bf16"``; a no-op for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
