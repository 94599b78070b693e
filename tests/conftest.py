"""Shared fixtures: a seeded raster factory and the path to the real data.

Rasters are small GeoTIFFs made on the fly with rasterio, so every test runs on real
files through GDAL without shipping data. Tests marked ``realdata`` use the imagery in
``../shared/data`` and are skipped, with the reason, when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import range_server  # tests/range_server.py: a byte-range HTTP server
import rasterio
from affine import Affine

# Another GDAL/PROJ copy's data on these variables breaks rasterio (see DESIGN-NOTES).
for _var in ("PROJ_DATA", "PROJ_LIB"):
    os.environ.pop(_var, None)

try:  # bounded property tests in CI; `HYPOTHESIS_PROFILE=thorough` for long runs
    from hypothesis import HealthCheck, settings

    # CI: bounded and derandomized, so a run is reproducible; "thorough" explores at random
    settings.register_profile(
        "ci",
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("thorough", max_examples=1000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RSGAN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not SHARED_DATA.is_dir():
        skip = pytest.mark.skip(
            reason=f"real data folder {SHARED_DATA} is absent; set RSGAN_SHARED_DATA to run it"
        )
        for item in items:
            if "realdata" in item.keywords:
                item.add_marker(skip)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    # RSGAN_TEST_GPU_DEVICE=cpu runs the gpu tests on the CPU (tests/test_gpu.py)
    if not has_cuda and not os.environ.get("RSGAN_TEST_GPU_DEVICE"):
        skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


@pytest.fixture
def shared_data() -> Path:
    """Path to ``../shared/data`` (tests using it must also be marked ``realdata``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def synthetic_scene(
    count: int, height: int, width: int, dtype: str = "uint8", seed: int = 0
) -> np.ndarray:
    """A real-looking multi-band scene: smooth fields, edges and texture, (bands, rows, cols).

    Values span most of the dtype's range (uint8: 0..255; uint16: 0..~12000 like
    reflectance; int16: -2000..~8000; float32: 0..1).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.zeros((height, width))
    for _ in range(6):  # a few smooth waves: fields and gradients
        fx, fy = rng.uniform(0.005, 0.08, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        base += np.sin(fx * xx + fy * yy + phase)
    # blocky "parcels"
    cell = max(4, min(height, width) // 6)
    parcels = rng.uniform(-1, 1, size=(height // cell + 1, width // cell + 1))
    base += 1.5 * parcels[(yy // cell).astype(int), (xx // cell).astype(int)]
    bands = []
    for _band in range(count):
        band = base * rng.uniform(0.6, 1.2) + rng.normal(0, 0.35, size=(height, width))
        band += rng.uniform(-0.5, 0.5)
        bands.append(band)
    arr = np.stack(bands)
    arr = (arr - arr.min()) / max(float(np.ptp(arr)), 1e-9)  # 0..1
    if dtype == "uint8":
        return np.round(arr * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.round(arr * 12000).astype(np.uint16)
    if dtype == "int16":
        return np.round(arr * 10000 - 2000).astype(np.int16)
    if dtype == "float32":
        return arr.astype(np.float32)
    raise ValueError(f"unsupported dtype {dtype}")


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a seeded GeoTIFF; returns its path.

    Keyword arguments: ``name``, ``width``, ``height``, ``count``, ``dtype``, ``crs``
    (None for a raster without CRS), ``transform``, ``nodata``, ``data`` (an array
    ``(count, height, width)`` to write instead of the synthetic scene), ``seed``,
    ``descriptions``, ``colorinterp``, ``tags``, ``tiled``, ``blocksize``,
    ``collar`` (width in pixels of a nodata border, needs ``nodata``), ``compress``,
    ``colormap`` (a colour table ``{value: (r, g, b, a)}`` for band 1: a paletted raster).
    """

    def factory(
        name: str = "scene.tif",
        *,
        width: int = 96,
        height: int = 80,
        count: int = 3,
        dtype: str = "uint8",
        crs: str | None = "EPSG:32614",
        transform: Affine | None = None,
        nodata: float | None = None,
        data: np.ndarray | None = None,
        seed: int = 0,
        descriptions: Sequence[str] | None = None,
        colorinterp: Sequence[Any] | None = None,
        tags: dict[str, str] | None = None,
        tiled: bool = False,
        blocksize: int = 256,
        collar: int = 0,
        compress: str | None = "deflate",
        folder: Path | None = None,
        colormap: dict[int, tuple[int, ...]] | None = None,
    ) -> Path:
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            data = synthetic_scene(count, height, width, dtype, seed)
            if nodata is not None:
                # keep real pixels off the nodata value so masks are unambiguous
                data = np.where(
                    data == np.asarray(nodata, dtype=data.dtype), data + 1, data
                ).astype(data.dtype)
        else:
            count, height, width = data.shape
            dtype = str(data.dtype)
        if collar:
            if nodata is None:
                raise ValueError("collar needs nodata")
            data = data.copy()
            data[:, :collar, :] = nodata
            data[:, -collar:, :] = nodata
            data[:, :, :collar] = nodata
            data[:, :, -collar:] = nodata
        if transform is None:
            transform = Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 5200000.0)
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": count,
            "dtype": dtype,
            "transform": transform,
            "nodata": nodata,
        }
        if crs is not None:
            profile["crs"] = crs
        if compress:
            profile["compress"] = compress
        if tiled:
            profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
        if colormap:
            profile["photometric"] = "palette"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if colormap:
                dst.write_colormap(1, colormap)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
            if colorinterp:
                dst.colorinterp = list(colorinterp)
            if tags:
                dst.update_tags(**tags)
        return path

    return factory


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., range_server.Served]]:
    """Start servers of folders (``serve(delay=seconds)`` answers each request that late;
    ``fail_once``, ``stall_after``: faults, see tests/range_server.py)."""
    servers: list[range_server.Served] = []

    def start(
        delay: float = 0.0, fail_once: bool = False, stall_after: int = 0
    ) -> range_server.Served:
        n = len(servers)
        folder, log = tmp_path / f"served{n or ''}", tmp_path / f"requests{n or ''}.log"
        folder.mkdir()
        servers.append(range_server.start(folder, log, delay, fail_once, stall_after))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def served(serve: Callable[..., range_server.Served]) -> range_server.Served:
    """A folder served over HTTP."""
    return serve()


