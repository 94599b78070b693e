"""Errors raised by rsgan.

Every error a user can cause is a subclass of :class:`RsganError`, which the CLI turns
into one readable line and a non-zero exit code. Each subclass also inherits the
builtin exception that matches it (``OSError``, ``ValueError``, ...), so code that
already catches those keeps working. Messages name the bad value and the fix. A message
that names a signed URL shows it without its secrets (:func:`rsgan.io.redact_url`: the
signature's value reads ``REDACTED``), so that an error can be logged or shared.
"""

from __future__ import annotations

from rsgan._redact import redact_text


class RsganError(Exception):
    """Root of every error rsgan raises on bad input or a failed operation."""

    def __init__(self, *args: object) -> None:
        # every message in one place: a signed URL in it loses its secrets
        super().__init__(*_redacted(args))


class RsganWarning(UserWarning):
    """Root of rsgan's warnings; a signed URL in the message loses its secrets, as in
    :class:`RsganError`."""

    def __init__(self, *args: object) -> None:
        super().__init__(*_redacted(args))


def _redacted(args: tuple[object, ...]) -> list[object]:
    """An exception's or warning's arguments, each text without a signed URL's secrets."""
    return [redact_text(a) if isinstance(a, str) else a for a in args]


class RasterReadError(RsganError, OSError):
    """A raster could not be opened or read (missing, not a raster, corrupt).

    Attributes:
        http_status: For a source read over the network, the HTTP error status behind
            the failure (403 for a signed URL that expired, 404 for a moved file...), when
            GDAL reported one or the server gave one when asked after GDAL failed; else None.
    """

    http_status: int | None = None


class RasterWriteError(RsganError, OSError):
    """An output raster could not be written (unwritable folder, disk full, ...)."""


class OutputExistsError(RsganError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""


class BandError(RsganError, ValueError):
    """Band indexes out of range, or band counts that do not fit together."""


class TileSpecError(RsganError, ValueError):
    """A tile size, overlap or edge policy that cannot work."""


class AOIError(RsganError, ValueError):
    """An area of interest that cannot be used (no CRS, misses every scene, unreadable)."""


class CheckpointError(RsganError, ValueError):
    """A checkpoint that is missing, corrupt, truncated or of another architecture."""


class ModelError(RsganError, ValueError):
    """A model that cannot be applied to the given data (bands, dtype, tile size)."""


class CatalogError(RsganError, ValueError):
    """A scene catalog that cannot be read or has bad rows."""


class ConfigError(RsganError, ValueError):
    """An option value that is out of range or of the wrong kind."""


class NoChipsError(ConfigError):
    """No chip of the sources passes the filters (nodata fraction, area of interest)."""


class MissingDependencyError(RsganError, ImportError):
    """An optional dependency (e.g. ``dask``) is needed but not installed."""


__all__ = [
    "AOIError",
    "BandError",
    "CatalogError",
    "CheckpointError",
    "ConfigError",
    "MissingDependencyError",
    "ModelError",
    "NoChipsError",
    "OutputExistsError",
    "RasterReadError",
    "RasterWriteError",
    "RsganError",
    "RsganWarning",
    "TileSpecError",
]
