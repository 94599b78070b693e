"""Pre- to post-disaster translation with a CycleGAN, and how to measure such a model.

The second demonstration of the textbook chapter rsgan grew from, end to end on real data.

``--dataset joplin`` (default): the Joplin, Missouri tornado of 2011. Domain A are the
pre-disaster tiles (EPSG:26915), domain B the post-disaster tiles (EPSG:4326); the two sets
are on different grids and only partly overlap, so the domains are unpaired, which is what
CycleGAN (Zhu et al. 2017) is for. One tile of each domain is held out. After training,
every pre-disaster tile is translated to a post-disaster look with
``rsgan.pipelines.translate.translate_raster`` (GeoTIFFs with the source's georeference) and
the held-out translation is compared with the held-out post-disaster tile as distributions
(no pixel pairing exists): sliced Wasserstein distance (SWD) of 128 px chips and per-band
Wasserstein-1, against the untranslated input (identity) and per-band histogram matching
to the post-disaster training pixels.

``--dataset naip``: a co-registered pair for paired measurement. Ten NAIP dates of one North
Dakota quarter-quad exist; domain A are the 2009, 2010 and 2012 dates, domain B 2018, 2019
and 2020, resampled onto one grid. The model trains on the upper 70 % of the scene; on the
lower 30 % every A date is translated and compared pixel by pixel with every B date: PSNR,
SSIM and per-band Wasserstein-1, against identity, histogram matching to the B training
pixels, and (an oracle that sees the answer) histogram matching to the target date itself.
NAIP has no change mask, so all valid pixels count; fields change between any two dates,
which bounds what any translation can reach.

Run::

    python examples/disaster_cyclegan.py --out runs/joplin      # 1500 steps on 128 px chips
    python examples/disaster_cyclegan.py --dataset naip --out runs/naip --size 64 \
        --steps 1200 --precision bf16                            # as in docs/quality.md
    python examples/disaster_cyclegan.py --dataset oscd --out runs/oscd

``--dataset oscd`` trains t1 -> t2 on six OSCD Sentinel-2 cities and measures the two
held-out cities on their unchanged pixels (change mask 0).

Everything lands in ``--out``: ``report.json`` (all figures), ``heldout_a_a2b_b.png``
(held-out crops: A, A->B and real B), the translated GeoTIFFs in ``translated/``, and the
training folder ``train/`` (checkpoint, ``log.jsonl``, ``samples/step_*.png`` grids of
A, A->B, A->B->A written during training; ``--resume`` continues an interrupted run).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject
from shapely.geometry import box

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SHARED_DATA,
    read_image_and_mask,
    run_main,
    tile_chips,
    train_options,
    training_time,
    write_grid,
    write_json,
)

from rsgan.data import ChipDataset  # noqa: E402
from rsgan.io import atomic_output, describe  # noqa: E402
from rsgan.metrics import (  # noqa: E402
    histogram_match,
    per_band_wasserstein,
    psnr,
    sliced_wasserstein_distance,
    ssim,
)
from rsgan.models import CycleGANConfig  # noqa: E402
from rsgan.pipelines.translate import translate_raster  # noqa: E402
from rsgan.training import train_cyclegan  # noqa: E402

JOPLIN = SHARED_DATA / "xview2_joplin_prepost"
NAIP = SHARED_DATA / "naip_northdakota_timeseries"
NAIP_DATES_A = ("20090818", "20100629", "20120731")
NAIP_DATES_B = ("20180716", "20190904", "20200831")
TRAIN_SHARE = 0.7
"""NAIP: share of the scene's rows (from the top) used for training."""
OSCD = SHARED_DATA / "oscd_s2_bitemporal"
OSCD_HELD_OUT = ("bercy", "nantes")


