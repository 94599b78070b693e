"""Inference cost of the CycleGAN generator's upsampling modes, side by side.

Builds the bundled default model's architecture (ngf 16, 6 residual blocks) with each
``upsample`` mode (``deconv``, ``blur``, ``resize``), fixes its norm statistics (as
``translate_raster`` runs tiles), and times forwards of one 736 px tile (the default tile
grid's size) in bf16 autocast and in fp32, channels-last, the modes interleaved in every
round. Prints each mode's median time and its median per-round ratio to ``deconv``.
Weights are random: the time does not depend on them.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_upsample.py [--rounds 8] [--threads 2]``
(``--quick``: 2 rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from rsgan.models.cyclegan import UPSAMPLE_MODES, ResnetGenerator
from rsgan.models.layers import collect_norm_stats, fixed_norm_stats

TILE = 736


def _precision(name: str) -> contextlib.AbstractContextManager[object]:
    if name == "bf16":
        return torch.autocast("cpu", torch.bfloat16)
    return contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="forwards timed per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 2
    torch.set_num_threads(args.threads)
    x = (torch.rand(1, 3, TILE, TILE) * 2 - 1).contiguous(memory_format=torch.channels_last)
    nets = {}
    for mode in UPSAMPLE_MODES:
        torch.manual_seed(0)
        net = ResnetGenerator(3, 3, ngf=16, n_blocks=6, upsample=mode).eval()
        with torch.no_grad():
            nets[mode] = (net, collect_norm_stats(net, x))
    print(f"{TILE} px tile, {args.threads} thread(s), {args.rounds} rounds x {args.repeats}")
    for precision in ("bf16", "fp32"):
        times: dict[str, list[float]] = {mode: [] for mode in nets}
        for _ in range(args.rounds):
            for mode, (net, stats) in nets.items():
                with torch.no_grad(), fixed_norm_stats(net, stats), _precision(precision):
                    net(x)  # warm-up
                    start = time.perf_counter()
                    for _ in range(args.repeats):
                        net(x)
                times[mode].append((time.perf_counter() - start) / args.repeats * 1000)
        for mode, values in times.items():
            ratios = [t / d for t, d in zip(values, times["deconv"], strict=True)]
            print(
                f"{precision} {mode:7s} median {statistics.median(values):6.1f} ms "
                f"(rounds {min(values):.1f}-{max(values):.1f}); "
                f"vs deconv {statistics.median(ratios):.3f}"
            )


if __name__ == "__main__":
    main()
