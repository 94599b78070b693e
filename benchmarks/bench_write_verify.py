"""Cost of :func:`rsgan.io.atomic_output`'s read-back check (reliability finding 8).

Writes a 4096 x 4096 px 3-band scene as rsgan writes outputs (tiled 256 px, DEFLATE with
predictor, ``output_profile``) through ``atomic_output`` with ``verify=False`` and
``verify=True``, interleaved and repeated, and prints the extra time of the check as a
ratio of the writing time, per data type. Also times a chip index of a uint8 scene without
nodata (no pixel read) against one with nodata (every mask read).

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_write_verify.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from rsgan.io import RasterInfo, atomic_output, output_profile, verify_raster
from rsgan.tiling import TileSpec, chip_index


def _scene(side: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Field-like texture with noise, ``(3, side, side)``."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    base = 100 + 60 * np.sin(xx / 97.0) * np.cos(yy / 53.0)
    data = base[None] + rng.normal(0, 8, size=(3, side, side)).astype(np.float32)
    return data.astype(dtype) if dtype != "uint8" else np.clip(data, 0, 255).astype(np.uint8)


def _write(dst: Path, data: np.ndarray, profile: dict, verify: bool) -> float:
    start = time.perf_counter()
    with atomic_output(dst, overwrite=True, verify=verify) as tmp:
        with rasterio.open(tmp, "w", **profile) as out:
            for r in range(0, data.shape[1], 1024):  # row bands, as the mosaic writer does
                out.write(data[:, r : r + 1024], window=((r, r + 1024), (0, data.shape[2])))
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    side = 2048 if "--quick" in argv else 4096
    repeats = 2 if "--quick" in argv else 3
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="rsgan-bench-verify-") as folder:
        root = Path(folder)
        print(f"scene {side} x {side} px, 3 bands; best of {repeats}, interleaved")
        print(
            "| dtype | MB written | write s (verify off) | write+verify s | verify alone s | extra |"
        )
        print("|---|---|---|---|---|---|")
        for dtype in ("uint8", "float32"):
            data = _scene(side, dtype, rng)
            src = root / f"src_{dtype}.tif"
            with rasterio.open(
                src, "w", driver="GTiff", width=side, height=side, count=3, dtype=dtype,
                crs="EPSG:32614", transform=Affine(2, 0, 500000, 0, -2, 5200000),
            ) as out:  # fmt: skip
                out.write(data[:, :1, :1], window=((0, 1), (0, 1)))
            with rasterio.open(src) as ds:
                profile = output_profile(RasterInfo.from_dataset(ds))
            off, on, alone = [], [], []
            dst = root / f"out_{dtype}.tif"
            for _ in range(repeats):
                off.append(_write(dst, data, profile, verify=False))
                on.append(_write(dst, data, profile, verify=True))
                start = time.perf_counter()
                assert verify_raster(dst) is None
                alone.append(time.perf_counter() - start)
            size = dst.stat().st_size / 1e6
            print(
                f"| {dtype} | {size:.0f} | {min(off):.2f} | {min(on):.2f} | {min(alone):.2f} "
                f"| {min(on) / min(off) - 1:+.1%} (alone {min(alone) / min(off):.1%}) |"
            )
        scene = root / "index_src.tif"
        data = _scene(side, "uint8", rng)
        for nodata in (None, 0):
            with rasterio.open(
                scene, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                crs="EPSG:32614", transform=Affine(2, 0, 500000, 0, -2, 5200000),
                tiled=True, compress="deflate", nodata=nodata,
            ) as out:  # fmt: skip
                out.write(data)
            start = time.perf_counter()
            chip_index(scene, TileSpec(256, 64))
            print(f"chip_index 256/64, uint8, nodata={nodata}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
