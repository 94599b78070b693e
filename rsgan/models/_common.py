"""Helpers shared by the model modules: config validation, the papers' weight init, a
reflection pad that keeps bf16 activations in bf16 under autocast, and a fixed binomial
low-pass for checkerboard-free upsampling."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

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


PHASES = 2
"""Rows and cols of output phases :class:`NarrowConv2d` splits its output into."""


class NarrowConv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` for a few output channels (a generator's last layer), faster
    in inference on CPU.

    oneDNN computes convolutions in blocks of output channels (16 with AVX-512): a 7x7
    convolution to 3 bands costs as much as one to 16. For at most ``16 / PHASES**2``
    output channels, stride 1 and no padding, inference on CPU computes the output as its
    ``PHASES x PHASES`` interleaved phases instead: one stride-2 convolution with 4x the
    output channels and a kernel one pixel larger (each phase's kernel is the layer's,
    shifted), then :func:`torch.nn.functional.pixel_shuffle` puts the phases back in
    place. Measured on the 2-core CPU, 16 channels in, 742 px: the bundled model's 7x7
    layer to 3 bands took 0.38x the time (11.4 vs 30.0 ms bf16, 23.4 vs 60.5 ms fp32;
    docs/benchmarks.md). Same result, summed in another order (float rounding). Training,
    other devices and everything else use torch's forward. Weights and checkpoints are
    those of ``nn.Conv2d``.
    """

    def phased(self, x: Tensor) -> bool:
        """Whether :meth:`forward` computes ``x``'s output by phases."""
        if (
            x.device.type != "cpu"
            or x.ndim != 4
            or torch.is_grad_enabled()
            or self.out_channels * PHASES**2 > 16
            or self.groups != 1
            or self.padding_mode != "zeros"
            or any(s != 1 for s in self.stride)
            or any(d != 1 for d in self.dilation)
            or any(p != 0 for p in cast(tuple[int, int], self.padding))
        ):
            return False
        rows = x.shape[-2] - self.kernel_size[0] + 1
        cols = x.shape[-1] - self.kernel_size[1] + 1
        return rows > 0 and cols > 0 and rows % PHASES == 0 and cols % PHASES == 0

    def forward(self, x: Tensor) -> Tensor:
        if not self.phased(x):
            return super().forward(x)
        r = PHASES
        out, inp, kh, kw = self.weight.shape
        # output (o, a, b) at (i, j) is output o at (r i + a, r j + b): the kernel shifted
        # by (a, b) inside a kernel r - 1 px larger, applied with stride r
        weight = self.weight.new_zeros(out, r, r, inp, kh + r - 1, kw + r - 1)
        for a in range(r):
            for b in range(r):
                weight[:, a, b, :, a : a + kh, b : b + kw] = self.weight
        weight = weight.reshape(out * r * r, inp, kh + r - 1, kw + r - 1)
        bias = None if self.bias is None else self.bias.repeat_interleave(r * r)
        return F.pixel_shuffle(F.conv2d(x, weight, bias, stride=r), r)


class BinomialBlur2d(nn.Module):
    """A fixed ``[1, 2, 1] x [1, 2, 1] / 16`` low-pass of each channel, reflection-padded
    (the output has the input's shape); no trainable parameters.

    After a stride-2 transposed convolution it removes the 2 px part of the checkerboard
    pattern (Odena, Dumoulin and Olah 2016): a 3x3 kernel at stride 2 overlaps unevenly,
    so the even and odd output pixels see different sums of its weights, and any pattern
    with a period of 2 px has all its energy at the grid's Nyquist frequencies, where this
    filter's response ``cos^2(pi f)`` is zero in rows and in cols. (A trained generator
    may still show a weaker 4 px pattern: docs/model-card.md.) Put after the activation
    that follows the upsampling, it leaves the convolution and its norm layer adjacent
    (their statistics can still be folded, :func:`~rsgan.models.layers.fold_norm_stats`).
    The filtered-upsampling idea is that of StyleGAN 2 (Karras et al. 2020), written here
    from the signal-processing argument above.

    The kernel is a non-persistent buffer: checkpoints do not hold it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16
        self.register_buffer(
            "kernel", kernel.expand(self.channels, 1, 3, 3).contiguous(), persistent=False
        )
        self.pad = ReflectionPad2d(1)

    kernel: Tensor

    def extra_repr(self) -> str:
        return str(self.channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self.pad(x), self.kernel.to(x.dtype), groups=self.channels)
