"""rsgan on a CUDA GPU: whole-scene translation against the bare model, and training steps.

Meant for a lent GPU machine (``benchmarks/gpu_check.sh`` runs it); prints one JSON line
per measurement and writes them all to ``--out``. What it measures, side by side in one
run:

1. ``translate``: for each scene size, :func:`rsgan.translate_raster` end to end with the
   bundled model on the GPU (scene statistics, batches of ``--batch``, the model's
   precision: bf16 where the GPU computes it natively), against the bare model on the
   same tiles with the same fixed statistics, in two forms: tiles already on the GPU
   (the model alone) and tiles copied from and back to the host (the model and its
   transfers). Rounds alternate; the ratios are medians of the per-round ratios. Also the
   pipeline alone (``nn.Identity()`` on the GPU: reading, blending, writing): what the
   model would have to hide.
2. ``train``: seconds per CycleGAN train step (the paper's generator: ngf 64, 9 blocks,
   256 px, batch 1) and DCGAN step (64 px, batch 64) in fp32 and bf16 autocast, rsgan's
   step against a reference written like the papers' code (``bench_training.py``).

Usage::

    python benchmarks/bench_gpu.py [--sizes 4096,8192] [--rounds 3] [--out gpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import (  # noqa: E402
    reference_cyclegan_step,
    reference_dcgan_step,
    reference_nets,
)
from bench_translate import make_scene, scene_run  # noqa: E402

from rsgan._device import autocast  # noqa: E402
from rsgan.checkpoint import load_model  # noqa: E402
from rsgan.io import open_raster, read_masked  # noqa: E402
from rsgan.losses import ImagePool  # noqa: E402
from rsgan.models import CycleGANConfig, DCGANConfig, build_nets  # noqa: E402
from rsgan.models.layers import fixed_norm_stats  # noqa: E402
from rsgan.pipelines import translate as T  # noqa: E402
from rsgan.training import _adam, cyclegan_train_step, dcgan_train_step  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(run: T._Run, tiles: list[torch.Tensor], stats: dict, on_device: bool) -> float:
    """Seconds for the model over ``tiles`` in batches of ``run.batch_size`` with fixed
    statistics; ``on_device``: the tiles are on the GPU already and the outputs stay there,
    else each batch is copied over and its output back as float32 (as translate_raster
    does)."""
    net, device, layout = run.translator.net, run.device, run.translator.memory_format
    size = run.batch_size
    batches = [torch.stack(tiles[i : i + size]) for i in range(0, len(tiles), size)]
    if on_device:
        batches = [b.to(device) for b in batches]
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(device, run.precision), fixed_norm_stats(net, stats):
        for x in batches:
            y = net(x.to(device).contiguous(memory_format=layout))
            if not on_device:
                y.float().cpu()
    _sync(device)
    return time.perf_counter() - t0


def translate_part(size: int, model: Any, device: torch.device, batch: int,
                   rounds: int, tmp: Path) -> dict:  # fmt: skip
    """``model``: the bundled checkpoint, loaded (so it runs in its stored precision)."""
    scene = make_scene(tmp / f"scene_{size}.tif", size)
    run = scene_run(scene, model, device, None, T.STATS_TILE, T.STATS_OVERLAP, batch)
    run.translator.net.to(device).eval()
    stats, _ = T._scene_stats(run)
    with open_raster(scene) as src:
        tiles = [
            torch.from_numpy(
                T._prepare(*read_masked(src, w, (1, 2, 3), boundless=True), run.in_norm)
            )
            for w in run.windows
        ]

    def e2e(how: Any) -> float:
        _sync(device)
        t0 = time.perf_counter()
        T.translate_raster(scene, tmp / "out.tif", how, device=str(device), batch_size=batch,
                           progress=False, overwrite=True)  # fmt: skip
        return time.perf_counter() - t0

    e2e(model)  # warm-up: kernels, caches
    bare(run, tiles, stats, on_device=True)
    runs: dict[str, list[float]] = {"e2e": [], "bare_on_device": [], "bare_with_copies": []}
    for r in range(rounds):
        order = ["e2e", "bare_on_device", "bare_with_copies"]
        for kind in order[r % 3 :] + order[: r % 3]:
            if kind == "e2e":
                runs[kind].append(e2e(model))
            else:
                runs[kind].append(bare(run, tiles, stats, on_device=kind == "bare_on_device"))
    alone = [e2e(torch.nn.Identity()) for _ in range(2)]
    scene_px = size * size
    tile_px = sum(int(w.width * w.height) for w in run.windows)

    def ratio(kind: str) -> float:
        return round(
            statistics.median(b / e for b, e in zip(runs[kind], runs["e2e"], strict=True)), 3
        )

    return {
        "part": "translate",
        "scene_px": scene_px,
        "tiles": len(run.windows),
        "batch": batch,
        "precision": run.precision,
        "end_to_end_s": [round(v, 3) for v in runs["e2e"]],
        "bare_on_device_s": [round(v, 3) for v in runs["bare_on_device"]],
        "bare_with_copies_s": [round(v, 3) for v in runs["bare_with_copies"]],
        "pipeline_alone_s": [round(v, 3) for v in alone],
        "e2e_vs_bare_on_device": ratio("bare_on_device"),
        "e2e_vs_bare_with_copies": ratio("bare_with_copies"),
        "end_to_end_mpx_s": round(scene_px / statistics.median(runs["e2e"]) / 1e6, 2),
        "bare_on_device_mpx_s": round(tile_px / statistics.median(runs["bare_on_device"]) / 1e6, 2),
        "pipeline_alone_mpx_s": round(scene_px / min(alone) / 1e6, 2),
    }


def train_part(kind: str, device: torch.device, iters: int) -> list[dict]:
    torch.manual_seed(0)
    if kind == "cyclegan":
        config = CycleGANConfig(ngf=64, ndf=64, n_blocks=9)
        size, batch = 256, 1
        batch_t = {k: torch.rand(batch, 3, size, size, device=device) * 2 - 1 for k in "ab"}
        step_fn, ref_fn = cyclegan_train_step, reference_cyclegan_step
        groups = {"G": ("G_AB", "G_BA"), "D": ("D_A", "D_B")}
        pools = {"A": ImagePool(50), "B": ImagePool(50)}
    else:
        config = DCGANConfig()
        size, batch = 64, 64
        batch_t = {"image": torch.rand(batch, 3, size, size, device=device) * 2 - 1}
        step_fn, ref_fn = dcgan_train_step, reference_dcgan_step
        groups = {"G": ("G",), "D": ("D",)}
        pools = {}
    nets = {k: v.to(device) for k, v in build_nets(kind, config).items()}
    ref = {k: v.to(device) for k, v in reference_nets(nets).items()}

    def optimizers(n: dict) -> dict:
        return {g: _adam(tuple(n[k] for k in keys), 2e-4) for g, keys in groups.items()}

    opts, ref_opts = optimizers(nets), optimizers(ref)
    rows = []
    for precision in ("fp32", "bf16"):
        kw = {"device": device, "precision": precision}
        methods = {
            "reference": lambda kw=kw: ref_fn(ref, ref_opts, batch_t, pools, config, **kw),
            "rsgan step": lambda kw=kw: step_fn(nets, opts, batch_t, pools, config, **kw),
        }
        for fn in methods.values():  # warm-up
            fn()
            fn()
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(iters):
            for m, fn in methods.items():
                _sync(device)
                t = time.perf_counter()
                fn()
                _sync(device)
                times[m].append(time.perf_counter() - t)
        for m, values in times.items():
            s = statistics.median(values)
            rows.append({
                "part": "train", "model": kind, "size": size, "batch": batch,
                "precision": precision, "method": m, "s_per_step": round(s, 5),
                "steps_per_s": round(1 / s, 2),
                "vs_reference": round(statistics.median(times["reference"]) / s, 3),
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,8192", help="scene sides, comma-separated")
    parser.add_argument(
        "--batch", type=int, default=4, help="tiles per batch (translate's GPU default)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="timed train steps per method")
    parser.add_argument("--parts", default="translate,train")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    header = {
        "part": "machine",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
    }
    results = [header]
    print(json.dumps(header), flush=True)
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "translate" in parts:
            model = load_model(T.DEFAULT_MODEL_PATH)
            for size in (int(s) for s in args.sizes.split(",")):
                row = translate_part(size, model, device, args.batch, args.rounds, Path(tmp))
                results.append(row)
                print(json.dumps(row), flush=True)
        for kind in ("cyclegan", "dcgan") if "train" in parts else ():
            for row in train_part(kind, device, args.iters):
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("\n".join(json.dumps(r) for r in results) + "\n")


if __name__ == "__main__":
    main()
