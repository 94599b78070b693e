"""Opening, describing and reading rasters; valid masks; band statistics; normalisation;
output profiles and atomic outputs.

Conventions (see ``docs/architecture.md``): arrays are ``(bands, rows, cols)``; band
indexes are 1-based tuples as in rasterio; windows are :class:`rasterio.windows.Window`
in pixel units; valid masks are boolean ``(rows, cols)``, True where every selected band
is valid. This module never imports torch.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import glob
import hashlib
import logging
import math
import os
import re
import secrets
import shutil
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.control import GroundControlPoint
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Interleaving, MaskFlags
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.rpc import RPC
from rasterio.windows import Window

from rsgan import _http
from rsgan._redact import (
    REDACTED,
    SECRET_PARAMETERS,
    SIGNING_PARAMETERS,
    redact_text,
    redact_url,
    unsigned_url,
)
from rsgan._types import Bands, PathLike

try:  # POSIX only: stale temporaries are told from live ones by a lock (fcntl.flock)
    import fcntl
    import resource
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    resource = None  # type: ignore[assignment]
from rsgan.errors import (
    BandError,
    ConfigError,
    OutputExistsError,
    RasterReadError,
    RasterWriteError,
    RsganError,
    RsganWarning,
    TileSpecError,
)

IMAGE_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
"""File name endings :func:`list_image_files` accepts by default (case-insensitive)."""

_TMP_MARK = ".rsgan-tmp-"


class NotGeoreferencedWarning(RsganWarning):
    """A training source carries no CRS: chips from it have pixel coordinates only."""


class WindowError(TileSpecError):
    """A window that extends past the scene was read without ``boundless=True``."""


class NoValidPixelsError(RsganError, ValueError):
    """Statistics were asked of pixels that are all nodata or masked."""


# --------------------------------------------------------------------------- describe


@dataclass(frozen=True, slots=True)
class RasterInfo:
    """What a raster file holds, read from its header (no pixels are read).

    Attributes:
        path: The file (a URL or /vsi path as a string, as given).
        driver: GDAL driver short name (``"GTiff"``, ``"PNG"``, ...).
        width: Columns, in pixels.
        height: Rows, in pixels.
        count: Number of bands.
        dtypes: Data type of each band (numpy names such as ``"uint16"``).
        crs: Coordinate reference system, or None for a non-georeferenced image.
        transform: Affine map from pixel (col, row) to CRS coordinates (x, y).
        nodata: The nodata value of band 1 (rasterio's ``nodata``), or None.
        nodatavals: Nodata value per band (None where unset).
        descriptions: Band descriptions (None where unset).
        colorinterp: Colour interpretation per band.
        tags: Dataset-level metadata tags.
        band_tags: Metadata tags per band.
        scales: Scale per band.
        offsets: Offset per band.
        mask_flags: Mask flags per band (:class:`rasterio.enums.MaskFlags`).
        block_shapes: ``(rows, cols)`` of the internal blocks per band.
        is_georeferenced: True when the file has a CRS.
        bounds: ``(left, bottom, right, top)`` in CRS units (pixel units without a CRS).
        gcps: Ground control points placing the pixels (a raw or scanned image without
            a geotransform), or empty.
        gcps_crs: The CRS of the ground control points.
        rpcs: Rational polynomial coefficients (a satellite image's sensor model), or None.
        units: Unit of each band's values (``"m"``, ``"reflectance"``...; None where unset).
        colormaps: Colour table of each band (``{value: (r, g, b, a)}``; None where the
            band has none).
        imagery: Tags of GDAL's ``IMAGERY`` metadata domain (acquisition date, satellite,
            cloud cover: what drivers of satellite products record there).
    """

    path: Path | str
    driver: str
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs: CRS | None
    transform: Affine
    nodata: float | None
    nodatavals: tuple[float | None, ...]
    descriptions: tuple[str | None, ...]
    colorinterp: tuple[ColorInterp, ...]
    tags: dict[str, str]
    band_tags: tuple[dict[str, str], ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    mask_flags: tuple[tuple[MaskFlags, ...], ...]
    block_shapes: tuple[tuple[int, int], ...]
    is_georeferenced: bool
    bounds: BoundingBox
    gcps: tuple[GroundControlPoint, ...] = ()
    gcps_crs: CRS | None = None
    rpcs: RPC | None = None
    units: tuple[str | None, ...] = ()
    colormaps: tuple[dict[int, tuple[int, ...]] | None, ...] = ()
    imagery: dict[str, str] = field(default_factory=dict)

    @property
    def placed(self) -> bool:
        """Whether the pixels have a place on Earth: a CRS with its transform, ground
        control points or RPCs."""
        return self.is_georeferenced or placed_crs(self) is not None

    @property
    def dtype(self) -> str:
        """The data type shared by all bands.

        Raises:
            BandError: if the bands have different data types.
        """
        if len(set(self.dtypes)) != 1:
            raise BandError(
                f"{self.path} has bands of different data types {self.dtypes}; "
                "select bands of one type with bands=(...)"
            )
        return self.dtypes[0]

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` in pixels."""
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (positive)."""
        return (abs(self.transform.a), abs(self.transform.e))

    @classmethod
    def from_dataset(cls, src: DatasetReader) -> RasterInfo:
        """Describe an already open rasterio dataset.

        Raises:
            RasterReadError: GDAL fails on part of the header (a corrupt GeoTIFF key
                directory shows only when the colour interpretation is read).
        """
        try:
            return cls._from_dataset(src)
        except (CPLE_BaseError, RasterioError) as exc:
            raise RasterReadError(
                f"cannot read the header of {src.name} ({exc}); the file is damaged: "
                "check it with gdalinfo, or write it again"
            ) from exc

    @classmethod
    def _from_dataset(cls, src: DatasetReader) -> RasterInfo:
        return cls(
            path=source_path(src.name),
            driver=src.driver,
            width=src.width,
            height=src.height,
            count=src.count,
            dtypes=tuple(src.dtypes),
            crs=src.crs,
            transform=src.transform,
            nodata=src.nodata,
            nodatavals=tuple(src.nodatavals),
            descriptions=tuple(src.descriptions),
            colorinterp=tuple(src.colorinterp),
            tags=dict(src.tags()),
            band_tags=tuple(dict(src.tags(i)) for i in range(1, src.count + 1)),
            scales=tuple(src.scales),
            offsets=tuple(src.offsets),
            mask_flags=tuple(tuple(flags) for flags in src.mask_flag_enums),
            block_shapes=tuple((int(r), int(c)) for r, c in src.block_shapes),
            is_georeferenced=src.crs is not None,
            bounds=src.bounds,
            **_placement(src),
            units=tuple(u or None for u in src.units),
            colormaps=_colormaps(src),
            imagery=dict(src.tags(ns="IMAGERY")),
        )


def _colormaps(src: DatasetReader) -> tuple[dict[int, tuple[int, ...]] | None, ...]:
    """The colour table of each band of ``src`` (None for a band without one); only
    palette bands are asked, as rasterio raises for a band without a table."""
    tables: list[dict[int, tuple[int, ...]] | None] = []
    for band, interp in enumerate(src.colorinterp, start=1):
        table = None
        if interp == ColorInterp.palette:
            with contextlib.suppress(ValueError):
                table = src.colormap(band)
        tables.append(table)
    return tuple(tables)


def _placement(src: DatasetReader) -> dict[str, Any]:
    """The ground control points, their CRS and the RPCs of ``src`` (RasterInfo fields).
    Corrupt GeoTIFF keys make GDAL raise on these where the CRS only read as None (mutated
    files in tests/reliability/test_fuzz.py): nothing is placed then either."""
    try:
        gcps, gcps_crs = src.gcps
    except CPLE_BaseError:
        gcps, gcps_crs = [], None
    try:
        rpcs = src.rpcs
    except CPLE_BaseError:
        rpcs = None
    return {"gcps": tuple(gcps), "gcps_crs": gcps_crs, "rpcs": rpcs}


def _is_virtual(path: str) -> bool:
    return path.startswith("/vsi") or "://" in path


def is_virtual(path: PathLike) -> bool:
    """Whether ``path`` names a dataset GDAL opens without a local file of that name: a
    ``/vsi...`` path (``/vsizip/``, ``/vsicurl/``, ``/vsis3/``, ``/vsimem/``...) or a URL
    (``https://``, ``s3://``, ``zip+https://``...)."""
    return _is_virtual(os.fspath(path))


def source_path(path: PathLike) -> Path | str:
    """A raster source as rasterio should open it: a local path as a :class:`Path`, a
    virtual name (:func:`is_virtual`) as the string given, since ``Path`` folds the ``//``
    of ``https://host/...`` or ``/vsizip//abs/path.zip`` into ``/`` and GDAL then looks
    for another file."""
    text = os.fspath(path)
    return text if _is_virtual(text) else Path(text)


def absolute_source(source: PathLike, base: PathLike | None = None) -> str:
    """``source`` named the same from any working folder: a relative local path made
    absolute against ``base`` (the working folder when None), and so is a relative local
    file that GDAL would otherwise look for in the working folder: behind an archive
    handler (``/vsizip/a.zip/b.tif`` -> ``/vsizip//abs/a.zip/b.tif``, also
    ``/vsizip/{a.zip}/b.tif``, ``/vsitar/``, ``/vsigzip/``, ``/vsi7z/``, ``/vsirar/``), in
    rasterio's ``zip://a.zip!/b.tif`` (``tar://``, ``gzip://``, also ``zip+file://``) and
    inside a ``vrt://`` name (GDAL reads ``vrt:///abs/b.tif?bands=1``). ``base`` is
    resolved (links and ``..`` in it, as in the working folder's name), the relative path
    joined as written. Anything read over the network (:func:`is_network`: a URL,
    ``/vsicurl/``, ``/vsis3/``..., also behind an archive handler), an absolute path and
    any other ``/vsi`` path (``/vsimem/``) is returned as given. ``~`` is not expanded
    (GDAL does not expand it either)."""
    text = os.fspath(source)
    if _is_network(text):
        return text
    if text.startswith("vrt://"):
        inner, sep, query = text[len("vrt://") :].partition("?")
        return f"vrt://{absolute_source(inner, base) if inner else inner}{sep}{query}"
    handler = _ARCHIVE_HANDLER.match(text)
    if handler:
        rest = text[handler.end() :]
        if rest.startswith("{") and "}" in rest:  # /vsizip/{a.zip}/b.tif
            inside, tail = rest[1:].split("}", 1)
            return f"{handler.group()}{{{absolute_source(inside, base)}}}{tail}"
        return handler.group() + absolute_source(rest, base)
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower().removesuffix("+file") in _ARCHIVE_SCHEMES:
        return f"{scheme}://{absolute_source(rest, base)}"  # rasterio's zip://a.zip!/b.tif
    if not text or _is_virtual(text) or Path(text).is_absolute():
        return text  # an absolute path as written: its text is what manifests compare
    # the folder resolved (as the working folder is): a catalog named ../cat/scenes.csv or
    # through a link gives the text it gives as cat/scenes.csv
    return os.fspath(Path(text).absolute() if base is None else Path(base).resolve() / text)


_ARCHIVE_HANDLER = re.compile(r"^/vsi(zip|tar|gzip|7z|rar)/")
"""GDAL's archive handlers: the path after them may be a relative local one."""


def source_name(path: PathLike) -> str:
    """The file name of a raster source: of a local path, or of a URL's or ``/vsi`` path's
    last part, a query string left out (``https://host/a/b.tif?sig=x`` -> ``"b.tif"``), of
    the source inside a ``vrt://`` name (``vrt://b.tif?bands=1`` -> ``"b.tif"``), of the file
    in an archive (``zip+https://host/a.zip?sig=x!/b.tif``,
    ``/vsizip/{/vsicurl/https://host/a.zip?sig=x}/b.tif`` -> ``"b.tif"``) and of the ``url``
    of ``/vsicurl?url=...``."""
    text = os.fspath(path)
    if text.startswith("vrt://"):
        return source_name(text[len("vrt://") :].split("?", 1)[0])
    if text.startswith("/vsi"):
        options = _VSI_OPTIONS.match(text)
        if options:  # /vsicurl?list_dir=no&url=https%3A%2F%2Fhost%2Fb.tif
            urls = parse_qs(text[options.end() :]).get("url")
            return source_name(urls[-1]) if urls else ""
        if "{" in text and "}" in text:  # /vsizip/{/vsicurl/https://host/a.zip?sig=x}/b.tif
            inside, tail = (
                text[text.index("{") + 1 : text.rindex("}")],
                text[text.rindex("}") + 1 :],
            )
            return PurePosixPath(tail).name if tail.strip("/") else source_name(inside)
    if "://" in text:
        scheme = text.partition("://")[0].lower()
        if scheme.split("+")[0] in _ARCHIVE_SCHEMES:  # rasterio's zip://a.zip!b.tif
            inside = text.rsplit("!", 1)[1] if "!" in text else text.partition("://")[2]
            return PurePosixPath(inside.split("?", 1)[0]).name
        text = _url_path(text)
    return PurePosixPath(text).name


def _url_path(url: str) -> str:
    """The path of a URL; also of one :func:`urllib.parse.urlsplit` refuses (an unclosed
    ``[`` of an IPv6 host: ``https://[host/a.tif`` is a row that fails to open, not a
    ValueError that stops the catalog)."""
    try:
        return urlsplit(url).path
    except ValueError:
        rest = url.partition("://")[2].split("?", 1)[0].split("#", 1)[0]
        return "/" + rest.partition("/")[2]


_VSI_OPTIONS = re.compile(r"^/vsi\w+\?")
_ARCHIVE_SCHEMES = ("zip", "tar", "gzip")


def source_stem(path: PathLike) -> str:
    """:func:`source_name` without its suffix (``https://host/a/b.tif?sig=x`` -> ``"b"``)."""
    return PurePosixPath(source_name(path)).stem


_NETWORK_PREFIXES = (
    "/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
    "/vsiwebhdfs", "/vsihdfs",
)  # fmt: skip
REMOTE_OPEN_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_LOW_SPEED_TIME": "60",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
}
"""GDAL options for opening a raster over the network, unless the user set them (in the
environment or an enclosing ``rasterio.Env``); they hold for every read of the dataset
opened.

- No listing of its folder and no probing for side files (``.aux.xml``, ``.ovr``,
  ``.msk``...) on open, the usual setting for cloud rasters: 10 requests fewer per scene
  translated over HTTP (docs/translate.md). A side file next to a remote raster is then
  not seen (a COG holds its overviews and mask inside). In the main thread rasterio sets
  GDAL options process-wide while they apply, so a local raster opened by another thread
  during that open would miss its side files too.
- A request answered 429, 500, 502, 503 or 504 (a busy store, S3's SlowDown) is retried up
  to 3 times, after 1 s, then about 2 and 4 s (GDAL retries none by default: one such
  answer failed the whole scene).
- A request that gets less than 1 byte a second for 60 s (a connection that hangs) fails
  instead of waiting for ever (GDAL has no time limit by default)."""


_RETRY_HINT = (
    "(GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY and GDAL_HTTP_LOW_SPEED_TIME in the "
    "environment set how failed or stalled requests are retried; CPL_DEBUG=ON with rsgan "
    "-vv shows GDAL's requests and the server's answers)"
)


def is_network(path: PathLike) -> bool:
    """Whether rasterio reads ``path`` over the network (a URL other than ``file://``, a
    ``/vsicurl/``, ``/vsis3/``... path, also inside ``/vsizip/`` or ``vrt://``): its reads
    wait on the network's latency rather than on the CPU."""
    return _is_network(os.fspath(path))


def _is_network(path: str) -> bool:
    """Whether ``path`` is read over the network: a URL other than ``file://`` (or
    ``zip+file://``, rasterio's ``zip://``...), or a ``/vsicurl/``, ``/vsis3/``... path,
    also inside ``/vsizip/`` or a ``vrt://`` name."""
    if path.startswith("vrt://"):
        path = path[len("vrt://") :].split("?", 1)[0]
    if any(prefix in path for prefix in _NETWORK_PREFIXES):
        return True
    scheme, sep, _ = path.partition("://")
    scheme = scheme.lower()  # rasterio's zip://a.zip!b.tif is a local archive, as zip+file://
    return bool(sep) and scheme not in _ARCHIVE_SCHEMES and scheme.rsplit("+", 1)[-1] != "file"


def _remote_open_options(path: str) -> dict[str, str]:
    """:data:`REMOTE_OPEN_OPTIONS` the user has not set, for a source read over the
    network (:func:`_is_network`); none for a local one."""
    if not _is_network(path):
        return {}
    current = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    return {
        k: v for k, v in REMOTE_OPEN_OPTIONS.items() if k not in os.environ and k not in current
    }


def open_dataset(path: PathLike) -> DatasetReader:
    """Open a raster for reading and return the dataset (the caller closes it); see
    :func:`open_raster` for the checks and errors."""
    text = os.fspath(path)
    if not _is_virtual(text):
        p = Path(text)
        try:
            exists = p.exists()
        except OSError as exc:  # a name past 255 bytes, a loop of links
            raise RasterReadError(f"cannot read {p} ({exc.strerror}); check the path") from None
        if not exists:
            raise RasterReadError(f"no such file: {p}; check the path")
        if p.is_dir():
            raise RasterReadError(f"{p} is a folder, not a raster file; pass a raster's path")
        if not os.access(p, os.R_OK):
            raise RasterReadError(
                f"no permission to read {p}; ask its owner for read access (chmod) or copy "
                "it somewhere you can read"
            )
    remote = _remote_open_options(text)
    try:
        with warnings.catch_warnings():  # plain images: rsgan warns once per source instead
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.Env(**remote) if remote else contextlib.nullcontext():
                return rasterio.open(text)
    except (RasterioError, CPLE_BaseError, UnicodeDecodeError, ValueError) as exc:
        # a damaged header can hold a CRS that is not UTF-8 (rasterio decodes it on open);
        # rasterio's URL parsing refuses an unclosed "[" (https://[host/a.tif: ValueError)
        if _is_network(text):
            raise _network_read_error(f"cannot read {text} as a raster", text, exc) from exc
        hint = "pass a GeoTIFF or another format GDAL reads"
        raise RasterReadError(f"cannot read {text} as a raster ({exc}); {hint}") from exc


def _network_read_error(
    what: str, path: str, exc: BaseException, *, pixels: bool = False
) -> RasterReadError:
    """The error for GDAL's failure ``exc`` to open or read ``path``, a network source:
    with the HTTP status behind it and what to do (an expired signed URL, a moved file,
    missing credentials; :func:`rsgan._http.diagnose`), else with GDAL's words and the
    retry settings. Its ``http_status`` attribute holds the status, or None."""
    failure = _http.diagnose(path, exc)
    if failure is not None:
        error = RasterReadError(f"{what}: {failure.describe()}")
        error.http_status = failure.status
        return error
    if _http.is_store_error(exc):
        hint = (
            "the object store refused the request; check the bucket, the key and the "
            "credentials GDAL uses (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_SESSION_TOKEN, AWS_PROFILE; AWS_NO_SIGN_REQUEST=YES for a public bucket)"
        )
    elif pixels:
        hint = (
            "the connection may have failed or the file be truncated or corrupt; try "
            f"again {_RETRY_HINT}"
        )
    elif re.search(r"HTTP|curl|timed out|connect|resolve host", str(exc), re.IGNORECASE):
        # "CURL error: Failed to connect to ... / Could not resolve host": not the format
        hint = f"check the address and the connection and try again {_RETRY_HINT}"
    else:
        hint = "pass a GeoTIFF or another format GDAL reads"
    return RasterReadError(f"{what} ({exc}); {hint}")


@contextmanager
def open_raster(path: PathLike) -> Iterator[DatasetReader]:
    """Open a raster for reading, turning GDAL's failures into :class:`RasterReadError`.

    Args:
        path: A raster file (any format GDAL reads), or a ``/vsi...`` path or URL.

    Yields:
        The open rasterio dataset; it is closed when the block ends.

    Raises:
        RasterReadError: if the file is missing, a folder, not a raster, or corrupt; for a
            source read over the network that the server refused, naming the HTTP status
            (also as ``http_status``) and what to do.
    """
    with open_dataset(path) as src:
        yield src


def describe(path: PathLike) -> RasterInfo:
    """Describe a raster file from its header (no pixels are read).

    Raises:
        RasterReadError: if the file is missing, not a raster or corrupt.
    """
    with open_raster(path) as src:
        return RasterInfo.from_dataset(src)


def warn_if_not_georeferenced(info: RasterInfo) -> bool:
    """Warn (:class:`NotGeoreferencedWarning`) when ``info`` has no CRS.

    Plain image chips (UC Merced, LEVIR-CD PNGs) are valid training sources, but what is
    made from them carries pixel coordinates only.

    Returns:
        True when a warning was issued.
    """
    if info.placed:  # a CRS, or ground control points / RPCs that outputs keep
        return False
    warnings.warn(
        NotGeoreferencedWarning(
            f"{info.path} has no CRS: it is used as a plain image, and chips or outputs "
            "made from it carry pixel coordinates only"
        ),
        stacklevel=2,
    )
    return True


def list_image_files(folder: PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """The image files directly in ``folder`` (not recursive, hidden files skipped), sorted.

    Raises:
        RasterReadError: if ``folder`` is not a folder or holds no matching file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise RasterReadError(f"no such folder: {root}; check the path")
    wanted = {ext.lower() for ext in extensions}
    files = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted
    )
    if not files:
        raise RasterReadError(
            f"{root} holds no image file ending in {', '.join(sorted(wanted))}; "
            "point at a folder of rasters or pass the files"
        )
    return files


# --------------------------------------------------------------------------- reading


def check_bands(count: int, bands: Sequence[int] | None, *, path: PathLike | None = None) -> Bands:
    """Validate 1-based band indexes against a band count.

    Args:
        count: Number of bands in the file.
        bands: 1-based indexes, or None for all bands.
        path: The file, named in the error message.

    Returns:
        The indexes as a tuple (all bands ``(1, ..., count)`` for None).

    Raises:
        BandError: for an empty selection, a non-integer, or an index out of range.
    """
    where = f"{path} has" if path is not None else "the raster has"
    if bands is None:
        return tuple(range(1, count + 1))
    selected = tuple(bands)
    if not selected:
        raise BandError("empty band selection; pass bands=None for all bands or e.g. (1, 2, 3)")
    for band in selected:
        if isinstance(band, bool) or not isinstance(band, (int, np.integer)):
            raise BandError(f"band index {band!r} is not an integer; band indexes are 1-based ints")
        if not 1 <= band <= count:
            raise BandError(
                f"band {band} is out of range: {where} {count} band(s); "
                f"choose bands between 1 and {count}"
            )
    return tuple(int(b) for b in selected)


def _window_ints(window: Window) -> tuple[int, int, int, int]:
    """``(row_off, col_off, height, width)`` of a window with whole-pixel offsets and size."""
    values = (window.row_off, window.col_off, window.height, window.width)
    ints = tuple(int(round(v)) for v in values)
    if any(abs(v - i) > 1e-6 for v, i in zip(values, ints, strict=True)):
        raise WindowError(
            f"window {window} is not on whole pixels; round it with window.round_offsets() "
            "and window.round_lengths()"
        )
    if ints[2] <= 0 or ints[3] <= 0:
        raise WindowError(f"window {window} is empty; give it a positive height and width")
    return ints  # type: ignore[return-value]


def _clip_window(
    window: Window, width: int, height: int, *, boundless: bool
) -> tuple[Window | None, tuple[slice, slice]]:
    """The part of ``window`` inside a ``width`` x ``height`` scene, and where it goes in the
    window's own array.

    Returns:
        ``(inner, (rows, cols))``: ``inner`` is None when the window lies outside the scene.

    Raises:
        WindowError: when the window extends past the scene and ``boundless`` is False.
    """
    row_off, col_off, h, w = _window_ints(window)
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1, c1 = min(row_off + h, height), min(col_off + w, width)
    inside = (r0, c0, r1, c1) == (row_off, col_off, row_off + h, col_off + w)
    if not inside and not boundless:
        raise WindowError(
            f"window (row_off={row_off}, col_off={col_off}, height={h}, width={w}) extends "
            f"past the {width} x {height} scene; read it with boundless=True"
        )
    if r0 >= r1 or c0 >= c1:
        return None, (slice(0, 0), slice(0, 0))
    inner = Window(c0, r0, c1 - c0, r1 - r0)
    return inner, (slice(r0 - row_off, r1 - row_off), slice(c0 - col_off, c1 - col_off))


def read_window(
    src: DatasetReader,
    window: Window,
    bands: Sequence[int] | None = None,
    *,
    boundless: bool = False,
    fill: float | None = None,
) -> np.ndarray:
    """Read a window of selected bands.

    Args:
        src: An open dataset (see :func:`open_raster`).
        window: Pixel window; with ``boundless`` it may extend past the scene.
        bands: 1-based band indexes, None for all.
        boundless: Allow windows that extend past the scene; the outside is ``fill``.
        fill: Value outside the scene; default the nodata value, or 0 without one.

    Returns:
        ``(bands, rows, cols)`` array in the source dtype.

    Raises:
        BandError: for band indexes out of range.
        WindowError: for a window past the scene without ``boundless``.
    """
    indexes = check_bands(src.count, bands, path=src.name)
    inner, (rows, cols) = _clip_window(window, src.width, src.height, boundless=boundless)
    _, _, h, w = _window_ints(window)
    with _reading(src):
        if inner is not None and inner.height == h and inner.width == w:
            return src.read(indexes, window=inner)
        if fill is None:
            fill = src.nodata if src.nodata is not None else 0
        out = np.full((len(indexes), h, w), fill, dtype=src.dtypes[indexes[0] - 1])
        if inner is not None:
            out[:, rows, cols] = src.read(indexes, window=inner)
    return out


@contextmanager
def _reading(src: DatasetReader) -> Iterator[None]:
    """Turn GDAL read failures (corrupt or truncated blocks) into :class:`RasterReadError`."""
    try:
        yield
    except RasterioError as exc:
        if _is_network(src.name):
            what = f"cannot read pixels of {src.name}"
            raise _network_read_error(what, src.name, exc, pixels=True) from exc
        hint = "the file may be truncated or corrupt"
        raise RasterReadError(f"cannot read pixels of {src.name} ({exc}); {hint}") from exc


def _all_valid(src: DatasetReader, indexes: Bands) -> bool:
    flags = src.mask_flag_enums
    return all(list(flags[i - 1]) == [MaskFlags.all_valid] for i in indexes)


def _nan_mask(data: np.ndarray) -> np.ndarray:
    """True where every band is a finite number (always True for integer data)."""
    if not np.issubdtype(data.dtype, np.floating):
        return np.ones(data.shape[1:], dtype=bool)
    return np.isfinite(data).all(axis=0)


def read_valid_mask(
    src: DatasetReader,
    window: Window,
    bands: Sequence[int] | None = None,
    *,
    boundless: bool = False,
    data: np.ndarray | None = None,
) -> np.ndarray:
    """Valid-pixel mask of a window: True where every selected band holds data.

    Nodata values, internal (per-dataset) masks and alpha bands are respected through
    GDAL's mask bands (rasterio ``read_masks``); NaN and infinities in float rasters are
    invalid; pixels outside the scene (boundless windows) are invalid.

    Args:
        src: An open dataset.
        window: Pixel window.
        bands: 1-based band indexes, None for all.
        boundless: Allow windows that extend past the scene.
        data: The pixels of the same window and bands, if already read (saves a second
            read of float rasters, which are checked for NaN).

    Returns:
        Boolean ``(rows, cols)`` array.
    """
    indexes = check_bands(src.count, bands, path=src.name)
    inner, (rows, cols) = _clip_window(window, src.width, src.height, boundless=boundless)
    _, _, h, w = _window_ints(window)
    mask = np.zeros((h, w), dtype=bool)
    if inner is None:
        return mask
    with _reading(src):
        if _all_valid(src, indexes):
            inner_mask = np.ones((int(inner.height), int(inner.width)), dtype=bool)
        else:
            inner_mask = (src.read_masks(indexes, window=inner) > 0).all(axis=0)
        is_float = any(np.issubdtype(np.dtype(src.dtypes[i - 1]), np.floating) for i in indexes)
        if is_float:
            pixels = data[:, rows, cols] if data is not None else src.read(indexes, window=inner)
            inner_mask &= _nan_mask(pixels)
    mask[rows, cols] = inner_mask
    return mask


def read_masked(
    src: DatasetReader,
    window: Window,
    bands: Sequence[int] | None = None,
    *,
    boundless: bool = False,
    fill: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and valid mask of a window in one call: ``((bands, rows, cols), (rows, cols))``."""
    data = read_window(src, window, bands, boundless=boundless, fill=fill)
    mask = read_valid_mask(src, window, bands, boundless=boundless, data=data)
    return data, mask


# --------------------------------------------------------------------------- statistics


def _pct_key(p: float) -> str:
    return repr(float(p))


@dataclass(frozen=True, slots=True)
class BandStats:
    """Per-band statistics of the valid pixels of one or more rasters (a domain).

    Attributes:
        bands: The 1-based band indexes the statistics describe.
        dtype: Source data type.
        n_pixels: Number of valid pixels sampled (per band).
        min, max, mean, std: One value per band, in source units.
        percentiles: Percentile (0-100) -> one value per band.
        sources: The files sampled.
    """

    bands: Bands
    dtype: str
    n_pixels: int
    min: tuple[float, ...]
    max: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    percentiles: dict[float, tuple[float, ...]]
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (percentile keys become strings); inverse of :meth:`from_dict`."""
        return {
            "bands": list(self.bands),
            "dtype": self.dtype,
            "n_pixels": int(self.n_pixels),
            "min": list(self.min),
            "max": list(self.max),
            "mean": list(self.mean),
            "std": list(self.std),
            "percentiles": {_pct_key(p): list(v) for p, v in self.percentiles.items()},
            "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandStats:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(
                bands=tuple(int(b) for b in data["bands"]),
                dtype=str(data["dtype"]),
                n_pixels=int(data["n_pixels"]),
                min=tuple(float(v) for v in data["min"]),
                max=tuple(float(v) for v in data["max"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                percentiles={
                    float(p): tuple(float(v) for v in vals)
                    for p, vals in data["percentiles"].items()
                },
                sources=tuple(str(s) for s in data.get("sources", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"band statistics record is incomplete or malformed ({exc!r}); "
                "recompute them with compute_band_stats"
            ) from exc


def _sample_windows(
    width: int, height: int, max_windows: int, window_size: int, rng: np.random.Generator
) -> list[Window]:
    """Windows to sample statistics from: the whole scene when it is small, else
    ``max_windows`` random windows of ``window_size`` px, in row-major order."""
    size_r, size_c = min(window_size, height), min(window_size, width)
    if width * height <= max_windows * window_size * window_size:
        return [
            Window(c, r, min(window_size, width - c), min(window_size, height - r))
            for r in range(0, height, window_size)
            for c in range(0, width, window_size)
        ]
    rows = rng.integers(0, height - size_r + 1, size=max_windows)
    cols = rng.integers(0, width - size_c + 1, size=max_windows)
    order = np.lexsort((cols, rows))
    return [Window(int(cols[i]), int(rows[i]), size_c, size_r) for i in order]


def _overview_factor(src: DatasetReader, band: int, budget: int) -> int | None:
    """The smallest overview factor whose image fits ``budget`` pixels, or None."""
    for factor in sorted(src.overviews(band)):
        if math.ceil(src.width / factor) * math.ceil(src.height / factor) <= budget:
            return factor
    return None


def _valid_pixels(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(bands, n)`` valid pixels of a ``(bands, rows, cols)`` array."""
    return data[:, mask]


def _sample_file(
    src: DatasetReader,
    indexes: Bands,
    *,
    max_windows: int,
    window_size: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    budget = max_windows * window_size * window_size
    factor = None
    if src.width * src.height > budget:
        factor = _overview_factor(src, indexes[0], budget)
    if factor is not None:
        shape = (len(indexes), math.ceil(src.height / factor), math.ceil(src.width / factor))
        with _reading(src):
            data = src.read(indexes, out_shape=shape)
            if _all_valid(src, indexes):
                mask = np.ones(shape[1:], dtype=bool)
            else:
                mask = (src.read_masks(indexes, out_shape=shape) > 0).all(axis=0)
        return [_valid_pixels(data, mask & _nan_mask(data))]
    chunks = []
    for window in _sample_windows(src.width, src.height, max_windows, window_size, rng):
        data, mask = read_masked(src, window, indexes)
        chunks.append(_valid_pixels(data, mask))
    return chunks


PERCENTILE_SAMPLE = 1_000_000
"""Valid pixels per file kept (at random) for percentiles; min, max, mean and std use all."""


class _Moments:
    """Running per-band count, sums, extremes and a bounded pixel sample."""

    def __init__(self, nbands: int) -> None:
        self.n = 0
        self.total = np.zeros(nbands)
        self.total_sq = np.zeros(nbands)
        self.lo = np.full(nbands, np.inf)
        self.hi = np.full(nbands, -np.inf)
        self.samples: list[np.ndarray] = []

    def add(self, pixels: np.ndarray, rng: np.random.Generator) -> None:
        """Add ``(bands, n)`` valid pixels."""
        if pixels.shape[1] == 0:
            return
        values = pixels.astype(np.float64)
        self.n += values.shape[1]
        self.total += values.sum(axis=1)
        self.total_sq += np.square(values).sum(axis=1)
        self.lo = np.minimum(self.lo, values.min(axis=1))
        self.hi = np.maximum(self.hi, values.max(axis=1))
        if pixels.shape[1] > PERCENTILE_SAMPLE:
            pixels = pixels[:, rng.choice(pixels.shape[1], PERCENTILE_SAMPLE, replace=False)]
        self.samples.append(pixels)


def compute_band_stats(
    paths: PathLike | Sequence[PathLike],
    bands: Sequence[int] | None = None,
    *,
    max_windows: int = 64,
    window_size: int = 256,
    percentiles: Sequence[float] = (0.5, 2, 50, 98, 99.5),
    seed: int = 0,
) -> BandStats:
    """Per-band statistics of the valid pixels of one raster or a pool of rasters.

    A scene of at most ``max_windows * window_size**2`` pixels is read whole (window by
    window); a larger one is sampled from its overviews when it has some small enough,
    else from ``max_windows`` random windows (seeded). A whole large scene is never read.
    Min, max, mean and std use every sampled valid pixel; percentiles use at most
    :data:`PERCENTILE_SAMPLE` of them per file, drawn at random, which bounds memory.

    Args:
        paths: One raster or several (statistics are pooled, e.g. a training domain).
        bands: 1-based band indexes, None for all.
        max_windows: Windows sampled per large file.
        window_size: Window side in pixels.
        percentiles: Percentiles (0-100) to compute.
        seed: Seed of the window sampling.

    Raises:
        BandError: if files differ in band count (with bands=None) or data type.
        NoValidPixelsError: if no valid pixel was sampled.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [source_path(p) for p in paths]  # a URL as given: Path folds its "//"
    if not files:
        raise ConfigError("compute_band_stats got no files; pass at least one raster")
    if max_windows < 1 or window_size < 1:
        raise ConfigError(
            f"max_windows={max_windows}, window_size={window_size}: both must be positive"
        )
    pcts = tuple(float(p) for p in percentiles)
    for p in pcts:
        if not 0 <= p <= 100:
            raise ConfigError(f"percentile {p} is outside 0..100")
    rng = np.random.default_rng(seed)
    acc: _Moments | None = None
    first: tuple[Path | str, Bands, str] | None = None
    for path in files:
        with open_raster(path) as src:
            indexes = check_bands(src.count, bands, path=path)
            dtypes = {src.dtypes[i - 1] for i in indexes}
            if len(dtypes) != 1:
                raise BandError(
                    f"{path} has bands of different data types {sorted(dtypes)}; "
                    "select bands of one type"
                )
            dtype = dtypes.pop()
            if first is None:
                first = (path, indexes, dtype)
                acc = _Moments(len(indexes))
            elif len(indexes) != len(first[1]) or dtype != first[2]:
                raise BandError(
                    f"{path} has {len(indexes)} {dtype} band(s) but {first[0]} has "
                    f"{len(first[1])} {first[2]} band(s); statistics pool files of one kind, "
                    "so pass files alike or select the same number of bands with bands=(...)"
                )
            chunks = _sample_file(
                src, indexes, max_windows=max_windows, window_size=window_size, rng=rng
            )
            acc.add(np.concatenate(chunks, axis=1), rng)  # type: ignore[union-attr]
    if first is None or acc is None or acc.n == 0:
        raise NoValidPixelsError(
            f"no valid pixel in the sampled windows of {', '.join(map(str, files))}; "
            "check the nodata value and masks, or raise max_windows"
        )
    sample = np.concatenate(acc.samples, axis=1).astype(np.float64)
    pct_values = np.percentile(sample, pcts, axis=1)  # (percentiles, bands)
    mean = acc.total / acc.n
    var = np.maximum(acc.total_sq / acc.n - mean**2, 0.0)
    return BandStats(
        bands=first[1],
        dtype=first[2],
        n_pixels=int(acc.n),
        min=tuple(float(v) for v in acc.lo),
        max=tuple(float(v) for v in acc.hi),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in np.sqrt(var)),
        percentiles={p: tuple(float(v) for v in pct_values[i]) for i, p in enumerate(pcts)},
        sources=tuple(str(p) for p in files),
    )


# --------------------------------------------------------------------------- normalisation


def _dtype_range(dtype: str) -> tuple[float, float]:
    """The value range of a dtype: integers their full range, floats 0..1."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    if np.issubdtype(dt, np.floating):
        return 0.0, 1.0
    raise ConfigError(f"data type {dtype!r} is not a number type; rasters hold ints or floats")


def _bands_axis(arr: np.ndarray, nbands: int) -> int:
    """Axis holding bands: 0 for ``(bands, rows, cols)``, 1 for ``(n, bands, rows, cols)``."""
    if arr.ndim not in (3, 4):
        raise BandError(
            f"array of shape {arr.shape} is not (bands, rows, cols) or (n, bands, rows, cols)"
        )
    axis = arr.ndim - 3
    if arr.shape[axis] != nbands:
        raise BandError(
            f"array has {arr.shape[axis]} band(s) but the normaliser has {nbands}; "
            "select the bands the normaliser was made for"
        )
    return axis


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Linear per-band map from source values to the models' range [-1, 1] and back.

    ``normalize``: ``(x - lo) / (hi - lo) * 2 - 1`` per band, returned as float32
    (computed in float32 for 8/16-bit integers, float64 otherwise), without clipping
    (values outside ``lo..hi`` fall outside [-1, 1]). ``denormalize`` is its exact
    inverse, rounded and clipped to integer dtypes.

    Attributes:
        lo: Source value mapped to -1, per band.
        hi: Source value mapped to +1, per band (> lo).
        dtype: The source data type that ``denormalize`` returns by default.
    """

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    dtype: str

    def __post_init__(self) -> None:
        lo = tuple(float(v) for v in self.lo)
        hi = tuple(float(v) for v in self.hi)
        if len(lo) != len(hi) or not lo:
            raise ConfigError(f"normaliser lo {lo} and hi {hi} must give one value per band each")
        for b, (a, c) in enumerate(zip(lo, hi, strict=True), start=1):
            if not (math.isfinite(a) and math.isfinite(c) and c > a):
                raise ConfigError(
                    f"normaliser band {b}: hi={c} must be finite and greater than lo={a}"
                )
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.lo)

    def _params(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        axis = _bands_axis(arr, self.count)
        shape = [1] * arr.ndim
        shape[axis] = self.count
        lo = np.asarray(self.lo, dtype=np.float64).reshape(shape)
        hi = np.asarray(self.hi, dtype=np.float64).reshape(shape)
        return lo, hi

    def normalize(self, arr: np.ndarray) -> np.ndarray:
        """Source values ``(bands, rows, cols)`` (or ``(n, bands, rows, cols)``) to float32
        model values; ``lo`` -> -1, ``hi`` -> +1.

        8- and 16-bit integers are computed in float32 (they convert exactly; a few
        roundings of at most 1e-7 relative keep the round trip exact and are ~10x faster
        than float64); other dtypes in float64, then cast.
        """
        arr = np.asarray(arr)
        lo, hi = self._params(arr)
        if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
            out = arr.astype(np.float32)
            out -= lo.astype(np.float32)
            out /= (hi - lo).astype(np.float32)
            out *= np.float32(2.0)
            out -= np.float32(1.0)
            return out
        return ((arr.astype(np.float64) - lo) / (hi - lo) * 2.0 - 1.0).astype(np.float32)

    def denormalize(self, arr: np.ndarray, dtype: str | None = None) -> np.ndarray:
        """Model values back to source values in ``dtype`` (default :attr:`dtype`).

        Integer dtypes are rounded to the nearest integer and clipped to the dtype's range
        (NaN becomes 0); float dtypes are only cast.
        """
        arr = np.asarray(arr)
        lo, hi = self._params(arr)
        out = (arr.astype(np.float64) + 1.0) / 2.0 * (hi - lo) + lo
        target = np.dtype(dtype or self.dtype)
        if np.issubdtype(target, np.integer):
            info = np.iinfo(target)
            out = np.clip(np.rint(np.nan_to_num(out, nan=0.0)), info.min, info.max)
        return out.astype(target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; inverse of :meth:`from_dict`."""
        return {"lo": list(self.lo), "hi": list(self.hi), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(lo=tuple(data["lo"]), hi=tuple(data["hi"]), dtype=str(data["dtype"]))
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"normaliser record {dict(data)!r} needs 'lo', 'hi' and 'dtype'"
            ) from exc

    @classmethod
    def for_dtype(cls, dtype: str, count: int) -> Normalizer:
        """The dtype's natural range for every band: integer types their full range
        (uint8 0..255, uint16 0..65535, int16 -32768..32767), float types 0..1."""
        lo, hi = _dtype_range(dtype)
        return cls(lo=(lo,) * count, hi=(hi,) * count, dtype=dtype)

    @classmethod
    def from_stats(
        cls,
        stats: BandStats,
        method: str = "percentile",
        low: float = 0.5,
        high: float = 99.5,
    ) -> Normalizer:
        """A normaliser from band statistics.

        Args:
            stats: Statistics of the domain.
            method: ``"percentile"`` (``low``/``high`` percentiles map to -1/+1) or
                ``"minmax"``.
            low: Lower percentile (0-100), for ``"percentile"``.
            high: Upper percentile (0-100), for ``"percentile"``.

        A band whose two ends coincide (a constant band) gets ``hi = lo + 1``.

        Raises:
            ConfigError: for an unknown method or percentiles missing from ``stats``.
        """
        try:
            bounds = _NORMALIZER_METHODS[method]
        except KeyError:
            raise ConfigError(
                f"normalisation method {method!r} is unknown; use one of "
                f"{', '.join(sorted(_NORMALIZER_METHODS))}"
            ) from None
        lo, hi = bounds(stats, float(low), float(high))
        hi = tuple(h if h > lo_ else lo_ + 1.0 for lo_, h in zip(lo, hi, strict=True))
        return cls(lo=lo, hi=hi, dtype=stats.dtype)


def _percentile_bounds(
    stats: BandStats, low: float, high: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    def get(p: float) -> tuple[float, ...]:
        for key, values in stats.percentiles.items():
            if math.isclose(float(key), p):
                return values
        raise ConfigError(
            f"percentile {p} is not in the statistics (they hold "
            f"{sorted(stats.percentiles)}); recompute them with percentiles=(..., {p}, ...)"
        )

    return get(low), get(high)


def _minmax_bounds(
    stats: BandStats, low: float, high: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return stats.min, stats.max


_NORMALIZER_METHODS: dict[
    str, Callable[[BandStats, float, float], tuple[tuple[float, ...], tuple[float, ...]]]
] = {"percentile": _percentile_bounds, "minmax": _minmax_bounds}


# --------------------------------------------------------------------------- writing


class _Keep:
    """Sentinel: keep the source's value."""

    def __repr__(self) -> str:
        return "<keep>"


KEEP: Any = _Keep()
"""Default of :func:`output_profile`'s ``nodata``: keep the source's nodata value."""

_PREDICTOR_COMPRESSIONS = {"deflate", "lzw", "zstd", "lzma"}


def output_profile(
    info: RasterInfo,
    *,
    count: int | None = None,
    dtype: str | None = None,
    nodata: float | None | _Keep = KEEP,
    blocksize: int = 256,
    compress: str | None = "deflate",
    bigtiff: str = "IF_SAFER",
    num_threads: int | str = 2,
) -> dict[str, Any]:
    """A creation profile for a tiled, compressed GeoTIFF on ``info``'s grid.

    CRS, transform, width and height come from ``info``. Band descriptions, colour
    interpretation and tags are not part of a profile: copy them with
    :func:`copy_band_metadata` after opening the output.

    Args:
        info: The source raster.
        count: Output band count (default the source's).
        dtype: Output data type (default the source's common dtype).
        nodata: Output nodata (default the source's; None for none).
        blocksize: Internal tile side in pixels (a multiple of 16).
        compress: GDAL compression, or None.
        bigtiff: GDAL ``BIGTIFF`` option.
        num_threads: GDAL ``NUM_THREADS`` for compression.

    Raises:
        ConfigError: for a bad block size, or a nodata value the output dtype cannot hold.
    """
    if blocksize <= 0 or blocksize % 16:
        raise ConfigError(f"blocksize={blocksize}: GeoTIFF tiles need a positive multiple of 16")
    out_dtype = np.dtype(dtype or info.dtype).name
    out_nodata = info.nodata if isinstance(nodata, _Keep) else nodata
    if out_nodata is not None and np.issubdtype(np.dtype(out_dtype), np.integer):
        lim = np.iinfo(out_dtype)
        if not (math.isfinite(out_nodata) and lim.min <= out_nodata <= lim.max):
            raise ConfigError(
                f"nodata {out_nodata} does not fit the output type {out_dtype}; "
                "pass nodata=<a value in range> or nodata=None"
            )
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": count or info.count,
        "dtype": out_dtype,
        "crs": info.crs,
        "transform": info.transform,
        "nodata": out_nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "interleave": "pixel",
        "BIGTIFF": bigtiff,
        "NUM_THREADS": str(num_threads),
    }
    if compress:
        profile["compress"] = compress
        if compress.lower() in _PREDICTOR_COMPRESSIONS:
            profile["predictor"] = 3 if np.issubdtype(np.dtype(out_dtype), np.floating) else 2
    return profile


@contextmanager
def open_output(path: PathLike, mode: str = "w", **profile: Any) -> Iterator[Any]:
    """``rasterio.open(path, mode, **profile)`` without rasterio's
    ``NotGeoreferencedWarning`` for an output that has no geotransform: a plain image's,
    which rsgan has already said once per source (:func:`warn_if_not_georeferenced`), or
    one placed by ground control points or RPCs, which are set after opening
    (:func:`copy_placement`; rasterio's warning then says it has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        ds = rasterio.open(path, mode, **profile)
    with ds:
        yield ds


def same_crs(a: CRS | None, b: CRS | None) -> bool:
    """Whether two CRSs place a geotransform's coordinates alike (None: no CRS).

    Equal CRSs are, and so are CRSs that differ in axis order only, such as OGC:CRS84
    (longitude, latitude) and EPSG:4326 (latitude, longitude), or EPSG:3006 (northing,
    easting) and the same projection written with easting first (an ESRI ``.prj``):
    GDAL's geotransforms are in (easting, northing) order whatever the CRS's axis order,
    so the pixel grids are the same (pyproj's ``CRS.equals(other, ignore_axis_order=True)``,
    the criterion GDAL uses to skip a reprojection, once a projected CRS's own axes are in
    easting, northing order). CRSs with another datum, ellipsoid, projection or unit are not.
    """
    if a is None or b is None:
        return a is None and b is None
    if a == b:
        return True
    from pyproj.exceptions import CRSError as ProjCRSError

    try:
        return bool(_east_north(a).equals(_east_north(b), ignore_axis_order=True))
    except ProjCRSError:  # a CRS PROJ cannot read is the same as none but itself
        return False


def _east_north(crs: CRS) -> Any:
    """``crs`` as a pyproj CRS whose projected CRSs (also inside a bound or compound CRS)
    list their easting axis first: pyproj's ``ignore_axis_order`` ignores the axis order of
    a geographic CRS only."""
    from pyproj import CRS as ProjCRS

    def swap(node: Any) -> Any:
        if isinstance(node, list):
            return [swap(v) for v in node]
        if not isinstance(node, dict):
            return node
        node = {k: swap(v) for k, v in node.items()}
        axes = (node.get("coordinate_system") or {}).get("axis") or []
        directions = [axis.get("direction") for axis in axes]
        if node.get("type") == "ProjectedCRS" and directions in (
            ["north", "east"],
            ["south", "west"],
            ["north", "west"],
            ["south", "east"],
        ):
            node["coordinate_system"] = {**node["coordinate_system"], "axis": axes[::-1]}
            node.pop("id", None)  # the code's axis order no longer holds
            node.pop("ids", None)
        return node

    proj = ProjCRS.from_user_input(crs.to_wkt())
    return ProjCRS.from_json_dict(swap(proj.to_json_dict()))


def placed_crs(info: RasterInfo) -> CRS | None:
    """The CRS that :func:`placed_xy` gives coordinates in: the ground control points',
    EPSG:4326 for RPCs, None for a raster placed by neither."""
    if info.gcps and info.gcps_crs is not None:
        return info.gcps_crs
    return CRS.from_epsg(4326) if info.rpcs is not None else None


def placed_xy(
    info: RasterInfo, rows: Sequence[float], cols: Sequence[float]
) -> tuple[list[float], list[float], CRS]:
    """Where pixel corners ``(rows, cols)`` of a raster placed by ground control points or
    RPCs (no geotransform) lie: ``(xs, ys, crs)``, through GDAL's transformers (the points'
    CRS; longitude and latitude in EPSG:4326 for RPCs).

    Raises:
        ValueError: the raster is placed by neither.
    """
    from rasterio.transform import GCPTransformer, RPCTransformer

    crs = placed_crs(info)
    if crs is None:
        raise ValueError(
            f"{redact_url(info.path)} is placed by neither ground control points nor RPCs"
        )
    by_gcps = bool(info.gcps) and info.gcps_crs is not None  # else by RPCs
    with GCPTransformer(list(info.gcps)) if by_gcps else RPCTransformer(info.rpcs) as t:
        xs, ys = t.xy(list(rows), list(cols), offset="ul")
    return list(xs), list(ys), crs


def pixel_ring(
    row_off: float, col_off: float, height: float, width: float, per_edge: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of ``per_edge`` points along each edge of a pixel rectangle,
    clockwise from its top-left corner (an outline to map through a transformer)."""
    edge = np.linspace(0.0, 1.0, per_edge + 1)[:-1]
    rows = row_off + height * np.concatenate([0 * edge, edge, 1 + 0 * edge, 1 - edge])
    cols = col_off + width * np.concatenate([edge, 1 + 0 * edge, 1 - edge, 0 * edge])
    return rows, cols


def copy_placement(info: RasterInfo, dst: Any, row_off: int = 0, col_off: int = 0) -> None:
    """Give ``dst`` the ground control points and RPCs of ``info`` (a raster placed by
    those rather than by a geotransform), for ``dst``'s pixel (0, 0) at ``(row_off,
    col_off)`` of the source: every point and the RPCs' line and sample offsets move by
    that much. A raster with neither is left alone (its CRS and transform go in the
    creation profile, :func:`output_profile`); so are points without a CRS, which place
    nothing (and which rasterio cannot write)."""
    if info.gcps and info.gcps_crs is not None:
        shifted = [
            GroundControlPoint(
                row=g.row - row_off,
                col=g.col - col_off,
                x=g.x,
                y=g.y,
                z=g.z,
                id=g.id,
                info=g.info,
            )  # fmt: skip
            for g in info.gcps
        ]
        dst.gcps = (shifted, info.gcps_crs)
    if info.rpcs is not None:
        rpcs = copy.copy(info.rpcs)
        rpcs.line_off = info.rpcs.line_off - row_off
        rpcs.samp_off = info.rpcs.samp_off - col_off
        dst.rpcs = rpcs


STALE_BAND_TAGS = ("STATISTICS_",)
"""Prefixes of band tags that describe a band's pixel values (GDAL's cached
``STATISTICS_MINIMUM``/``MAXIMUM``/``MEAN``/``STDDEV``/``VALID_PERCENT``, written by
``gdalinfo -stats`` into the file or its ``.aux.xml``): :func:`copy_band_metadata` leaves
them out, since GDAL and QGIS would report (and stretch by) the source's statistics as the
output's, whose pixels differ."""

STALE_DATASET_TAGS = ("OVR_RESAMPLING_ALG",)
"""Dataset tags that describe how the source file was written (a COG's overview
resampling): left out by :func:`dataset_tags`, as an output has its own overviews or
none."""


def dataset_tags(info: RasterInfo) -> dict[str, str]:
    """``info``'s dataset tags an output of it may carry: all but :data:`STALE_DATASET_TAGS`."""
    return {k: v for k, v in info.tags.items() if k not in STALE_DATASET_TAGS}


def copy_dataset_tags(info: RasterInfo, dst: Any) -> None:
    """Copy ``info``'s dataset tags (:func:`dataset_tags`) and its ``IMAGERY`` domain to
    ``dst``, a dataset open for writing."""
    tags = dataset_tags(info)
    if tags:
        dst.update_tags(**tags)
    if info.imagery:
        dst.update_tags(ns="IMAGERY", **info.imagery)


def _band_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(STALE_BAND_TAGS)}


def copy_band_metadata(
    info: RasterInfo, dst: Any, bands: Sequence[int] | None = None, *, same_units: bool = True
) -> None:
    """Copy descriptions, colour interpretation, colour tables, tags (the default and
    ``IMAGERY`` metadata domains), scales, offsets and units to ``dst``.

    A rasterio profile does not carry these (rasterio #955), so outputs lose them unless
    they are copied after opening (before pixels are written: libtiff cannot change the
    colour interpretation afterwards). Cached statistics (:data:`STALE_BAND_TAGS`) and
    the source's overview resampling (:data:`STALE_DATASET_TAGS`) are not copied: they
    describe the source's pixels and file. A colour table goes to an output band of type
    uint8 or uint16 (all a GeoTIFF palette can index); a palette band of another output
    type is marked gray.

    Args:
        info: The source raster.
        dst: A dataset open for writing, with one band per selected source band.
        bands: The source bands that became ``dst`` bands 1..n, None for all.
        same_units: Whether ``dst``'s values are in the source's units: False leaves out the
            scales, offsets and units (values of another domain or data type).
    """
    indexes = check_bands(info.count, bands, path=info.path)
    if dst.count != len(indexes):
        raise BandError(
            f"output has {dst.count} band(s) but {len(indexes)} source band(s) were selected; "
            "pass bands=(...) matching the output"
        )
    copy_dataset_tags(info, dst)
    interps = [info.colorinterp[b - 1] for b in indexes]
    for out_band, src_band in enumerate(indexes, start=1):
        description = info.descriptions[src_band - 1]
        if description:
            dst.set_band_description(out_band, description)
        band_tags = _band_tags(info.band_tags[src_band - 1])
        if band_tags:
            dst.update_tags(out_band, **band_tags)
        table = info.colormaps[src_band - 1] if info.colormaps else None
        if interps[out_band - 1] == ColorInterp.palette:
            if table is not None and dst.dtypes[out_band - 1] in ("uint8", "uint16"):
                dst.write_colormap(out_band, table)
            else:
                interps[out_band - 1] = ColorInterp.gray
    dst.colorinterp = interps
    if not same_units:
        return
    scales = [info.scales[b - 1] for b in indexes]
    offsets = [info.offsets[b - 1] for b in indexes]
    if any(s != 1.0 for s in scales):
        dst.scales = scales
    if any(o != 0.0 for o in offsets):
        dst.offsets = offsets
    band_units = [info.units[b - 1] if info.units else None for b in indexes]
    if any(band_units):
        dst.units = [u or "" for u in band_units]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (links and hard links resolved)."""
    return _same_file(Path(a), Path(b))


def same_source(a: PathLike, b: PathLike) -> bool:
    """Whether two raster sources name one dataset: local paths one file (:func:`same_file`:
    links, ``..`` and a relative path against the working folder resolved), virtual names
    (:func:`is_virtual`: URLs, ``/vsi`` paths, ``vrt://`` names) the same text once a
    relative local archive or file in them is made absolute (:func:`absolute_source`) but
    for the signature of a signed URL (:func:`unsigned_url`, :data:`SIGNING_PARAMETERS`: a
    scene signed anew is the same scene, also in a ``/vsizip/{...}`` chain or a
    ``zip+https://`` name, and so is the unsigned form a manifest keeps; a query without a
    signature is compared whole, since its parameters may select the data)."""
    text_a, text_b = os.fspath(a), os.fspath(b)
    if _is_virtual(text_a) or _is_virtual(text_b):
        return unsigned_url(absolute_source(text_a)) == unsigned_url(absolute_source(text_b))
    return _same_file(Path(text_a), Path(text_b))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):
        # a name no file can have (a NUL byte) or a symlink loop: the text decides
        return os.fspath(a) == os.fspath(b)


_SCHEME_PART = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:$")


def check_local_output(path: PathLike, what: str = "output") -> None:
    """Refuse an output that is not a local path: a URL (``s3://``, ``https://``...) or a
    GDAL ``/vsi`` path, also once pathlib has folded its ``//`` (``s3:/bucket/out``, which
    would otherwise become a local folder ``s3:`` or, in GDAL, an S3 address).

    Raises:
        RasterWriteError: naming the path and what to do instead.
    """
    text = os.fspath(path)
    parts = Path(text).parts
    if _is_virtual(text) or (parts and _SCHEME_PART.match(parts[0])):
        raise RasterWriteError(
            f"{what} {text} is a URL or GDAL virtual path; rsgan writes local files and "
            "renames them into place: pass a local path and copy the result up afterwards"
        )
    for part in parts:
        size = len(os.fsencode(part))
        if size > _NAME_MAX:
            raise RasterWriteError(
                f"{what} {text}: the name {part[:40]}... is {size} bytes long; file systems "
                f"allow at most {_NAME_MAX} bytes per name: choose a shorter one"
            )


_NAME_MAX = 255
"""Bytes a file or folder name may hold (``NAME_MAX`` of Linux, macOS and Windows file
systems): a longer output name made ``os.stat`` fail with a traceback."""


def files_read_by(inputs: Sequence[PathLike]) -> list[tuple[str, str]]:
    """``(file, input)`` for every local file the ``inputs`` read: each input itself, and
    for a VRT (``.vrt``) every file GDAL reads for it (its sources, VRTs within it
    included). Other inputs are not opened: the check stays cheap for long lists of
    GeoTIFFs. A VRT that does not open adds nothing here (reading it fails later, with
    its own error)."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    todo = [(os.fspath(p), os.fspath(p)) for p in inputs]
    while todo:
        path, given = todo.pop()
        if _is_virtual(path) or path in seen:
            continue
        seen.add(path)
        found.append((path, given))
        if not path.lower().endswith(".vrt"):
            continue
        try:
            with rasterio.open(path) as ds:
                files = list(ds.files)
        except (RasterioError, OSError):
            continue
        todo.extend((f, given) for f in files if f != path)
    return found


def _input_named(path: str, src: str) -> str:
    """How an error names ``path``, a file the input ``src`` reads (:func:`files_read_by`)."""
    return f"the input {src}" if path == src else f"{path}, which the input {src} reads"


def _check_destination(dst: Path, *, overwrite: bool, inputs: Sequence[PathLike]) -> None:
    parent = dst.parent
    if not parent.is_dir():
        raise RasterWriteError(
            f"cannot write {dst}: folder {parent} does not exist; create it first"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RasterWriteError(
            f"cannot write {dst}: folder {parent} is not writable; choose another output path"
        )
    for path, src in files_read_by(inputs):
        if _same_file(dst, Path(path)):
            what = _input_named(path, src)
            raise RasterWriteError(
                f"output {dst} is {what}; inputs are never modified, choose another output path"
            )
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass overwrite=True / --overwrite to replace it")


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it, as written or with links resolved."""
    paths = {Path(os.path.abspath(path)), path.resolve()}
    folders = {Path(os.path.abspath(folder)), folder.resolve()}
    return any(p.is_relative_to(f) for p in paths for f in folders)


def _check_folder_inputs(dst: Path, inputs: Sequence[PathLike]) -> None:
    for path, src in files_read_by(inputs):
        if _inside(Path(path), dst):
            what = _input_named(path, src)
            raise RasterWriteError(
                f"output folder {dst} holds {what}; writing the folder would delete "
                "it, choose another output folder"
            )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- temporaries
#
# Every temporary of ``dst`` is named ``.<dst name>.rsgan-tmp-<token>...``; while its
# writer works it holds an flock on ``.<dst name>.rsgan-tmp-<token>.lock``. A temporary
# whose lock file is missing or unlocked belongs to a writer that is gone (killed), and
# the next writer of the same destination removes it.


_TOKEN_BYTES = 4
"""Random bytes in a temporary's name (written as twice as many hex digits)."""


_NAME_BUDGET = 190
"""Bytes of an output's name that its temporaries' names carry: a file name holds at
most 255 bytes, and a temporary adds a dot, the mark, the token and endings such as
``.tif.gtiff.tif.ovr`` (a longer name is cut and given a hash, see :func:`_tmp_prefix`)."""


def _tmp_name(dst: Path) -> str:
    """``dst``'s name as its temporaries carry it: whole when short enough, else its
    first bytes and a hash of the whole (a valid 250-byte output name would make
    temporary names past the file system's 255, refused as "File name too long")."""
    raw = os.fsencode(dst.name)
    if len(raw) <= _NAME_BUDGET:
        return dst.name
    digest = hashlib.blake2b(raw, digest_size=5).hexdigest()
    head = raw[: _NAME_BUDGET - len(digest) - 1].decode(errors="ignore")  # whole characters
    return f"{head}~{digest}"


def _tmp_prefix(dst: Path) -> str:
    return f".{_tmp_name(dst)}{_TMP_MARK}"


def _lock_path(dst: Path, token: str) -> Path:
    return dst.parent / f"{_tmp_prefix(dst)}{token}.lock"


@contextmanager
def _writer_lock(dst: Path) -> Iterator[str]:
    """Yield a fresh temporary token whose lock file this process holds until the block
    ends (then the lock file is removed). Without ``fcntl`` (Windows) no lock is taken."""
    if fcntl is None:
        yield secrets.token_hex(_TOKEN_BYTES)
        return
    while True:
        token = secrets.token_hex(_TOKEN_BYTES)
        lock = _lock_path(dst, token)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_error(dst, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: write unlocked
            os.close(fd)
            lock.unlink(missing_ok=True)
            yield token
            return
        try:  # a sweeper may have removed the file between open and flock: start again
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield token
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def exclusive_lock(path: PathLike, holder: str = "") -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` for the block, across processes (an
    ``flock``; the file is created, ``holder`` written into it, and removed at the end).

    Args:
        path: The lock file (its folder must exist).
        holder: Who holds it, for the message of the one refused (e.g. a pid and host).

    Raises:
        BlockingIOError: another process (or another holder in this one) holds it; its
            ``filename`` is ``path`` and the file holds the other's ``holder``.
        OSError: the file cannot be created (e.g. an unwritable folder).

    Without ``fcntl`` (Windows), or on a file system without locks, nothing is locked.
    """
    path = Path(path)
    if fcntl is None:
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except PermissionError:
            # left by a killed run of another user (0644, theirs): a read-only descriptor
            # locks it as well; it is not a reason to refuse
            if not path.is_file():
                raise
            fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BlockingIOError(
                errno.EWOULDBLOCK, "locked by another process", str(path)
            ) from None
        except OSError:  # a file system without locks: go on unlocked
            os.close(fd)
            yield
            return
        try:  # the holder before us may have removed the file between our open and flock
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # read-only: the holder stays unnamed
            os.ftruncate(fd, 0)
            os.write(fd, holder.encode())
        yield
    finally:
        with contextlib.suppress(OSError):  # a folder that keeps others' files (sticky)
            path.unlink(missing_ok=True)
        os.close(fd)


def _writer_gone(lock: Path) -> tuple[bool, int | None]:
    """``(gone, fd)``: whether the writer of ``lock`` is gone, and the open, locked lock
    file to release after removing its temporaries (None when there is none)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return True, None
    except OSError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False, None
    return True, fd


def _check_no_live_writer(dst: Path) -> None:
    """Refuse a second writer of ``dst`` while another (in any process) writes it: the
    later one would do all its work and then fail as "appeared while it was being
    written" (or, with overwrite, both would run to the end and the last one win). A
    lock file that cannot be opened (another user's) says nothing and is passed over."""
    if fcntl is None:
        return
    for lock in dst.parent.glob(glob.escape(_tmp_prefix(dst)) + "*.lock"):
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RasterWriteError(
                f"{dst} is being written by another process right now (it holds "
                f"{lock.name}); wait for it to finish, or choose another output path"
            ) from None
        except OSError:  # a file system without locks
            pass
        finally:
            os.close(fd)


def remove_stale_temporaries(dst: PathLike) -> list[Path]:
    """Delete the temporaries of ``dst`` that a killed earlier writer left behind.

    Only temporaries whose writer is gone are removed: a live :func:`atomic_output` or
    :func:`atomic_output_dir` of the same destination (in any process) holds a lock on
    its own and they are kept. Without ``fcntl`` (Windows) nothing is removed.

    Args:
        dst: The final path (file or folder) whose temporaries to remove.

    Returns:
        The removed paths.
    """
    if fcntl is None:
        return []
    dst = Path(dst)
    prefix = _tmp_prefix(dst)
    token_of = re.compile(re.escape(prefix) + f"([0-9a-f]{{{2 * _TOKEN_BYTES}}})")
    groups: dict[str, list[Path]] = {}
    for path in dst.parent.glob(glob.escape(prefix) + "*"):
        match = token_of.match(path.name)
        if match:
            groups.setdefault(match.group(1), []).append(path)
    removed: list[Path] = []
    for token, paths in sorted(groups.items()):
        lock = _lock_path(dst, token)
        gone, fd = _writer_gone(lock)
        if not gone:
            continue
        try:
            for path in sorted(paths, key=lambda p: p == lock):
                _remove(path)
                removed.append(path)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


# --------------------------------------------------------------------------- write failures

_WRITE_FAILURE = re.compile(r"writ|no space|too large|disk|quota", re.IGNORECASE)
_NOT_A_FAILURE = re.compile(r"Cannot modify tag")
"""libtiff's refusal to change a tag after pixels were written: GDAL falls back to its
.aux.xml sidecar, the file itself is intact."""
_GDAL_MSG = re.compile(r"msg=['\"](.*)['\"]$")
_FULL_DISK_BYTES = 2**20
"""Free space under which a failed write is put down to a full disk."""
_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_DISK_STRERRORS = {os.strerror(code): code for code in _DISK_ERRNOS}
_DISK_ERROR_TEXT = re.compile(
    r"\(os error ("
    + "|".join(str(code) for code in _DISK_ERRNOS)
    + r")\)|("
    + "|".join(map(re.escape, _DISK_STRERRORS))
    + ")"
)
_REFUSED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR}
"""Errors of creating a file in an existing folder that mean the folder refuses it."""
_GDAL_LOGGERS = ("rasterio._env", "rasterio._err")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _LevelGate(logging.Filter):
    """Lets through only the records of ``level`` and above: what rasterio's loggers let
    through before they were lowered to INFO. It runs after every collector (a logger
    stops at the first filter that drops a record)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class _GdalFailures(logging.Filter):
    """Collects the GDAL failures rasterio logs (as INFO "GDAL signalled an error", or
    ERROR) while installed; passes every record on."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.levelno >= logging.ERROR or text.startswith("GDAL signalled an error"):
            quoted = _GDAL_MSG.search(text)
            self.messages.append(quoted.group(1) if quoted else text)
        return True  # every nested collector sees the record; _LevelGate drops it after

    @property
    def write_failures(self) -> list[str]:
        return [
            m for m in self.messages if _WRITE_FAILURE.search(m) and not _NOT_A_FAILURE.search(m)
        ]


class _WhileAny:
    """A process-wide setting held while any of several nested or concurrent blocks runs:
    ``enter()`` runs when the first starts (its result is the state the blocks see) and
    ``leave(state)`` after the last ends."""

    def __init__(self, enter: Callable[[], Any], leave: Callable[[Any], None]) -> None:
        self._enter, self._leave = enter, leave
        self._lock = threading.Lock()
        self._depth = 0
        self._state: Any = None

    @contextmanager
    def held(self) -> Iterator[Any]:
        with self._lock:
            if self._depth == 0:
                self._state = self._enter()
            self._depth += 1
            state = self._state
        try:
            yield state
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._leave(self._state)


def _loaded_libtiffs() -> list[Any]:
    """Every libtiff loaded in this process (rasterio's and pyproj's wheels each bring
    one), from ``/proc/self/maps`` (Linux); none elsewhere."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libtiff" in line}
    except OSError:
        return []
    libs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
            lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            continue
        libs.append(lib)
    return libs


def _restore_libtiff_handlers(saved: list[tuple[Any, int | None]]) -> None:
    for lib, handler in saved:
        lib.TIFFSetErrorHandler(handler)


_LIBTIFF_SILENT = _WhileAny(
    lambda: [(lib, lib.TIFFSetErrorHandler(None)) for lib in _loaded_libtiffs()],
    _restore_libtiff_handlers,
)
"""libtiff's default error handler is off while atomic outputs are written: it prints
some write failures ("_tiffWriteProc: No space left on device.") straight to stderr, once
per failed block, besides reporting them to GDAL; rsgan reports such a failure itself as
one :class:`RasterWriteError`. GDAL's own handler still receives every libtiff error."""


def _lower_rasterio_loggers() -> tuple[list[tuple[logging.Logger, int]], _LevelGate]:
    loggers = [logging.getLogger(name) for name in _GDAL_LOGGERS]
    saved = [(lg, lg.level) for lg in loggers]
    gate = _LevelGate(min(lg.getEffectiveLevel() for lg in loggers))
    for lg in loggers:
        lg.setLevel(min(lg.getEffectiveLevel(), logging.INFO))
        lg.addFilter(gate)
    return saved, gate


def _restore_rasterio_loggers(
    state: tuple[list[tuple[logging.Logger, int]], _LevelGate],
) -> None:
    for lg, level in state[0]:
        lg.removeFilter(state[1])
        lg.setLevel(level)


_RASTERIO_AT_INFO = _WhileAny(_lower_rasterio_loggers, _restore_rasterio_loggers)
"""rasterio logs GDAL's CE_Failure at INFO: its error loggers are lowered to INFO while
atomic outputs are written (state: the saved levels and the gate of the least level they
let through before)."""


@contextmanager
def _gdal_failures() -> Iterator[_GdalFailures]:
    """Collect GDAL failures logged by rasterio's error handlers while the block runs
    (GDAL only prints write failures such as a full disk; nothing is raised), and keep
    libtiff from printing them."""
    loggers = [logging.getLogger(name) for name in _GDAL_LOGGERS]
    with _RASTERIO_AT_INFO.held(), _LIBTIFF_SILENT.held():
        collector = _GdalFailures()
        for lg in loggers:
            lg.filters.insert(0, collector)  # before the gate, and any nested collector
        try:
            yield collector
        finally:
            for lg in loggers:
                lg.removeFilter(collector)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 10**5 else f"{n / 1e3:.1f} kB"


def _disk_cause(dst: Path, written: int, too_large: bool = False) -> str:
    """What most likely stopped a write to ``dst``: a full disk, the file size limit or
    an I/O error (``too_large``: the write failed with EFBIG, which a buffered writer
    such as Arrow's can raise before anything of the file is written)."""
    try:
        free = shutil.disk_usage(dst.parent).free
    except OSError:
        free = None
    if free is not None and free < _FULL_DISK_BYTES:
        return f"no space left on device ({_size(free)} free in {dst.parent})"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource is not None else -1
    limited = limit not in (-1, getattr(resource, "RLIM_INFINITY", -1))
    if limited and (too_large or written >= limit // 2):
        return f"the file size limit (ulimit -f) of {_size(limit)} was reached"
    return "the write failed (disk full, file too large or an I/O error)"


def _disk_error(exc: BaseException | str) -> tuple[int, BaseException] | None:
    """The errno of a full disk, too large a file or an exceeded quota in ``exc`` or what
    caused it, with the exception that carries it; None if there is none. Writers in
    other languages keep the errno only in their message: torch's zip writer raises a
    RuntimeError from the OSError of its Python file, safetensors (Rust) says "(os error
    28)"."""
    if isinstance(exc, str):
        found = _DISK_ERROR_TEXT.search(exc)
        return None if found is None else (_disk_errno(found), RasterWriteError(exc))
    seen: set[int] = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            return exc.errno, exc
        found = _DISK_ERROR_TEXT.search(str(exc))
        if found:
            return _disk_errno(found), exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _disk_errno(found: re.Match[str]) -> int:
    """The errno of a match of ``_DISK_ERROR_TEXT``."""
    return int(found.group(1)) if found.group(1) else _DISK_STRERRORS[found.group(2)]


def _written_bytes(tmp: Path | None) -> int:
    """Bytes in a temporary file, or in the files of a temporary folder."""
    if tmp is None or not tmp.exists():
        return 0
    if tmp.is_dir():
        return sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    return tmp.stat().st_size


def _write_error(dst: Path, exc: BaseException | str, tmp: Path | None = None) -> RasterWriteError:
    """The error for a failed write of ``dst``: its folder gone or unwritable, else a full
    disk, the file size limit or an I/O error (``exc``: what failed, for the message)."""
    parent = dst.parent
    if not parent.is_dir():
        return RasterWriteError(
            f"cannot write {dst}: its folder {parent} was removed while it was being "
            f"written ({exc}); create the folder and run again"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        return RasterWriteError(
            f"cannot write {dst}: folder {parent} became unwritable while it was being "
            f"written ({exc}); make it writable or choose another folder"
        )
    if isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS:
        # the folder refuses new files although its permissions allow them (root on a
        # read-only mount or a pseudo file system such as /proc): not a full disk
        return RasterWriteError(
            f"cannot write {dst}: folder {parent} does not accept new files "
            f"({exc.strerror}); choose another folder"
        )
    written = _written_bytes(tmp)
    found = _disk_error(exc)
    too_large = found is not None and found[0] == errno.EFBIG
    return RasterWriteError(
        f"cannot write {dst}: {_disk_cause(dst, written, too_large)}; wrote {_size(written)} "
        f"({exc}); free space or choose another folder"
    )


def _is_write_failure(exc: BaseException, dst: Path, tmp: Path, failures: _GdalFailures) -> bool:
    """Whether ``exc``, raised while ``tmp`` was written for ``dst``, comes from the write:
    an ``OSError`` of a full disk or too large a file, an error that names ``tmp``, or any
    error after GDAL logged a write failure, with the disk full, or with ``dst``'s folder
    gone or unwritable (GDAL's vector drivers raise their own kinds of errors)."""
    if isinstance(exc, RasterWriteError):
        return False  # already says which file failed (a nested atomic output)
    if _disk_error(exc) is not None:
        return True
    if failures.write_failures or tmp.name in str(exc):
        return True
    parent = dst.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return True
    try:
        return shutil.disk_usage(parent).free < _FULL_DISK_BYTES
    except OSError:
        return False


@contextmanager
def _write_failures_raised(dst: Path, tmp: Path) -> Iterator[None]:
    """Raise :class:`RasterWriteError` naming ``dst`` for a write failure in the block
    (see :func:`_is_write_failure`), including GDAL write failures rasterio only logged
    (raised as a vague ``RasterioIOError``, or not at all)."""
    with _gdal_failures() as failures:
        try:
            yield
        except RasterWriteError as exc:
            # GDAL failed earlier in the block than the file that raised (a chip before
            # the chip index): that first failure is reported, for ``dst``
            earlier = [m for m in failures.write_failures if m not in str(exc)]
            if earlier:
                raise _write_error(dst, "; ".join(dict.fromkeys(earlier)), tmp) from exc
            # an atomic output of a file in (or of) the temporary one names the temporary,
            # which is removed: name the file where it would have been
            if str(tmp) not in str(exc):
                raise
            raise RasterWriteError(str(exc).replace(str(tmp), str(dst))) from exc
        except Exception as exc:
            if _is_write_failure(exc, dst, tmp, failures):
                found = _disk_error(exc)
                detail = "; ".join(dict.fromkeys(failures.write_failures)) or (
                    found[1] if found is not None else exc
                )
                raise _write_error(dst, detail, tmp) from exc
            raise
        if failures.write_failures:
            raise _write_error(dst, "; ".join(dict.fromkeys(failures.write_failures)), tmp)


@contextmanager
def disk_errors_named(dst: PathLike) -> Iterator[None]:
    """Raise :class:`RasterWriteError` naming ``dst`` for a full disk, the file size
    limit or an exceeded quota in the block: for a file written in place (a log appended
    to), where :func:`atomic_output` does not fit."""
    try:
        yield
    except OSError as exc:
        if _disk_error(exc) is None:
            raise
        raise _write_error(Path(dst), exc, Path(dst)) from exc


def _first_broken_tiff(folder: Path) -> str | None:
    """What is wrong with the first GeoTIFF under ``folder`` that was not written whole."""
    for path in sorted(folder.rglob("*.tif")):
        problem = verify_raster(path)
        if problem:
            return f"{path.name}: {problem}"
    return None


def verify_raster(path: PathLike) -> str | None:
    """Check that a GeoTIFF was written whole: it opens, every block of every band (and
    of a per-dataset mask) was written, and every block decodes.

    Args:
        path: The file.

    Returns:
        None when the file is whole, else what is wrong.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                problem = _verify_offsets(src)
                if problem is not None:
                    return problem
                windows = [window for _, window in src.block_windows(1)]
                with_mask = any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)
            # decoding is the cost (a 4096 px scene: ~0.1 s): one handle per core, each
            # decoding every n-th block (the file is complete now; nothing else runs)
            shares = max(1, min(os.cpu_count() or 1, 4, len(windows) // 16))
            if shares == 1:
                _decode_blocks(path, windows, with_mask)
            else:
                with ThreadPoolExecutor(shares, thread_name_prefix="rsgan-verify") as pool:
                    jobs = [
                        pool.submit(_decode_blocks, path, windows[i::shares], with_mask)
                        for i in range(shares)
                    ]
                    for job in jobs:
                        job.result()
            return None
    except RasterioError as exc:
        return str(exc)


def _verify_offsets(src: DatasetReader) -> str | None:
    """Which block of ``src`` was never written (its offset is 0), if any."""
    bands = [1] if src.interleaving == Interleaving.pixel else None
    for band in bands or range(1, src.count + 1):
        for (row, col), _ in src.block_windows(band):
            offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
            if not offset or int(offset) == 0:
                return f"block ({row}, {col}) of band {band} was never written"
    return None


def _decode_blocks(path: PathLike, windows: Sequence[Window], with_mask: bool) -> None:
    """Decode the given blocks of ``path`` (and of its mask): raises when one does not.
    Runs in worker threads of :func:`verify_raster`, whose warning filter covers them."""
    with rasterio.open(path) as src:
        for window in windows:
            src.read(window=window)
            if with_mask:
                src.read_masks(1, window=window)


def _starts_with(path: Path, magics: Sequence[bytes]) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(max(len(m) for m in magics))
    except OSError:
        return False
    return any(head.startswith(m) for m in magics)


def _is_tiff(path: Path) -> bool:
    return _starts_with(path, _TIFF_MAGIC)


def _png_problem(path: Path) -> str | None:
    """What is wrong with a PNG file's chunks (cut short, a bad checksum, no end), or
    None for a PNG written whole. GDAL's PNG driver ignores a write failure at the last
    flush (a full disk, the file size limit) and its reader decodes a cut PNG without
    complaint, so the chunks are checked here."""
    data = path.read_bytes()
    pos = len(_PNG_MAGIC)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        kind = data[pos + 4 : pos + 8]
        if zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"its {kind.decode('latin-1')} chunk at byte {pos} is corrupt"
        if kind == b"IEND":
            return None
        pos = end
    return f"it ends after {len(data)} bytes, inside its data (cut short)"


def _check_written(dst: Path, tmp: Path, verify: bool) -> None:
    if not tmp.exists():
        raise RasterWriteError(f"nothing was written for {dst}; the output was not created")
    if not verify:
        return
    problem = None
    if _is_tiff(tmp):
        problem = verify_raster(tmp)
    elif _starts_with(tmp, (_PNG_MAGIC,)):
        problem = _png_problem(tmp)
    if problem is not None:
        raise _write_error(dst, f"the written file does not read back: {problem}", tmp)


def _check_free_space(dst: Path, needed_bytes: int | None) -> None:
    if needed_bytes is None:
        return
    free = shutil.disk_usage(dst.parent).free
    if free < needed_bytes:
        raise RasterWriteError(
            f"cannot write {dst}: it needs about {needed_bytes / 1e6:.1f} MB but "
            f"{dst.parent} has {free / 1e6:.1f} MB free; free space or choose another folder"
        )


@contextmanager
def atomic_output(
    dst: PathLike,
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
    suffix: str | None = None,
    verify: bool = True,
    needed_bytes: int | None = None,
) -> Iterator[Path]:
    """Write a file atomically: yield a hidden temporary path in ``dst``'s folder, and
    rename it onto ``dst`` when the block succeeds; delete it on any exception
    (KeyboardInterrupt included). A GDAL ``.aux.xml`` side file follows the temporary file.

    The checks run before any work: ``dst`` must not exist (unless ``overwrite``), must
    not be a folder, its folder must exist and be writable, and it must not be (or link
    to) any of ``inputs``. Temporaries of ``dst`` that a killed earlier run left behind
    are removed (see :func:`remove_stale_temporaries`).

    Write failures never reach ``dst``: GDAL failures that rasterio only logs (a full
    disk, the file size limit) and ``OSError`` ENOSPC / EFBIG / EDQUOT raised in the
    block become :class:`RasterWriteError`; with ``verify`` a GeoTIFF temporary is read
    back whole (every block present and decodable) before the rename.

    Args:
        dst: The final path.
        overwrite: Replace an existing ``dst``.
        inputs: Paths the output must not replace.
        suffix: Ending of the temporary name (default ``dst``'s, so GDAL picks the same
            driver from it).
        verify: Read a TIFF temporary (any name) back before the rename (about a
            tenth of the writing time, see ``docs/benchmarks.md``).
        needed_bytes: Bytes the output needs at least; refused up front when ``dst``'s
            folder has less free space.

    Yields:
        The temporary path to write to (named ``.<dst name>.rsgan-tmp-XXXX<suffix>``).

    Raises:
        OutputExistsError: ``dst`` exists and ``overwrite`` is False.
        RasterWriteError: ``dst`` is a folder, its folder is missing or not writable, it is
            an input, too little space is free, nothing was written to the temporary path,
            or the write failed.
    """
    check_local_output(dst)
    dst = Path(dst)
    if dst.is_dir():
        raise RasterWriteError(f"output {dst} is a folder; pass a file path")
    _check_destination(dst, overwrite=overwrite, inputs=inputs)
    _check_free_space(dst, needed_bytes)
    _check_no_live_writer(dst)
    remove_stale_temporaries(dst)
    ending = dst.suffix if suffix is None else suffix
    with _writer_lock(dst) as token:
        tmp = dst.parent / f"{_tmp_prefix(dst)}{token}{ending}"
        tmp_aux = tmp.with_name(tmp.name + ".aux.xml")
        try:
            with _write_failures_raised(dst, tmp):
                yield tmp
            _check_written(dst, tmp, verify)
            if dst.exists() and not overwrite:
                raise OutputExistsError(
                    f"{dst} appeared while it was being written; pass overwrite=True / "
                    "--overwrite to replace it"
                )
            os.replace(tmp, dst)
            if tmp_aux.exists():
                os.replace(tmp_aux, dst.with_name(dst.name + ".aux.xml"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            tmp_aux.unlink(missing_ok=True)
            raise


@contextmanager
def atomic_output_dir(
    dst_dir: PathLike,
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
    verify: bool = True,
) -> Iterator[Path]:
    """Build a folder atomically: yield a hidden temporary sibling folder and rename it to
    ``dst_dir`` when the block succeeds (replacing an old ``dst_dir`` with ``overwrite``);
    delete it on any exception. Temporaries a killed earlier run left are removed first.
    Write failures in the block (a full disk, the file size limit: ``OSError`` or GDAL
    failures rasterio only logs) become :class:`RasterWriteError`, as in
    :func:`atomic_output`. With ``verify`` the GeoTIFFs in the folder are read back
    before the rename (and when the block fails, to tell a failed write from other errors):
    libtiff does not always report a failed write to GDAL.

    Args:
        dst_dir: The final folder.
        overwrite: Replace an existing ``dst_dir`` (and everything in it).
        inputs: Paths the work reads; none may lie in ``dst_dir`` (replacing the folder
            would delete them).
        verify: Read every GeoTIFF written into the folder back before the rename.

    Raises:
        OutputExistsError: ``dst_dir`` exists and ``overwrite`` is False.
        RasterWriteError: ``dst_dir`` is a file, holds one of ``inputs``, its parent
            folder is missing or not writable, or a write failed.
    """
    check_local_output(dst_dir, "output folder")
    dst = Path(dst_dir)
    if dst.exists() and not dst.is_dir():
        raise RasterWriteError(f"output folder {dst} is a file; pass a folder path")
    _check_folder_inputs(dst, inputs)
    _check_destination(dst, overwrite=overwrite, inputs=())
    _check_no_live_writer(dst)
    remove_stale_temporaries(dst)
    with _writer_lock(dst) as token:
        tmp = dst.parent / f"{_tmp_prefix(dst)}{token}"
        tmp.mkdir()
        try:
            try:
                with _write_failures_raised(dst, tmp):
                    yield tmp
            except RasterWriteError as exc:
                # a GeoTIFF of the folder cut short before (libtiff did not report it):
                # the first failure, reported rather than the file that raised
                problem = _first_broken_tiff(tmp) if verify else None
                if problem:
                    raise _write_error(dst, problem, tmp) from exc
                raise
            except Exception as exc:
                problem = _first_broken_tiff(tmp) if verify else None
                if problem:
                    raise _write_error(dst, problem, tmp) from exc
                raise
            problem = _first_broken_tiff(tmp) if verify else None
            if problem:
                raise _write_error(dst, problem, tmp)
            if dst.exists():
                if not overwrite:
                    raise OutputExistsError(
                        f"{dst} appeared while it was being written; pass overwrite=True "
                        "/ --overwrite to replace it"
                    )
                old = dst.parent / f".{_tmp_name(dst)}.rsgan-old-{token}"
                os.replace(dst, old)
                os.replace(tmp, dst)
                _remove(old)
            else:
                os.replace(tmp, dst)
        except BaseException:
            _remove(tmp)
            raise


# --------------------------------------------------------------------------- quicklooks

_COLOURS = ("red", "green", "blue")
# the colour interpretation GDAL gives bands 1-3 of a 3- or 4-band 8-bit GeoTIFF written
# without PHOTOMETRIC (and of any RGB PNG or JPEG): it need not say what the bands hold
_DEFAULT_RGB = (1, 2, 3)


def _named_once(names: Sequence[Sequence[str]]) -> tuple[int, int, int] | None:
    """The 1-based positions of the one entry naming each colour, or None. Of several
    entries naming a colour, the one naming nothing else wins (PlanetScope's "blue" over
    "coastal_blue", "green" over "green_i")."""
    picks = []
    for colour in _COLOURS:
        found = [i for i, words in enumerate(names, 1) if colour in words]
        if len(found) > 1:
            found = [i for i in found if list(names[i - 1]) == [colour]]
        if len(found) != 1:
            return None
        picks.append(found[0])
    return picks[0], picks[1], picks[2]


def _colour_words(description: str | None) -> list[str]:
    """The lower-case words of a band description, without band ids (Sentinel-2's "B04",
    "B8A") and the "red" of "red edge"."""
    text = re.sub(r"\bred[\W_]*edge", "", (description or "").lower())
    return re.findall(r"[a-z]+", re.sub(r"\bb\d+[a-z]?\b", "", text))


def rgb_bands(
    descriptions: Sequence[str | None], colorinterp: Sequence[ColorInterp | str]
) -> tuple[int, int, int] | None:
    """The red, green and blue bands (1-based, in that order) that band metadata names.

    The colour interpretation decides when it names red, green and blue once each (as
    QGIS reads it), except red, green, blue on bands 1, 2, 3, which GDAL gives 3- and
    4-band 8-bit GeoTIFFs by default: there band descriptions naming the colours as words
    (Sentinel-2's ``"B04 red"``; the "red" of "red edge" does not count) win. Without such
    a colour interpretation the descriptions decide.

    Args:
        descriptions: One description per band (None where unset), e.g.
            :attr:`RasterInfo.descriptions`.
        colorinterp: One colour interpretation per band, as :class:`ColorInterp` or its
            name (``"red"``), e.g. :attr:`RasterInfo.colorinterp`.

    Returns:
        ``(red, green, blue)`` band indexes, or None where neither names each colour once.
    """
    interp = [[c.lower() if isinstance(c, str) else ColorInterp(c).name] for c in colorinterp]
    by_interp = _named_once(interp)
    by_words = _named_once([_colour_words(d) for d in descriptions])
    if by_interp is not None and (by_interp != _DEFAULT_RGB or by_words is None):
        return by_interp
    return by_words


def preview_bands(
    count: int,
    descriptions: Sequence[str | None] = (),
    colorinterp: Sequence[ColorInterp | str] = (),
    *,
    rgb: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """The bands a picture of a raster shows as red, green and blue.

    Args:
        count: Number of bands.
        descriptions: Band descriptions, as for :func:`rgb_bands`.
        colorinterp: Colour interpretation per band, as for :func:`rgb_bands`.
        rgb: 1-based ``(red, green, blue)`` bands chosen by the caller; None: those the
            metadata names (:func:`rgb_bands`), else bands 1, 2, 3, else band 1 (grey).

    Returns:
        Three 1-based band indexes, or one (grey).

    Raises:
        BandError: ``rgb`` is not three bands between 1 and ``count``.
    """
    if rgb is not None:
        if isinstance(rgb, (str, bytes)) or len(rgb) != 3:
            raise BandError(
                f"rgb={rgb!r}: pass three 1-based bands, red, green and blue, "
                "e.g. rgb=(3, 2, 1) for a blue, green, red, ... raster"
            )
        return check_bands(count, rgb)
    named = rgb_bands(descriptions, colorinterp)
    if named is not None:
        return named
    return _DEFAULT_RGB if count >= 3 else (1,)


def _to_rgb8(
    array: np.ndarray,
    stretch: tuple[float, float] | None,
    mask: np.ndarray | None,
    rgb: Sequence[int] | None = None,
) -> np.ndarray:
    """``(1 or 3, rows, cols)`` uint8 from any ``(bands, rows, cols)`` array."""
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.shape[0] < 1:
        raise BandError(f"quicklook needs a (bands, rows, cols) array, got shape {arr.shape}")
    arr = arr[[b - 1 for b in preview_bands(arr.shape[0], rgb=rgb)]]
    valid = np.isfinite(arr).all(axis=0) if np.issubdtype(arr.dtype, np.floating) else None
    if mask is not None:
        valid = mask.astype(bool) if valid is None else valid & mask.astype(bool)
    out = np.zeros(arr.shape, dtype=np.uint8)
    for b in range(arr.shape[0]):
        band = arr[b].astype(np.float64)
        pixels = band[valid] if valid is not None else band.ravel()
        if stretch is None:
            lo, hi = 0.0, 255.0
        elif pixels.size:
            lo, hi = (float(v) for v in np.percentile(pixels, stretch))
        else:
            lo, hi = 0.0, 1.0
        scaled = (band - lo) / max(hi - lo, 1e-12) * 255.0
        out[b] = np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    if valid is not None:
        out[:, ~valid] = 0
    return out


def _write_png(rgb: np.ndarray, path: PathLike, overwrite: bool) -> Path:
    dst = Path(path)
    with atomic_output(dst, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            tmp,
            "w",
            driver="PNG",
            width=rgb.shape[2],
            height=rgb.shape[1],
            count=rgb.shape[0],
            dtype="uint8",
        ) as out:
            out.write(rgb)
    return dst


def write_quicklook_png(
    array: np.ndarray,
    path: PathLike,
    *,
    stretch: tuple[float, float] | None = (2, 98),
    mask: np.ndarray | None = None,
    rgb: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an 8-bit PNG picture of an array (bands ``rgb`` as red, green and blue).

    Args:
        array: ``(bands, rows, cols)`` pixels of any numeric dtype.
        path: The PNG to write (atomically).
        stretch: Percentiles (0-100) of the valid pixels mapped to 0 and 255 per band;
            None writes values as they are, clipped to 0..255.
        mask: Boolean ``(rows, cols)`` valid mask; invalid pixels are black and left out
            of the stretch.
        rgb: 1-based ``(red, green, blue)`` bands of ``array``; None: the first 3 (one
            or two bands: band 1 in grey). An array carries no band metadata: for a
            raster's own colours pass :func:`preview_bands` of its
            :class:`RasterInfo`.
        overwrite: Replace an existing file.

    Returns:
        ``path``.

    Raises:
        BandError: ``rgb`` is not three bands of ``array``.
    """
    return _write_png(_to_rgb8(array, stretch, mask, rgb), path, overwrite)


def write_png_grid(
    arrays: Sequence[np.ndarray],
    path: PathLike,
    ncols: int,
    *,
    pad: int = 2,
    overwrite: bool = False,
) -> Path:
    """Write images side by side in a grid PNG (e.g. generated samples).

    Args:
        arrays: ``(bands, rows, cols)`` uint8 images of one shape; 1-band images are grey,
            others show their first 3 bands.
        path: The PNG to write (atomically).
        ncols: Images per grid row.
        pad: Black gap between images, in pixels.
        overwrite: Replace an existing file.
    """
    if not arrays:
        raise ConfigError("write_png_grid got no images; pass at least one")
    if ncols < 1:
        raise ConfigError(f"ncols={ncols}: pass a positive number of columns")
    shapes = {np.asarray(a).shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise ConfigError(f"grid images differ in size {sorted(shapes)}; pass images of one size")
    h, w = shapes.pop()
    tiles = []
    for a in arrays:
        rgb = _to_rgb8(np.asarray(a), None, None)
        tiles.append(np.repeat(rgb, 3, axis=0) if rgb.shape[0] == 1 else rgb)
    nrows = math.ceil(len(tiles) / ncols)
    grid = np.zeros((3, nrows * (h + pad) + pad, ncols * (w + pad) + pad), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[:, y : y + h, x : x + w] = tile
    return _write_png(grid, path, overwrite)


__all__ = [
    "IMAGE_EXTENSIONS",
    "KEEP",
    "REDACTED",
    "SECRET_PARAMETERS",
    "SIGNING_PARAMETERS",
    "BandStats",
    "PERCENTILE_SAMPLE",
    "NoValidPixelsError",
    "NotGeoreferencedWarning",
    "Normalizer",
    "RasterInfo",
    "STALE_BAND_TAGS",
    "STALE_DATASET_TAGS",
    "WindowError",
    "absolute_source",
    "atomic_output",
    "atomic_output_dir",
    "check_bands",
    "compute_band_stats",
    "copy_band_metadata",
    "copy_dataset_tags",
    "dataset_tags",
    "describe",
    "disk_errors_named",
    "exclusive_lock",
    "is_network",
    "is_virtual",
    "list_image_files",
    "open_dataset",
    "open_raster",
    "output_profile",
    "preview_bands",
    "read_masked",
    "read_valid_mask",
    "read_window",
    "redact_text",
    "redact_url",
    "remove_stale_temporaries",
    "rgb_bands",
    "same_crs",
    "source_name",
    "source_path",
    "source_stem",
    "unsigned_url",
    "verify_raster",
    "warn_if_not_georeferenced",
    "write_png_grid",
    "write_quicklook_png",
]