def mosaic_vrt(path: Path, sources: list[Path], width: int, height: int) -> Path:
    """A VRT placing single-band ``sources`` side by side (GDAL reads them through it)."""
    parts = []
    for k, src in enumerate(sources):
        parts.append(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename>'
            f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{width}" '
            f'ySize="{height}"/><DstRect xOff="{k * width}" yOff="0" xSize="{width}" '
            f'ySize="{height}"/></SimpleSource>'
        )
    path.write_text(
        f'<VRTDataset rasterXSize="{width * len(sources)}" rasterYSize="{height}">'
        f'<VRTRasterBand dataType="Byte" band="1">{"".join(parts)}</VRTRasterBand></VRTDataset>'
    )
    return path


def placed_raster(path: Path, *, width: int = 90, height: int = 70, rpcs: bool = False) -> Path:
    """A 3-band uint8 GeoTIFF without a geotransform, placed on Earth by four ground
    control points in EPSG:32614 (a turned, sheared grid), or by RPCs with ``rpcs``."""
    from rasterio.control import GroundControlPoint
    from rasterio.rpc import RPC

    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8"
    ) as dst:
        dst.write(synthetic_scene(3, height, width, "uint8", seed=9))
        if rpcs:
            dst.rpcs = RPC(
                height_off=300.0, height_scale=500.0, lat_off=47.1, lat_scale=0.05,
                long_off=-99.2, long_scale=0.05, line_off=height / 2, line_scale=height / 2,
                samp_off=width / 2, samp_scale=width / 2,
                line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17,
                line_den_coeff=[1.0] + [0.0] * 19,
                samp_num_coeff=[0.0, 1.0] + [0.0] * 18,
                samp_den_coeff=[1.0] + [0.0] * 19,
            )  # fmt: skip
        else:
            corners = [(0, 0), (0, width), (height, 0), (height, width)]
            dst.gcps = (
                [
                    GroundControlPoint(
                        row=r,
                        col=c,
                        x=500000.0 + 2.0 * c + 0.3 * r,
                        y=5200000.0 - 2.0 * r + 0.2 * c,
                        id=str(k),
                    )  # fmt: skip
                    for k, (r, c) in enumerate(corners)
                ],
                "EPSG:32614",
            )
    return path


def make_gate() -> Any:
    """A model that is the identity once its ``release`` event is set and holds every
    forward until then (a run in progress), setting its ``entered`` event when one comes
    (torch is imported on use, as elsewhere in this file)."""
    import threading

    import torch

    class Gate(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.entered.set()
            assert self.release.wait(60), "the test never released the run"
            return x

    return Gate()
