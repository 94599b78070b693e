"""Properties of the helpers that name, identify and fill sources (hypothesis, ``ci`` profile).

- ``source_name`` / ``source_stem`` / ``source_path``: the file name of a source however it
  is written (local paths, URLs with queries, fragments, ports and userinfo, ``/vsi``
  chains, ``vrt://`` names, archive URLs), never a traceback.
- ``same_source``: the same file named two ways is the same; two files, or two queries
  without a signature, never are (a false "same" makes a catalog rerun skip a scene that
  should be redone).
- ``same_crs``: an axis-order difference only is the same CRS; another datum, projection
  or unit never is.
- ``io.absolute_source``: what an augment index, a chip index or a catalog manifest stores
  names the same file from any folder.
- the catalog's rerun plan: a finished scene is skipped iff it is the same source and its
  output is verified; an output rsgan did not write is never replaced without overwrite.
- ``fill_nodata``: valid pixels unchanged, the fill within the valid pixels' range, the
  same fill in any two tiles on the model's 4 px grid; ``_upsample_rows`` is bilinear.

Each property counts the examples it ran through the ``tally`` fixture.
"""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyproj import CRS as ProjCRS
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_system import Cartesian2DCS
from rasterio.crs import CRS

from rsgan.io import (
    REDACTED,
    SECRET_PARAMETERS,
    absolute_source,
    is_network,
    redact_text,
    redact_url,
    same_crs,
    same_source,
    source_name,
    source_path,
    source_stem,
    unsigned_url,
)
from rsgan.pipelines.catalog import (
    Scene,
    SceneResult,
    _manifest_frame,
    _plan,
    output_path,
    sha256_file,
)
from rsgan.pipelines.translate import FILL_REACH, _upsample_rows, fill_nodata

# function-scoped fixtures (tally, tmp_path) are shared by a test's examples on purpose; a
# property counts an example when it ran to the end (hypothesis rejects some midway)
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# --------------------------------------------------------------------------- names

NAME = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_. -]{0,10}\.(tif|TIF|jp2|vrt)", fullmatch=True)
SEGMENT = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
QUERY = st.lists(
    st.tuples(st.sampled_from(["sig", "st", "sr", "bands", "x-id", "a", "Expires"]), SEGMENT),
    max_size=3,
).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))
HOST = st.tuples(
    st.sampled_from(["", "user@", "user:pw@"]),
    st.sampled_from(["host", "data.example.com", "127.0.0.1", "[::1]"]),
    st.sampled_from(["", ":8080", ":443"]),
).map("".join)


@st.composite
def url_of(draw: st.DrawFn, name: str) -> str:
    """An http(s) URL whose path ends in ``name`` (percent-encoded), maybe with a query
    and a fragment."""
    folders = draw(st.lists(SEGMENT, max_size=3))
    url = f"{draw(st.sampled_from(['https', 'http', 'HTTPS']))}://{draw(HOST)}/"
    url += "".join(f"{f}/" for f in folders) + quote(name)
    query = draw(QUERY)
    url += f"?{query}" if query else draw(st.sampled_from(["", "?"]))
    return url + draw(st.sampled_from(["", "#frag", "#a/b.tif"]))


@st.composite
def named_source(draw: st.DrawFn) -> tuple[str, str]:
    """``(source, expected file name)``: one file written one of many ways."""
    name = draw(NAME)
    encoded = quote(name)  # a URL's path keeps its percent-encoding
    url = draw(url_of(name))
    zip_url = draw(url_of("scenes.zip"))
    local = draw(
        st.sampled_from([name, f"./{name}", f"../d/{name}", f"~/d/{name}", f"/abs/d/{name}"])
    )
    forms = [
        (local, name),
        (url, encoded),
        (f"/vsicurl/{url}", encoded),
        (f"/vsis3/bucket/d/{name}", name),
        (f"s3://bucket/d/{name}", name),
        (f"/vsizip//vsicurl/{zip_url.split('?')[0].split('#')[0]}/{name}", name),
        (f"/vsizip/{{/vsicurl/{zip_url}}}/{name}", name),
        (f"/vsizip/scenes.zip/{name}", name),
        (f"zip+{zip_url.split('#')[0]}!/{name}", name),
        (f"zip://scenes.zip!/{name}", name),
        (f"/vsicurl?list_dir=no&url={quote(url, safe='')}", encoded),
        (f"vrt://{local}", name),
        (f"vrt://{local}?bands=1,2", name),
        (f"vrt:///vsicurl/{url.split('?')[0].split('#')[0]}?bands=1", encoded),
        (f"vrt://vrt://{local}?bands=1", name),
    ]
    return draw(st.sampled_from(forms))


