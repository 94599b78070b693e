"""Domain adaptation on real data: building segmentation, Joplin before -> after the tornado.

Set-up (see docs/domain_adaptation.md for the figures):

* Source domain, labelled: three pre-tornado xView2 Joplin tiles (``pre/``, EPSG:26915,
  0.6 m, 1024 px); the fourth pre tile is held out to measure in-domain accuracy.
* Target domain, evaluated only: the six post-tornado tiles (``post/``, EPSG:4326), warped
  onto the pre tiles' CRS and 0.6 m pixel size.
* Labels: the building footprints (``joplin_building_footprints.geojson``) rasterised onto
  each tile's grid (1 = building, 0 = background, 255 = outside the warped post tile).
* Translation: a CycleGAN pre -> post generator (the bundled default model, or
  ``--model``) translates the three labelled source tiles with
  :func:`rsgan.pipelines.augment.augment_segmentation_dataset`, which copies each mask
  onto its translated tile's grid.
* Segmenter: a small U-Net (plain torch), trained from scratch at 1.2 m (``--scale 2``)
  with the same seed, steps and batches (random 64 px crops, flips and quarter turns,
  class-weighted cross-entropy) on (A) the source tiles only and (B) the source tiles plus
  their translations; evaluated by mIoU (background, building) on the target tiles and on
  the held-out source tile.

Usage (about 30 minutes of a busy 2-core CPU with the defaults)::

    nice -n 10 python examples/domain_adaptation_joplin.py [--model ckpt] [--seeds 0 1]

Needs the real data folder (``--data`` or ``RSGAN_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from torch import nn
from torch.nn import functional as F

from rsgan.io import Normalizer, atomic_output
from rsgan.pipelines.augment import MixedSegmentationDataset, augment_segmentation_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import JOPLIN_HOLDOUT_PRE, run_main  # noqa: E402

SHARED_DATA = Path(
    os.environ.get("RSGAN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
JOPLIN = "xview2_joplin_prepost"
HOLDOUT_PRE = Path(JOPLIN_HOLDOUT_PRE).stem
IGNORE = 255
NORM = Normalizer.for_dtype("uint8", 3)


# ----------------------------------------------------------------------------- data


def write_tile(
    path: Path, data: np.ndarray, crs: Any, transform: Any, nodata: float | None
) -> Path:
    """Write ``(bands, rows, cols)`` as a DEFLATE GeoTIFF, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": str(data.dtype), "crs": crs,
               "transform": transform, "nodata": nodata, "compress": "deflate"}  # fmt: skip
    with atomic_output(path, overwrite=True) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
    return path


def footprint_mask(footprints: gpd.GeoDataFrame, crs: Any, transform: Any, shape: tuple[int, int]
                   ) -> np.ndarray:  # fmt: skip
    """Buildings burnt onto a grid: uint8 ``(rows, cols)``, 1 inside a footprint, else 0."""
    geoms = footprints.to_crs(crs).geometry
    return rasterize(((g, 1) for g in geoms if g is not None and not g.is_empty),
                     out_shape=shape, transform=transform, fill=0, dtype="uint8")  # fmt: skip


def prepare(data: Path, work: Path) -> dict[str, list[Path]]:
    """Write the source masks and the warped target tiles with their masks under ``work``."""
    footprints = gpd.read_file(data / "joplin_building_footprints.geojson")
    out: dict[str, list[Path]] = {k: [] for k in ("train", "train_masks", "val", "val_masks",
                                                  "target", "target_masks")}  # fmt: skip
    for path in sorted((data / "pre").glob("*.tif")):
        with rasterio.open(path) as src:
            crs, res = src.crs, src.res[0]
            mask = footprint_mask(footprints, src.crs, src.transform, src.shape)
            mask_path = write_tile(work / "source_masks" / path.name, mask[None], src.crs,
                                   src.transform, None)  # fmt: skip
        split = "val" if path.stem == HOLDOUT_PRE else "train"
        out[split].append(path)
        out[f"{split}_masks"].append(mask_path)
    for path in sorted((data / "post").glob("*.tif")):
        with rasterio.open(path) as src:
            transform, width, height = calculate_default_transform(
                src.crs, crs, src.width, src.height, *src.bounds, resolution=res)  # fmt: skip
            with WarpedVRT(src, crs=crs, transform=transform, width=width, height=height,
                           resampling=Resampling.bilinear) as vrt:  # fmt: skip
                image, valid = vrt.read(), vrt.read_masks(1) > 0
        mask = footprint_mask(footprints, crs, transform, (height, width))
        mask[~valid] = IGNORE
        out["target"].append(write_tile(work / "target" / path.name, image, crs, transform, None))
        out["target_masks"].append(
            write_tile(work / "target_masks" / path.name, mask[None], crs, transform, IGNORE)
        )
    return out


