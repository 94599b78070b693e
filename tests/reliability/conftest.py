"""The reliability corpus: bad and odd inputs made by the tests themselves, and a tally.

The corpus holds rasters that must be refused with a clear error (empty, truncated, text
named ``.tif``, broken header, no bands, a folder, a missing path), rasters that are odd but
valid and must give a correct result (1x1, NaN/inf, nodata equal to a valid value, no CRS,
a sparse 100000 x 100000 raster), bad catalogs and bad checkpoints.

Counting: each test takes the ``tally`` fixture and calls ``tally.add(entry, scenario, n)``
for the ``n`` inputs it tried. When ``RSGAN_RELIABILITY_JSON`` names a file, the session
writes there, per entry point and scenario, how many inputs were tried and how their tests
ended (passed / failed / xfailed); ``benchmarks/reliability_table.py`` renders that file as
the table of ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

COUNTS_ENV = "RSGAN_RELIABILITY_JSON"
TRANSFORM = Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 5200000.0)

# Bad rasters: every entry point that reads a raster must refuse them with an RsganError.
BAD_RASTERS = (
    "empty.tif",
    "truncated.tif",
    "text.tif",
    "broken_header.tif",
    "zero_bands.vrt",
    "folder.tif",
    "missing.tif",
)
# Odd but valid rasters: entry points must give a correct result.
ODD_RASTERS = ("one_pixel.tif", "nan_inf.tif", "nodata_is_valid.tif", "no_crs.tif")
HUGE_RASTER = "huge_sparse.tif"
HUGE_SIDE = 100_000


def _write(path: Path, data: np.ndarray, **profile: Any) -> Path:
    count, height, width = data.shape
    full = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": str(data.dtype),
        "transform": TRANSFORM,
        "crs": "EPSG:32614",
    }
    full.update(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    if full["crs"] is None:
        del full["crs"]
    with rasterio.open(path, "w", **full) as dst:
        dst.write(data)
    return path


def valid_scene(path: Path, *, size: int = 64, count: int = 3, seed: int = 0) -> Path:
    """A small seeded uint8 GeoTIFF (``(count, size, size)``, striped, uncompressed)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 255, size=(count, size, size), dtype=np.uint8)
    return _write(path, data)