@FUZZ
@given(case=named_source())
def test_source_name_is_the_file_name_however_the_source_is_written(case, tally) -> None:
    source, name = case
    assert source_name(source) == name, source
    assert source_stem(source) == PurePosixPath(name).stem
    opened = source_path(source)
    if "://" in source or source.startswith("/vsi"):
        assert opened == source  # as given: pathlib would fold the // of a URL
    else:
        assert opened == Path(source)
    tally.add("source_name / source_stem / source_path", "a file named many ways")


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.lists(
            st.sampled_from(
                ["https://", "https://[", "vrt://", "/vsizip/", "/vsicurl/", "{", "}", "?", "#", "!",
                 "[", "]", "a.tif", "/", "\\", "..", "~", "%2F", "zip+", "url=", "&", ":"]
            ),
            max_size=8,
        ).map("".join),
    )
)  # fmt: skip
def test_source_name_of_any_text_is_a_plain_name_or_empty(text, tally) -> None:
    """Never a traceback (``https://[host/a.tif`` raised ValueError and stopped a catalog),
    and never a name with a ``/`` (which would put an output in another folder)."""
    for name in (source_name(text), source_stem(text)):
        assert isinstance(name, str) and "/" not in name
    assert same_source(text, text)
    tally.add("source_name / source_stem", "fuzzed text")


def test_a_url_that_urlsplit_refuses_is_a_failed_row_not_a_traceback(tmp_path, tally) -> None:
    """Regression: a catalog row ``https://[host/a.tif`` (an unclosed IPv6 bracket) raised
    urllib's ValueError from source_stem and read_catalog stopped; opening it raised
    rasterio's ValueError past RasterReadError."""
    from rsgan.errors import RasterReadError
    from rsgan.io import open_raster
    from rsgan.pipelines.catalog import read_catalog

    tally.add("read_catalog / open_raster", "URL urlsplit refuses", 2)
    bad = "https://[host/d/a.tif"
    assert source_name(bad) == "a.tif" and not same_source(bad, "https://[host/d/b.tif")
    catalog = tmp_path / "c.csv"
    catalog.write_text(f"path\n{bad}\n")
    assert [s.name for s in read_catalog(catalog)] == ["a"]
    with pytest.raises(RasterReadError, match=r"cannot read https://\[host/d/a.tif"):
        with open_raster(bad):
            pass


def test_source_name_of_archive_members_and_curl_options() -> None:
    """Regression: the file inside a signed zip named the zip (``a.zip``), the url of
    ``/vsicurl?url=`` named ``vsicurl``, and rasterio's ``zip://a.zip!b.tif`` named
    ``a.zip!b.tif``: scenes of one archive all got one output name."""
    assert source_name("/vsizip/{/vsicurl/https://h/a.zip?sig=x}/d/b.tif") == "b.tif"
    assert source_name("zip+https://h/a.zip?sig=1!/b.tif") == "b.tif"
    assert source_name("zip://data/files.zip!a.tif") == "a.tif"
    assert source_stem("/vsicurl?list_dir=no&url=https%3A%2F%2Fh%2Fd%2Fc.tif") == "c"


# --------------------------------------------------------------------------- same_source

AZURE = ["st=2024-01-01T00%3A00Z", "se=2024-01-02T00%3A00Z", "sp=rl", "sv=2021-06-08",
         "sr=c", "skoid=1f2e", "sktid=72f9", "skt=2024", "ske=2024", "sks=b", "skv=2021"]  # fmt: skip
AMZ = ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Credential=AKIA%2F20240101",
       "X-Amz-Date=20240101T000000Z", "X-Amz-Expires=3600", "X-Amz-SignedHeaders=host",
       "X-Amz-Security-Token=tok"]  # fmt: skip
GOOG = ["X-Goog-Algorithm=GOOG4-RSA-SHA256", "X-Goog-Credential=sa%40p", "X-Goog-Date=2024",
        "X-Goog-Expires=900", "X-Goog-SignedHeaders=host"]  # fmt: skip


@st.composite
def signature(draw: st.DrawFn, scheme: str) -> list[str]:
    """The parameters of one signing of a URL under ``scheme``."""
    sig = draw(SEGMENT)
    if scheme == "azure":
        return [*draw(st.lists(st.sampled_from(AZURE), unique=True)), f"sig={sig}"]
    if scheme == "s3v4":
        return [*draw(st.lists(st.sampled_from(AMZ), unique=True)), f"X-Amz-Signature={sig}"]
    if scheme == "gcsv4":
        return [*draw(st.lists(st.sampled_from(GOOG), unique=True)), f"X-Goog-Signature={sig}"]
    stamp = draw(st.integers(0, 2**31))
    if scheme == "s3v2":
        return ["AWSAccessKeyId=AKIA", f"Expires={stamp}", f"Signature={sig}"]
    return [f"Expires={stamp}", f"Signature={sig}", "Key-Pair-Id=K2"]  # CloudFront


SCHEMES = st.sampled_from(["azure", "s3v4", "gcsv4", "s3v2", "cloudfront"])
DATA_QUERY = st.lists(st.sampled_from(["versionId=3", "bands=1", "page=2", "x-id=Get"]))


def _signed(base: str, data: list[str], signing: list[str], order: int) -> str:
    params = list(data)
    for i, p in enumerate(signing):  # interleave the signature with the data's parameters
        params.insert(min(len(params), (order + i) % (len(params) + 1)), p)
    return base + ("?" + "&".join(params) if params else "")


