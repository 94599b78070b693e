"""Chip reading throughput and memory: rsgan vs plain rasterio, measured side by side.

What it measures (issue 2):

1. Chips per second and MB/s reading every 256 px and 512 px chip (25 % overlap) of a
   synthetic 16384 x 16384 3-band uint8 tiled DEFLATE GeoTIFF, through
   ``rsgan.io.read_window``, through ``ChipDataset.read`` (pixels + valid mask) and
   ``ChipDataset[i]`` (normalised tensors), against plain rasterio ``src.read(window=...)``
   of the same windows in the same run. The readers are interleaved chip by chip, each on
   its own dataset handle (GDAL_CACHEMAX 64 MB by default, enough for a strip of blocks),
   so a busy machine slows them alike; the best of ``--repeats`` passes is kept.
2. Peak RSS (``ru_maxrss`` of a child process) of chipping a 4096 px and a 16384 px scene:
   iterating a ``ChipDataset`` over every chip, and ``export_chips`` to GeoTIFFs.

The scenes are generated once into ``--cache`` (default ``/tmp/rsgan-bench``), outside
the repository. ``--quick`` uses a 4096 px scene for the throughput part and a 2048 vs
4096 px pair for memory.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_chips.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from rsgan.io import open_dataset, read_window
from rsgan.tiling import TileSpec, tile_windows

BLOCK = 256


def make_scene(path: Path, size: int) -> Path:
    """A size x size 3-band uint8 tiled DEFLATE GeoTIFF with field-like texture, written
    strip by strip (memory stays at one strip)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.tif")
    rng = np.random.default_rng(0)
    parcels = rng.integers(40, 200, size=(3, size // 64 + 1, size // 64 + 1), dtype=np.uint8)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32614", "transform": Affine(1.0, 0, 500000.0, 0, -1.0, 5300000.0),
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "NUM_THREADS": "2", "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    cols = np.arange(size)
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, BLOCK):
            rows = np.arange(r0, r0 + BLOCK)
            base = parcels[:, rows[:, None] // 64, cols[None, :] // 64].astype(np.int16)
            wave = (20 * np.sin(cols[None, :] / 37.0 + rows[:, None] / 53.0)).astype(np.int16)
            noise = rng.integers(-12, 13, size=(3, BLOCK, size), dtype=np.int16)
            strip = np.clip(base + wave + noise, 0, 255).astype(np.uint8)
            dst.write(strip, window=((r0, r0 + BLOCK), (0, size)))
    tmp.rename(path)
    return path


def throughput(scene: Path, size: int, repeats: int, cachemax: int) -> dict[str, object]:
    """Seconds each reader spends on every chip of the grid (25 % overlap).

    The readers are interleaved chip by chip (their order rotating), each on its own
    dataset handle, so each sees the same GDAL block-cache pattern as if it ran alone, and
    a busy machine slows all of them alike. The best of ``repeats`` full passes is kept,
    after one warm-up pass that brings the file into the OS page cache.
    """
    from rsgan.data import ChipDataset

    spec = TileSpec(size, size // 4)
    width = _width(scene)
    windows = tile_windows(width, width, spec)
    with rasterio.Env(GDAL_CACHEMAX=cachemax):
        ds_read = ChipDataset(scene, size=size, overlap=size // 4)
        ds_item = ChipDataset(scene, size=size, overlap=size // 4)
    if len(ds_read) != len(windows):
        raise RuntimeError(f"dataset has {len(ds_read)} chips, grid {len(windows)}")
    chip_bytes = size * size * 3

    with rasterio.Env(GDAL_CACHEMAX=cachemax):
        plain_src = rasterio.open(scene)
        rsgan_src = open_dataset(scene)
        readers: dict[str, Callable[[int], object]] = {
            "rasterio": lambda i: plain_src.read(window=windows[i]),
            "rsgan.read_window": lambda i: read_window(rsgan_src, windows[i]),
            "ChipDataset.read": ds_read.read,
            "ChipDataset[i]": ds_item.__getitem__,
        }
        names = list(readers)
        best = dict.fromkeys(names, float("inf"))
        for rep in range(repeats + 1):
            spent = dict.fromkeys(names, 0.0)
            for i in range(len(windows)):
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    t0 = time.perf_counter()
                    readers[name](i)
                    spent[name] += time.perf_counter() - t0
            if rep > 0:  # pass 0 warms the page cache
                best = {n: min(best[n], spent[n]) for n in names}
        plain_src.close()
        rsgan_src.close()
        ds_read.close()
        ds_item.close()
    rows = {}
    for name, seconds in best.items():
        rows[name] = {
            "seconds": round(seconds, 3),
            "chips_per_s": round(len(windows) / seconds, 1),
            "MB_per_s": round(len(windows) * chip_bytes / seconds / 1e6, 1),
            "ratio_vs_rasterio": round(best["rasterio"] / seconds, 3),
        }
    return {"chip": size, "overlap": size // 4, "chips": len(windows), "readers": rows}


def _width(scene: Path) -> int:
    with rasterio.open(scene) as src:
        return src.width


_CHILD = """
import resource, sys, shutil, tempfile
from pathlib import Path
mode, scene = sys.argv[1], sys.argv[2]
from rsgan.data import ChipDataset
from rsgan.tiling import TileSpec, export_chips
if mode == "dataset":
    ds = ChipDataset(scene, size=256, overlap=64)
    for i in range(len(ds)):
        ds[i]
elif mode == "export":
    out = Path(tempfile.mkdtemp(dir=sys.argv[3])) / "chips"
    export_chips(scene, out, TileSpec(512, 0), progress=False)
    shutil.rmtree(out.parent)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(mode: str, scene: Path, workdir: Path, cachemax: int) -> float:
    """Peak RSS in MB of a child process chipping ``scene`` (``mode``: import, dataset,
    export)."""
    env = {"GDAL_CACHEMAX": str(cachemax)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(scene), str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenes, one repeat")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rsgan-bench"))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--cachemax", type=int, default=64, help="GDAL_CACHEMAX, MB")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--only", choices=("throughput", "rss"), default=None, help="run one part only"
    )
    args = parser.parse_args(argv)
    big = 4096 if args.quick else 16384
    small = 2048 if args.quick else 4096
    repeats = args.repeats or (1 if args.quick else 2)

    t0 = time.perf_counter()
    scene = make_scene(args.cache / f"synthetic_{big}_rgb_deflate.tif", big)
    small_scene = make_scene(args.cache / f"synthetic_{small}_rgb_deflate.tif", small)
    print(
        f"scenes ready in {time.perf_counter() - t0:.1f} s: {scene} ({scene.stat().st_size / 1e6:.0f} MB)"
    )

    results: dict[str, object] = {"scene_px": big, "cachemax_mb": args.cachemax, "throughput": []}
    for size in (256, 512) if args.only != "rss" else ():
        res = throughput(scene, size, repeats, args.cachemax)
        results["throughput"].append(res)  # type: ignore[union-attr]
        print(
            f"\n{size} px chips, overlap {size // 4} px, {res['chips']} chips of a {big} px scene"
        )
        print(f"  {'reader':<20} {'s':>7} {'chips/s':>9} {'MB/s':>8} {'vs rasterio':>12}")
        for name, row in res["readers"].items():  # type: ignore[union-attr]
            print(
                f"  {name:<20} {row['seconds']:>7.2f} {row['chips_per_s']:>9.0f} "
                f"{row['MB_per_s']:>8.0f} {row['ratio_vs_rasterio']:>12.3f}"
            )

    if args.only != "throughput":
        results["peak_rss_mb"] = _rss_part(scene, small_scene, small, big, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _rss_part(
    scene: Path, small_scene: Path, small: int, big: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Peak RSS (MB) of child processes chipping the small and the big scene; printed."""
    workdir = Path(tempfile.mkdtemp(dir=args.cache))
    try:
        rss = {}
        for mode in ("import", "dataset", "export"):
            rss[mode] = {
                str(small): round(peak_rss_mb(mode, small_scene, workdir, args.cachemax), 1),
                str(big): round(peak_rss_mb(mode, scene, workdir, args.cachemax), 1),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\npeak RSS of a child process, MB (GDAL_CACHEMAX={args.cachemax} MB)")
    print(f"  {'what':<34} {small:>8} px {big:>8} px {'ratio':>7}")
    labels = {
        "import": "import rsgan.data (baseline)",
        "dataset": "ChipDataset over all 256/64 chips",
        "export": "export_chips 512 px to GeoTIFF",
    }
    for mode, row in rss.items():
        a, b = row[str(small)], row[str(big)]
        print(f"  {labels[mode]:<34} {a:>11.0f} {b:>11.0f} {b / a:>7.2f}")
    return rss


if __name__ == "__main__":
    main()
