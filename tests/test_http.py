"""rsgan._http: the HTTP status behind a failed read of a network source (pure parts; the
requests themselves are in tests/test_remote_sources.py)."""

from __future__ import annotations

import pytest

from rsgan._http import HttpFailure, advice, diagnose, http_url, probe_status, status_in_error


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("https://host/a/b.tif?sig=x", "https://host/a/b.tif?sig=x"),
        ("HTTP://host/b.tif", "http://host/b.tif"),
        ("/vsicurl/https://host:443/b.tif?sig=x", "https://host:443/b.tif?sig=x"),
        ("/vsicurl_streaming/http://host/b.tif", "http://host/b.tif"),
        ("/vsicurl?list_dir=no&url=https%3A%2F%2Fhost%2Fb.tif", "https://host/b.tif"),
        ("/vsizip/{/vsicurl/https://host/a.zip?sig=x}/z/b.tif", "https://host/a.zip?sig=x"),
        ("/vsizip//vsicurl/https://host/a.zip/z/b.tif", "https://host/a.zip"),
        ("zip+https://host/a.zip!/b.tif", "https://host/a.zip"),
        ("vrt://https://host/b.tif?bands=1", "https://host/b.tif"),
        ("vrt:///vsicurl/https://host/b.tif?bands=1", "https://host/b.tif"),
        ("/vsis3/bucket/b.tif", None),  # signed by GDAL: no plain URL
        ("s3://bucket/b.tif", None),
        ("/data/b.tif", None),
        ("file:///data/b.tif", None),
    ],
)
def test_the_url_gdal_requests(path: str, url: str | None) -> None:
    assert http_url(path) == url


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("HTTP response code: 403", 403),
        ("HTTP response code on https://host:443/b.tif: 404", 404),  # not the port
        ("Request for 512-1023 failed with response_code=416", 416),
        ("The requested URL returned error: 401", 401),
        ("HTTP response code: 0", None),  # no answer at all
        ("HTTP response code: 200", None),
        ("Read failed. See previous exception for details.", None),
    ],
)
def test_the_status_in_gdals_message(message: str, status: int | None) -> None:
    found = status_in_error(OSError(message))
    assert (found.status if found else None) == status


def test_the_status_in_a_chained_error() -> None:
    try:
        try:
            raise OSError("HTTP response code: 403")
        except OSError as inner:
            raise RuntimeError("Read failed") from inner
    except RuntimeError as outer:
        assert status_in_error(outer) == HttpFailure(403)


def test_every_status_gets_advice() -> None:
    assert "expired" in advice(403) and "moved" in advice(404)
    assert "later" in advice(503) and "later" in advice(599)
    assert advice(418) == "the server refused the request; check the URL and the credentials"
    assert HttpFailure(499).describe().startswith("HTTP 499: ")  # no standard phrase


def test_a_url_urllib_refuses_gets_no_status_and_no_exception() -> None:
    """An unclosed IPv6 bracket: urllib raises ValueError; the diagnosis stays quiet."""
    assert probe_status("https://[host/d/a.tif") is None
    assert diagnose("https://[host/d/a.tif", OSError("not recognized")) is None
