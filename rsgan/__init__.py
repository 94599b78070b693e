"""rsgan: GANs for georeferenced remote-sensing rasters.

The public API is small; names are imported lazily so that ``import rsgan`` stays fast
and does not import torch until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "RsganError": "rsgan.errors",
    # raster I/O
    "RasterInfo": "rsgan.io",
    "describe": "rsgan.io",
    "BandStats": "rsgan.io",
    "compute_band_stats": "rsgan.io",
    # tiling
    "TileSpec": "rsgan.tiling",
    "tile_windows": "rsgan.tiling",
    "chip_index": "rsgan.tiling",
    # models and training
    "CycleGANConfig": "rsgan.models",
    "DCGANConfig": "rsgan.models",
    "train_cyclegan": "rsgan.training",
    "train_dcgan": "rsgan.training",
    # pipelines
    "load_model": "rsgan.checkpoint",
    "translate_raster": "rsgan.pipelines.translate",
    "translate_catalog": "rsgan.pipelines.catalog",
    "augment_segmentation_dataset": "rsgan.pipelines.augment",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rsgan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # the public names (and dunders), not this module's helpers (importlib, Any, ...)
    return sorted({n for n in globals() if n.startswith("__")} | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from rsgan.checkpoint import load_model  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.errors import RsganError  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.io import BandStats, RasterInfo, compute_band_stats, describe  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.models import CycleGANConfig, DCGANConfig  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.pipelines.augment import augment_segmentation_dataset  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.pipelines.catalog import translate_catalog  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.pipelines.translate import translate_raster  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.tiling import TileSpec, chip_index, tile_windows  # noqa: F401 (re-exported lazily, see _EXPORTS)
    from rsgan.training import train_cyclegan, train_dcgan  # noqa: F401 (re-exported lazily, see _EXPORTS)
