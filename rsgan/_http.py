"""The HTTP status behind a failed read of a network source, and what to do about it.

GDAL reports an HTTP error in its own words, and not always with the status: an open over
``/vsicurl/`` says ``HTTP response code: 403``, ``/vsis3/`` raises an error class of the
store's code (``AccessDenied``), an archive over HTTP says the file "does not exist", and
a read that fails mid-run (a signed URL that expired after the open) says only "Read
failed". :func:`diagnose` finds the status in GDAL's errors, or else asks the server once,
and :func:`advice` says what the status means for the user. This module imports nothing
from rsgan and never raises.
"""

from __future__ import annotations

import http
import netrc
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import rasterio
import rasterio._err as gdal_errors

PROBE_TIMEOUT_S = 10.0
"""Seconds the request of :func:`probe_status` may take; a server that does not answer
within them gives no status (the error then keeps GDAL's words)."""

_STATUS_IN_MESSAGE = (
    re.compile(r"HTTP response code(?: on \S+)?: (\d{3})\b"),  # /vsicurl/ open
    re.compile(r"\bresponse_code=(\d{3})\b"),  # /vsicurl/ ranges: "Request for a-b failed ..."
    re.compile(r"\breturned error: (\d{3})\b"),  # curl's own words
)

_STORE_ERRORS: dict[str, int] = {
    "CPLE_AWSAccessDeniedError": 403,
    "CPLE_AWSInvalidCredentialsError": 403,
    "CPLE_AWSSignatureDoesNotMatchError": 403,
    "CPLE_AWSObjectNotFoundError": 404,
    "CPLE_AWSBucketNotFoundError": 404,
}
"""rasterio's classes of GDAL's object-store errors (``/vsis3/`` and its kin parse the
store's XML error code; S3 answers these codes with these statuses)."""

_CREDENTIALS = (
    "GDAL_HTTP_AUTH", "GDAL_HTTP_BEARER", "GDAL_HTTP_HEADERS", "GDAL_HTTP_HEADER_FILE",
    "GDAL_HTTP_NETRC_FILE", "GDAL_HTTP_PROXY", "GDAL_HTTPS_PROXY", "GDAL_HTTP_PROXYUSERPWD",
    "GDAL_HTTP_USERPWD",
)  # fmt: skip
"""GDAL options with which GDAL's requests differ from a plain GET of the URL (headers,
credentials, another route): with any of them set, :func:`probe_status` asks nothing, as
its answer could differ from the one GDAL got."""

