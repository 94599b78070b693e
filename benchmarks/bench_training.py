"""Training speed of rsgan's CycleGAN and DCGAN, fp32 and bf16 autocast, with utilisation
(issue 3).

What it measures, in one run:

1. ``peak``: the fp32 FLOP/s of this CPU, as large 1x1 convolutions (oneDNN, like the GANs'
   convolutions), best of three shapes, measured at the start and again at the end of the
   run (the higher counts). Utilisation = achieved conv FLOP/s / this peak.
2. For each config (CycleGAN ngf 64, 9 blocks, batch 1 at 256 and 128 px; DCGAN 64 px,
   batch 64, ngf/ndf 64, nz 100; 3 bands):

   * ``reference``: a step written like the reference implementations (torch
     ``InstanceNorm2d``, no masks, plain losses) on the same architecture: the floor;
   * ``rsgan step``: :func:`rsgan.training.cyclegan_train_step` / ``dcgan_train_step``;
   * ``rsgan fit``: the whole loop, :func:`rsgan.training.fit` on a tensor dataset, with
     DataLoader, logging every 10 steps and the progress bar off (per step, warm-up and the
     final checkpoint save excluded);

   each in fp32 and bf16 autocast. Seconds per iteration are the median of ``--iters``
   timed iterations after one warm-up, methods interleaved.

FLOPs are counted, not estimated: forward hooks on every Conv2d/ConvTranspose2d record
``2 * MACs`` of each call in one step; the backward adds the same again for the input
gradient (when the input needs one) and for the weight gradient (when the weight needs
one), so frozen discriminators in the generator step count what they really cost.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_training.py [--quick] [--iters N] [--threads N]

``--quick``: CycleGAN at 128 px and DCGAN only, 2 iterations. ``--threads 1`` gives stable
ratios on a CPU shared with other jobs (2 threads there mostly wait for each other).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from rsgan._device import autocast
from rsgan.losses import ImagePool
from rsgan.models import CycleGANConfig, DCGANConfig, SceneInstanceNorm2d, build_nets
from rsgan.training import (
    TrainOptions,
    TrainRun,
    _adam,
    _lr_lambda,
    cyclegan_train_step,
    dcgan_train_step,
    fit,
)

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- FLOP counting


def count_conv_flops(step: Callable[[], Any], nets: dict[str, nn.Module]) -> float:
    """Convolution FLOPs (forward + backward) of one call of ``step``."""
    total = [0.0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):
            macs = x.numel() * module.out_channels // module.groups * kh * kw
        else:
            macs = output.numel() * module.in_channels // module.groups * kh * kw
        flops = 2.0 * macs
        if torch.is_grad_enabled():
            if x.requires_grad:
                flops += 2.0 * macs
            if module.weight.requires_grad:
                flops += 2.0 * macs
        total[0] += flops

    handles = [
        m.register_forward_hook(hook)
        for net in nets.values()
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def peak_flops(iters: int) -> float:
    """fp32 FLOP/s of large 1x1 convolutions (forward, oneDNN): the best over a few shapes
    (C -> C channels on N x S x S) and ``iters`` repeats, so a slice of CPU lost to other
    jobs does not lower it."""
    best = 0.0
    with torch.no_grad():
        for channels, side, n in ((512, 64, 2), (1024, 32, 4), (2048, 16, 8)):
            conv = nn.Conv2d(channels, channels, 1, bias=False)
            x = torch.randn(n, channels, side, side)
            flops = 2.0 * n * channels * channels * side * side
            conv(x)
            for _ in range(max(iters, 3)):
                t = time.perf_counter()
                conv(x)
                best = max(best, flops / (time.perf_counter() - t))
    return best


def conv3x3_flops(iters: int) -> float:
    """FLOP/s of a 3x3 convolution 256 -> 256 channels on 2 x 64 x 64 (forward), counted as
    direct convolution FLOPs: for context, since oneDNN's 3x3 kernels can beat its 1x1 ones."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False)
    x = torch.randn(2, 256, 64, 64)
    flops = 2.0 * 2 * 256 * 256 * 9 * 64 * 64
    best = 0.0
    with torch.no_grad():
        conv(x)
        for _ in range(max(iters, 3)):
            t = time.perf_counter()
            conv(x)
            best = max(best, flops / (time.perf_counter() - t))
    return best


# --------------------------------------------------------------------------- reference steps