@FUZZ
@given(
    path=st.lists(SEGMENT, min_size=1, max_size=3).map("/".join),
    scheme=SCHEMES,
    data=st.data(),
    curl=st.booleans(),
)
def test_a_url_signed_anew_is_the_same_source(path, scheme, data, curl, tally) -> None:
    base = ("/vsicurl/" if curl else "") + f"https://acct.blob.core.windows.net/{path}.tif"
    query = data.draw(DATA_QUERY)
    a = _signed(base, query, data.draw(signature(scheme)), data.draw(st.integers(0, 9)))
    b = _signed(base, query, data.draw(signature(scheme)), data.draw(st.integers(0, 9)))
    assert same_source(a, b) and same_source(b, a), (a, b)
    tally.add("same_source", "URL signed anew")


# keys of signed URLs, and others, in queries that carry no signature
UNSIGNED = st.lists(
    st.tuples(
        st.sampled_from(["st", "se", "sp", "sv", "sr", "si", "Expires", "policy",
                         "Key-Pair-Id", "X-Amz-Date", "x-goog-date", "bands", "t"]),
        SEGMENT,
    ),
    max_size=4,
).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))  # fmt: skip


@FUZZ
@given(q1=UNSIGNED, q2=UNSIGNED, data=st.data())
def test_two_unsigned_queries_are_never_the_same_source(q1, q2, data, tally) -> None:
    """Regression: parameters named like a SAS token's (``st``, ``se``, ``sr``...) or
    ``Expires`` were left out of any URL, signed or not: ``export.tif?st=2020`` and
    ``export.tif?st=2021`` (a time range) were one scene and a rerun skipped the second."""
    assume(q1 != q2)
    a, b = (f"https://api.example.com/export.tif{'?' if q else ''}{q}" for q in (q1, q2))
    prefix = data.draw(st.sampled_from(["", "/vsicurl/"]))
    assert not same_source(prefix + a, prefix + b), (a, b)
    tally.add("same_source", "two unsigned queries")


@FUZZ
@given(
    names=st.lists(NAME, min_size=2, max_size=2, unique=True),
    scheme=SCHEMES,
    data=st.data(),
    form=st.sampled_from(
        ["https://h/{d}/{n}?{q}", "/vsicurl/https://h/{d}/{n}?{q}",
         "/vsizip/{{/vsicurl/https://h/{d}/a.zip?{q}}}/{n}", "zip+https://h/{d}/a.zip?{q}!/{n}",
         "vrt:///vsicurl/https://h/{d}/{n}?{q}", "https://h/{d}/{n}?{q}#frag"]
    ),
)  # fmt: skip
def test_two_files_are_never_the_same_source(names, scheme, data, form, tally) -> None:
    """Regression: in ``/vsizip/{/vsicurl/https://h/a.zip?sig=x}/b.tif`` everything after
    ``sig=`` (the member's name too) was taken for the signature: every file of a signed
    zip was the same source."""
    folder = data.draw(SEGMENT)
    q1, q2 = ("&".join(data.draw(signature(scheme))) for _ in range(2))
    a = form.format(d=folder, n=quote(names[0]), q=q1)
    b = form.format(d=folder, n=quote(names[1]), q=q2)
    assert not same_source(a, b) and not same_source(b, a), (a, b)
    tally.add("same_source", "two files, signed or not")


# --------------------------------------------------------------------------- secrets

# a secret value: "~Zz" never occurs in a path or parameter the strategies draw, so every
# occurrence in a name is the secret's own
SECRET_VALUE = st.from_regex(r"~Zz[A-Za-z0-9._~-]{1,8}(%2B|%2F|%3D|\+|/|=)?[A-Za-z0-9]{0,3}",
                             fullmatch=True)  # fmt: skip


@st.composite
def secret_signature(draw: st.DrawFn, scheme: str) -> tuple[list[str], list[str]]:
    """``(parameters, secret values)`` of one signing of a URL under ``scheme``: every
    value that grants access or names the key that signed is a drawn secret."""
    secrets = [f"{draw(SECRET_VALUE)}{i}" for i in range(4)]  # unique: the index ends them
    if scheme == "azure":
        params = [*draw(st.lists(st.sampled_from(AZURE), unique=True)), f"sig={secrets[0]}"]
        return params, secrets[:1]
    if scheme == "s3v4":
        params = [*draw(st.lists(st.sampled_from(AMZ[:1] + AMZ[2:5]), unique=True)),
                  f"X-Amz-Credential={secrets[0]}", f"X-Amz-Security-Token={secrets[1]}",
                  f"X-Amz-Signature={secrets[2]}"]  # fmt: skip
        return params, secrets[:3]
    if scheme == "gcsv4":
        params = [*draw(st.lists(st.sampled_from(GOOG[:1] + GOOG[2:]), unique=True)),
                  f"X-Goog-Credential={secrets[0]}", f"X-Goog-Signature={secrets[1]}"]  # fmt: skip
        return params, secrets[:2]
    if scheme == "s3v2":
        return ([f"AWSAccessKeyId={secrets[0]}", "Expires=1700000000",
                 f"Signature={secrets[1]}"], secrets[:2])  # fmt: skip
    if scheme == "cloudfront":
        return ([f"Policy={secrets[0]}", f"Signature={secrets[1]}",
                 f"Key-Pair-Id={secrets[2]}"], secrets[:3])  # fmt: skip
    key = draw(st.sampled_from(["token", "access_token", "api_key", "apikey", "TOKEN"]))
    return [f"{key}={secrets[0]}"], secrets[:1]