_CURL_PREFIXES = ("/vsicurl/", "/vsicurl_streaming/")
_ARCHIVE_IN_PATH = re.compile(r"\.(?:zip|tar|tgz|tar\.gz|7z)(?=/)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """An HTTP status behind a failed read, and where it was found.

    Attributes:
        status: The HTTP status code (400 to 599).
        store_message: The object store's own words (``Access Denied``, ``The provided
            token has expired.``) when the status came from a ``/vsis3/``-like error;
            None when GDAL's message only restated the status or the server was asked.
    """

    status: int
    store_message: str | None = None

    def describe(self) -> str:
        """``HTTP 403 Forbidden (Access Denied): <what it means and what to do>``."""
        try:
            phrase = f" {http.HTTPStatus(self.status).phrase}"
        except ValueError:
            phrase = ""
        said = f" ({self.store_message})" if self.store_message else ""
        return f"HTTP {self.status}{phrase}{said}: {advice(self.status)}"


_ADVICE: dict[int, str] = {
    401: (
        "the server wants credentials; give them to GDAL: GDAL_HTTP_HEADERS='Authorization: "
        "Bearer ...', GDAL_HTTP_USERPWD or a ~/.netrc entry for a URL; AWS_*, AZURE_STORAGE_* "
        "or GOOGLE_APPLICATION_CREDENTIALS for /vsis3/, /vsiaz/, /vsigs/ (and on the Dask "
        "workers for rsgan batch)"
    ),
    403: (
        "access denied; a signed URL may have expired (sign it again: a new SAS token, e.g. "
        "with planetary_computer.sign, or a new presigned URL) or need credentials GDAL "
        "lacks (AWS_*, GDAL_HTTP_HEADERS; AWS_NO_SIGN_REQUEST=YES for a public bucket)"
    ),
    404: (
        "nothing at this address; the file may have moved or been deleted: check the URL "
        "(a catalog's href may be out of date)"
    ),
    410: "the file was removed from this address; find where it moved and use that URL",
    416: (
        "the file on the server is shorter than when it was opened; it was probably "
        "replaced while being read: run again"
    ),
    429: (
        "too many requests, still refused after GDAL's retries; try again later or with "
        "fewer workers (GDAL_HTTP_MAX_RETRY and GDAL_HTTP_RETRY_DELAY give more and longer "
        "retries)"
    ),
}
_SERVER_ERROR_ADVICE = (
    "the server failed, still after GDAL's retries; try again later (GDAL_HTTP_MAX_RETRY "
    "and GDAL_HTTP_RETRY_DELAY give more and longer retries)"
)
_CLIENT_ERROR_ADVICE = "the server refused the request; check the URL and the credentials"


def advice(status: int) -> str:
    """What an HTTP error status means for a raster source, and what to do."""
    if status in _ADVICE:
        return _ADVICE[status]
    return _SERVER_ERROR_ADVICE if status >= 500 else _CLIENT_ERROR_ADVICE


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during (rasterio chains GDAL's
    error stack this way), each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]


def status_in_error(exc: BaseException) -> HttpFailure | None:
    """The HTTP error status in GDAL's errors behind ``exc`` (its message or the class of
    an object-store error), or None."""
    for e in _chain(exc):
        for name, status in _STORE_ERRORS.items():
            cls = getattr(gdal_errors, name, None)
            if cls is not None and isinstance(e, cls):
                return HttpFailure(status, str(e).strip() or None)
        for pattern in _STATUS_IN_MESSAGE:
            match = pattern.search(str(e))
            if match and 400 <= int(match.group(1)) <= 599:
                return HttpFailure(int(match.group(1)))
    return None


def is_store_error(exc: BaseException) -> bool:
    """Whether GDAL's errors behind ``exc`` include an object store's (``/vsis3/``...)."""
    cls = getattr(gdal_errors, "CPLE_AWSError", None)
    return cls is not None and any(isinstance(e, cls) for e in _chain(exc))


def http_url(path: str) -> str | None:
    """The ``http(s)`` URL GDAL requests for a raster source, or None: of a URL, of
    ``/vsicurl/URL`` and ``/vsicurl?url=URL``, of the archive in
    ``/vsizip/{/vsicurl/URL}/b.tif``, ``/vsizip//vsicurl/URL.zip/b.tif`` and
    ``zip+https://host/a.zip!/b.tif``, and of the source in a ``vrt://`` name. Object
    stores (``/vsis3/``, ``s3://``...) have none: their requests are signed by GDAL."""
    if path.startswith("vrt://"):
        return http_url(path[len("vrt://") :].split("?", 1)[0])
    if "{" in path and "}" in path and path.startswith("/vsi"):
        return http_url(path[path.index("{") + 1 : path.rindex("}")])
    options = re.match(r"^/vsicurl(?:_streaming)?\?", path)
    if options:
        urls = parse_qs(path[options.end() :]).get("url")
        return http_url(urls[-1]) if urls else None
    for prefix in _CURL_PREFIXES:
        if prefix in path:
            url = path[path.index(prefix) + len(prefix) :]
            if path.index(prefix) > 0:  # /vsizip//vsicurl/https://host/a.zip/b.tif
                archive = _ARCHIVE_IN_PATH.search(url)
                url = url[: archive.end()] if archive else url
            return http_url(url)
    scheme, sep, rest = path.partition("://")
    scheme = scheme.lower()
    if sep and scheme.split("+")[-1] in ("http", "https"):
        if "+" in scheme:  # zip+https://host/a.zip!/b.tif
            rest = rest.rsplit("!", 1)[0]
        return f"{scheme.split('+')[-1]}://{rest}"
    return None


def _gdal_options() -> Mapping[str, str]:
    current = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    return {**os.environ, **{k: str(v) for k, v in current.items()}}


def _gdal_would_add_credentials(url: str, options: Mapping[str, str]) -> bool:
    """Whether GDAL's request for ``url`` carries more than the URL: a header, credentials
    or a proxy set for GDAL, or a ``~/.netrc`` entry for the host (GDAL_HTTP_NETRC)."""
    if any(options.get(name) for name in _CREDENTIALS):
        return True
    if options.get("GDAL_HTTP_NETRC", "YES").upper() in ("NO", "FALSE", "OFF", "0"):
        return False
    try:
        host = urlsplit(url).hostname or ""
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError, ValueError):  # no ~/.netrc (the usual case)
        return False


def probe_status(url: str) -> int | None:
    """The HTTP error status the server answers now to a GET of the first byte of ``url``
    (``Range: bytes=0-0``, the request GDAL starts with), or None: the server answers
    without an error, does not answer within :data:`PROBE_TIMEOUT_S`, cannot be reached,
    or GDAL's own requests would carry credentials or take a route this one would not
    (:data:`_CREDENTIALS`). The request sends the URL GDAL was given, to the host GDAL
    sent it to, and nothing else: no header, cookie or credential."""
    options = _gdal_options()
    if _gdal_would_add_credentials(url, options):
        return None
    agent = options.get("GDAL_HTTP_USERAGENT") or f"GDAL/{rasterio.__gdal_version__} (rsgan)"
    try:
        request = urllib.request.Request(url, headers={"Range": "bytes=0-0", "User-Agent": agent})
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):  # an http(s) URL only
            return None
    except urllib.error.HTTPError as exc:
        return exc.code if 400 <= exc.code <= 599 else None
    except (OSError, ValueError):  # refused, reset, timed out, TLS, a URL urllib refuses
        return None


def diagnose(path: str, exc: BaseException) -> HttpFailure | None:
    """The HTTP error behind GDAL's failure ``exc`` to open or read ``path`` (a network
    source): from GDAL's errors, or else, for an ``http(s)`` URL, from the server asked
    once (:func:`probe_status`); None when there is none to report."""
    found = status_in_error(exc)
    if found is not None:
        return found
    url = http_url(path)
    if url is None:
        return None
    try:
        status = probe_status(url)
    except Exception:  # a diagnosis must never hide the error it explains
        return None
    return None if status is None else HttpFailure(status)
