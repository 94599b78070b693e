"""Farmland scenes from a DCGAN: train on UC Merced "agricultural" chips, generate, evaluate.

The first demonstration of the textbook chapter rsgan grew from, end to end on real data:

1. split the 100 UC Merced agricultural images (256 px, RGB, ~0.3 m) into 80 for training
   and 20 held out (seeded);
2. train a DCGAN (Radford et al. 2016) on 64 px chips of the 80 training images with
   ``rsgan.training`` (progress bar, loss log and sample grids in ``OUT/train``);
3. generate samples as uint8 GeoTIFFs and a PNG grid;
4. evaluate with ``rsgan.metrics``: sliced Wasserstein distance (Karras et al. 2018) of the
   samples to held-out chips, against two references measured the same way: real training
   chips (the floor a perfect generator would reach) and Gaussian noise with the data's
   per-band mean and covariance (the bar any generator must clear); and nearest-neighbour
   distances of samples to the training set against those of held-out chips (samples much
   closer than held-out real chips would be copies).

Run::

    python examples/farmland_dcgan.py --out runs/farmland    # 3000 steps, ngf 64 (the paper's width)
    python examples/farmland_dcgan.py --out runs/farmland --steps 1500 --ngf 32 --ndf 32 \
        --precision bf16                                      # the run in docs/quality.md

Everything lands in ``--out``: ``report.json`` (all figures), ``samples_grid.png``,
``real_grid.png``, ``noise_grid.png``, ``samples/*.tif`` and the training folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SHARED_DATA,
    model_to_uint8,
    read_image,
    run_main,
    summary,
    tile_chips,
    train_options,
    training_time,
    write_grid,
    write_json,
)

from rsgan.io import Normalizer, list_image_files  # noqa: E402
from rsgan.metrics import nearest_neighbour_distances, sliced_wasserstein_distance  # noqa: E402
from rsgan.models import DCGANConfig  # noqa: E402
from rsgan.training import generate, train_dcgan  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "ucmerced_agricultural"
GRID_IMAGES = 64
"""Images in each PNG grid at most (8 columns); fewer when fewer held-out chips exist."""


def split_files(folder: Path, n_held_out: int, seed: int) -> tuple[list[Path], list[Path]]:
    """Training and held-out image files: ``n_held_out`` drawn at random (seeded)."""
    files = list_image_files(folder)
    if not 1 <= n_held_out < len(files):
        raise SystemExit(
            f"--held-out {n_held_out}: {folder} has {len(files)} images; hold out 1 to "
            f"{len(files) - 1}"
        )
    order = np.random.default_rng(seed).permutation(len(files))
    held = sorted(files[i] for i in order[:n_held_out])
    train = sorted(files[i] for i in order[n_held_out:])
    return train, held


def load_chips(files: list[Path], size: int) -> np.ndarray:
    """Non-overlapping ``size`` px chips of every file: ``(n, bands, size, size)`` uint8."""
    return np.concatenate([tile_chips(read_image(f), size) for f in files])


def gaussian_baseline(train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Noise images with the training pixels' per-band mean and band covariance.

    Every pixel is drawn independently from a multivariate normal over the bands, so the
    baseline has the right colours but no spatial structure. Values are clipped to the
    model range [-1, 1] like a generator's tanh output.

    Args:
        train: ``(N, bands, rows, cols)`` model-range images.
        n: images to draw.
        seed: random seed.

    Returns:
        ``(n, bands, rows, cols)`` float64.
    """
    _, bands, rows, cols = train.shape
    pixels = np.moveaxis(train, 1, -1).reshape(-1, bands)
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(
        pixels.mean(axis=0), np.cov(pixels, rowvar=False), (n, rows, cols)
    )
    return np.clip(np.moveaxis(draws, -1, 1), -1.0, 1.0)


def evaluate_samples(
    generated: np.ndarray,
    train: np.ndarray,
    held_out: np.ndarray,
    *,
    seed: int = 0,
    n_patches: int = 128,
    n_projections: int = 512,
) -> dict[str, Any]:
    """SWD and nearest-neighbour figures of generated images (all in model range).

    Every SWD is measured against the held-out chips with the same number of images per
    set (``len(held_out)``), the same seed and settings, so the figures compare directly.

    Args:
        generated: ``(N, bands, rows, cols)`` samples.
        train: ``(M, bands, rows, cols)`` training chips.
        held_out: ``(K, bands, rows, cols)`` held-out chips (K <= N, K <= M).
        seed: seeds the subsets, the noise baseline and the SWD.
        n_patches: SWD neighbourhoods per image and level.
        n_projections: SWD projection directions.

    Returns:
        ``{"swd": {...}, "nearest_neighbour": {...}}`` as written to report.json.
    """
    k = len(held_out)
    if len(generated) < k or len(train) < k:
        raise ValueError(
            f"need at least {k} generated and training images (one per held-out chip); got "
            f"{len(generated)} and {len(train)}: raise --n-samples"
        )
    rng = np.random.default_rng(seed)
    sets = {
        "generated": generated[rng.choice(len(generated), k, replace=False)],
        "train_real": train[rng.choice(len(train), k, replace=False)],
        "gaussian_noise": gaussian_baseline(train, k, seed),
    }
    swd = {}
    for name, images in sets.items():
        result = sliced_wasserstein_distance(
            images, held_out, n_patches=n_patches, n_projections=n_projections, seed=seed
        )
        swd[name] = {"mean": result["mean"], "per_level": result["per_level"]}
    swd["level_shapes"] = result["level_shapes"]
    gen_nn, gen_idx = nearest_neighbour_distances(generated, train, return_index=True)
    held_nn = nearest_neighbour_distances(held_out, train)
    nn = {
        "generated_to_train": summary(gen_nn),
        "held_out_to_train": summary(held_nn),
        "share_of_samples_closer_than_closest_held_out": float(np.mean(gen_nn < held_nn.min())),
        "distinct_nearest_train_chips": int(len(np.unique(gen_idx))),
    }
    return {"swd": swd, "nearest_neighbour": nn}