SECRET_FORMS = st.sampled_from(
    ["https://h/{d}/{n}?{q}", "/vsicurl/https://h/{d}/{n}?{q}",
     "/vsicurl_streaming/https://h/{d}/{n}?{q}", "https://h/{d}/{n}?{q}#frag",
     "/vsizip/{{/vsicurl/https://h/{d}/a.zip?{q}}}/{n}", "zip+https://h/{d}/a.zip?{q}!/{n}",
     "vrt:///vsicurl/https://h/{d}/{n}?{q}", "vrt:///vsicurl/https://h/{d}/{n}?{q}&bands=1",
     "/vsicurl?list_dir=no&url={u}&use_head=no"]
)  # fmt: skip


@FUZZ
@given(
    name=NAME,
    scheme=st.sampled_from(["azure", "s3v4", "gcsv4", "s3v2", "cloudfront", "token"]),
    form=SECRET_FORMS,
    data=st.data(),
)
def test_a_signed_name_is_shown_without_its_secrets_and_otherwise_as_given(
    name, scheme, form, data, tally
) -> None:
    """``redact_url``: every secret value of a signed URL becomes ``REDACTED``, however the
    URL is wrapped (``/vsicurl/``, percent-encoded in ``/vsicurl?url=``, a ``/vsizip/{...}``
    chain, ``zip+https://``, ``vrt://``); nothing else changes; twice is once; in a message
    no secret is left either. ``unsigned_url`` (what manifests and STAC Items keep) holds no
    secret and is the same source as the name signed anew."""
    folder = data.draw(SEGMENT)
    query = data.draw(DATA_QUERY)
    params, secrets = data.draw(secret_signature(scheme))
    order = data.draw(st.integers(0, 9))
    q = _signed("", query, params, order)[1:]
    url = f"https://h/{folder}/{quote(name)}?{q}"
    text = form.format(d=folder, n=quote(name), q=q, u=quote(url, safe=""))
    encoded = "{u}" in form
    shown = redact_url(text)
    expected = text
    for secret in secrets:
        expected = expected.replace(quote(secret, safe="") if encoded else secret, REDACTED)
    assert shown == expected, (text, shown)
    assert redact_url(shown) == shown

    def said(name: str) -> str:
        return f"cannot read {name}: HTTP 403 ({name!r}). GetFileSize({name})=0 [{name}]"

    message = redact_text(said(text))
    assert message == said(expected), (said(text), message)
    stored = unsigned_url(text)
    for secret in secrets:
        for out in (shown, message, stored):
            assert secret not in out and quote(secret, safe="") not in out, (text, out)
    params2, _ = data.draw(secret_signature(scheme))
    q2 = _signed("", query, params2, data.draw(st.integers(0, 9)))[1:]
    url2 = f"https://h/{folder}/{quote(name)}?{q2}"
    again = form.format(d=folder, n=quote(name), q=q2, u=quote(url2, safe=""))
    assert same_source(stored, again) and same_source(shown, again), (stored, again)
    assert unsigned_url(stored) == stored
    tally.add("redact_url", "signed names")


@FUZZ
@given(text=st.text(max_size=60) | named_source().map(lambda pair: pair[0]))
def test_a_name_without_secrets_is_shown_as_given(text, tally) -> None:
    """``redact_url``, ``redact_text`` and ``unsigned_url`` never change a name or message
    that holds no secret parameter or password (any text, and sources of every form)."""
    lowered = text.lower()
    assume(not any(key in lowered for key in SECRET_PARAMETERS) and "@" not in text)
    assert redact_url(text) == text and redact_text(text) == text
    assert unsigned_url(text) == text
    tally.add("redact_url", "names without secrets")


