"""Signed URLs without their secrets: the one list of signing and secret query parameters.

A signed URL (an Azure SAS token, an S3 or GCS presigned URL, a CloudFront signed URL, a
``token=`` of an API) grants access to whoever holds it. rsgan names sources in its
messages and records them in manifests and STAC Items; :func:`redact_url` (text a person
reads) and :func:`unsigned_url` (records) keep the secret values out of both. This module
imports nothing from rsgan, so that :mod:`rsgan.errors` can redact every message.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

REDACTED = "REDACTED"
"""What :func:`redact_url` puts in place of a secret value."""

_SIGNATURES: dict[str, frozenset[str]] = {
    # a signature (or credential) parameter: the parameters (its own included) that sign
    # with it, which name no data and go when it goes
    # Azure SAS tokens (Planetary Computer's signed hrefs)
    "sig": frozenset(
        "sv ss srt sp se st spr sig sr si sip skoid sktid skt ske sks skv sdd saoid suoid "
        "scid".split()
    ),
    # S3 and Google Cloud Storage V2 signatures, CloudFront signed URLs
    "signature": frozenset(
        "awsaccesskeyid googleaccessid signature expires policy key-pair-id "
        "x-amz-security-token".split()
    ),
    # credentials that name no data wherever they are: bearer tokens and API keys in a
    # query (OAuth's access_token, many tile APIs), an S3/GCS credential or session token
    **{
        key: frozenset([key])
        for key in (
            "token access_token api_key apikey x-amz-credential x-amz-security-token "
            "x-goog-credential"
        ).split()
    },
}
_SIGNATURE_PREFIXES = {"x-amz-signature": "x-amz-", "x-goog-signature": "x-goog-"}
"""S3 SigV4 and GCS V4 signatures: every parameter of the prefix signs with them."""

SIGNING_PARAMETERS: frozenset[str] = frozenset().union(*_SIGNATURES.values())
"""Query parameters (lower case) of a signed URL that grant access for a while and name
no other data: :func:`unsigned_url` (and so :func:`rsgan.io.same_source`) leaves them out
of an ``http(s)`` URL's query that carries the signature of their scheme (``sig``,
``signature``) or is a credential on its own (``token``, ``access_token``, ``api_key``,
``apikey``, ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Goog-Credential``), with any ``X-Amz-*`` (S3 SigV4) or ``X-Goog-*`` (GCS V4) parameter of a query
that holds ``X-Amz-Signature`` or ``X-Goog-Signature``."""

SECRET_PARAMETERS: frozenset[str] = frozenset(
    "sig signature x-amz-signature x-goog-signature x-amz-credential x-amz-security-token "
    "x-goog-credential token access_token api_key apikey".split()
)
"""Query parameters (lower case) whose values are secrets or name the credential that
signed: :func:`redact_url` replaces their values with ``REDACTED`` (the other signing
parameters, such as an expiry, stay readable); so it does with :data:`_SECRET_WITH_SIGNATURE`
in a query signed with ``Signature``."""
_SECRET_WITH_SIGNATURE = frozenset("policy key-pair-id awsaccesskeyid googleaccessid".split())
"""CloudFront's policy and key pair, the S3/GCS V2 access key: secrets next to a
``Signature`` only (on its own, ``policy=`` may be a parameter that selects data)."""

_URL_START = re.compile(r"https?://|https?%3A%2F%2F", re.IGNORECASE)
_ARCHIVE_SCHEME = re.compile(r"(?:zip|tar|gzip)\+", re.IGNORECASE)
_TEXT_END = re.compile(r"[\s'\"<>`{}!]")
_TRAILING = re.compile(r"[.,;:)\]]+$")


class _Delims:
    """The query's punctuation of a URL as written (``?&=#``) or percent-encoded in the
    ``url=`` option of ``/vsicurl?url=https%3A%2F%2F...``."""

    def __init__(self, encoded: bool) -> None:
        if encoded:
            self.query, self.amp, self.eq, self.hash = "%3F", "%26", "%3D", "%23"
        else:
            self.query, self.amp, self.eq, self.hash = "?", "&", "=", "#"
        self.encoded = encoded

    def find(self, text: str, what: str, start: int = 0) -> int:
        if not self.encoded:
            return text.find(what, start)
        found = re.compile(re.escape(what), re.IGNORECASE).search(text, start)
        return found.start() if found else -1


def _rewrite_query(url: str, encoded: bool, edit: _QueryEdit) -> str:
    """``url`` with its query parts rewritten by ``edit`` (the rest byte for byte)."""
    d = _Delims(encoded)
    q = d.find(url, d.query)
    if q < 0:
        return url
    end = d.find(url, d.hash, q)
    end = len(url) if end < 0 else end
    query = url[q + len(d.query) : end]
    parts = _split(query, d.amp)
    keys = [unquote(_split(p, d.eq, once=True)[0]).lower() for p in parts]
    kept = edit(parts, keys, d)
    if kept == parts:
        return url
    return url[:q] + (d.query + d.amp.join(kept) if kept else "") + url[end:]


def _split(text: str, sep: str, once: bool = False) -> list[str]:
    """``text`` split at ``sep`` (case-insensitive when percent-encoded)."""
    return re.split(re.escape(sep), text, maxsplit=1 if once else 0, flags=re.IGNORECASE)


class _QueryEdit:
    def __call__(self, parts: list[str], keys: list[str], d: _Delims) -> list[str]:
        raise NotImplementedError


class _Redact(_QueryEdit):
    """Secret values replaced; in free text a value also ends at a bracket, comma or
    semicolon (``GetFileSize(https://h/a.tif?sig=x)=0``), which no signature holds."""

    def __init__(self, free_text: bool) -> None:
        self.stops = "()[]{},;" if free_text else ""

    def __call__(self, parts: list[str], keys: list[str], d: _Delims) -> list[str]:
        secret = SECRET_PARAMETERS | (_SECRET_WITH_SIGNATURE if "signature" in keys else set())
        out = []
        for part, key in zip(parts, keys, strict=True):
            cut = d.find(part, d.eq)
            value = part[cut + len(d.eq) :] if cut >= 0 else ""
            ends = next((i for i, c in enumerate(value) if c in self.stops), len(value))
            if key in secret and ends:
                part = part[: cut + len(d.eq)] + REDACTED + value[ends:]
            out.append(part)
        return out


class _Unsign(_QueryEdit):
    def __call__(self, parts: list[str], keys: list[str], d: _Delims) -> list[str]:
        signed: set[str] = set()
        for key in keys:
            signed |= _SIGNATURES.get(key, frozenset())
        prefixes = tuple(_SIGNATURE_PREFIXES[k] for k in keys if k in _SIGNATURE_PREFIXES)
        if not signed and not prefixes:
            return parts
        return [
            part
            for part, key in zip(parts, keys, strict=True)
            if key not in signed and not (prefixes and key.startswith(prefixes))
        ]


def _redact_userinfo(url: str, encoded: bool) -> str:
    """``https://user:REDACTED@host/...`` for a password in the URL's authority."""
    if encoded:
        return url
    start = url.index("://") + 3
    ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
    authority_end = min(ends) if ends else len(url)
    at = url.rfind("@", start, authority_end)
    colon = url.find(":", start, at) if at >= 0 else -1
    if colon < 0 or colon + 1 == at:
        return url
    return url[: colon + 1] + REDACTED + url[at:]


def _each_url(text: str, free_text: bool, edit: _QueryEdit, userinfo: bool) -> str:
    """``text`` with every ``http(s)`` URL in it (also percent-encoded, as after
    ``/vsicurl?url=``) rewritten by ``edit``. A URL ends at the end of ``text``; in a name
    also at the ``}`` that closes a ``/vsizip/{...}`` chain and at the ``!`` of
    ``zip+https://host/a.zip?sig=x!/b.tif``; in free text at white space, a quote or a
    bracket, trailing punctuation (``.,;:)]``) left out."""
    if not _URL_START.search(text):
        return text
    out: list[str] = []
    pos = 0
    for match in _URL_START.finditer(text):
        if match.start() < pos:
            continue
        encoded = "%" in match.group()
        stop = len(text)
        if free_text:
            end = _TEXT_END.search(text, match.end())
            stop = end.start() if end else stop
        else:
            before = text[: match.start()]
            braces = before.count("{") > before.count("}")  # inside /vsizip/{...}
            archive = bool(_ARCHIVE_SCHEME.fullmatch(before))  # zip+https://...!/b.tif
            for char, active in (("}", braces), ("!", archive)):
                at = text.find(char, match.end()) if active else -1
                stop = at if 0 <= at < stop else stop
        if encoded:  # the next /vsicurl? option ends an encoded url= value
            amp = text.find("&", match.end(), stop)
            stop = amp if amp >= 0 else stop
        url = text[match.start() : stop]
        if free_text:
            trail = _TRAILING.search(url)
            url = url[: trail.start()] if trail else url
        new = _rewrite_query(url, encoded, edit)
        if userinfo:
            new = _redact_userinfo(new, encoded)
        out += [text[pos : match.start()], new]
        pos = match.start() + len(url)
    out.append(text[pos:])
    return "".join(out)


def redact_url(name: str | os.PathLike[str]) -> str:
    """``name`` (a raster source) as it may be shown: the value of every secret query
    parameter (:data:`SECRET_PARAMETERS`: ``sig``, ``X-Amz-Signature``,
    ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Goog-Signature``, ``Signature``,
    ``Key-Pair-Id``, ``Policy``, ``token``, ``access_token``, ``api_key``...) of each
    ``http(s)`` URL in it replaced with ``REDACTED``, and so is a password in a URL
    (``https://user:REDACTED@host/``). Parameter names stay, so the name still shows that
    it was signed, and everything else is kept byte for byte: a URL behind ``/vsicurl/``,
    in ``/vsicurl?url=`` (percent-encoded), in a ``/vsizip/{...}`` chain, in
    ``zip+https://host/a.zip?sig=x!/b.tif`` or in a ``vrt://`` name. A name without a
    secret is returned as given; redacting twice changes nothing."""
    return _each_url(os.fspath(name), False, _Redact(False), True)


def redact_text(text: str) -> str:
    """:func:`redact_url` for every URL in free text (a message, a log line), where a URL
    ends at white space, a quote or a bracket, and punctuation after it is kept."""
    return _each_url(text, True, _Redact(True), True)


def unsigned_url(name: str | os.PathLike[str]) -> str:
    """``name`` as records keep it: the parameters that sign each ``http(s)`` URL in it
    (:data:`SIGNING_PARAMETERS`, every secret one among them) left out, and a password in
    a URL redacted. A URL Planetary Computer signed is stored as the unsigned href its
    STAC API gives, which a signer can sign again; a name without a signature is returned
    as given."""
    return _each_url(os.fspath(name), False, _Unsign(), True)
