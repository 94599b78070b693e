"""Benchmark translate_raster: pipeline efficiency, memory scaling, overlap waste, speed.

Figures, each measured side by side in one run:

1. End-to-end throughput / bare-model throughput on the same tiles (same precision,
   batch and norm statistics): how well reading, blending and writing hide behind the
   model. Reported against the tiles alone and against the tiles plus the scene-statistics
   forward (the sample patches, also model compute), whose share is given too.
2. Peak RSS translating a 4096 px and a 16384 px square scene (fresh process each), for
   the streaming writer and for a naive whole-scene in-RAM accumulator (float32 sums and
   weights; geoai-style float64 would need twice that), and their ratios. A cheap
   stand-in model (1x1 conv, scene-aware instance norm, tanh) is used here so the 268 Mpx
   scene runs in minutes; memory, not speed, is measured, and a small model makes the
   pipeline's own memory the larger share (a stricter ratio).
3. Overlap waste (generator pixels / scene pixels) at the default tile and overlap, for
   rsgan's balanced grid and for a fixed-stride grid with the last tile shifted.
4. The default model's end-to-end speed (Mpx/s) on a real Joplin tile and a larger
   synthetic scene, bf16 and fp32.

Usage::

    python benchmarks/bench_translate.py            # full (~15 min on 2 cores)
    python benchmarks/bench_translate.py --quick    # smaller scenes (~3 min)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from rsgan._device import autocast
from rsgan.checkpoint import load_model
from rsgan.io import Normalizer, open_raster, read_masked
from rsgan.models.cyclegan import ResnetGenerator
from rsgan.models.layers import SceneInstanceNorm2d, fixed_norm_stats
from rsgan.mosaic import balanced_windows, blend_weights
from rsgan.pipelines import translate as T
from rsgan.tiling import TileSpec, tile_windows

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


def make_scene(path: Path, size: int, seed: int = 0, height: int | None = None) -> Path:
    """A ``size`` px wide (``height`` or ``size`` px tall) 3-band uint8 GeoTIFF with
    texture, written strip by strip."""
    height = height or size
    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        width=size,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:26915",
        transform=Affine(0.6, 0, 366000, 0, -0.6, 4110000),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, height, 256):
            rows = np.arange(top, min(top + 256, height), dtype=np.float32)[:, None]
            base = 60 * np.sin(cols / 97.0) * np.cos(rows / 71.0) + 40 * np.sin(
                (cols + rows) / 23.0
            )
            block = np.stack([base * k for k in (1.0, 0.8, 0.6)]) + 120
            block += rng.normal(0, 12, size=block.shape)
            dst.write(
                np.clip(block, 0, 255).astype(np.uint8), window=((top, top + len(rows)), (0, size))
            )
    return path


def bare_vs_end_to_end(
    scene: Path, net: torch.nn.Module, precision: str, tile: int, overlap: int, tmp: Path
) -> dict:
    """Translate ``scene`` end to end, then run the bare model over the same tiles."""
    out = tmp / "e2e.tif"
    t0 = time.perf_counter()
    T.translate_raster(
        scene,
        out,
        net,
        tile=tile,
        overlap=overlap,
        progress=False,
        precision=precision,
        overwrite=True,
    )
    e2e = time.perf_counter() - t0
    translator = T.resolve_translator(net)
    info = T.describe(scene)
    windows = T._plan_windows(info, translator, tile, overlap, "scene")
    run = T._Run(
        src=scene,
        info=info,
        bands=(1, 2, 3),
        translator=translator,
        in_norm=Normalizer.for_dtype("uint8", 3),
        windows=windows,
        device=torch.device("cpu"),
        precision=precision,
        batch_size=2,
        norm="scene",
        overlap=overlap,
        blend="hann",
    )
    with open_raster(scene) as src:
        t0 = time.perf_counter()
        stats, _ = T._scene_stats(run, src)
        stats_s = time.perf_counter() - t0
        first = read_masked(src, windows[0], (1, 2, 3), boundless=True)
    x = torch.from_numpy(np.stack([T._prepare(*first, run.in_norm)] * 2))
    sizes = [2] * (len(windows) // 2) + [1] * (len(windows) % 2)
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(run.device, precision), fixed_norm_stats(net, stats or {}):
        for n in sizes:
            net(x[:n])
    bare = time.perf_counter() - t0
    scene_px = info.width * info.height
    tile_px = sum(int(w.width * w.height) for w in windows)
    return {
        "scene_px": scene_px,
        "tiles": len(windows),
        "end_to_end_s": round(e2e, 2),
        "bare_model_s": round(bare, 2),
        "stats_pass_s": round(stats_s, 2),
        "stats_overhead": round(stats_s / bare, 3),
        "efficiency_vs_tiles": round(bare / e2e, 3),
        "efficiency_vs_tiles_and_stats": round((bare + stats_s) / e2e, 3),
        "end_to_end_mpx_s": round(scene_px / e2e / 1e6, 3),
        "bare_tile_mpx_s": round(tile_px / bare / 1e6, 3),
        "overlap_waste": round(tile_px / scene_px, 3),
    }


class _CheapNet(torch.nn.Module):
    """1x1 conv, scene-aware instance norm, tanh: exercises the whole pipeline (norm
    statistics included) at a fraction of a generator's cost; memory is what is measured."""

    size_multiple = 4
    min_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.norm = SceneInstanceNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.conv(x)))


