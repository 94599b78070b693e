"""Type aliases shared across rsgan. Imports nothing from rsgan."""

from __future__ import annotations

import os
from typing import Literal, Union

PathLike = Union[str, "os.PathLike[str]"]
BBox = tuple[float, float, float, float]
"""(left, bottom, right, top) in the CRS's units."""
Bands = tuple[int, ...]
"""1-based band indexes, as rasterio."""
EdgePolicy = Literal["shift", "pad"]
BlendName = Literal["hann", "linear", "none"]
Direction = Literal["a2b", "b2a"]
NormMode = Literal["scene", "tile"]
DeviceName = Literal["auto", "cpu", "cuda"]
