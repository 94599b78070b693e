"""Benchmark translate_raster: pipeline efficiency, memory scaling, overlap waste, speed.

Figures, each measured side by side in one run:

1. End-to-end throughput / bare-model throughput on the same tiles (same precision,
   batch and norm statistics): how well reading, blending and writing hide behind the
   model. The statistics pass translates some of those tiles itself (its outputs are
   final), so it counts as model work, as does its pass over the scene's view when it
   samples blocks; what pooling costs over the bare model on the same tiles is given too. ``--norm tile`` measures the same in per-tile mode (no
   statistics pass): reading, blending and writing by themselves.
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
5. (``--parts timeline``) Where one end-to-end run's time goes: the view that picks the
   statistics blocks, reading them, the statistics pass, the main pass, reading the output
   back, the run's CPU-seconds, and the pipeline's own CPU by thread and part.
6. (``--parts workers``) How busy the tile workers are in the main pass: per worker, its
   forwards' wall and CPU time and the gaps between them (waiting for a batch), and the
   run's idle core-seconds by phase (sampled process CPU time against the wall clock).
7. (``--parts whole``) Distance of tiled scene-mode outputs to a whole-scene single pass
   on real scenes (the Joplin pre and post tiles merged into 2048 x 2048 and 3072 x 2048
   px mosaics), with statistics budgets that cover 60 % and 30 % of the blocks and one
   block, beside per-tile mode; the tile-size invariance (512 vs 768) and the model work against
   per-tile mode.
8. (``--parts naive``) The whole-scene in-RAM accumulator's own end-to-end / bare-model
   ratio and speed on the same scene as 1.: read the whole scene, the tiles one at a time
   through the model (per-tile statistics: it has no scene mode), float32 sums and
   weights for the whole scene, write it all; against the same tiles through the model
   alone, in the same precision, in turns in one process.
9. (``--parts empty``) Tiles without a valid pixel skipped against translated, in turns,
   on the ``--sizes`` small scene with nodata outside a turned square footprint (as a
   satellite scene lies in its grid); the outputs compared byte for byte.

Usage::

    python benchmarks/bench_translate.py            # full (~15 min on 2 cores)
    python benchmarks/bench_translate.py --quick    # smaller scenes (~3 min)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine

from rsgan._device import autocast
from rsgan.checkpoint import load_model
from rsgan.io import Normalizer, open_raster, read_masked
from rsgan.models.cyclegan import ResnetGenerator
from rsgan.models.layers import SceneInstanceNorm2d, fixed_norm_stats, norm_layers
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


def scene_run(
    scene: Path,
    model: Any,
    device: torch.device,
    precision: str | None,
    tile: int,
    overlap: int,
    batch: int,
    norm: str = "scene",
) -> T._Run:
    """The run translate_raster makes of a 3-band uint8 ``scene`` in ``norm`` mode (its
    tiles, statistics budget, model), for timing its parts; ``precision`` None: the
    model's preference on ``device``."""
    translator = T.resolve_translator(model)
    info = T.describe(scene)
    budget = T.stats_budget_px(translator.net)
    return T._Run(
        src=scene,
        info=info,
        bands=(1, 2, 3),
        translator=translator,
        in_norm=Normalizer.for_dtype("uint8", 3),
        windows=T._plan_windows(info, translator, tile, overlap, norm, budget),
        device=device,
        precision=precision or T.preferred_precision(translator.precision, device),
        batch_size=batch,
        norm=norm,
        overlap=overlap,
        blend="hann",
        budget_px=budget,
    )