def _small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return _CheapNet().eval()


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that
    over from the parent across fork and exec, so a child would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, scene: Path, out: Path, model: str = "cheap") -> None:
    """Run one translation in this (fresh) process and print its peak RSS."""
    torch.set_num_threads(2)
    net = _small_net() if model == "cheap" else load_model(T.DEFAULT_MODEL_PATH).generator("a2b")
    t0 = time.perf_counter()
    if mode == "streaming":
        precision = "fp32" if model == "cheap" else None
        T.translate_raster(scene, out, net, progress=False, precision=precision, overwrite=True)
    else:
        naive_translate(scene, out, net)
    print(
        json.dumps(
            {
                "mode": mode,
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


def naive_translate(
    scene: Path, out: Path, net: torch.nn.Module, tile: int = 768, overlap: int = 64
) -> None:
    """The whole-scene in-RAM accumulator of other tools: read all, float32 sums and
    weights for the whole scene, write all (per-tile statistics; memory is the point)."""
    norm = Normalizer.for_dtype("uint8", 3)
    with rasterio.open(scene) as src:
        data = src.read()
        profile = src.profile
    count, height, width = data.shape
    sums = np.zeros((count, height, width), np.float32)
    weights = np.zeros((height, width), np.float32)
    for w in balanced_windows(width, height, tile, overlap, multiple=4):
        r, c, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
        x = norm.normalize(data[:, r : r + h, c : c + wd])
        with torch.no_grad():
            y = net(torch.from_numpy(x[None]))[0].numpy()
        wt = blend_weights(
            "hann",
            h,
            wd,
            overlap=overlap,
            at_top=r == 0,
            at_left=c == 0,
            at_bottom=r + h >= height,
            at_right=c + wd >= width,
        )
        sums[:, r : r + h, c : c + wd] += y * wt
        weights[r : r + h, c : c + wd] += wt
    result = norm.denormalize(sums / weights)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(result)


def rss(scene: Path, mode: str, tmp: Path, model: str = "cheap") -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--scene",
        str(scene),
        "--out",
        str(tmp / f"{mode}.tif"),
        "--model",
        model,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def waste(size: int, tile: int, overlap: int) -> dict:
    balanced = balanced_windows(size, size, tile, overlap, multiple=4)
    shifted = tile_windows(size, size, TileSpec(tile, overlap))
    return {
        "balanced": round(sum(int(w.width * w.height) for w in balanced) / size**2, 3),
        "fixed_stride_shifted": round(sum(int(w.width * w.height) for w in shifted) / size**2, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["streaming", "naive"])
    parser.add_argument("--model", choices=["cheap", "default"], default="cheap")
    parser.add_argument("--scene", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--parts",
        default="waste,speed,memory,width",
        help="comma-separated: waste, speed, memory, width",
    )
    parser.add_argument("--sizes", default=None, help="memory scene sides, e.g. 4096,16384")
    parser.add_argument(
        "--skip-naive-large",
        action="store_true",
        help="do not run the naive accumulator on the large scene",
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.scene, args.out, args.model)
        return
    torch.set_num_threads(2)
    small, large = (2048, 8192) if args.quick else (4096, 16384)
    if args.sizes:
        small, large = (int(v) for v in args.sizes.split(","))
    parts = set(args.parts.split(","))
    results: dict = {"machine": "2-core AMD EPYC (avx512_bf16), torch " + torch.__version__}
    with tempfile.TemporaryDirectory(prefix="rsgan-bench-") as td:
        tmp = Path(td)
        needed = {small: "speed" in parts or "memory" in parts, large: "memory" in parts}
        scenes = {s: make_scene(tmp / f"scene_{s}.tif", s) for s, need in needed.items() if need}
        # 3. overlap waste
        results["overlap_waste_768_64"] = {s: waste(s, 768, 64) for s in (4096, 16384)}
        results["overlap_waste_512_64"] = {s: waste(s, 512, 64) for s in (4096, 16384)}
        print(json.dumps({k: v for k, v in results.items() if "waste" in k}), flush=True)
        # 1. pipeline efficiency, default model (or a same-size random generator)
        default = T.DEFAULT_MODEL_PATH
        if default.is_file():
            net = load_model(default).generator("a2b")
            name = "default model"
        else:
            torch.manual_seed(0)
            net, name = ResnetGenerator(3, 3, ngf=16, n_blocks=6).eval(), "ngf16/6-block random"
        for precision in ("bf16", "fp32") if "speed" in parts else ():
            results[f"efficiency_{precision}"] = {
                "model": name,
                **bare_vs_end_to_end(scenes[small], net, precision, 768, 64, tmp),
            }
            print(json.dumps(results[f"efficiency_{precision}"]), flush=True)
        # 4. default model on a real tile
        real = sorted((SHARED / "xview2_joplin_prepost" / "pre").glob("*.tif"))
        if real and "speed" in parts:
            for precision in ("bf16", "fp32"):
                t0 = time.perf_counter()
                T.translate_raster(
                    real[0],
                    tmp / "real.tif",
                    net,
                    progress=False,
                    precision=precision,
                    overwrite=True,
                )
                dt = time.perf_counter() - t0
                results[f"real_tile_{precision}_mpx_s"] = round(1024 * 1024 / dt / 1e6, 3)
            print(
                json.dumps({k: v for k, v in results.items() if k.startswith("real")}), flush=True
            )
        # 2. memory scaling
        mem: dict = {}
        if "width" in parts:
            # memory grows with the width only: wide, short scenes, both models
            for w in (small, large):
                wide = make_scene(tmp / f"wide_{w}.tif", w, height=1024)
                for model in ("cheap", "default"):
                    key = f"streaming_{model}_{w}x1024"
                    mem[key] = rss(wide, "streaming", tmp, model)
                    print(key, json.dumps(mem[key]), flush=True)
        for size, scene in scenes.items() if "memory" in parts else ():
            mem[f"streaming_{size}"] = rss(scene, "streaming", tmp)
            print(json.dumps(mem[f"streaming_{size}"]), flush=True)
            if size == large and args.skip_naive_large:
                continue
            mem[f"naive_{size}"] = rss(scene, "naive", tmp)
            print(json.dumps(mem[f"naive_{size}"]), flush=True)
        if f"streaming_{small}" not in mem:
            results["memory"] = mem
            print(json.dumps(results, indent=1))
            return
        mem["streaming_ratio"] = round(
            mem[f"streaming_{large}"]["peak_rss_mb"] / mem[f"streaming_{small}"]["peak_rss_mb"], 2
        )
        if f"naive_{large}" in mem:
            mem["naive_ratio"] = round(
                mem[f"naive_{large}"]["peak_rss_mb"] / mem[f"naive_{small}"]["peak_rss_mb"], 2
            )
        results["memory"] = mem
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