@pytest.mark.parametrize(
    ("name", "shown", "stored"),
    [
        ("https://a.blob.core.windows.net/c/x.tif?st=1&se=2&sp=r&sv=3&sr=b&sig=S%2Bx%3D",
         "https://a.blob.core.windows.net/c/x.tif?st=1&se=2&sp=r&sv=3&sr=b&sig=REDACTED",
         "https://a.blob.core.windows.net/c/x.tif"),
        ("/vsizip/{/vsicurl/https://h/a.zip?sig=S}/b.tif",
         "/vsizip/{/vsicurl/https://h/a.zip?sig=REDACTED}/b.tif",
         "/vsizip/{/vsicurl/https://h/a.zip}/b.tif"),
        ("zip+https://h/a.zip?X-Amz-Credential=K&X-Amz-Signature=S!/b.tif",
         "zip+https://h/a.zip?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED!/b.tif",
         "zip+https://h/a.zip!/b.tif"),
        ("/vsicurl?url=https%3A%2F%2Fh%2Fa.tif%3Fsig%3DS%26bands%3D1&list_dir=no",
         "/vsicurl?url=https%3A%2F%2Fh%2Fa.tif%3Fsig%3DREDACTED%26bands%3D1&list_dir=no",
         "/vsicurl?url=https%3A%2F%2Fh%2Fa.tif%3Fbands%3D1&list_dir=no"),
        ("https://user:pw@h/a.tif", "https://user:REDACTED@h/a.tif",
         "https://user:REDACTED@h/a.tif"),
        ("https://h/a.tif?policy=p&page=2", "https://h/a.tif?policy=p&page=2",
         "https://h/a.tif?policy=p&page=2"),  # no signature: policy= selects data
        ("https://h/a.tif?sig=", "https://h/a.tif?sig=", "https://h/a.tif"),
        ("https://h/{x}/a!b.tif?sig=S", "https://h/{x}/a!b.tif?sig=REDACTED",
         "https://h/{x}/a!b.tif"),  # braces and ! in a plain URL's path
        ("/vsis3/bucket/a.tif", "/vsis3/bucket/a.tif", "/vsis3/bucket/a.tif"),
    ],
)  # fmt: skip
def test_redact_url_and_unsigned_url_examples(name: str, shown: str, stored: str) -> None:
    assert redact_url(name) == shown and unsigned_url(name) == stored


def test_the_same_local_file_named_two_ways_is_the_same_source(
    tmp_path, monkeypatch, tally
) -> None:
    """Links, ``..``, ``./``, a relative path and a hard link name one file; another file
    of the same name in another folder, or its copy, is another source."""
    data = tmp_path / "data"
    (data / "scenes").mkdir(parents=True)
    scene = data / "scenes" / "a.tif"
    scene.write_bytes(b"x")
    (tmp_path / "link").symlink_to(data)
    os.link(scene, data / "hard.tif")
    (tmp_path / "other" / "scenes").mkdir(parents=True)
    (tmp_path / "other" / "scenes" / "a.tif").write_bytes(b"x")
    (data / "scenes" / "copy.tif").write_bytes(b"x")
    monkeypatch.chdir(data)
    same = [str(scene), "scenes/a.tif", "./scenes/a.tif", "scenes/../scenes/a.tif",
            str(tmp_path / "link" / "scenes" / "a.tif"), "hard.tif", Path("scenes/a.tif")]  # fmt: skip
    other = [str(tmp_path / "other" / "scenes" / "a.tif"), "scenes/copy.tif", "scenes\\a.tif",
             "scenes/missing/../a.tif.bak", f"file://{scene}", "scenes/a.tif?sig=x"]  # fmt: skip
    for a in same:
        for b in same:
            assert same_source(a, b), (a, b)
        for b in other:
            assert not same_source(a, b) and not same_source(b, a), (a, b)
    tally.add("same_source", "local file named many ways", len(same) * (len(same) + len(other)))


def test_a_symlink_loop_or_a_nul_byte_is_another_source_not_a_traceback(
    tmp_path, monkeypatch, tally
) -> None:
    """Regression: a scene whose folder became a symlink loop between two runs stopped the
    catalog rerun with pathlib's RuntimeError (``Symlink loop``), and a name with a NUL
    byte raised ValueError, from same_source."""
    monkeypatch.chdir(tmp_path)
    Path("a").symlink_to("b")
    Path("b").symlink_to("a")
    assert same_source("a/x.tif", "a/x.tif") and not same_source("a/x.tif", "b/x.tif")
    assert same_source("x\x00.tif", "x\x00.tif") and not same_source("x\x00.tif", "y\x00.tif")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = output_path(out_dir, "x")
    out.write_bytes(b"translated")
    source = str(tmp_path / "a" / "x.tif")
    row = SceneResult("x", source, str(out), "done", sha256=sha256_file(out), seconds=1.0)
    rows, _ = _plan([Scene("x", source, "row 1")], out_dir, _manifest_frame([row]), False)
    assert [r.status for r in rows] == ["skipped"]
    tally.add("same_source", "symlink loop, NUL byte", 5)


# --------------------------------------------------------------------------- same_crs


def _east_first(code: int) -> CRS:
    """EPSG ``code`` (a projected CRS whose EPSG axes are northing, easting) written with
    easting first, as an ESRI ``.prj`` or a PROJ string gives it."""
    proj = ProjCRS.from_epsg(code)
    swapped = ProjectedCRS(
        conversion=proj.coordinate_operation,
        geodetic_crs=proj.geodetic_crs,
        cartesian_cs=Cartesian2DCS(),
        name=proj.name,
    )
    return CRS.from_wkt(swapped.to_wkt())


# pairwise distinct: another datum, ellipsoid, projection, zone or unit
DISTINCT = [4326, 4269, 4258, 4283, 32633, 3006, 31467, 31468, 2193, 27700, 3857, 32614,
            26914, 2056, 21781, 5070, 6350, 2263, 3844, 32634]  # fmt: skip
NORTH_FIRST = [3006, 31467, 31468, 2193, 3844]  # projected CRSs with (northing, easting) axes