def bare_vs_end_to_end(
    scene: Path,
    net: torch.nn.Module,
    precision: str,
    tile: int,
    overlap: int,
    tmp: Path,
    batch: int = 1,
    rounds: int = 7,
    engine_only: bool = False,
    norm: str = "scene",
) -> dict:
    """Translate ``scene`` end to end and run the bare model over the same tiles (read
    beforehand; the same batch size, translate_raster's CPU default 1, and the same fixed
    statistics), alternately ``rounds`` times; medians of the times and of the per-round
    ratios (this machine's speed moves by up to 40 % between rounds). ``engine_only``
    leaves out the other references (one tile at a time, a plain channels-first loop, the
    model work of the run), which triple a large scene's time. ``norm="tile"``: both
    with per-tile statistics (no statistics pass; what reading, blending and writing
    cost by themselves)."""
    run = scene_run(scene, net, torch.device("cpu"), precision, tile, overlap, batch, norm)
    translator, info, windows = run.translator, run.info, run.windows
    pooled_s: list[float] = []
    view_s: list[float] = []
    original, original_proxy = T.pooled_forward, T._block_proxy

    def timed(*args, **kwargs):  # the model part of the statistics pass, without its reads
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            pooled_s.append(time.perf_counter() - t)

    def timed_proxy(*args, **kwargs):  # the model's pass over the view (sampled blocks)
        t = time.perf_counter()
        try:
            return original_proxy(*args, **kwargs)
        finally:
            view_s.append(time.perf_counter() - t)

    T._block_proxy = timed_proxy  # for the whole function (restored at its end)

    with open_raster(scene) as src:
        T.pooled_forward = timed
        try:
            t0 = time.perf_counter()
            stats, reused = T._scene_stats(run)
            stats_s = time.perf_counter() - t0
        finally:
            T.pooled_forward = original
        tiles = [
            torch.from_numpy(
                T._prepare(*read_masked(src, w, (1, 2, 3), boundless=True), run.in_norm)
            )
            for w in windows
        ]
    layout = translator.memory_format
    e2e_runs: list[float] = []
    bare_runs: list[float] = []
    one_runs: list[float] = []
    plain_runs: list[float] = []
    work_runs: list[float] = []
    warm_pooled: list[float] = []  # the model part of each end-to-end run's statistics pass
    warm_view: list[float] = []  # and its pass over the view, when it samples blocks
    references = ["engine"] if engine_only else ["engine", "one", "plain"]
    for r in range(rounds):
        if engine_only and r % 2:
            # with one reference, it and the end-to-end run take turns going first
            bare_runs.append(engine_pass(run, tiles, stats))
        t0 = time.perf_counter()
        T.pooled_forward = timed  # the statistics pass of each run, warm
        try:
            T.translate_raster(
                scene,
                tmp / "e2e.tif",
                net,
                tile=tile,
                overlap=overlap,
                progress=False,
                precision=precision,
                overwrite=True,
                batch_size=batch,
                norm=norm,
            )
        finally:
            T.pooled_forward = original
        e2e_runs.append(time.perf_counter() - t0)
        if pooled_s:
            warm_pooled.append(pooled_s.pop())
        if view_s:
            warm_view.append(view_s.pop())
        # the references in turns (the first pass after a run measured up to 10 % slower
        # than the same pass later: the heap's state), each round starting with another
        turn = r % len(references)
        for kind in [] if engine_only and r % 2 else references[turn:] + references[:turn]:
            if kind == "engine":
                # the model as translate_raster runs it (its tile workers)
                bare_runs.append(engine_pass(run, tiles, stats))
            elif kind == "one":
                # one tile at a time on all threads, fed channels-last
                one_runs.append(bare_pass(net, tiles, stats, precision, batch, layout))
            else:
                # the same tiles as a plain torch loop would feed them (channels-first)
                plain_runs.append(
                    bare_pass(net, tiles, stats, precision, batch, torch.contiguous_format)
                )
        if engine_only:
            continue
        # the model work of the run itself: the pass over the view (sampled blocks), the
        # pooled pass, then the tiles it did not cover
        rest = [t for i, t in enumerate(tiles) if i not in reused]
        pooled_s.clear()
        view_s.clear()
        T.pooled_forward = timed
        try:
            T._scene_stats(run)
        finally:
            T.pooled_forward = original
        work_runs.append(sum(pooled_s) + sum(view_s) + engine_pass(run, rest, stats))
    T._block_proxy = original_proxy
    del tiles
    # the pipeline by itself (reading, blending, writing; nn.Identity has no norm layers,
    # so no statistics pass): its CPU time is what the model has to hide
    alone_wall, alone_cpu = [], []
    for _ in range(3):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        T.translate_raster(
            scene, tmp / "alone.tif", torch.nn.Identity(), tile=tile, overlap=overlap,
            progress=False, overwrite=True,
        )  # fmt: skip
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        alone_wall.append(time.perf_counter() - t0)
        alone_cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    e2e, bare = float(np.median(e2e_runs)), float(np.median(bare_runs))
    scene_px = info.width * info.height
    tile_px = sum(int(w.width * w.height) for w in windows)
    reused_px = len(reused) * int(windows[0].width * windows[0].height)

    def against(runs: list[float]) -> float:
        """Median over the rounds of reference time / end-to-end time."""
        return round(float(np.median([v / e for v, e in zip(runs, e2e_runs, strict=True)])), 3)

    result = {
        "scene_px": scene_px,
        "tiles": len(windows),
        "tiles_in_stats_pass": len(reused),
        "end_to_end_s": [round(v, 2) for v in e2e_runs],
        "bare_model_s": [round(v, 2) for v in bare_runs],
        "efficiency": round(bare / e2e, 3),
        "efficiency_per_round": [round(b / e, 3) for b, e in zip(bare_runs, e2e_runs, strict=True)],
        # each round's runs are seconds apart, so the machine's state (this VM's speed moves
        # by up to 40 % between rounds) cancels best in the median of per-round ratios
        "efficiency_median_of_rounds": against(bare_runs),
        # the bare model run as translate_raster runs it (its tile workers, each fed
        # channels-last for rsgan's generators) is the reference above; one tile at a time
        # on all threads and a plain channels-first loop for comparison
        "tile_workers": T._tile_workers(run.device, run.precision),
        "layout": "channels_last" if layout == torch.channels_last else "channels_first",
    }
    if not engine_only:
        one, plain = float(np.median(one_runs)), float(np.median(plain_runs))
        work = float(np.median(work_runs))
        result.update(
            {
                "one_tile_at_a_time_s": [round(v, 2) for v in one_runs],
                "efficiency_vs_one_tile_at_a_time_median_of_rounds": against(one_runs),
                "one_tile_at_a_time_vs_bare": round(one / bare, 3),
                "plain_channels_first_s": [round(v, 2) for v in plain_runs],
                "efficiency_vs_plain_channels_first_median_of_rounds": against(plain_runs),
                "plain_vs_bare": round(plain / bare, 3),
                # against the model work the run does (the pass over the view when blocks
                # are sampled, the pooled pass over its blocks, then the other tiles bare):
                # how well reading, blending and writing hide behind the model
                "model_work_s": [round(v, 2) for v in work_runs],
                "efficiency_vs_model_work": round(work / e2e, 3),
                "efficiency_vs_model_work_median_of_rounds": against(work_runs),
            }
        )
    result.update(
        {
            # the statistics pass translates tiles whose outputs are final: its model part
            # in the end-to-end runs (median) against the same tiles' share of the bare
            # model's time shows what pooling the statistics costs. The first pass of the
            # process (with its reads, the view and the choice of blocks) was cold: oneDNN
            # builds its kernels for each new shape then, which no later run pays
            "stats_pass_first_s": round(stats_s, 2),
            "stats_pass_model_s": [round(v, 2) for v in warm_pooled],
            "view_pass_s": [round(v, 3) for v in warm_view],
            "stats_pass_vs_bare_same_tiles": round(
                float(np.median(warm_pooled)) / (bare * reused_px / tile_px), 3
            )
            if reused_px
            else None,
            "pipeline_alone_wall_s": round(float(np.median(alone_wall)), 3),
            "pipeline_alone_cpu_s": round(float(np.median(alone_cpu)), 3),
            "end_to_end_mpx_s": round(scene_px / e2e / 1e6, 3),
            "bare_tile_mpx_s": round(tile_px / bare / 1e6, 3),
            "overlap_waste": round(tile_px / scene_px, 3),
        }
    )
    return result


