"""Helpers shared by the example scripts (running as a command, data loading, chips, reports).

Not part of the rsgan package: the examples put their own folder on ``sys.path`` and import
this module, so that each script stays a readable walk through the library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from rsgan.cli._signals import Terminated, terminate_as_interrupt
from rsgan.errors import RsganError
from rsgan.io import atomic_output, open_raster, read_valid_mask, write_png_grid
from rsgan.pipelines.demo import JOPLIN_HELD_OUT
from rsgan.training import TrainingInterrupted, TrainOptions

SHARED_DATA = Path(
    os.environ.get("RSGAN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
"""The real imagery (``../shared/data`` next to the repository, or ``$RSGAN_SHARED_DATA``)."""
JOPLIN_HOLDOUT_PRE = JOPLIN_HELD_OUT.name
"""The Joplin pre-disaster tile held out from the bundled model's training (the one
``rsgan demo`` shows; docs/model-card.md)."""
JOPLIN_HOLDOUT_POST = "tile_33548-6161.tif"
"""The Joplin post-disaster tile held out from the bundled model's training."""


def run_main(main: Callable[[], object]) -> None:
    """Run an example's ``main`` as the ``rsgan`` command runs its commands.

    An rsgan error (an output that exists without ``--overwrite``, a raster rsgan cannot
    read) becomes one line ``Error: <message>`` on stderr and exit status 1, without a
    traceback. Ctrl-C becomes one line and exit status 130, SIGTERM (raised as an
    interrupt, so outputs are cleaned up as after Ctrl-C) exit status 143; an interrupted
    training says where its checkpoint is and how to resume. Anything else propagates.
    """
    try:
        with terminate_as_interrupt():
            main()
    except RsganError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except TrainingInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        raise SystemExit(143 if exc.signum == signal.SIGTERM else 130) from None
    except Terminated:
        print("Terminated.", file=sys.stderr)
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise SystemExit(130) from None


def read_image(path: Path) -> np.ndarray:
    """All bands of a raster, ``(bands, rows, cols)`` in its own dtype."""
    with open_raster(path) as src:
        return src.read()


def read_image_and_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All bands ``(bands, rows, cols)`` and the valid mask ``(rows, cols)`` of a raster."""
    with open_raster(path) as src:
        data = src.read()
        return data, read_valid_mask(src, Window(0, 0, src.width, src.height), data=data)


def tile_chips(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size`` px chips of ``(bands, rows, cols)``: ``(n, bands, size, size)``.

    Rows and columns that do not fill a whole chip at the right and bottom are dropped.
    """
    bands, rows, cols = image.shape
    ny, nx = rows // size, cols // size
    cut = image[:, : ny * size, : nx * size].reshape(bands, ny, size, nx, size)
    return cut.transpose(1, 3, 0, 2, 4).reshape(ny * nx, bands, size, size)


def summary(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, median, 5th percentile, min and max (for the JSON reports)."""
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p5": float(np.percentile(arr, 5)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def write_json(data: dict[str, Any], path: Path, *, overwrite: bool) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def train_options(args: argparse.Namespace, **extra: Any) -> TrainOptions:
    """The examples' TrainOptions from their shared command-line flags.

    Sample grids every tenth of the run, checkpoints every quarter (so Ctrl-C loses little
    and ``--resume`` continues), precision ``auto`` left to rsgan (bf16 on CUDA, fp32 on CPU).
    """
    return TrainOptions(
        steps=args.steps,
        precision=None if args.precision == "auto" else args.precision,
        seed=args.seed,
        sample_every=max(args.steps // 10, 1),
        checkpoint_every=max(args.steps // 4, 1),
        progress=not args.no_progress,
        resume=args.resume,
        overwrite=args.overwrite and not args.resume,
        **extra,
    )


def training_time(log: Path) -> dict[str, float | None]:
    """Total training seconds and median seconds per step from an rsgan ``log.jsonl``."""
    if not log.exists():
        return {"seconds": None, "median_step_seconds": None}
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r["step_seconds"] for r in records if r.get("step_seconds")]
    return {
        "seconds": float(records[-1]["seconds"]) if records else None,
        "median_step_seconds": float(np.median(steps)) if steps else None,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def model_to_uint8(batch: np.ndarray) -> np.ndarray:
    """Model-range ``[-1, 1]`` values to uint8 ``0..255`` (for PNG grids)."""
    return np.clip(np.rint((np.asarray(batch, dtype=np.float64) + 1.0) * 127.5), 0, 255).astype(
        np.uint8
    )


def write_grid(batch_uint8: np.ndarray, path: Path, ncols: int, *, overwrite: bool) -> Path:
    """A PNG grid of ``(n, bands, rows, cols)`` uint8 images (first three bands as RGB)."""
    return write_png_grid(list(batch_uint8), path, ncols, overwrite=overwrite)