def build_corpus(root: Path) -> dict[str, Path]:
    """Write every corpus raster under ``root``; returns ``{name: path}``."""
    root.mkdir(parents=True, exist_ok=True)
    good = valid_scene(root / "good.tif")
    raw = good.read_bytes()
    paths = {"good.tif": good}
    (root / "empty.tif").write_bytes(b"")
    (root / "truncated.tif").write_bytes(raw[: len(raw) // 3])
    (root / "text.tif").write_text("this is not a raster\n" * 20)
    broken = bytearray(raw)
    broken[0:4] = b"XY*\x00"  # not a TIFF byte order mark
    (root / "broken_header.tif").write_bytes(bytes(broken))
    (root / "zero_bands.vrt").write_text(
        '<VRTDataset rasterXSize="32" rasterYSize="32"></VRTDataset>\n'
    )
    (root / "folder.tif").mkdir()
    for name in BAD_RASTERS:
        paths[name] = root / name  # missing.tif is never created

    paths["one_pixel.tif"] = _write(root / "one_pixel.tif", np.full((3, 1, 1), 120, np.uint8))
    rng = np.random.default_rng(1)
    floats = rng.uniform(0, 1, size=(3, 64, 64)).astype(np.float32)
    floats[:, 3:9, 5:11] = np.nan
    floats[0, 20, 20] = np.inf
    floats[1, 30, 30] = -np.inf
    paths["nan_inf.tif"] = _write(root / "nan_inf.tif", floats)
    nodata_valid = rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
    nodata_valid[:, 10:20, 10:20] = 0  # a dark field that is real data, but equals nodata
    paths["nodata_is_valid.tif"] = _write(root / "nodata_is_valid.tif", nodata_valid, nodata=0)
    paths["no_crs.tif"] = _write(
        root / "no_crs.tif",
        rng.integers(1, 255, size=(3, 64, 64), dtype=np.uint8),
        crs=None,
        transform=Affine.identity(),
    )
    with rasterio.open(
        root / HUGE_RASTER,
        "w",
        driver="GTiff",
        width=HUGE_SIDE,
        height=HUGE_SIDE,
        count=1,
        dtype="uint8",
        crs="EPSG:32614",
        transform=TRANSFORM,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        sparse_ok=True,
    ):
        pass  # no block is written: the file is ~2 MB of tile offsets
    paths[HUGE_RASTER] = root / HUGE_RASTER
    return paths


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The raster corpus (read-only: tests write their outputs elsewhere)."""
    return build_corpus(tmp_path_factory.mktemp("corpus"))


class _Evil:
    """Unpickling this object would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def tiny_checkpoint(path: Path, *, channels: int = 3, ngf: int = 4) -> Path:
    """A generators-only CycleGAN checkpoint (``channels`` uint8 bands, one ResNet block)."""
    from rsgan.checkpoint import DomainInfo, save_checkpoint
    from rsgan.io import Normalizer
    from rsgan.models import CycleGANConfig, build_nets

    domain = DomainInfo(
        bands=None,
        count=channels,
        dtype="uint8",
        normalizer=Normalizer.for_dtype("uint8", channels),
    )
    config = CycleGANConfig(
        in_channels_a=channels, in_channels_b=channels, ngf=ngf, ndf=4, n_blocks=1
    )
    return save_checkpoint(
        path,
        kind="cyclegan",
        config=config,
        nets=build_nets("cyclegan", config),
        domains={"a": domain, "b": domain},
        generators_only=True,
    )


def build_checkpoints(root: Path) -> dict[str, Path]:
    """The tiny checkpoint (3 bands, ngf=4) and its broken siblings under ``root``."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    good = tiny_checkpoint(root / "tiny.safetensors")
    raw = good.read_bytes()
    paths = {"good": good}
    paths["truncated"] = root / "truncated.safetensors"
    paths["truncated"].write_bytes(raw[: len(raw) // 2])
    paths["empty"] = root / "empty.safetensors"
    paths["empty"].write_bytes(b"")
    paths["text"] = root / "text.safetensors"
    paths["text"].write_text("not a checkpoint")
    # weights of a wider net (ngf=8) under metadata that says ngf=4
    wide = tiny_checkpoint(root / "wide.safetensors", ngf=8)
    with safe_open(str(wide), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    with safe_open(str(good), framework="pt") as fh:
        meta = fh.metadata()
    paths["other_arch"] = root / "other_arch.safetensors"
    save_file(tensors, str(paths["other_arch"]), metadata=meta)
    paths["no_metadata"] = root / "no_metadata.safetensors"
    save_file(tensors, str(paths["no_metadata"]))
    paths["four_bands"] = tiny_checkpoint(root / "four_bands.safetensors", channels=4)
    # pickles that would run code when unpickled, under every name a loader might try
    marker = root / "PWNED"
    for name, suffix in (
        ("pickle_pt", ".pt"),
        ("pickle_pth", ".pth"),
        ("pickle_st", ".safetensors"),
    ):
        paths[name] = root / f"evil{suffix}"
        with paths[name].open("wb") as fh:
            pickle.dump({"rsgan": {}, "weights": _Evil(marker)}, fh)
    paths["torch_save_pickle"] = root / "evil_torch.pt"
    torch.save({"rsgan": {}, "weights": _Evil(marker)}, paths["torch_save_pickle"])
    paths["marker"] = marker
    return paths


BAD_CHECKPOINTS = (
    "truncated",
    "empty",
    "text",
    "other_arch",
    "no_metadata",
    "pickle_pt",
    "pickle_pth",
    "pickle_st",
    "torch_save_pickle",
    "missing",
)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = build_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    paths["missing"] = paths["good"].with_name("missing.safetensors")
    return paths


def files_under(folder: Path) -> set[str]:
    """Every file and folder under ``folder`` (relative names), hidden ones included."""
    if not folder.exists():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def snapshot() -> Callable[[Path], Callable[[], set[str]]]:
    """``new = snapshot(folder)`` then ``new()``: the entries created since the snapshot."""

    def take(folder: Path) -> Callable[[], set[str]]:
        before = files_under(folder)
        return lambda: files_under(folder) - before

    return take


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# --------------------------------------------------------------------------- tally


@dataclass
class Tally:
    """The inputs one test tried: ``{(entry point, scenario): count}``."""

    counts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, entry: str, scenario: str, n: int = 1) -> None:
        self.counts[(entry, scenario)] += n


_RESULTS: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
_TALLY_KEY = pytest.StashKey[Tally]()
_FINDING = re.compile(r"finding (\d+)")


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    record = Tally()
    request.node.stash[_TALLY_KEY] = record
    yield record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    record = item.stash.get(_TALLY_KEY, None)
    if record is None or report.when != "call":
        return
    if hasattr(report, "wasxfail"):
        ending = "xfailed" if report.skipped else "xpassed"
    else:
        ending = report.outcome
    findings = sorted({int(n) for n in _FINDING.findall(getattr(report, "wasxfail", ""))})
    for key, n in record.counts.items():
        row = _RESULTS[key]
        row["tried"] += n
        row[ending] += n
        row["tests"] += 1
        row["findings"] = sorted(set(row.get("findings", [])) | set(findings))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(COUNTS_ENV)
    if not target or not _RESULTS:
        return
    rows = [
        {"entry": entry, "scenario": scenario, **dict(counts)}
        for (entry, scenario), counts in sorted(_RESULTS.items())
    ]
    Path(target).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