def _norm_stats(net: torch.nn.Module, stats: dict | None) -> Any:
    """The scene statistics fixed in ``net``'s norm layers; None (per-tile mode) or a
    model without norm layers: each tile's own."""
    if stats is None or not norm_layers(net):
        return contextlib.nullcontext()
    return fixed_norm_stats(net, stats)


def engine_pass(run: T._Run, tiles: list[torch.Tensor], stats: dict | None) -> float:
    """Seconds for the bare model over ``tiles`` as translate_raster runs it: its tile
    workers (two batches at once on CPU in bf16, one thread each, each with its own copy
    of the model; one batch on all threads in fp32), batches of ``run.batch_size``, inputs
    in the model's layout, the same fixed statistics (folded into the convolutions in
    fp32, as translate_raster does); the model alone."""
    layout = run.translator.memory_format

    def forward(worker_run: T._Run, batch: list[torch.Tensor]) -> None:
        # the input made as bare_pass makes it, so one worker is exactly bare_pass
        x = torch.stack(batch).contiguous(memory_format=layout)
        with torch.no_grad(), autocast(worker_run.device, worker_run.precision):
            worker_run.translator.net(x)

    t0 = time.perf_counter()
    with _norm_stats(run.translator.net, stats):
        # with the statistics folded into the convolutions where translate_raster does so
        main = T._folded(run, stats)
        workers = T._Forwarders(main, T._tile_workers(run.device, run.precision))
        try:
            size = run.batch_size
            batches = [tiles[i : i + size] for i in range(0, len(tiles), size)]
            futures = [workers.submit(forward, batch) for batch in batches]
            for future in futures:
                future.result()
        finally:
            workers.close()
    return time.perf_counter() - t0


