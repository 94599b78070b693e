"""Train rsgan's bundled default model: a small CycleGAN, Joplin pre- -> post-tornado.

Data: the xView2 Joplin tiles in ``../shared/data/xview2_joplin_prepost`` (3-band uint8,
~0.6 m): ``pre/`` in EPSG:26915 and ``post/`` in EPSG:4326. The post tiles are warped onto
the pre tiles' CRS and 0.6 m pixel size (bilinear, in memory), then CycleGAN is trained
unpaired on random crops of both. One pre and one post tile are held out to measure the
result: per-band Wasserstein-1 distance (DN) and sliced Wasserstein distance of the
translated held-out pre tile to the post tiles, against the same for the untranslated tile.

The generators only are saved (safetensors, float32) to ``--out`` (default
``runs/default_cyclegan_joplin.safetensors`` under the current folder), every
``--save-every`` steps and at the end, with the measured figures in the metadata. An
existing file is refused unless ``--overwrite`` is given; the bundled model
(``rsgan/assets/default_cyclegan_joplin.safetensors``) is replaced only by naming it:
``--out rsgan/assets/default_cyclegan_joplin.safetensors --overwrite``
(docs/model-card.md).

Usage (about 15-20 minutes of a 2-core CPU)::

    nice -n 10 python examples/train_default_model.py --minutes 18

Needs the real data folder (``--data`` or ``RSGAN_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from torch import nn

from rsgan.checkpoint import DomainInfo, load_model, save_checkpoint
from rsgan.errors import ConfigError, OutputExistsError
from rsgan.io import Normalizer
from rsgan.losses import periodic_peaks, window_power
from rsgan.metrics import per_band_wasserstein, sliced_wasserstein_distance
from rsgan.models import CycleGANConfig, build_nets
from rsgan.models.cyclegan import UPSAMPLE_MODES, ResnetGenerator
from rsgan.training import linear_decay

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import JOPLIN_HOLDOUT_POST, JOPLIN_HOLDOUT_PRE, run_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / "rsgan" / "assets" / "default_cyclegan_joplin.safetensors"
"""The bundled default model: replaced only with ``--out`` naming it and ``--overwrite``."""
DEFAULT_OUT = Path("runs") / "default_cyclegan_joplin.safetensors"
"""Where a run saves its generators by default, relative to the current folder."""
HOLDOUT_PRE = JOPLIN_HOLDOUT_PRE
HOLDOUT_POST = JOPLIN_HOLDOUT_POST


@dataclass(frozen=True)
class Options:
    """Training options (defaults: the shipped model)."""

    ngf: int = 16
    n_blocks: int = 6
    ndf: int = 32
    crop: int = 128
    batch_size: int = 2
    lr: float = 2e-4
    minutes: float = 18.0
    max_steps: int = 100_000
    save_every: int = 500
    seed: int = 0
    wall_minutes_before: float = 0.0
    upsample: str = "deconv"
    lambda_periodic: float = 0.0
    lambda_spectral: float = 0.0
    decay_steps: int = 0


def load_tiles(data: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{"pre"|"post": {name: (3, rows, cols) uint8}}``; post warped onto EPSG:26915 at 0.6 m."""
    out: dict[str, dict[str, np.ndarray]] = {"pre": {}, "post": {}}
    for path in sorted((data / "pre").glob("*.tif")):
        with rasterio.open(path) as src:
            out["pre"][path.name] = src.read()
            crs, res = src.crs, src.res[0]
    for path in sorted((data / "post").glob("*.tif")):
        with rasterio.open(path) as src:
            # target grid: the same area, the pre tiles' CRS and pixel size
            transform, width, height = calculate_default_transform(
                src.crs, crs, src.width, src.height, *src.bounds, resolution=res
            )
        with (
            rasterio.open(path) as src,
            WarpedVRT(
                src,
                crs=crs,
                transform=transform,
                width=width,
                height=height,
                resampling=Resampling.bilinear,
            ) as vrt,
        ):
            arr = vrt.read()
            valid = vrt.read_masks(1) > 0
        # crop to the fully valid core (warping leaves empty corners)
        rows = np.where(valid.all(axis=1))[0]
        cols = np.where(valid.all(axis=0))[0]
        if rows.size and cols.size:
            arr = arr[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        out["post"][path.name] = arr
    return out


def random_crops(
    tiles: list[np.ndarray], n: int, size: int, rng: np.random.Generator, norm: Normalizer
) -> torch.Tensor:
    """``n`` random crops with random flips and quarter turns, ``(n, 3, size, size)`` in [-1, 1]."""
    crops = []
    for _ in range(n):
        tile = tiles[rng.integers(len(tiles))]
        r = rng.integers(tile.shape[1] - size + 1)
        c = rng.integers(tile.shape[2] - size + 1)
        crop = tile[:, r : r + size, c : c + size]
        crop = np.rot90(crop, k=int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        crops.append(norm.normalize(np.ascontiguousarray(crop)))
    return torch.from_numpy(np.stack(crops))


SPECTRAL_WINDOW = 32
"""Side of the squares whose averaged power spectrum the spectral discriminators see."""


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Welch's log power spectrum of each image and band over its 32 px squares (each
    square's mean taken off), the non-redundant half: ``(N, C * 32 * 17)``."""
    power, _ = window_power(x, ResnetGenerator.size_multiple, SPECTRAL_WINDOW, None)
    half = power[..., : SPECTRAL_WINDOW // 2 + 1]
    return torch.log(half + 1e-3).flatten(1)


def spectral_discriminator(channels: int) -> nn.Module:
    """A discriminator on :func:`log_spectrum`: it sees every frequency of the 32 px
    squares at once, the 4 px grid's dots and any other texture the real images lack."""
    size = channels * SPECTRAL_WINDOW * (SPECTRAL_WINDOW // 2 + 1)
    return nn.Sequential(
        nn.Linear(size, 256), nn.LeakyReLU(0.2), nn.Linear(256, 64), nn.LeakyReLU(0.2),
        nn.Linear(64, 1),
    )  # fmt: skip


def train_step(
    nets: dict[str, nn.Module],
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    config: CycleGANConfig,
    lambda_spectral: float = 0.0,
) -> dict[str, float]:
    """One CycleGAN step (LSGAN, cycle L1, identity L1, optionally the generators'
    :func:`rsgan.losses.periodic_peaks` at their 4 px stride, and with ``lambda_spectral``
    > 0 the spectral discriminators ``S_A`` / ``S_B`` of ``nets``); returns the losses."""
    g_ab, g_ba, d_a, d_b = nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"]
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    # generators
    for d in (d_a, d_b):
        d.requires_grad_(False)
    fake_b, fake_a = g_ab(real_a), g_ba(real_b)
    pred_b, pred_a = d_b(fake_b), d_a(fake_a)
    loss_gan = mse(pred_b, torch.ones_like(pred_b)) + mse(pred_a, torch.ones_like(pred_a))
    loss_cycle = l1(g_ba(fake_b), real_a) + l1(g_ab(fake_a), real_b)
    loss_idt = l1(g_ab(real_b), real_b) + l1(g_ba(real_a), real_a)
    lam = config.lambda_cycle
    loss_g = loss_gan + lam * loss_cycle + lam * config.lambda_identity * loss_idt
    stride = ResnetGenerator.size_multiple
    loss_periodic = periodic_peaks(fake_b, real_a, stride) + periodic_peaks(fake_a, real_b, stride)
    if config.lambda_periodic > 0:
        loss_g = loss_g + config.lambda_periodic * loss_periodic
    spectral = "S_A" in nets and lambda_spectral > 0
    loss_spec = torch.zeros(())
    if spectral:
        s_a, s_b = nets["S_A"], nets["S_B"]
        for s in (s_a, s_b):
            s.requires_grad_(False)
        spec_fake_b, spec_fake_a = log_spectrum(fake_b), log_spectrum(fake_a)
        q_b, q_a = s_b(spec_fake_b), s_a(spec_fake_a)
        loss_spec = mse(q_b, torch.ones_like(q_b)) + mse(q_a, torch.ones_like(q_a))
        loss_g = loss_g + lambda_spectral * loss_spec
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    # discriminators
    for d in (d_a, d_b):
        d.requires_grad_(True)
    loss_d = 0.0
    for d, real, fake in ((d_a, real_a, fake_a), (d_b, real_b, fake_b)):
        p_real, p_fake = d(real), d(fake.detach())
        loss = 0.5 * (mse(p_real, torch.ones_like(p_real)) + mse(p_fake, torch.zeros_like(p_fake)))
        loss_d = loss_d + loss
    if spectral:
        for s, real, spec_fake in ((s_a, real_a, spec_fake_a), (s_b, real_b, spec_fake_b)):
            s.requires_grad_(True)
            q_real, q_fake = s(log_spectrum(real)), s(spec_fake.detach())
            loss = 0.5 * (
                mse(q_real, torch.ones_like(q_real)) + mse(q_fake, torch.zeros_like(q_fake))
            )
            loss_d = loss_d + loss
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return {
        "gan": float(loss_gan.detach()),
        "cycle": float(loss_cycle.detach()),
        "identity": float(loss_idt.detach()),
        "periodic": float(loss_periodic.detach()),
        "spectral": float(loss_spec.detach()),
        "d": float(loss_d.detach()),
    }


def evaluate(g_ab: nn.Module, pre: np.ndarray, posts: list[np.ndarray], norm: Normalizer) -> dict:
    """Distances of the translated held-out pre tile to the post tiles, vs untranslated."""
    g_ab.eval()
    with torch.no_grad():
        x = torch.from_numpy(norm.normalize(pre)[None])
        y = g_ab(x)[0].numpy()
    g_ab.train()
    fake = norm.denormalize(y)
    post = np.stack([p[:, :512, :512] for p in posts])
    w_fake = per_band_wasserstein(fake, post)
    w_pre = per_band_wasserstein(pre, post)
    swd_fake = sliced_wasserstein_distance(fake[None, :, :512, :512], post, seed=0)["mean"]
    swd_pre = sliced_wasserstein_distance(pre[None, :, :512, :512], post, seed=0)["mean"]
    return {
        "w1_dn_translated": [round(float(v), 2) for v in w_fake],
        "w1_dn_identity": [round(float(v), 2) for v in w_pre],
        "swd_translated": round(float(swd_fake), 4),
        "swd_identity": round(float(swd_pre), 4),
    }


def save(nets, config, steps, metrics, opts, started, out: Path) -> None:
    norm = Normalizer.for_dtype("uint8", 3)
    domain = DomainInfo(bands=(1, 2, 3), count=3, dtype="uint8", normalizer=norm, descriptions=None)
    save_checkpoint(
        out,
        kind="cyclegan",
        config=config,
        nets={k: v for k, v in nets.items() if not k.startswith("S_")},
        domains={"a": domain, "b": domain},
        steps=steps,
        data={
            "a": "xView2 Joplin tornado, pre-disaster tiles (EPSG:26915, 0.6 m), 3 of 4",
            "b": "xView2 Joplin tornado, post-disaster tiles warped to EPSG:26915 0.6 m, 5 of 6",
            "holdout": [HOLDOUT_PRE, HOLDOUT_POST],
            "license": "xView2-deploy repository (MIT)",
        },
        extra={
            "inference_precision": "bf16",
            "train_wall_minutes": round((time.time() - started) / 60 + opts.wall_minutes_before, 1),
            "options": opts.__dict__,
            "metrics": metrics,
        },
        generators_only=True,
        overwrite=True,  # this run's own file, saved again and again (main checks it first)
    )


def lr_factor(step: int, opts: Options) -> float:
    """The learning rate's factor after ``step`` steps: 1, then down in a straight line to
    0 at ``opts.max_steps`` over the last ``opts.decay_steps`` (the library's schedule)."""
    return linear_decay(opts.max_steps, opts.max_steps - opts.decay_steps)(step)


def _init_from(net: nn.Module, source: nn.Module) -> None:
    """``source``'s weights into ``net``. Generators that differ only in fixed layers (a
    ``"blur"`` generator from a ``"deconv"`` checkpoint: the same parameters, other
    positions in the chain) take them in order, each shape checked."""
    try:
        net.load_state_dict(source.state_dict())
        return
    except RuntimeError:
        pass
    ours, theirs = list(net.parameters()), list(source.parameters())
    if len(ours) != len(theirs) or any(
        a.shape != b.shape for a, b in zip(ours, theirs, strict=True)
    ):
        raise SystemExit("--init: the checkpoint's generators have other parameters")
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any training, to replace an existing ``out`` without ``overwrite``,
    or to write over a folder at all.

    Raises:
        ConfigError: ``out`` is a folder (with or without ``overwrite``).
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
    """
    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder; pass the checkpoint file to write, e.g. "
            f"--out {out / DEFAULT_OUT.name}"
        )
    if out.exists() and not overwrite:
        what = "is the bundled default model" if out.resolve() == ASSET else "exists"
        raise OutputExistsError(
            f"--out {out} {what}; pass --overwrite to replace it, or another --out"
        )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"generators' checkpoint (default: {DEFAULT_OUT}; the bundled model is "
        "replaced only with its path and --overwrite)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--minutes", type=float, default=Options.minutes, help="wall-clock cap")
    parser.add_argument(
        "--cpu-minutes",
        type=float,
        default=None,
        help="stop after this much CPU time of this process (fair on a shared machine)",
    )
    parser.add_argument("--max-steps", type=int, default=Options.max_steps)
    parser.add_argument("--save-every", type=int, default=Options.save_every)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=Options.lr, help="Adam learning rate")
    parser.add_argument(
        "--ngf", type=int, default=Options.ngf, help="generator filters (first convolution)"
    )
    parser.add_argument(
        "--n-blocks", type=int, default=Options.n_blocks, help="generator residual blocks"
    )
    parser.add_argument(
        "--upsample",
        choices=list(UPSAMPLE_MODES),
        default=Options.upsample,
        help="generator upsampling: transposed convolutions (deconv), the same with a "
        "binomial low-pass after each (blur), or nearest 2x + 3x3 convolution (resize)",
    )
    parser.add_argument(
        "--lambda-periodic",
        type=float,
        default=Options.lambda_periodic,
        help="weight of the generators' periodic_peaks loss (the power their outputs add at "
        "the frequencies of the 4 px stride grid; 0: off, as the shipped model)",
    )
    parser.add_argument(
        "--lambda-spectral",
        type=float,
        default=Options.lambda_spectral,
        help="weight of a second pair of discriminators that see the log power spectrum of "
        "each 32 px square (0: off; the shipped model's second stage used 1)",
    )
    parser.add_argument(
        "--decay-steps",
        type=int,
        default=Options.decay_steps,
        help="decay the learning rate linearly to zero over the last this many of "
        "--max-steps (the CycleGAN reference's second phase; 0: constant, as the shipped "
        "model's first two stages)",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start the generators from this checkpoint (to continue a run, or to fine-tune "
        "a deconv checkpoint with --upsample blur)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train and save the model as the command line ``argv`` asks (default: ``sys.argv``)."""
    args = _parse(argv)
    opts = Options(
        ngf=args.ngf,
        n_blocks=args.n_blocks,
        minutes=args.minutes,
        max_steps=args.max_steps,
        save_every=args.save_every,
        upsample=args.upsample,
        lr=args.lr,
        lambda_periodic=args.lambda_periodic,
        lambda_spectral=args.lambda_spectral,
        decay_steps=args.decay_steps,
    )
    if not 0 <= opts.decay_steps <= opts.max_steps:
        raise SystemExit(f"--decay-steps must be 0 to --max-steps; got {opts.decay_steps}")
    check_out(args.out, args.overwrite)
    data = (
        args.data
        or Path(os.environ.get("RSGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
        / "xview2_joplin_prepost"
    )
    if not (data / "pre" / HOLDOUT_PRE).is_file():
        raise SystemExit(
            f"no Joplin tiles at {data} (pre/{HOLDOUT_PRE} is missing); pass --data or set "
            "RSGAN_SHARED_DATA"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    tiles = load_tiles(data)
    train_a = [a for name, a in tiles["pre"].items() if name != HOLDOUT_PRE]
    train_b = [b for name, b in tiles["post"].items() if name != HOLDOUT_POST]
    hold_pre = tiles["pre"][HOLDOUT_PRE][:, :512, :512]
    posts = list(tiles["post"].values())
    norm = Normalizer.for_dtype("uint8", 3)
    config = CycleGANConfig(
        in_channels_a=3,
        in_channels_b=3,
        ngf=opts.ngf,
        ndf=opts.ndf,
        n_blocks=opts.n_blocks,
        upsample=opts.upsample,
        lambda_periodic=opts.lambda_periodic,
        pool_size=0,  # this loop shows the discriminators the current fakes only
    )
    nets = build_nets("cyclegan", config)
    steps_before = 0
    if args.init is not None:
        loaded = load_model(args.init)
        for name in ("G_AB", "G_BA"):
            _init_from(nets[name], loaded.nets[name])
        steps_before = loaded.steps
        extra = loaded.metadata.get("extra", {})
        before = float(extra.get("train_wall_minutes", extra.get("train_minutes", 0.0)))
        opts = dataclasses.replace(opts, wall_minutes_before=before)
    for net in nets.values():
        net.train()
    params_g = list(nets["G_AB"].parameters()) + list(nets["G_BA"].parameters())
    if opts.lambda_spectral > 0:
        nets["S_A"], nets["S_B"] = spectral_discriminator(3), spectral_discriminator(3)
    params_d = [
        p for name in ("D_A", "D_B", "S_A", "S_B") if name in nets for p in nets[name].parameters()
    ]
    opt_g = torch.optim.Adam(params_g, lr=opts.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(params_d, lr=opts.lr, betas=(0.5, 0.999))
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, opts))
        for opt in (opt_g, opt_d)
    ]
    started = time.time()
    deadline = started + 60 * opts.minutes
    metrics = evaluate(nets["G_AB"], hold_pre, posts, norm)
    print("before training:", json.dumps(metrics), flush=True)
    step, losses = 0, {}
    cpu_limit = None if args.cpu_minutes is None else 60 * args.cpu_minutes
    while step < opts.max_steps and time.time() < deadline:
        if cpu_limit is not None and time.process_time() > cpu_limit:
            break
        real_a = random_crops(train_a, opts.batch_size, opts.crop, rng, norm)
        real_b = random_crops(train_b, opts.batch_size, opts.crop, rng, norm)
        losses = train_step(nets, opt_g, opt_d, real_a, real_b, config, opts.lambda_spectral)
        step += 1
        for schedule in schedules:
            schedule.step()
        if step % 50 == 0:
            rate = step / (time.time() - started)
            print(
                f"step {step} ({rate:.2f}/s) "
                + " ".join(f"{k}={v:.3f}" for k, v in losses.items()),
                flush=True,
            )
        if step % opts.save_every == 0:
            metrics = evaluate(nets["G_AB"], hold_pre, posts, norm)
            print(f"step {step}: {json.dumps(metrics)}", flush=True)
            save(
                nets,
                config,
                steps_before + step,
                {**metrics, "losses": losses},
                opts,
                started,
                args.out,
            )
    metrics = evaluate(nets["G_AB"], hold_pre, posts, norm)
    save(nets, config, steps_before + step, {**metrics, "losses": losses}, opts, started, args.out)
    print(f"done: {step} steps in {(time.time() - started) / 60:.1f} min -> {args.out}")
    print(json.dumps(metrics))


if __name__ == "__main__":
    run_main(main)