def _ways(code: int) -> list[CRS]:
    """One CRS written several ways: its code, its WKT, its ESRI WKT (easting first), and
    for geographic / northing-first CRSs the other axis order."""
    crs = CRS.from_epsg(code)
    ways = [
        crs,
        CRS.from_wkt(crs.to_wkt()),
        CRS.from_wkt(ProjCRS.from_epsg(code).to_wkt("WKT1_ESRI")),
    ]
    if code == 4326:
        ways.append(CRS.from_user_input("OGC:CRS84"))
    if code in NORTH_FIRST:
        ways.append(_east_first(code))
    return ways


@FUZZ
@given(code=st.sampled_from(DISTINCT), data=st.data())
def test_a_crs_written_another_way_is_the_same_crs(code, data, tally) -> None:
    """Regression: EPSG:3006 (northing, easting) and SWEREF99 TM written easting first
    (an ESRI ``.prj``: a mask exported from ArcGIS) were different CRSs and augment
    refused the pair; pyproj's ignore_axis_order covers geographic CRSs only."""
    ways = _ways(code)
    a, b = data.draw(st.sampled_from(ways)), data.draw(st.sampled_from(ways))
    assert same_crs(a, b) and same_crs(b, a), (code, a, b)
    tally.add("same_crs", "one CRS written two ways")


@FUZZ
@given(
    codes=st.lists(st.sampled_from(DISTINCT), min_size=2, max_size=2, unique=True), data=st.data()
)
def test_two_crss_are_never_the_same_crs(codes, data, tally) -> None:
    a = data.draw(st.sampled_from(_ways(codes[0])))
    b = data.draw(st.sampled_from(_ways(codes[1])))
    assert not same_crs(a, b) and not same_crs(b, a), codes
    assert not same_crs(a, None) and not same_crs(None, b) and same_crs(None, None)
    tally.add("same_crs", "two CRSs (datum, projection, unit)")


def test_units_and_towgs84_make_another_crs() -> None:
    utm = CRS.from_epsg(32614)
    assert not same_crs(utm, CRS.from_proj4("+proj=utm +zone=14 +datum=WGS84 +units=us-ft"))
    assert not same_crs(utm, CRS.from_proj4("+proj=utm +zone=14 +ellps=GRS80 +units=m"))
    assert same_crs(utm, CRS.from_proj4("+proj=utm +zone=14 +datum=WGS84 +units=m"))
    assert not same_crs(CRS.from_epsg(4326), CRS.from_proj4("+proj=longlat +ellps=GRS80"))


# --------------------------------------------------------------------------- io.absolute_source


@FUZZ
@given(
    name=NAME,
    form=st.sampled_from(
        ["{f}", "./{f}", "d/../{f}", "vrt://{f}", "vrt://{f}?bands=1", "vrt://vrt://{f}?bands=1",
         "/vsizip/s.zip/{f}", "/vsizip/{{s.zip}}/{f}", "vrt:///vsizip/s.zip/{f}?bands=1",
         "zip://s.zip!/{f}", "/vsitar/d/s.tar/{f}", "https://h/{f}", "/vsicurl/https://h/{f}",
         "/vsis3/b/{f}", "/vsizip//vsicurl/https://h/s.zip/{f}", "zip+file://s.zip!/{f}",
         "/vsigzip/d/{f}", "/vsizip//vsigzip/s.zip.gz/{f}", "zip+https://h/s.zip!/{f}"]
    ),
)  # fmt: skip
def test_absolute_names_the_same_file_from_any_folder(
    name, form, tmp_path, monkeypatch, tally
) -> None:
    """What an index or manifest stores does not depend on the working folder: made absolute
    in one folder, it is unchanged when made absolute again from another."""
    monkeypatch.chdir(tmp_path)
    stored = absolute_source(form.format(f=name))
    if not is_network(stored):  # a local file
        assert str(tmp_path) in stored, stored  # the folder it was made absolute in
    monkeypatch.chdir("/")
    assert absolute_source(stored) == stored, stored
    assert source_name(stored) == source_name(form.format(f=name))
    tally.add("io.absolute_source", "a source written many ways")


def test_absolute_makes_a_relative_archive_readable_from_another_folder(
    tmp_path, monkeypatch
) -> None:
    """Regression: ``/vsizip/s.zip/a.tif`` (and ``zip://s.zip!/a.tif``) went into the
    augment index as given, relative to the folder augment ran in: training from another
    folder could not open the originals."""
    monkeypatch.chdir(tmp_path)
    with rasterio.open("a.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:32614", transform=Affine(1, 0, 0, 0, -1, 0)) as dst:  # fmt: skip
        dst.write(np.arange(16, dtype=np.uint8).reshape(1, 4, 4))
    with zipfile.ZipFile("s.zip", "w") as archive:
        archive.write("a.tif")
    with open("a.tif", "rb") as raw, gzip.open("a.tif.gz", "wb") as packed:
        packed.write(raw.read())
    names = ["/vsizip/s.zip/a.tif", "zip://s.zip!/a.tif", "/vsizip/{s.zip}/a.tif",
             "vrt:///vsizip/s.zip/a.tif?bands=1", "zip+file://s.zip!/a.tif",
             "/vsigzip/a.tif.gz"]  # fmt: skip
    stored = [absolute_source(n) for n in names]
    monkeypatch.chdir("/")
    # made absolute against a folder other than the working one (a catalog's)
    stored += [absolute_source(n, base=tmp_path) for n in names]
    assert all(str(tmp_path) in text for text in stored), stored
    for text in stored:
        with rasterio.open(text) as src:
            assert src.read(1)[3, 3] == 15, text