def bare_pass(
    net: torch.nn.Module,
    tiles: list[torch.Tensor],
    stats: dict | None,
    precision: str,
    batch: int,
    layout: torch.memory_format,
) -> float:
    """Seconds for the bare model over ``tiles`` (fixed statistics, batches of ``batch``,
    inputs in ``layout``): the model alone, not even its output's conversion to float32."""
    t0 = time.perf_counter()
    with (
        torch.no_grad(),
        autocast(torch.device("cpu"), precision),
        _norm_stats(net, stats),
    ):
        for i in range(0, len(tiles), batch):
            net(torch.stack(tiles[i : i + batch]).contiguous(memory_format=layout))
    return time.perf_counter() - t0


class _PixelCounter:
    """Counts the pixels a generator is run on: a forward pre-hook on its first
    convolution (the statistics pass runs the layers one by one, not ``net.forward``);
    the 3 px reflection padding before it is taken off."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.pixels = 0
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        self._handle = first.register_forward_pre_hook(self._count)

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        x = args[0]
        self.pixels += int(x.shape[0] * (x.shape[-2] - 6) * (x.shape[-1] - 6))

    def remove(self) -> None:
        self._handle.remove()


def joplin_mosaic(folder: str, path: Path) -> Path | None:
    """The Joplin tiles of ``folder`` (pre: 2 x 2, post: 3 x 2, adjacent 1024 px tiles on
    one grid) merged into one real scene, or None without the shared data."""
    from rasterio.merge import merge

    files = sorted((SHARED / "xview2_joplin_prepost" / folder).glob("*.tif"))
    if not files:
        return None
    data, transform = merge(files)
    with rasterio.open(files[0]) as ds:
        profile = ds.profile
    profile.update(
        width=data.shape[2],
        height=data.shape[1],
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def whole_scene_distance(scene: Path, net: torch.nn.Module, tmp: Path) -> dict:
    """Mean |difference| (DN) of tiled scene-mode outputs to a whole-scene single pass,
    at several statistics budgets (fractions of the scene the statistics pass covers),
    with the model work of each run against per-tile mode's; also per-tile mode's distance
    and the tile-size invariance (tile 512 vs the default 768)."""

    def run(name: str, **kwargs) -> tuple[np.ndarray, int, float]:
        counter = _PixelCounter(net)
        t0 = time.perf_counter()
        try:
            T.translate_raster(
                scene, tmp / f"{name}.tif", net, progress=False, overwrite=True, **kwargs
            )
        finally:
            counter.remove()
        seconds = time.perf_counter() - t0
        with rasterio.open(tmp / f"{name}.tif") as ds:
            return ds.read().astype(np.float32), counter.pixels, seconds

    info = T.describe(scene)
    scene_px = info.width * info.height
    width = next(iter(T.norm_layers(net).values())).num_features
    mb_for = lambda px: px * T.STATS_BYTES_PER_PX * width / 2**20  # noqa: E731
    big = mb_for(scene_px * 1.01)
    whole, whole_px, whole_s = run("whole", stats_memory_mb=big, precision="fp32")
    per_tile, tile_px, tile_s = run("tile", norm="tile", precision="fp32", stats_memory_mb=1)
    out = {
        "scene": f"{scene.name} {info.width}x{info.height}",
        "whole_pass_s": round(whole_s, 1),
        "per_tile_to_whole_dn": round(float(np.abs(per_tile - whole).mean()), 3),
        "per_tile_s": round(tile_s, 1),
    }
    rows = []
    blocks = T.balanced_windows(info.width, info.height, 768, 64, multiple=4, min_size=8)
    block_px = int(blocks[0].width * blocks[0].height)
    # 60 % and 30 % of the blocks, and a single block: a scene far above the budget (the
    # default budget covers ~2 % of a 16384 px scene) leans on how representative few are
    for k in sorted({max(1, int(share * len(blocks))) for share in (0.6, 0.3)} | {1})[::-1]:
        mb = mb_for(k * block_px + 1)
        a, a_px, a_s = run(f"scene_{k}", stats_memory_mb=mb, precision="fp32")
        b, _, _ = run(f"scene_{k}_512", stats_memory_mb=mb, precision="fp32", tile=512)
        rows.append(
            {
                "blocks_in_stats_pass": f"{k}/{len(blocks)}",
                "to_whole_dn": round(float(np.abs(a - whole).mean()), 3),
                "tile_512_vs_768_dn": round(float(np.abs(a - b).mean()), 4),
                "model_px_vs_per_tile": round(a_px / tile_px, 3),
                "seconds_vs_per_tile": round(a_s / tile_s, 3),
            }
        )
    out["sampled"] = rows
    return out


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
    # the bundled model from its checkpoint, so it runs in its stored precision (bf16); as a
    # bare module it would run in fp32 (until the fifth session it did, though labelled bf16)
    net: Any = _small_net() if model == "cheap" else T.DEFAULT_MODEL_PATH
    if mode != "streaming" and model != "cheap":
        net = load_model(T.DEFAULT_MODEL_PATH).generator("a2b")
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
    scene: Path,
    out: Path,
    net: torch.nn.Module,
    tile: int = 768,
    overlap: int = 64,
    precision: str = "fp32",
) -> None:
    """The whole-scene in-RAM accumulator of other tools: read all, float32 sums and
    weights for the whole scene, write all (per-tile statistics; one tile at a time, as
    a plain torch loop feeds it)."""
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
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            y = net(torch.from_numpy(x[None]))[0].float().numpy()
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


def naive_vs_bare(
    scene: Path, net: torch.nn.Module, precision: str, tmp: Path, rounds: int = 4
) -> dict:
    """The whole-scene accumulator (:func:`naive_translate`) end to end against its own
    model work: the same tiles, normalised beforehand, one at a time through the model in
    the same precision and layout (channels-first, per-tile statistics); in turns, each
    round starting with the other."""
    norm = Normalizer.for_dtype("uint8", 3)
    with rasterio.open(scene) as src:
        data = src.read()
    height, width = data.shape[1:]
    windows = balanced_windows(width, height, 768, 64, multiple=4)
    tiles = [
        torch.from_numpy(
            norm.normalize(
                data[:, int(w.row_off) : int(w.row_off + w.height),
                     int(w.col_off) : int(w.col_off + w.width)]
            )
        )
        for w in windows
    ]  # fmt: skip
    del data

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            for x in tiles:
                net(x[None])
        return time.perf_counter() - t0

    def end_to_end() -> float:
        t0 = time.perf_counter()
        naive_translate(scene, tmp / "naive_speed.tif", net, precision=precision)
        return time.perf_counter() - t0

    e2e_runs: list[float] = []
    bare_runs: list[float] = []
    for r in range(rounds):
        order = (bare, end_to_end) if r % 2 else (end_to_end, bare)
        seconds = {run: run() for run in order}
        e2e_runs.append(seconds[end_to_end])
        bare_runs.append(seconds[bare])
    ratios = [b / e for b, e in zip(bare_runs, e2e_runs, strict=True)]
    return {
        "tiles": len(windows),
        "end_to_end_s": [round(v, 2) for v in e2e_runs],
        "bare_model_s": [round(v, 2) for v in bare_runs],
        "efficiency_per_round": [round(v, 3) for v in ratios],
        "efficiency_median_of_rounds": round(float(np.median(ratios)), 3),
        "end_to_end_mpx_s": round(width * height / float(np.median(e2e_runs)) / 1e6, 3),
    }


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


def timeline(scene: Path, net: torch.nn.Module, precision: str, tmp: Path, rounds: int = 3) -> dict:
    """Where one end-to-end run's time goes (medians of ``rounds`` runs): choosing the
    statistics blocks (the ~512 px view), reading them, the statistics pass, the main pass
    (first to last tile forward), reading the output back; the run's CPU-seconds; and the
    pipeline's own CPU by part, measured per thread on a run with ``nn.Identity()``."""
    import rsgan.io as rio_mod
    import rsgan.mosaic as mosaic_mod

    spans: dict[str, list[float]] = {}
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, key: str, clock: Any = time.perf_counter) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            starts.setdefault(key, t0)
            try:
                return original(*args, **kwargs)
            finally:
                ends[key] = clock()
                spans.setdefault(key, []).append(ends[key] - t0)

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    forwards: list[tuple[float, float]] = []
    original_forward = T._forward

    def forward(*args: Any) -> Any:
        t0 = time.perf_counter()
        out = original_forward(*args)
        forwards.append((t0, time.perf_counter()))
        return out

    wrap(T, "_thumbnail", "view_of_scene_s")
    wrap(T, "_read_blocks", "read_stats_blocks_s")
    wrap(T, "pooled_forward", "statistics_pass_s")
    wrap(rio_mod, "verify_raster", "read_back_s")
    rows: list[dict[str, float]] = []
    try:
        T._forward = forward
        for _ in range(rounds):
            spans.clear()
            starts.clear()
            ends.clear()
            forwards.clear()
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            T.translate_raster(
                scene, tmp / "timeline.tif", net, tile=768, overlap=64, progress=False,
                precision=precision, overwrite=True,
            )  # fmt: skip
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            row = {k: sum(v) for k, v in spans.items()}
            # the rest: checks, planning and picking the blocks (k-means) before the
            # pass; copying the model for the tile workers and the first read between;
            # the writer's last rows, closing the file and the rename after
            row["before_statistics_pass_s"] = starts["statistics_pass_s"] - t0
            row["statistics_pass_to_first_tile_s"] = forwards[0][0] - ends["statistics_pass_s"]
            row["main_pass_s"] = forwards[-1][1] - forwards[0][0]
            row["main_pass_tiles"] = len(forwards)
            row["after_last_tile_s"] = t1 - forwards[-1][1]
            row["total_s"] = t1 - t0
            row["cpu_s"] = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            rows.append(row)
    finally:
        T._forward = original_forward
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    result = {k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0]}
    # the pipeline's CPU by part: the reader and writer threads' own CPU time, and within
    # them decoding, normalising, and compressing + writing rows (the writer's last rows
    # are written by the main thread when the writer closes)
    patched.clear()
    spans.clear()
    original_run = T._Worker.run

    def run_timed(worker: Any) -> None:
        t0 = time.thread_time()
        try:
            original_run(worker)
        finally:
            spans.setdefault(f"{worker.name}_thread", []).append(time.thread_time() - t0)

    for owner, name, key in (
        (T, "_read_tile", "decode_input"),
        (T, "_model_input", "normalise_input_to_layout"),
        (mosaic_mod.MosaicWriter, "_flush", "compress_and_write"),
    ):
        wrap(owner, name, key, clock=time.thread_time)
    try:
        T._Worker.run = run_timed  # type: ignore[method-assign]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        T.translate_raster(
            scene, tmp / "timeline.tif", torch.nn.Identity(), tile=768, overlap=64,
            progress=False, overwrite=True,
        )  # fmt: skip
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        T._Worker.run = original_run  # type: ignore[method-assign]
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    parts = {f"{k}_cpu_s": round(sum(v), 3) for k, v in spans.items()}
    parts["all_cpu_s"] = round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 3)
    result["pipeline_alone"] = parts
    return result