def write_grids(
    samples: np.ndarray, train: np.ndarray, held_out: np.ndarray, out: Path, *, seed: int
) -> dict[str, Path]:
    """PNG grids of samples, held-out chips and the noise baseline (all in model range).

    Each grid shows up to :data:`GRID_IMAGES` images, 8 to a row: the first samples, held-out
    chips drawn at random (seeded; all of them when there are fewer) and as many noise images.

    Args:
        samples: ``(N, bands, rows, cols)`` generated images.
        train: ``(M, bands, rows, cols)`` training chips (for the noise baseline).
        held_out: ``(K, bands, rows, cols)`` held-out chips.
        out: folder for ``samples_grid.png``, ``real_grid.png`` and ``noise_grid.png``.
        seed: seeds the choice of held-out chips and the noise.
    """
    n = min(GRID_IMAGES, len(held_out))
    shown = np.random.default_rng(seed).choice(len(held_out), n, replace=False)
    grids = {
        "samples_grid.png": samples[:GRID_IMAGES],
        "real_grid.png": held_out[shown],
        "noise_grid.png": gaussian_baseline(train, min(GRID_IMAGES, len(samples)), seed),
    }
    return {
        name: write_grid(model_to_uint8(images), out / name, min(8, len(images)), overwrite=True)
        for name, images in grids.items()
    }


def train_and_generate(
    args: argparse.Namespace, train_files: list[Path]
) -> tuple[Path, list[Path]]:
    """Train the DCGAN on ``size`` px grid chips of ``train_files``; write the samples.

    Returns:
        The checkpoint and the sample GeoTIFFs (in the source dtype, uint8).
    """
    config = DCGANConfig(channels=3, image_size=args.size, ngf=args.ngf, ndf=args.ndf)
    options = train_options(args, batch_size=args.batch_size)
    checkpoint = train_dcgan(train_files, args.out / "train", config=config, options=options)
    samples = generate(
        checkpoint, args.n_samples, args.out / "samples", seed=args.seed + 1, overwrite=True
    )
    return checkpoint, samples


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of training images")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--size", type=int, default=64, help="chip and image size, px")
    p.add_argument("--held-out", type=int, default=20, help="images held out for evaluation")
    p.add_argument("--steps", type=int, default=3000, help="training iterations")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ngf", type=int, default=64, help="generator width")
    p.add_argument("--ndf", type=int, default=64, help="discriminator width")
    p.add_argument("--n-samples", type=int, default=320, help="samples to generate")
    p.add_argument(
        "--precision", default="auto", help="fp32, bf16 (autocast) or auto (bf16 on CUDA only)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the report written to ``OUT/report.json``."""
    args = _parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train_files, held_files = split_files(args.data, args.held_out, args.seed)
    norm = Normalizer.for_dtype("uint8", 3)
    train = norm.normalize(load_chips(train_files, args.size)).astype(np.float64)
    held = norm.normalize(load_chips(held_files, args.size)).astype(np.float64)
    if not len(held):
        raise SystemExit(
            f"--size {args.size}: the held-out images are smaller than one chip; pass a "
            "smaller --size"
        )
    if len(train) < len(held):  # each SWD compares as many training chips as held-out ones
        raise SystemExit(
            f"--held-out {args.held_out} gives {len(held)} held-out chips but only "
            f"{len(train)} training chips; hold out fewer images"
        )
    if args.n_samples < len(held):
        raise SystemExit(f"--n-samples {args.n_samples}: generate at least {len(held)}")
    t0 = time.perf_counter()
    checkpoint, sample_files = train_and_generate(args, train_files)
    train_seconds = time.perf_counter() - t0

    # Measure what a user gets: the written uint8 GeoTIFFs, back in the model range.
    samples = norm.normalize(np.stack([read_image(f) for f in sample_files])).astype(np.float64)
    figures = evaluate_samples(samples, train, held, seed=args.seed)

    write_grids(samples, train, held, args.out, seed=args.seed)
    report = {
        "data": str(args.data),
        "train_images": len(train_files),
        "held_out_images": [f.name for f in held_files],
        "train_chips": len(train),
        "held_out_chips": len(held),
        "chip_size": args.size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "ngf": args.ngf,
        "ndf": args.ndf,
        "precision": args.precision,
        "train_and_generate_seconds": train_seconds,
        "training_log": training_time(args.out / "train" / "log.jsonl"),
        "checkpoint": str(checkpoint),
        **figures,
    }
    write_json(report, args.out / "report.json", overwrite=True)
    _print(report)
    return report


def _print(report: dict[str, Any]) -> None:
    swd = report["swd"]
    minutes = report["train_and_generate_seconds"] / 60
    print(f"trained {report['steps']} steps and generated in {minutes:.1f} min")
    for name in ("train_real", "generated", "gaussian_noise"):
        levels = ", ".join(f"{v:.4f}" for v in swd[name]["per_level"])
        print(f"SWD({name:>14s}, held-out) = {swd[name]['mean']:.4f}  per level [{levels}]")
    nn = report["nearest_neighbour"]
    print(
        "nearest training chip, RMS distance (model units): samples median "
        f"{nn['generated_to_train']['median']:.3f}, held-out median "
        f"{nn['held_out_to_train']['median']:.3f}"
    )


if __name__ == "__main__":
    run_main(main)