# --------------------------------------------------------------------------- catalog rerun plan


@FUZZ
@given(
    exists=st.booleans(),
    earlier=st.sampled_from([None, "done", "skipped", "pending", "failed"]),
    source=st.sampled_from(["same", "same, named another way", "another file", "re-signed",
                            "another query"]),
    checksum=st.sampled_from(["right", "wrong", "none"]),
    item=st.sampled_from(["right", "wrong", "none"]),
    overwrite=st.booleans(),
)  # fmt: skip
def test_rerun_plan_skips_exactly_the_verified_same_scenes(
    exists, earlier, source, checksum, item, overwrite, tmp_path, tally
) -> None:
    """A finished scene is skipped iff the catalog gives the same source (named alike or
    not) and the output is verified (the manifest's SHA-256, or the STAC Item's checksum
    of a pending row); an output no earlier run wrote is never replaced without
    overwrite."""
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    for p in out_dir.iterdir():
        p.unlink()
    (tmp_path / "scenes").mkdir(exist_ok=True)
    (tmp_path / "scenes" / "a.tif").write_bytes(b"a")
    (tmp_path / "other").mkdir(exist_ok=True)
    (tmp_path / "other" / "a.tif").write_bytes(b"a")
    url = "https://h/scenes/a.tif?t=1"
    remote = source in ("re-signed", "another query")
    before_source = f"{url}&sig=1" if remote else str(tmp_path / "scenes" / "a.tif")
    now_source = {
        "same": before_source,
        "same, named another way": str(tmp_path / "scenes" / ".." / "scenes" / "a.tif"),
        "another file": str(tmp_path / "other" / "a.tif"),
        "re-signed": f"{url}&sig=2",
        "another query": "https://h/scenes/a.tif?t=2&sig=1",
    }[source]
    out = output_path(out_dir, "a")
    digest = ""
    if exists:
        out.write_bytes(b"translated")
        digest = sha256_file(out)
        if item != "none":
            recorded = digest if item == "right" else "0" * 64
            item_doc = {"assets": {"data": {"file:checksum": f"1220{recorded}"}}}
            out.with_suffix(".json").write_text(json.dumps(item_doc))
    previous = None
    if earlier is not None:
        sha = {"right": digest or "0" * 64, "wrong": "1" * 64, "none": ""}[checksum]
        row = SceneResult("a", before_source, str(out), earlier, sha256=sha, seconds=1.0)
        previous = _manifest_frame([row])
    rows, to_run = _plan([Scene("a", now_source, "row 1")], out_dir, previous, overwrite)
    (row,) = rows
    same = source in ("same", "same, named another way", "re-signed")
    verified = exists and (
        (earlier in ("done", "skipped") and checksum == "right")
        or (earlier == "pending" and item == "right")
    )
    skip = not overwrite and earlier in ("done", "skipped", "pending") and same and verified
    assert (row.status == "skipped") == skip, row
    if exists and not overwrite and earlier in (None, "failed"):  # not ours: never replaced
        assert row.status == "failed" and "a" not in to_run
    if to_run.get("a"):  # may replace an existing output
        assert overwrite or earlier in ("done", "skipped", "pending")
    tally.add("catalog rerun plan (_plan)", "manifest row x catalog row x output")


# --------------------------------------------------------------------------- fill_nodata

DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64"]