class _CpuClock:
    """Within the block, the process's CPU time against the wall clock, every 2 ms."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.samples.append((time.perf_counter(), time.process_time()))
            self._done.wait(0.002)

    def __enter__(self) -> _CpuClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def idle_core_s(self, cores: int, a: float, b: float) -> float:
        """Core-seconds no thread of the process ran between the wall-clock times a, b."""
        clock = np.array(self.samples)
        i, j = np.searchsorted(clock[:, 0], [a, b])
        wall, cpu = clock[min(j, len(clock) - 1)] - clock[i]
        return float(cores * wall - cpu)


def worker_use(
    scene: Path, net: torch.nn.Module, precision: str, tmp: Path, rounds: int = 3
) -> dict:
    """How busy the model's tile workers are in the main pass (medians of ``rounds`` runs):
    per worker thread the wall and CPU time of its forwards and the gaps between them, in
    which it waited for a batch; and the run's idle core-seconds (cores x wall - process CPU
    time, sampled every 2 ms) before, during and after the main pass."""
    cores = torch.get_num_threads()
    calls: list[tuple[str, float, float, float]] = []
    original = T._forward

    def forward(*args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        out = original(*args)
        calls.append(
            (threading.current_thread().name, t0, time.perf_counter(), time.thread_time() - c0)
        )
        return out

    rows = []
    T._forward = forward
    try:
        for _ in range(rounds):
            calls.clear()
            sampler = _CpuClock()
            t0 = time.perf_counter()
            with sampler:
                T.translate_raster(
                    scene, tmp / "workers.tif", net, tile=768, overlap=64, progress=False,
                    precision=precision, overwrite=True,
                )  # fmt: skip
            t1 = time.perf_counter()
            idle = functools.partial(sampler.idle_core_s, cores)
            first = min(c[1] for c in calls)
            last = max(c[2] for c in calls)
            row: dict[str, float] = {
                "total_s": t1 - t0,
                "main_pass_s": last - first,
                "idle_core_s_before_main_pass": idle(t0, first),
                "idle_core_s_main_pass": idle(first, last),
                "idle_core_s_after_main_pass": idle(last, t1),
            }
            names = sorted({c[0] for c in calls})
            for k, name in enumerate(names):
                mine = sorted(c for c in calls if c[0] == name)
                gaps = [b[1] - a[2] for a, b in itertools.pairwise(mine)]
                row[f"worker{k}_forwards"] = len(mine)
                row[f"worker{k}_forward_wall_s"] = sum(c[2] - c[1] for c in mine)
                row[f"worker{k}_forward_cpu_s"] = sum(c[3] for c in mine)
                row[f"worker{k}_gaps_s"] = sum(gaps)
                row[f"worker{k}_longest_gap_s"] = max(gaps, default=0.0)
            rows.append(row)
    finally:
        T._forward = original
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    return {k: round(float(np.median([r[k] for r in rows])), 3) for k in keys}


def footprint_scene(path: Path, size: int, angle: float = 12.0) -> tuple[Path, float]:
    """``make_scene`` with nodata (0) outside a square turned by ``angle`` degrees and
    inset so its corners touch the raster's edges, as a satellite scene's footprint lies in
    its grid; returns the path and the valid fraction (the scene without nodata stays
    beside it, ``<stem>_full.tif``)."""
    full = make_scene(path.with_name(path.stem + "_full.tif"), size)
    with rasterio.open(full) as src:
        profile, data = src.profile, src.read()
    t = np.deg2rad(angle)
    half = size / 2 / (np.cos(t) + np.sin(t))  # the turned square's half side
    rows, cols = np.mgrid[:size, :size].astype(np.float32) - size / 2
    u = np.abs(cols * np.cos(t) + rows * np.sin(t))
    v = np.abs(-cols * np.sin(t) + rows * np.cos(t))
    inside = (u <= half) & (v <= half)
    data = np.where(inside, np.maximum(data, 1), 0).astype(np.uint8)
    profile.update(nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path, float(inside.mean())


def empty_tiles(
    size: int, net: torch.nn.Module, precision: str, tmp: Path, rounds: int = 4
) -> dict:
    """End-to-end time on a scene whose valid footprint is a turned square (nodata
    around it), with tiles without a valid pixel skipped (the default) and translated as
    before, and on the same scene without nodata, in turns; the two footprint outputs are
    compared byte for byte."""
    scene, valid = footprint_scene(tmp / f"footprint_{size}.tif", size)
    full = scene.with_name(scene.stem + "_full.tif")
    times: dict[Any, list[float]] = {True: [], False: [], "full": []}
    for r in range(rounds):
        turn: list[Any] = [True, False, "full"]
        for how in turn[r % 3 :] + turn[: r % 3]:
            T.SKIP_EMPTY_TILES = how is not False
            t0 = time.perf_counter()
            T.translate_raster(
                full if how == "full" else scene, tmp / f"footprint_{how}.tif", net,
                precision=precision, progress=False, overwrite=True,
            )  # fmt: skip
            times[how].append(time.perf_counter() - t0)
    T.SKIP_EMPTY_TILES = True
    with (
        rasterio.open(tmp / "footprint_True.tif") as a,
        rasterio.open(tmp / "footprint_False.tif") as b,
    ):
        same = bool((a.read() == b.read()).all() and (a.read_masks() == b.read_masks()).all())
    windows = balanced_windows(size, size, 768, 64, multiple=4, min_size=8)
    with rasterio.open(scene) as src:
        empty = sum(not src.read_masks(1, window=w, boundless=True).any() for w in windows)
    return {
        "scene_px": size * size,
        "valid_fraction": round(valid, 3),
        "tiles": len(windows),
        "tiles_without_valid_pixels": int(empty),
        "skipping_s": [round(v, 2) for v in times[True]],
        "translating_all_s": [round(v, 2) for v in times[False]],
        "no_nodata_s": [round(v, 2) for v in times["full"]],
        "footprint_vs_no_nodata_median_of_rounds": round(
            float(np.median([a / b for a, b in zip(times[True], times["full"], strict=True)])), 3
        ),
        "speed_up_median_of_rounds": round(
            float(np.median([b / a for a, b in zip(times[True], times[False], strict=True)])), 3
        ),
        "outputs_identical": same,
    }


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
    parser.add_argument(
        "--precisions", default="bf16,fp32", help="speed part: comma-separated bf16, fp32"
    )
    parser.add_argument("--rounds", type=int, default=7, help="speed part: interleaved rounds")
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="speed part: the bare reference only (for large scenes)",
    )
    parser.add_argument(
        "--norm",
        choices=["scene", "tile"],
        default="scene",
        help="speed part: scene statistics (default) or per-tile (no statistics pass)",
    )
    parser.add_argument("--child", choices=["streaming", "naive"])
    parser.add_argument(
        "--model",
        choices=["cheap", "default"],
        default="cheap",
        help="memory part: a cheap stand-in model or the bundled one",
    )
    parser.add_argument("--scene", type=Path)
    parser.add_argument(
        "--arch",
        default=None,
        help="speed part: a random generator NGF,BLOCKS instead of the bundled model",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--parts",
        default="waste,speed,memory,width",
        help="comma-separated: waste, speed, timeline, workers, memory, width, whole, naive, empty",
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="scene sides SMALL[,LARGE], e.g. 4096,16384 (LARGE: the memory part's second "
        "scene, default 4x SMALL)",
    )
    parser.add_argument(
        "--widths",
        default=None,
        help="width part: scene widths, 1024 px tall (default: the --sizes pair)",
    )
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
        sides = [int(v) for v in args.sizes.split(",")]
        if len(sides) not in (1, 2):
            parser.error(f"--sizes takes one or two sides, not {args.sizes!r}")
        small, large = sides[0], sides[-1] if len(sides) == 2 else 4 * sides[0]
    parts = set(args.parts.split(","))
    results: dict = {"machine": "2-core AMD EPYC (avx512_bf16), torch " + torch.__version__}
    with tempfile.TemporaryDirectory(prefix="rsgan-bench-") as td:
        tmp = Path(td)
        needed = {
            small: bool(parts & {"speed", "timeline", "workers", "memory", "naive"}),
            large: "memory" in parts,
        }
        scenes = {s: make_scene(tmp / f"scene_{s}.tif", s) for s, need in needed.items() if need}
        # 3. overlap waste
        results["overlap_waste_768_64"] = {s: waste(s, 768, 64) for s in (4096, 16384)}
        results["overlap_waste_512_64"] = {s: waste(s, 512, 64) for s in (4096, 16384)}
        print(json.dumps({k: v for k, v in results.items() if "waste" in k}), flush=True)
        # 1. pipeline efficiency, default model (or a same-size random generator)
        default = T.DEFAULT_MODEL_PATH
        if args.arch:
            ngf, blocks = (int(v) for v in args.arch.split(","))
            torch.manual_seed(0)
            net = ResnetGenerator(3, 3, ngf=ngf, n_blocks=blocks).eval()
            name = f"ngf{ngf}/{blocks}-block random"
        elif default.is_file():
            net = load_model(default).generator("a2b")
            name = "default model"
        else:
            torch.manual_seed(0)
            net, name = ResnetGenerator(3, 3, ngf=16, n_blocks=6).eval(), "ngf16/6-block random"
        for precision in args.precisions.split(",") if "speed" in parts else ():
            results[f"efficiency_{precision}"] = {
                "model": name,
                **bare_vs_end_to_end(
                    scenes[small],
                    net,
                    precision,
                    768,
                    64,
                    tmp,
                    rounds=args.rounds,
                    engine_only=args.engine_only,
                    norm=args.norm,
                ),
            }
            print(json.dumps(results[f"efficiency_{precision}"]), flush=True)
        for precision in args.precisions.split(",") if "timeline" in parts else ():
            results[f"timeline_{precision}"] = timeline(scenes[small], net, precision, tmp)
            print(json.dumps({f"timeline_{precision}": results[f"timeline_{precision}"]}))
        for precision in args.precisions.split(",") if "naive" in parts else ():
            results[f"naive_{precision}"] = naive_vs_bare(
                scenes[small], net, precision, tmp, rounds=args.rounds
            )
            print(json.dumps({f"naive_{precision}": results[f"naive_{precision}"]}), flush=True)
        for precision in args.precisions.split(",") if "empty" in parts else ():
            results[f"empty_{precision}"] = empty_tiles(small, net, precision, tmp, args.rounds)
            print(json.dumps({f"empty_{precision}": results[f"empty_{precision}"]}), flush=True)
        for precision in args.precisions.split(",") if "workers" in parts else ():
            results[f"workers_{precision}"] = worker_use(scenes[small], net, precision, tmp)
            print(json.dumps({f"workers_{precision}": results[f"workers_{precision}"]}))
        # 4. default model on a real tile
        real = sorted((SHARED / "xview2_joplin_prepost" / "pre").glob("*.tif"))
        if real and "speed" in parts:
            for precision in args.precisions.split(","):
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
        # 5. distance to a whole-scene pass on real scenes
        if "whole" in parts:
            results["whole_scene"] = []
            for folder in ("pre", "post"):
                mosaic = joplin_mosaic(folder, tmp / f"joplin_{folder}.tif")
                if mosaic is None:
                    print("no shared data: skipping the whole-scene distance", flush=True)
                    break
                row = whole_scene_distance(mosaic, net, tmp)
                results["whole_scene"].append(row)
                print(json.dumps(row), flush=True)
        # 2. memory scaling
        mem: dict = {}
        if "width" in parts:
            # memory grows with the width only: wide, short scenes, both models
            widths = [int(v) for v in args.widths.split(",")] if args.widths else [small, large]
            for w in widths:
                wide = make_scene(tmp / f"wide_{w}.tif", w, height=1024)
                for model in ("cheap", "default"):
                    key = f"streaming_{model}_{w}x1024"
                    mem[key] = rss(wide, "streaming", tmp, model)
                    print(key, json.dumps(mem[key]), flush=True)
        for size, scene in scenes.items() if "memory" in parts else ():
            mem[f"streaming_{size}"] = rss(scene, "streaming", tmp, args.model)
            print(json.dumps(mem[f"streaming_{size}"]), flush=True)
            if size == large and args.skip_naive_large:
                continue
            mem[f"naive_{size}"] = rss(scene, "naive", tmp, args.model)
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