@dataclass(frozen=True)
class Domains:
    """The files of an experiment.

    Attributes:
        train_a: rasters of domain A to train on.
        train_b: rasters of domain B to train on.
        translate: rasters of domain A to translate after training.
        eval_pairs: co-registered ``(A raster, B raster, change mask or None)`` to measure
            pixel by pixel (empty for unpaired data).
        held_out: ``(A raster, B raster)`` left out of training, compared as
            distributions (for unpaired data), or None.
        train_aoi: area (in the rasters' CRS) the training chips must lie within, or None.
        split_row: rows ``< split_row`` are for training, the others for evaluation (0: the
            whole rasters serve both roles, i.e. held-out rasters are used instead).
        data_range: value span for PSNR and SSIM.
        rgb: 0-based bands shown as red, green, blue in the PNG grids.
    """

    train_a: tuple[Path, ...]
    train_b: tuple[Path, ...]
    translate: tuple[Path, ...]
    eval_pairs: tuple[tuple[Path, Path, Path | None], ...] = ()
    held_out: tuple[Path, Path] | None = None
    train_aoi: Any = None
    split_row: int = 0
    data_range: float = 255.0
    rgb: tuple[int, int, int] = (0, 1, 2)


# ------------------------------------------------------------------------------- data


def joplin_domains(folder: Path) -> Domains:
    """Pre (A) and post (B) tiles, holding out the last tile of each (sorted by name)."""
    pre = sorted((folder / "pre").glob("*.tif"))
    post = sorted((folder / "post").glob("*.tif"))
    if len(pre) < 2 or len(post) < 2:
        raise SystemExit(f"{folder} needs pre/ and post/ folders with at least 2 tiles each")
    return Domains(
        train_a=tuple(pre[:-1]),
        train_b=tuple(post[:-1]),
        translate=tuple(pre),
        held_out=(pre[-1], post[-1]),
    )


def naip_domains(folder: Path, out: Path) -> Domains:
    """NAIP dates of A and B resampled onto the first A date's grid, and the split.

    The dates' grids shift by 1-3 m (under a pixel at 5 m); bilinear resampling onto one
    grid makes the pixels comparable. The aligned rasters are written to ``out/aligned``.
    """
    files = {f.stem.rsplit("_", 1)[-1]: f for f in folder.glob("m_*.tif")}
    missing = [d for d in NAIP_DATES_A + NAIP_DATES_B if d not in files]
    if missing:
        raise SystemExit(f"{folder} lacks the NAIP dates {missing}")
    aligned_dir = out / "aligned"
    aligned_dir.mkdir(parents=True, exist_ok=True)
    with rasterio.open(files[NAIP_DATES_A[0]]) as ref:
        profile = ref.profile.copy()
        grid = (ref.transform, ref.crs, ref.height, ref.width)
    aligned = {}
    for date in NAIP_DATES_A + NAIP_DATES_B:
        dst = aligned_dir / f"naip_{date}.tif"
        if not dst.exists():
            _resample_onto(files[date], dst, profile, grid)
        aligned[date] = dst
    transform, _, height, width = grid
    split = int(round(height * TRAIN_SHARE))
    left, top = transform * (0, 0)
    right, bottom = transform * (width, split)
    return Domains(
        train_a=tuple(aligned[d] for d in NAIP_DATES_A),
        train_b=tuple(aligned[d] for d in NAIP_DATES_B),
        translate=tuple(aligned[d] for d in NAIP_DATES_A),
        eval_pairs=tuple(
            (aligned[a], aligned[b], None) for a in NAIP_DATES_A for b in NAIP_DATES_B
        ),
        train_aoi=box(left, min(top, bottom), right, max(top, bottom)),
        split_row=split,
    )


def oscd_domains(folder: Path, out: Path) -> Domains:
    """Sentinel-2 dates t1 (A) and t2 (B) of the OSCD cities; two cities held out.

    The held-out cities' t1 and t2 are co-registered, with a change mask: unchanged pixels
    (mask 0) are measured. Values are L1C reflectance x 10000 (uint16), so PSNR and SSIM
    use a data range of 10000 (reflectance 0..1).
    """
    cities = sorted(p.name for p in folder.iterdir() if (p / f"{p.name}_cm.tif").exists())
    held = [c for c in OSCD_HELD_OUT if c in cities]
    if len(held) != len(OSCD_HELD_OUT) or len(cities) < 3:
        raise SystemExit(f"{folder} needs the OSCD cities {OSCD_HELD_OUT} and at least one more")
    train = [c for c in cities if c not in held]

    def date(city: str, t: str) -> Path:
        return folder / city / f"{city}_{t}_B02B03B04B08.tif"

    return Domains(
        train_a=tuple(date(c, "t1") for c in train),
        train_b=tuple(date(c, "t2") for c in train),
        translate=tuple(date(c, "t1") for c in held),
        eval_pairs=tuple((date(c, "t1"), date(c, "t2"), folder / c / f"{c}_cm.tif") for c in held),
        data_range=10000.0,
        rgb=(2, 1, 0),
    )


