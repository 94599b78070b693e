"""`rsgan demo` as a library function: translate a real (or realistic) scene end to end.

:func:`run_demo` takes a scene (given, or a real Joplin pre-tornado tile from the shared
data folder when present, or a synthesised 3-band uint8 georeferenced scene), translates
it with the bundled default model (pre- -> post-tornado style), and writes the output
GeoTIFF and a before/after PNG.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from rsgan._types import PathLike
from rsgan.errors import OutputExistsError
from rsgan.io import atomic_output, check_local_output, describe
from rsgan.pipelines.translate import resolve_translator, translate_raster, write_before_after

SHARED_DATA_ENV = "RSGAN_SHARED_DATA"
JOPLIN_PRE = Path("xview2_joplin_prepost") / "pre"
JOPLIN_HELD_OUT = JOPLIN_PRE / "tile_337-9136.tif"
"""The pre-disaster tile held out from the bundled model's training (docs/model-card.md),
relative to the shared data folder: the demo shows the model on imagery it has not seen."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What :func:`run_demo` made.

    Attributes:
        scene: the input scene.
        synthetic: True when the scene was synthesised (no real data found).
        output: the translated GeoTIFF.
        quicklook: the before/after PNG.
        seconds: wall time of the translation, seconds.
        megapixels: scene size, millions of pixels.
        why_synthetic: one line saying where real data was looked for and how to point
            the demo at it, when the scene was synthesised; else empty.
    """

    scene: Path
    synthetic: bool
    output: Path
    quicklook: Path
    seconds: float
    megapixels: float
    why_synthetic: str = ""

    @property
    def mpx_per_s(self) -> float:
        """Scene megapixels translated per second."""
        return self.megapixels / self.seconds if self.seconds > 0 else float("inf")


def shared_data_folders() -> list[Path]:
    """Where the demo looks for the shared data, in order: ``$RSGAN_SHARED_DATA`` when
    set, then ``../shared/data`` relative to the current folder."""
    folders = []
    if os.environ.get(SHARED_DATA_ENV):
        folders.append(Path(os.environ[SHARED_DATA_ENV]))
    fallback = Path.cwd().parent / "shared" / "data"
    if fallback not in folders:
        folders.append(fallback)
    return folders


def find_real_scene() -> Path | None:
    """The held-out Joplin pre-disaster tile (:data:`JOPLIN_HELD_OUT`) in the first of
    :func:`shared_data_folders` that holds it; None when none does."""
    for folder in shared_data_folders():
        tile = folder / JOPLIN_HELD_OUT
        if tile.is_file():
            return tile
    return None


def _why_synthetic() -> str:
    where = " or ".join(str(folder) for folder in shared_data_folders())
    return (
        f"no real data found at {where} (looked for {JOPLIN_HELD_OUT}); set "
        f"{SHARED_DATA_ENV} to the folder of the shared data to use a real Joplin tile"
    )


def synthesize_scene(
    path: PathLike, size: int = 1024, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write a realistic-looking 3-band uint8 GeoTIFF (UTM 15N, 0.6 m): parcels of lawn,
    trees, roofs and roads with texture. For demos without real data."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # vegetation: a smooth field between lawn and tree canopy
    field = np.zeros((size, size), np.float32)
    for _ in range(5):
        fx, fy, phase = rng.uniform(0.004, 0.03), rng.uniform(0.004, 0.03), rng.uniform(0, 6.3)
        field += np.sin(fx * xx + phase) * np.cos(fy * yy + 2 * phase)
    trees = (field - field.min()) / np.ptp(field)
    lawn, canopy = np.array([104, 118, 78], np.float32), np.array([52, 74, 46], np.float32)
    rgb = lawn[:, None, None] * (1 - trees) + canopy[:, None, None] * trees
    # roofs: random rectangles of a few greys and browns
    roofs = np.array([[150, 145, 138], [112, 96, 88], [176, 172, 166], [90, 86, 90]], np.float32)
    for _ in range(size * size // 2500):
        h, w = rng.integers(10, 34, size=2)
        r, c = rng.integers(0, size - h), rng.integers(0, size - w)
        rgb[:, r : r + h, c : c + w] = roofs[rng.integers(len(roofs))][:, None, None]
    # streets
    roads = ((yy % 220) < 12) | ((xx % 260) < 12)
    rgb[:, roads] = np.array([108, 106, 104], np.float32)[:, None]
    rgb += rng.normal(0, 6, size=rgb.shape).astype(np.float32)
    data = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    dst = Path(path)
    with (
        atomic_output(dst, overwrite=overwrite) as tmp,
        rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=size,
            height=size,
            count=3,
            dtype="uint8",
            crs="EPSG:26915",
            transform=Affine(0.6, 0, 366642.6, 0, -0.6, 4104511.2),
            tiled=True,
            compress="deflate",
        ) as out,
    ):
        # colour interpretation before the pixels: libtiff cannot change it afterwards
        out.colorinterp = [
            rasterio.enums.ColorInterp.red,
            rasterio.enums.ColorInterp.green,
            rasterio.enums.ColorInterp.blue,
        ]
        out.write(data)
        for band, name in enumerate(("red", "green", "blue"), start=1):
            out.set_band_description(band, name)
    return dst


def run_demo(
    out_dir: PathLike = "demo-output",
    *,
    scene: PathLike | None = None,
    model: object = None,
    overwrite: bool = False,
    progress: bool = True,
    notice: Callable[[str], None] | None = None,
) -> DemoResult:
    """Translate a scene with the default model; write ``translated.tif`` and
    ``before_after.png`` into ``out_dir`` (created if missing).

    Args:
        out_dir: output folder.
        scene: the input; default the held-out Joplin tile (:func:`find_real_scene`) if
            found, else a synthesised scene (written to ``out_dir/synthetic_scene.tif``;
            the result's ``why_synthetic`` says why).
        model: as :func:`rsgan.translate_raster` (default: the bundled model, or
            ``$RSGAN_MODEL``); loaded first, so a bad one fails before the notice is given
            or a scene synthesised.
        overwrite: replace earlier demo outputs.
        progress: show a progress bar.
        notice: called with the line saying why the scene is synthesised (the result's
            ``why_synthetic``) as soon as that is known, before the scene is made and
            translated; the command line prints it on stderr.
    """
    check_local_output(out_dir, "output folder")
    out = Path(out_dir).resolve()
    created = not out.exists()
    output = out / "translated.tif"
    quicklook = out / "before_after.png"
    try:
        # before the scene is chosen: an existing output is the one error line, with no
        # notice before it and no scene synthesised for nothing
        for path in (output, quicklook):
            if path.exists() and not overwrite:
                raise OutputExistsError(f"{path} exists; pass overwrite=True / --overwrite")
        # the model next: a bad one ($RSGAN_MODEL corrupt) is the one error line, with no
        # notice and no synthetic scene before it
        translator = resolve_translator(model)
        why_synthetic = ""
        if scene is None:
            scene = find_real_scene()
            if scene is None:
                why_synthetic = _why_synthetic()
                if notice is not None:
                    notice(why_synthetic)
                out.mkdir(parents=True, exist_ok=True)
                scene = synthesize_scene(out / "synthetic_scene.tif", overwrite=True)
        scene = Path(scene).resolve()
        info = describe(scene)  # a bad scene fails here, before anything is written
        out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        translate_raster(scene, output, translator, overwrite=overwrite, progress=progress)
        seconds = time.perf_counter() - started
        write_before_after(scene, output, quicklook, overwrite=overwrite)
    except BaseException:
        if created:  # everything in a folder this call made is this call's
            shutil.rmtree(out, ignore_errors=True)
        raise
    return DemoResult(
        scene=scene,
        synthetic=bool(why_synthetic),
        output=output,
        quicklook=quicklook,
        seconds=seconds,
        megapixels=info.width * info.height / 1e6,
        why_synthetic=why_synthetic,
    )


__all__ = [
    "JOPLIN_HELD_OUT",
    "DemoResult",
    "find_real_scene",
    "run_demo",
    "shared_data_folders",
    "synthesize_scene",
]