def _scene(rng: np.random.Generator, dtype: str, shape: tuple[int, ...], scale: float):
    if np.dtype(dtype).kind == "f":
        sign = rng.choice([-1.0, 1.0], (shape[0], 1, 1))  # one sign a band: sums do not cancel
        with np.errstate(over="ignore"):  # 1e300 is inf in float32: no data there
            return ((rng.random(shape) + 0.5) * scale * sign).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _valid(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:  # scattered
        return rng.random((h, w)) < rng.random()
    if kind == 1:  # a slanted collar
        return (xx + rng.uniform(-1, 1) * yy) < rng.uniform(0, h + w)
    return rng.random((h // 8 + 1, w // 8 + 1)).repeat(8, 0).repeat(8, 1)[:h, :w] < 0.5


def _step(dtype: str, values: np.ndarray) -> float:
    """One rounding step: 1 for integers, float32's for floats (the fill sums in float32)."""
    if np.dtype(dtype).kind in "iu":
        return 1.0
    return float(np.finfo(np.float32).eps) * 4 * max(float(np.abs(values).max()), 1e-30)


@FUZZ
@given(
    dtype=st.sampled_from(DTYPES),
    bands=st.integers(1, 3),
    h=st.integers(1, 80),
    w=st.integers(1, 80),
    offset=st.tuples(st.integers(-20, 300), st.integers(-20, 300)),
    kind=st.integers(0, 2),
    scale=st.sampled_from([1.0, 1e4, 1e-20, 1e37, 1e300]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fill_nodata_keeps_valid_pixels_and_fills_within_their_range(
    dtype, bands, h, w, offset, kind, scale, seed, tally
) -> None:
    """Regression: float data whose sums overflow float32 (values near 1e37, a float32
    raster without its nodata value set; float64 beyond float32's range) was filled with
    inf and NaN."""
    rng = np.random.default_rng(seed)
    data = _scene(rng, dtype, (bands, h, w), scale)
    valid = _valid(rng, h, w, kind)
    if np.dtype(dtype).kind == "f":  # NaN and inf where there is no data, as read_masked gives
        with np.errstate(over="ignore"):
            data = np.where(valid, data, rng.choice([np.nan, np.inf, -np.inf], data.shape))
        data = data.astype(dtype)
        valid &= np.isfinite(data).all(axis=0)
    assume(valid.any())
    lo = data[:, valid].min(axis=1).astype(np.float64)
    hi = data[:, valid].max(axis=1).astype(np.float64)
    mid = (lo + hi) / 2
    out = fill_nodata(data, valid, 4 * offset[0], 4 * offset[1], mid)
    assert out.dtype == data.dtype and out.shape == data.shape
    np.testing.assert_array_equal(out[:, valid], data[:, valid])
    filled = out.astype(np.float64)
    assert np.isfinite(filled).all()
    for b in range(bands):
        step = _step(dtype, data[b, valid])
        assert lo[b] - step <= filled[b].min() and filled[b].max() <= hi[b] + step, (b, lo, hi)
    tally.add("fill_nodata", "random tile (8 dtypes, NaN/inf nodata)")


def test_fill_nodata_of_large_floats_and_wide_integers() -> None:
    """Regression: float32 values near 1e37 overflowed the float32 sums (inf, NaN fills),
    float64 beyond float32's range became inf, and a flat uint32 image was filled 40 DN
    off its value (float32 holds 4294967000 as 4294967040)."""
    valid = np.ones((8, 8), bool)
    valid[2:5, 2:5] = False
    for dtype, value in (("float32", 3e37), ("float64", 1e300), ("uint32", 4294967000)):
        data = np.full((1, 8, 8), value, dtype)
        out = fill_nodata(data, valid, 0, 0, (value,))
        np.testing.assert_array_equal(out, data)


@FUZZ
@given(
    dtype=st.sampled_from(DTYPES),
    kind=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
    tiles=st.lists(  # offsets and sides in 4 px units: the overlap is 136 px or more
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(54, 80), st.integers(54, 80)),
        min_size=2,
        max_size=2,
    ),
)
def test_fill_nodata_is_the_same_in_any_two_tiles(dtype, kind, seed, tiles, tally) -> None:
    """Two overlapping tiles on the model's 4 px grid fill the pixels of their overlap
    that lie :data:`FILL_REACH` x 2 px inside both alike, to a rounding step (one takes
    the per-pixel path, the other may upsample)."""
    rng = np.random.default_rng(seed)
    size = 4 * 100
    scene = _scene(rng, dtype, (2, size, size), 100.0)
    valid = _valid(rng, size, size, kind)
    margin = 2 * FILL_REACH
    (ra, ca, ha, wa), (rb, cb, hb, wb) = ((4 * v for v in tile) for tile in tiles)
    r0, r1 = max(ra, rb) + margin, min(ra + ha, rb + hb) - margin
    c0, c1 = max(ca, cb) + margin, min(ca + wa, cb + wb) - margin
    assert r1 > r0 and c1 > c0
    mid = (10.0, 20.0)
    a = fill_nodata(
        scene[:, ra : ra + ha, ca : ca + wa], valid[ra : ra + ha, ca : ca + wa], ra, ca, mid
    )
    b = fill_nodata(
        scene[:, rb : rb + hb, cb : cb + wb], valid[rb : rb + hb, cb : cb + wb], rb, cb, mid
    )
    in_a = a[:, r0 - ra : r1 - ra, c0 - ca : c1 - ca].astype(np.float64)
    in_b = b[:, r0 - rb : r1 - rb, c0 - cb : c1 - cb].astype(np.float64)
    np.testing.assert_allclose(in_a, in_b, rtol=0, atol=_step(dtype, in_a))
    tally.add("fill_nodata", "two overlapping tiles")


@FUZZ
@given(
    bands=st.integers(1, 3),
    h=st.integers(1, 20),
    w=st.integers(1, 12),
    k=st.integers(1, 9),
    scale=st.sampled_from([1.0, 255.0, 1e5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_upsample_rows_is_torch_bilinear(bands, h, w, k, scale, seed, tally) -> None:
    a = (np.random.default_rng(seed).standard_normal((bands, h, w)) * scale).astype(np.float32)
    ours = _upsample_rows(a, k)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(a)[None], size=(h * k, w), mode="bilinear", align_corners=False
    )[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=4e-6 * max(float(np.abs(a).max()), 1.0))
    tally.add("_upsample_rows", "random shape and factor")
