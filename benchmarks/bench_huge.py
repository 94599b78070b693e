"""Translate one dense square scene of ``--size`` px end to end (default 100000: 1e10 px)
and check the result: peak RSS, time, the output's grid and BigTIFF header, and that equal
input pixels far apart came out alike.

The scene is a 3-band uint8 GeoTIFF (ZSTD, 512 px tiles) with a texture, a scene-scale
trend and noise, written strip by strip (~7 min and 20 GB at 100000 px; the output takes
~28 GB more, so check the free space of ``--dir``). It is translated in a fresh process by
``bench_translate.py --child streaming`` with the stand-in model (a 1x1 convolution,
scene-aware instance norm and tanh: ~17 min at 100000 px on the 2-core CPU; the bundled
generator would take about an hour). That model maps every pixel by the same function
once the scene statistics are fixed, so equal input pixels anywhere in the scene must
give equal outputs (to the blend's rounding, 1 DN): statistics that changed from tile to
tile would not.

Usage::

    .venv/bin/python benchmarks/bench_huge.py --dir /tmp/huge [--size 100000] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

STRIP = 512


def make_scene(path: Path, size: int) -> None:
    """The scene, strip by strip. Not ``bench_translate.make_scene``: its float64 noise per
    strip and DEFLATE would take hours at 1e10 px; this one rolls one strip of integer
    noise and writes ZSTD level 1 (~7 min)."""
    rng = np.random.default_rng(0)
    cols = np.arange(size, dtype=np.float32)
    noise = rng.integers(0, 24, size=(3, STRIP, size), dtype=np.uint8)
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32615",
        transform=Affine(0.6, 0, 300000, 0, -0.6, 4200000), tiled=True, blockxsize=STRIP,
        blockysize=STRIP, compress="zstd", ZSTD_LEVEL=1, predictor=2, NUM_THREADS="2",
        BIGTIFF="YES", photometric="RGB",
    )  # fmt: skip
    t0 = time.perf_counter()
    with rasterio.open(path, "w", **profile) as dst:
        for k, top in enumerate(range(0, size, STRIP)):
            h = min(STRIP, size - top)
            rows = np.arange(top, top + h, dtype=np.float32)[:, None]
            base = 50 * np.sin(cols / 97.0 + top / 5000.0) * np.cos(rows / 71.0)
            base += 30 * np.sin((cols + rows) / 23.0)
            trend = 40 * np.sin(cols / 20000.0) * np.cos(top / 15000.0)
            bands = [(base + trend) * s + 110 + 15 * c for c, s in enumerate((1.0, 0.8, 0.6))]
            block = np.clip(np.stack(bands), 0, 230).astype(np.uint8)
            block += np.roll(noise[:, :h], k * 37, axis=2)
            dst.write(block, window=((top, top + h), (0, size)))
            if k % 20 == 0:
                print(f"scene: {top + h}/{size} rows, {time.perf_counter() - t0:.0f} s", flush=True)


def check(src_path: Path, out_path: Path, side: int = 1400) -> dict:
    with open(out_path, "rb") as f:
        bigtiff = f.read(4)[2:4] in (b"\x2b\x00", b"\x00\x2b")
    with rasterio.open(src_path) as src, rasterio.open(out_path) as out:
        assert (out.width, out.height, out.count) == (src.width, src.height, 3)
        assert out.crs == src.crs and out.transform == src.transform
        n = src.width
        far = n - side
        spots = [(0, 0), (n // 2 - side // 2, n // 2 - side // 2), (far, far), (0, far), (far, 0)]
        seen: dict[int, np.ndarray] = {}
        repeats, worst = 0, 0
        for row, col in spots:
            window = Window(col, row, side, side)
            a = src.read(window=window).reshape(3, -1).T.astype(np.int64)
            b = out.read(window=window).reshape(3, -1).T.astype(np.int64)
            assert b.std() > 1, f"a constant output at {row}, {col}"
            keys = a[:, 0] << 16 | a[:, 1] << 8 | a[:, 2]
            for key, value in zip(keys[::7].tolist(), b[::7], strict=True):
                if key in seen:
                    worst = max(worst, int(np.abs(seen[key] - value).max()))
                    repeats += 1
                else:
                    seen[key] = value
    return {
        "bigtiff": bigtiff,
        "output_gb": round(out_path.stat().st_size / 1e9, 2),
        "equal_inputs_compared": repeats,
        "largest_difference_dn": worst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the scene and output go")
    parser.add_argument("--size", type=int, default=100000)
    parser.add_argument("--keep", action="store_true", help="keep the scene and output")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    scene, out = args.dir / f"scene_{args.size}.tif", args.dir / f"out_{args.size}.tif"
    try:
        if not scene.exists():
            make_scene(scene, args.size)
        bench = Path(__file__).with_name("bench_translate.py")
        child = [sys.executable, str(bench), "--child", "streaming", "--scene", str(scene),
                 "--out", str(out), "--model", "cheap"]  # fmt: skip
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.update(check(scene, out))
        result["scene_gb"] = round(scene.stat().st_size / 1e9, 2)
        print(json.dumps(result))
    finally:
        if not args.keep:
            for path in (scene, out):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # only when nothing else is in it
                args.dir.rmdir()


if __name__ == "__main__":
    main()