def downscale(image: torch.Tensor, mask: torch.Tensor, factor: int
              ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Coarser pixels: the image averaged over ``factor`` x ``factor`` blocks, the mask
    sampled at each block's corner (labels are not averaged)."""
    if factor == 1:
        return image, mask
    h, w = (mask.shape[0] // factor) * factor, (mask.shape[1] // factor) * factor
    image, mask = image[:, :h, :w], mask[:h, :w]
    return F.avg_pool2d(image[None], factor)[0], mask[::factor, ::factor].contiguous()


def read_pairs(images: list[Path], masks: list[Path], factor: int
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Whole tiles as ``(image (3, H, W) in [-1, 1], mask (H, W) int64)``."""
    pairs = []
    for image, mask in zip(images, masks, strict=True):
        with rasterio.open(image) as a, rasterio.open(mask) as b:
            pair = (torch.from_numpy(NORM.normalize(a.read())),
                    torch.from_numpy(b.read(1).astype(np.int64)))  # fmt: skip
        pairs.append(downscale(*pair, factor))
    return pairs


def dataset_tiles(dataset: MixedSegmentationDataset, factor: int
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """The samples of ``dataset`` (whole tiles), downscaled by ``factor``."""
    return [
        downscale(s["image"], s["mask"], factor) for s in (dataset[i] for i in range(len(dataset)))
    ]


def random_batch(tiles: list[tuple[torch.Tensor, torch.Tensor]], n: int, size: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` random ``size`` px crops with random quarter turns and flips."""
    xs, ys = [], []
    for _ in range(n):
        image, mask = tiles[rng.integers(len(tiles))]
        r = int(rng.integers(image.shape[1] - size + 1))
        c = int(rng.integers(image.shape[2] - size + 1))
        x, y = image[:, r : r + size, c : c + size], mask[r : r + size, c : c + size]
        k = int(rng.integers(4))
        x, y = torch.rot90(x, k, (1, 2)), torch.rot90(y, k, (0, 1))
        if rng.random() < 0.5:
            x, y = x.flip(2), y.flip(1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


# ----------------------------------------------------------------------------- model


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
    )  # fmt: skip


class TinyUNet(nn.Module):
    """A three-level U-Net: ``(N, 3, H, W)`` -> logits ``(N, 2, H, W)``; H, W multiples of 8."""

    def __init__(self, width: int = 16, classes: int = 2) -> None:
        super().__init__()
        w = width
        self.enc = nn.ModuleList([block(3, w), block(w, 2 * w), block(2 * w, 4 * w)])
        self.bottom = block(4 * w, 8 * w)
        self.up = nn.ModuleList([nn.ConvTranspose2d(c, c // 2, 2, stride=2)
                                 for c in (8 * w, 4 * w, 2 * w)])  # fmt: skip
        self.dec = nn.ModuleList([block(8 * w, 4 * w), block(4 * w, 2 * w), block(2 * w, w)])
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.enc:
            x = enc(x)  # (N, C, H, W) at this level
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def train(
    tiles: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    batch: int,
    crop: int,
    seed: int,
    lr: float,
    width: int,
    building_weight: float,
) -> TinyUNet:
    """Train a TinyUNet on random crops of ``tiles`` (class-weighted cross-entropy, 255
    ignored; buildings are ~10 % of the pixels)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = TinyUNet(width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    weights = torch.tensor([1.0, building_weight])
    net.train()
    for _ in range(steps):
        x, y = random_batch(tiles, batch, crop, rng)
        loss = F.cross_entropy(net(x), y, weight=weights, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def iou(net: TinyUNet, tiles: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """IoU per class and their mean over whole tiles (pixels labelled 255 left out)."""
    inter, union = np.zeros(2), np.zeros(2)
    for image, mask in tiles:
        h, w = mask.shape
        pad_h, pad_w = (-h) % 8, (-w) % 8
        x = F.pad(image[None], (0, pad_w, 0, pad_h), mode="reflect")
        pred = net(x)[0, :, :h, :w].argmax(0)
        valid = mask != IGNORE
        for k in range(2):
            p, t = (pred == k) & valid, (mask == k) & valid
            inter[k] += int((p & t).sum())
            union[k] += int((p | t).sum())
    ious = inter / np.maximum(union, 1)
    return {"iou_background": float(ious[0]), "iou_building": float(ious[1]),
            "miou": float(ious.mean())}  # fmt: skip


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / JOPLIN)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="pre->post CycleGAN checkpoint (default: the bundled model)",
    )
    parser.add_argument("--direction", default="a2b", help="pre->post direction of --model")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rsgan-joplin-da"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=8, help="U-Net width (first level)")
    parser.add_argument("--scale", type=int, default=2, help="train and evaluate at 0.6 m x this")
    parser.add_argument("--building-weight", type=float, default=4.0,
                        help="cross-entropy weight of the building class")  # fmt: skip
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the translated tiles of an earlier run in --work")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(
            f"real data not found at {args.data}; pass --data or set RSGAN_SHARED_DATA"
        )

    started = time.perf_counter()
    files = prepare(args.data, args.work)
    index_path = args.work / "augmented" / "index.csv"
    if args.reuse and index_path.exists():
        index = pd.read_csv(index_path)
    else:
        index = augment_segmentation_dataset(files["train"], files["train_masks"], args.model,
                                             args.work / "augmented", direction=args.direction,
                                             overwrite=True, progress=False)  # fmt: skip
    print(f"translated {int(index['translated'].sum())} source tiles in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    f = args.scale
    originals = dataset_tiles(MixedSegmentationDataset(index_path, translated_ratio=0.0), f)
    translated = dataset_tiles(MixedSegmentationDataset(index_path, translated_ratio=1.0), f)
    evaluation = {
        "target (6 post tiles)": read_pairs(files["target"], files["target_masks"], f),
        "source held-out pre tile": read_pairs(files["val"], files["val_masks"], f),
    }
    variants = {"source only": originals, "source + translated source": originals + translated}
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    for seed in args.seeds:
        for name, tiles in variants.items():
            t0 = time.perf_counter()
            net = train(tiles, steps=args.steps, batch=args.batch, crop=args.crop, seed=seed,
                        lr=args.lr, width=args.width, building_weight=args.building_weight)  # fmt: skip
            scores = {where: iou(net, pairs) for where, pairs in evaluation.items()}
            results["runs"].append({"seed": seed, "train": name, "scores": scores,
                                    "seconds": time.perf_counter() - t0})  # fmt: skip
            line = ", ".join(f"{where}: mIoU {s['miou']:.3f} (building IoU {s['iou_building']:.3f})"
                             for where, s in scores.items())  # fmt: skip
            print(f"seed {seed} | {name:<27} | {line}", flush=True)

    print("\nmean over seeds")
    for name in variants:
        runs = [r for r in results["runs"] if r["train"] == name]
        for where in evaluation:
            mious = [r["scores"][where]["miou"] for r in runs]
            print(f"  {name:<27} {where:<25} mIoU {np.mean(mious):.3f} "
                  f"(seeds: {', '.join(f'{m:.3f}' for m in mious)})")  # fmt: skip
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {args.work / 'results.json'}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    run_main(main)