def _resample_onto(src_path: Path, dst: Path, profile: dict[str, Any], grid: tuple) -> None:
    transform, crs, height, width = grid
    with rasterio.open(src_path) as src:
        data = np.zeros((src.count, height, width), dtype=src.dtypes[0])
        reproject(
            rasterio.band(src, list(range(1, src.count + 1))),
            data,
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=0,
            resampling=Resampling.bilinear,
        )
    with atomic_output(dst, overwrite=False) as tmp, rasterio.open(tmp, "w", **profile) as out:
        out.write(data)


# ------------------------------------------------------------------------------- evaluation


def _rows(path: Path, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """Bands (float64) and valid mask of a raster's rows."""
    data, mask = read_image_and_mask(path)
    return data[:, rows].astype(np.float64), mask[rows]


def _unchanged(path: Path | None, rows: slice, shape: tuple[int, int]) -> np.ndarray:
    """True where a change mask is 0 (all True without a mask)."""
    if path is None:
        return np.ones(shape, dtype=bool)
    data, _ = read_image_and_mask(path)
    return data[0, rows] == 0


def _b_domain_pixels(domains: Domains) -> np.ndarray:
    """Valid training pixels of domain B, ``(bands, 1, n)`` (histogram-matching reference)."""
    rows = slice(0, domains.split_row or None)
    parts = [d[:, m] for d, m in (_rows(p, rows) for p in domains.train_b)]
    return np.concatenate(parts, axis=1)[:, None, :]


def paired_figures(
    candidates: dict[str, np.ndarray], target: np.ndarray, mask: np.ndarray, data_range: float
) -> dict[str, dict[str, Any]]:
    """PSNR, SSIM and per-band W1 of each candidate against a co-registered target.

    Args:
        candidates: name -> ``(bands, rows, cols)`` prediction of ``target``.
        target: ``(bands, rows, cols)`` real image.
        mask: ``(rows, cols)`` True where pixels count (valid, unchanged).
        data_range: value span for PSNR/SSIM (255 for uint8).
    """
    return {
        name: {
            "psnr_db": psnr(pred, target, mask=mask, data_range=data_range),
            "ssim": ssim(pred, target, mask=mask, data_range=data_range),
            "w1_per_band": per_band_wasserstein(pred, target, mask, mask).tolist(),
        }
        for name, pred in candidates.items()
    }


def evaluate_pairs(domains: Domains, translated: dict[Path, Path]) -> dict[str, Any]:
    """Each evaluation pair: A->B, identity and histogram matching against real B.

    Pixels count where A, B and A->B are valid and the change mask (if any) says
    unchanged. ``histogram_match_b_domain`` maps A to the B *training* pixels (what a
    model can know); ``histogram_match_target_oracle`` maps A to the target itself (it
    sees the answer's histogram: an upper reference, not a competitor).
    """
    rows = slice(domains.split_row, None)
    reference = _b_domain_pixels(domains)
    ref_mask = np.ones(reference.shape[1:], dtype=bool)
    high = float(np.iinfo(np.uint16).max)
    pairs = []
    for path_a, path_b, change in domains.eval_pairs:
        a, mask_a = _rows(path_a, rows)
        b, mask_b = _rows(path_b, rows)
        fake, mask_f = _rows(translated[path_a], rows)
        mask = mask_a & mask_b & mask_f & _unchanged(change, rows, mask_a.shape)
        matched = histogram_match(a, reference, mask_source=mask_a, mask_reference=ref_mask)
        oracle = histogram_match(a, b, mask_source=mask, mask_reference=mask)
        candidates = {
            "identity": a,
            "histogram_match_b_domain": np.clip(np.rint(matched), 0, high),
            "histogram_match_target_oracle": np.clip(np.rint(oracle), 0, high),
            "cyclegan": fake,
        }
        figures = paired_figures(candidates, b, mask, domains.data_range)
        pairs.append({"a": path_a.name, "b": path_b.name, "pixels": int(mask.sum()), **figures})
    names = [k for k in pairs[0] if k not in ("a", "b", "pixels")]
    mean = {
        name: {
            "psnr_db": float(np.mean([p[name]["psnr_db"] for p in pairs])),
            "ssim": float(np.mean([p[name]["ssim"] for p in pairs])),
            "w1_per_band": np.mean([p[name]["w1_per_band"] for p in pairs], axis=0).tolist(),
        }
        for name in names
    }
    return {"data_range": domains.data_range, "mean_over_pairs": mean, "pairs": pairs}


def evaluate_unpaired(
    domains: Domains, translated: dict[Path, Path], *, seed: int, chip: int = 128
) -> dict[str, Any]:
    """Held-out A->B against the held-out B raster, as distributions (no pixel pairing).

    SWD of ``chip`` px chips and per-band W1, for A->B, identity, histogram matching to
    the B training pixels, and a real B training raster (the floor: how far two real B
    rasters are apart).
    """
    if domains.held_out is None:
        raise ValueError("evaluate_unpaired needs Domains.held_out")
    path_a, path_b = domains.held_out
    a, mask_a = read_image_and_mask(path_a)
    b, mask_b = read_image_and_mask(path_b)
    fake, _ = read_image_and_mask(translated[path_a])
    reference = _b_domain_pixels(domains)
    matched = histogram_match(
        a, reference, mask_source=mask_a, mask_reference=np.ones(reference.shape[1:], bool)
    )
    candidates = {
        "identity": a.astype(np.float64),
        "histogram_match_b_domain": np.clip(np.rint(matched), 0, 255),
        "cyclegan": fake.astype(np.float64),
        "real_b_training_raster": read_image_and_mask(domains.train_b[0])[0].astype(np.float64),
    }
    target_chips = tile_chips(b.astype(np.float64), chip)
    figures: dict[str, Any] = {}
    for name, image in candidates.items():
        swd = sliced_wasserstein_distance(tile_chips(image, chip), target_chips, seed=seed)
        figures[name] = {
            "swd_mean": swd["mean"],
            "swd_per_level": swd["per_level"],
            "w1_per_band": per_band_wasserstein(image, b, None, mask_b).tolist(),
        }
    return {
        "held_out_a": path_a.name,
        "held_out_b": path_b.name,
        "chip_px": chip,
        "candidates": figures,
    }


# ------------------------------------------------------------------------------- run


def train(args: argparse.Namespace, domains: Domains) -> Path:
    """Train the CycleGAN on random ``size`` px chips of each domain; returns the checkpoint.

    Random windows (``random_chips`` per epoch, redrawn each epoch) give more variety than
    a fixed grid when a domain has only a few rasters; with ``train_aoi`` they lie within
    the training area.
    """
    crs = describe(domains.train_a[0]).crs

    def chips(paths: tuple[Path, ...], seed: int) -> ChipDataset:
        return ChipDataset(
            list(paths),
            size=args.size,
            max_nodata=0.5,
            aoi=domains.train_aoi,
            aoi_crs=crs if domains.train_aoi is not None else None,
            aoi_within=domains.train_aoi is not None,
            random_chips=args.chips_per_epoch,
            seed=seed,
        )

    ds_a, ds_b = chips(domains.train_a, args.seed), chips(domains.train_b, args.seed + 1)
    config = CycleGANConfig(
        in_channels_a=ds_a.count,
        in_channels_b=ds_b.count,
        ngf=args.ngf,
        ndf=args.ndf,
        n_blocks=args.blocks,
    )
    options = train_options(args)
    return train_cyclegan(ds_a, ds_b, args.out / "train", config=config, options=options)


def translate_all(args: argparse.Namespace, checkpoint: Path, domains: Domains) -> dict[Path, Path]:
    """Translate every raster of ``domains.translate`` A->B into ``out/translated``."""
    folder = args.out / "translated"
    folder.mkdir(exist_ok=True)
    done = {}
    for src in domains.translate:
        dst = folder / f"{src.stem}_a2b.tif"
        done[src] = translate_raster(
            src,
            dst,
            checkpoint,
            direction="a2b",
            tile=args.tile,
            overlap=64,
            overwrite=True,
            progress=not args.no_progress,
            precision=None if args.precision == "auto" else args.precision,
            device="auto",
        )
    return done


def write_comparison_grid(
    domains: Domains, translated: dict[Path, Path], path: Path, *, size: int = 256
) -> Path:
    """PNG of held-out crops side by side: A, A->B and the real B (if there is one).

    Each crop is the ``size`` px window at the middle of the evaluation area, stretched
    per band to 8 bits by the 2nd-98th percentiles of A (the same stretch for all three
    images, so colour differences show).
    """
    if domains.eval_pairs:
        path_a, path_b, _ = domains.eval_pairs[0]
    elif domains.held_out is not None:
        path_a, path_b = domains.held_out
    else:
        path_a, path_b = domains.translate[0], None
    a, _ = read_image_and_mask(path_a)
    top = domains.split_row + max((a.shape[1] - domains.split_row - size) // 2, 0)
    left = max((a.shape[2] - size) // 2, 0)
    crop = (slice(None), slice(top, top + size), slice(left, left + size))
    images = [a, read_image_and_mask(translated[path_a])[0]]
    if path_b is not None:
        b = read_image_and_mask(path_b)[0]
        if b.shape == a.shape:  # co-registered: the same window; else the middle of B
            images.append(b)
        else:
            r0, c0 = (b.shape[1] - size) // 2, (b.shape[2] - size) // 2
            images.append(b[:, r0 : r0 + size, c0 : c0 + size])
    shown = [
        np.asarray(im[crop] if im.shape == a.shape else im)[list(domains.rgb)] for im in images
    ]
    lo, hi = np.percentile(shown[0].reshape(3, -1), [2, 98], axis=1)
    scale = np.maximum(hi - lo, 1e-9)[:, None, None]
    rgb8 = [
        np.clip(np.rint((im - lo[:, None, None]) / scale * 255), 0, 255).astype(np.uint8)
        for im in shown
    ]
    return write_grid(np.stack(rgb8), path, len(rgb8), overwrite=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("joplin", "naip", "oscd"), default="joplin")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: shared data)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--size", type=int, default=128, help="training chip size, px")
    p.add_argument("--steps", type=int, default=1500, help="training iterations")
    p.add_argument("--ngf", type=int, default=32, help="generator width")
    p.add_argument("--ndf", type=int, default=64, help="discriminator width")
    p.add_argument("--blocks", type=int, default=6, help="residual blocks per generator")
    p.add_argument(
        "--precision", default="auto", help="fp32, bf16 (autocast) or auto (bf16 on CUDA only)"
    )
    p.add_argument("--chips-per-epoch", type=int, default=1000, help="random chips per epoch")
    p.add_argument("--tile", type=int, default=512, help="translation tile size, px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p.parse_args(argv)


DATASETS: dict[str, tuple[Path, Callable[..., Domains]]] = {
    "joplin": (JOPLIN, lambda folder, out: joplin_domains(folder)),
    "naip": (NAIP, naip_domains),
    "oscd": (OSCD, oscd_domains),
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the report written to ``OUT/report.json``."""
    args = _parse(argv)
    # NAIP's 4th band is tagged alpha but nodata=0 defines the mask; GDAL warns per read.
    warnings.filterwarnings("ignore", category=rasterio.errors.NodataShadowWarning)
    args.out.mkdir(parents=True, exist_ok=True)
    default_folder, make_domains = DATASETS[args.dataset]
    domains = make_domains(args.data or default_folder, args.out)
    t0 = time.perf_counter()
    checkpoint = train(args, domains)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    translated = translate_all(args, checkpoint, domains)
    translate_seconds = time.perf_counter() - t1
    write_comparison_grid(domains, translated, args.out / "heldout_a_a2b_b.png")
    figures = {}
    if domains.eval_pairs:
        figures["paired"] = evaluate_pairs(domains, translated)
    if domains.held_out is not None:
        figures["unpaired"] = evaluate_unpaired(domains, translated, seed=args.seed)
    report = {
        "dataset": args.dataset,
        "steps": args.steps,
        "chip_size": args.size,
        "ngf": args.ngf,
        "n_blocks": args.blocks,
        "precision": args.precision,
        "train_seconds": train_seconds,
        "training_log": training_time(args.out / "train" / "log.jsonl"),
        "translate_seconds": translate_seconds,
        "translated": [str(p) for p in translated.values()],
        "checkpoint": str(checkpoint),
        "figures": figures,
    }
    write_json(report, args.out / "report.json", overwrite=True)
    print(f"wrote {args.out / 'report.json'}")
    return report


if __name__ == "__main__":
    run_main(main)
