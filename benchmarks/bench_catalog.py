"""Scenes per minute of translate_catalog with 0, 1 and 2 Dask workers against a plain
sequential loop of translate_raster over the same catalog, in the same run (issue 5).

What it measures:

1. ``loop``: ``for scene: translate_raster(scene, out, model)`` in this process, the model
   loaded once: the floor any catalog runner must be compared with.
2. ``catalog, workers=0``: translate_catalog without Dask (adds the manifest, SHA-256 and
   STAC Item per scene).
3. ``catalog, workers=1`` and ``workers=2``: a fresh LocalCluster per run (worker
   processes, one thread each), model loaded once per worker; cluster start-up included.
4. ``cluster start-up``: starting and closing an empty LocalCluster of 2 workers, so the
   fixed cost can be told apart from the per-scene cost.

The overhead of Dask per scene is ``(catalog time - loop time) / scenes`` for one worker.
Scenes are ``--scenes`` synthetic 3-band uint8 GeoTIFFs of ``--size`` px, translated by a
CycleGAN generator with random weights (``--ngf``, ``--blocks``), fp32. Each measurement
is the best of ``--repeats`` runs, alternating methods.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_catalog.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from rsgan.checkpoint import DomainInfo, load_model, save_checkpoint
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets
from rsgan.pipelines.catalog import translate_catalog
from rsgan.pipelines.translate import translate_raster


def make_scenes(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` seeded 3-band uint8 GeoTIFFs of ``size`` x ``size`` px."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        coarse = rng.integers(30, 220, size=(3, size // 32 + 1, size // 32 + 1), dtype=np.uint8)
        data = np.repeat(np.repeat(coarse, 32, axis=1), 32, axis=2)[:, :size, :size]
        data = np.clip(data + rng.normal(0, 12, data.shape), 0, 255).astype(np.uint8)
        path = folder / f"scene_{i:03d}.tif"
        profile = {"driver": "GTiff", "width": size, "height": size, "count": 3,
                   "dtype": "uint8", "crs": "EPSG:32614", "compress": "deflate",
                   "transform": Affine(1.0, 0, 500000.0 + size * i, 0, -1.0, 5300000.0)}  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        paths.append(path)
    return paths


def make_checkpoint(path: Path, ngf: int, blocks: int) -> Path:
    config = CycleGANConfig(in_channels_a=3, in_channels_b=3, ngf=ngf, ndf=8, n_blocks=blocks)
    torch.manual_seed(0)
    domain = DomainInfo(bands=None, count=3, dtype="uint8",
                        normalizer=Normalizer.for_dtype("uint8", 3))  # fmt: skip
    return save_checkpoint(path, kind="cyclegan", config=config,
                           nets=build_nets("cyclegan", config), domains={"a": domain, "b": domain},
                           generators_only=True)  # fmt: skip


def timed(run: Callable[[Path], object], work: Path) -> float:
    """Seconds of ``run(out_dir)`` into a fresh output folder."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    run(work)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="scene side, px")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="8 scenes, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.scenes, args.repeats = 8, 1

    root = Path(tempfile.mkdtemp(prefix="rsgan-bench-catalog-"))
    try:
        scenes = make_scenes(root / "scenes", args.scenes, args.size)
        ckpt = make_checkpoint(root / "model.safetensors", args.ngf, args.blocks)
        options = {"tile": args.size, "overlap": 32, "precision": "fp32"}

        def loop(out: Path) -> None:
            model = load_model(ckpt)
            for scene in scenes:
                translate_raster(scene, out / f"{scene.stem}.tif", model, progress=False,
                                 **options)  # fmt: skip

        def catalog(workers: int) -> Callable[[Path], object]:
            def run(out: Path) -> None:
                manifest = translate_catalog(scenes[0].parent, out, ckpt, workers=workers,
                                             progress=False, **options)  # fmt: skip
                if (manifest["status"] != "done").any():
                    raise SystemExit(f"a scene failed: {manifest['error'].tolist()}")

            return run

        def startup(out: Path) -> None:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=":0") as cluster, Client(cluster):  # fmt: skip
                pass

        methods: dict[str, Callable[[Path], object]] = {
            "loop (translate_raster, in process)": loop,
            "catalog, workers=0 (no Dask)": catalog(0),
            "catalog, workers=1": catalog(1),
            "catalog, workers=2": catalog(2),
            "cluster start-up only (2 workers)": startup,
        }
        best = {name: float("inf") for name in methods}
        for _ in range(args.repeats):
            for name, run in methods.items():
                best[name] = min(best[name], timed(run, root / "out"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    n = args.scenes
    print(f"{n} scenes of {args.size} px, 3 bands uint8; CycleGAN generator ngf {args.ngf}, "
          f"{args.blocks} blocks, fp32; torch threads in this process: "
          f"{torch.get_num_threads()}; CPU cores: {os.cpu_count()}; best of {args.repeats}")  # fmt: skip
    loop_s = best["loop (translate_raster, in process)"]
    print(f"{'method':<40} {'seconds':>8} {'scenes/min':>11} {'vs loop':>8}")
    for name, seconds in best.items():
        if name.startswith("cluster"):
            print(f"{name:<40} {seconds:8.2f}")
            continue
        print(f"{name:<40} {seconds:8.2f} {n / seconds * 60:11.1f} {loop_s / seconds:7.2f}x")
    one = best["catalog, workers=1"]
    print(f"Dask overhead per scene, 1 worker vs loop: {(one - loop_s) / n:.3f} s "
          f"(of which cluster start-up {best['cluster start-up only (2 workers)'] / n:.3f} s "
          "spread over the scenes)")  # fmt: skip


if __name__ == "__main__":
    main()