def reference_nets(nets: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """A copy of ``nets`` with torch's InstanceNorm2d in place of SceneInstanceNorm2d."""
    out = copy.deepcopy(nets)
    for net in out.values():
        for module in net.modules():
            for name, child in module.named_children():
                if isinstance(child, SceneInstanceNorm2d):
                    setattr(module, name, nn.InstanceNorm2d(child.num_features))
    return out


def _req(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def reference_cyclegan_step(nets, opts, batch, pools, cfg, *, device, precision):  # noqa: ANN001, ANN201
    """The reference repositories' CycleGAN step: no masks, MSE/L1 losses, pools of 50."""
    a, b = batch["a"], batch["b"]
    g_ab, g_ba, d_a, d_b = (nets[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
    _req([d_a, d_b], False)
    opts["G"].zero_grad()
    with autocast(device, precision):
        fake_b, fake_a = g_ab.model(a), g_ba.model(b)
        rec_a, rec_b = g_ba.model(fake_b), g_ab.model(fake_a)
        idt_a, idt_b = g_ba.model(a), g_ab.model(b)
        pb, pa = d_b.model(fake_b), d_a.model(fake_a)
        loss_g = (
            F.mse_loss(pb.float(), torch.ones_like(pb.float()))
            + F.mse_loss(pa.float(), torch.ones_like(pa.float()))
            + 10 * (F.l1_loss(rec_a.float(), a) + F.l1_loss(rec_b.float(), b))
            + 5 * (F.l1_loss(idt_a.float(), a) + F.l1_loss(idt_b.float(), b))
        )
    loss_g.backward()
    opts["G"].step()
    _req([d_a, d_b], True)
    opts["D"].zero_grad()
    ones = torch.ones(a.shape[0], 1, *a.shape[-2:])
    qb, _ = pools["B"].query(fake_b, ones)
    qa, _ = pools["A"].query(fake_a, ones)
    with autocast(device, precision):
        loss_d = 0.0
        for d, real, fake in ((d_a, a, qa), (d_b, b, qb)):
            pr, pf = d.model(real).float(), d.model(fake).float()
            loss_d = loss_d + 0.5 * (
                F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf))
            )
    loss_d.backward()
    opts["D"].step()


def reference_dcgan_step(nets, opts, batch, pools, cfg, *, device, precision):  # noqa: ANN001, ANN201
    """The PyTorch DCGAN example's step."""
    real = batch["image"]
    g, d = nets["G"], nets["D"]
    bce = nn.BCEWithLogitsLoss()
    opts["D"].zero_grad()
    z = torch.randn(real.shape[0], cfg.nz, 1, 1)
    with autocast(device, precision):
        fake = g.model(z)
        out_r, out_f = d.model(real).view(-1).float(), d.model(fake.detach()).view(-1).float()
        loss_d = bce(out_r, torch.ones_like(out_r)) + bce(out_f, torch.zeros_like(out_f))
    loss_d.backward()
    opts["D"].step()
    opts["G"].zero_grad()
    with autocast(device, precision):
        out = d.model(fake).view(-1).float()
        loss_g = bce(out, torch.ones_like(out))
    loss_g.backward()
    opts["G"].step()


# --------------------------------------------------------------------------- fit timing


class _Fixed(Dataset):
    """``n`` copies of one item (data loading cost stays that of a DataLoader over tensors)."""

    def __init__(self, item: dict[str, torch.Tensor], n: int) -> None:
        self.item, self.n = item, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.item


def fit_seconds_per_step(kind: str, config: Any, item: dict, batch: int, precision: str,
                         iters: int) -> float:  # fmt: skip
    """Seconds per step of the whole :func:`fit` loop (warm-up step and final save excluded)."""
    nets = build_nets(kind, config)
    opts = TrainOptions(steps=iters + 2, batch_size=batch, precision=precision, device="cpu",
                        sample_every=0, checkpoint_every=0, log_every=10, progress=False)  # fmt: skip
    if kind == "cyclegan":
        g_opt = _adam((nets["G_AB"], nets["G_BA"]), 2e-4)
        d_opt = _adam((nets["D_A"], nets["D_B"]), 2e-4)
        pools = {"A": ImagePool(50), "B": ImagePool(50)}
    else:
        g_opt, d_opt, pools = _adam((nets["G"],), 2e-4), _adam((nets["D"],), 2e-4), {}
    dataset = _Fixed(item, batch * (iters + 2))
    run = TrainRun(kind=kind, config=config, nets=nets, optimizers={"G": g_opt, "D": d_opt},
                   dataset=dataset, domains={}, pools=pools, lr_lambda=_lr_lambda(kind, opts))  # fmt: skip
    stamps: list[float] = []
    from rsgan import training

    original = training._TRAINERS[kind]

    def timed_step(*args: Any, **kwargs: Any) -> dict[str, float]:
        stamps.append(time.perf_counter())
        return original.step(*args, **kwargs)

    training._TRAINERS[kind] = training.dataclasses.replace(original, step=timed_step)
    # no checkpoint needed for timing: domains are empty, so skip the final save
    saved = training._save_all
    training._save_all = lambda *a, **k: None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit(run, Path(tmp) / "run", opts)
    finally:
        training._TRAINERS[kind] = original
        training._save_all = saved
    # stamps[i] = start of step i; the step after the last stamp ends at the loop's end
    gaps = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    return statistics.median(gaps) if gaps else float("nan")


# --------------------------------------------------------------------------- main


def bench_config(name: str, kind: str, config: Any, batch: int, size: int, iters: int,
                 peak: float) -> list[dict[str, Any]]:  # fmt: skip
    torch.manual_seed(0)
    nets = build_nets(kind, config)
    ref = reference_nets(nets)
    if kind == "cyclegan":
        item = {"a": torch.rand(3, size, size) * 2 - 1, "b": torch.rand(3, size, size) * 2 - 1}
        batch_t = {k: v.expand(batch, *v.shape).contiguous() for k, v in item.items()}
        step_fn, ref_fn = cyclegan_train_step, reference_cyclegan_step
        make_opts = lambda n: {  # noqa: E731
            "G": _adam((n["G_AB"], n["G_BA"]), 2e-4),
            "D": _adam((n["D_A"], n["D_B"]), 2e-4),
        }
        pools = {"A": ImagePool(50), "B": ImagePool(50)}
    else:
        item = {"image": torch.rand(3, size, size) * 2 - 1}
        batch_t = {"image": item["image"].expand(batch, 3, size, size).contiguous()}
        step_fn, ref_fn = dcgan_train_step, reference_dcgan_step
        make_opts = lambda n: {"G": _adam((n["G"],), 2e-4), "D": _adam((n["D"],), 2e-4)}  # noqa: E731
        pools = {}
    opts, ref_opts = make_opts(nets), make_opts(ref)
    rows = []
    for precision in ("fp32", "bf16"):
        kw = {"device": CPU, "precision": precision}
        methods = {
            "reference": lambda kw=kw: ref_fn(ref, ref_opts, batch_t, pools, config, **kw),
            "rsgan step": lambda kw=kw: step_fn(nets, opts, batch_t, pools, config, **kw),
        }
        flops = count_conv_flops(methods["rsgan step"], nets)
        times: dict[str, list[float]] = {m: [] for m in methods}
        for fn in methods.values():  # warm-up
            fn()
        for _ in range(iters):
            for m, fn in methods.items():
                t = time.perf_counter()
                fn()
                times[m].append(time.perf_counter() - t)
        secs = {m: statistics.median(v) for m, v in times.items()}
        secs["rsgan fit"] = fit_seconds_per_step(kind, config, item, batch, precision, iters)
        for m, s in secs.items():
            rows.append({
                "config": name, "precision": precision, "method": m, "s_per_it": s,
                "it_s": 1 / s, "gflops": flops / s / 1e9, "util": flops / s / peak,
                "vs_ref": secs["reference"] / s,
            })  # fmt: skip
            print(f"{name:28s} {precision:5s} {m:11s} {s:8.3f} s/it  {1 / s:6.3f} it/s  "
                  f"{flops / s / 1e9:7.1f} GFLOP/s  util {flops / s / peak:6.1%}  "
                  f"speed vs reference {secs['reference'] / s:5.2f}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 px CycleGAN and DCGAN only")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per method")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    iters = args.iters or (2 if args.quick else 3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = peak_flops(5)
    print(f"fp32 peak (1x1 conv): {peak / 1e9:.1f} GFLOP/s", flush=True)
    print(f"fp32 3x3 conv (context): {conv3x3_flops(5) / 1e9:.1f} GFLOP/s", flush=True)
    configs = [
        ("cyclegan ngf64 9blk b1 256px", "cyclegan", CycleGANConfig(), 1, 256),
        ("cyclegan ngf64 9blk b1 128px", "cyclegan", CycleGANConfig(), 1, 128),
        ("dcgan 64px b64", "dcgan", DCGANConfig(), 64, 64),
    ]
    if args.quick:
        configs = configs[1:]
    rows = []
    for name, kind, config, batch, size in configs:
        rows += bench_config(name, kind, config, batch, size, iters, peak)
    end_peak = peak_flops(5)
    print(f"fp32 peak again at the end: {end_peak / 1e9:.1f} GFLOP/s", flush=True)
    if end_peak > peak:  # utilisation against the higher of the two
        for r in rows:
            r["util"] *= peak / end_peak
    print("\n| config | precision | method | s/it | it/s | GFLOP/s | utilisation | vs reference |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['precision']} | {r['method']} | {r['s_per_it']:.3f} | "
            f"{r['it_s']:.3f} | {r['gflops']:.1f} | {r['util']:.0%} | {r['vs_ref']:.2f} |"
        )
    fp32 = {(r["config"], r["method"]): r["s_per_it"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if r["precision"] == "bf16":
            print(
                f"bf16 speed-up {r['config']} {r['method']}: "
                f"{fp32[(r['config'], r['method'])] / r['s_per_it']:.2f}x"
            )


if __name__ == "__main__":
    main()
