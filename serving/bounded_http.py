"""Outbound HTTP GETs of JSON with every bound an EHR-facing service needs.

Used for the CDS clients' JWK Sets (`serving.cds_auth`) and for fetching what a CDS Hooks
prefetch lacks from the EHR's FHIR server (`serving.prefetch_fetch`). Each GET has a total
time limit, a cap on the bytes read (counted as they arrive, whatever `Content-Length` says),
only `https` (or `http` to a loopback host, for tests and side-cars), and redirects followed
only when they stay on the same origin (scheme, host and port), at most `MAX_REDIRECTS`.

httpx does the HTTP; the bounds are ours because httpx has no response-size limit and its
redirect following does not keep to one origin.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

__all__ = [
    "FetchError",
    "FetchLimits",
    "fetch_json",
    "fetch_json_sized",
    "is_allowed_url",
    "origin_of",
]

MAX_REDIRECTS = 3
_LOOPBACK_NAMES = ("localhost",)


class FetchError(Exception):
    """A GET that failed or broke a bound; `reason` is a short kind, without any value."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class FetchLimits:
    """Bounds of one GET: seconds in all (connect, redirects and reading) and bytes read."""

    timeout_s: float = 5.0
    max_bytes: int = 10 * 1024 * 1024


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL, the port defaulted from the scheme."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_allowed_url(url: str) -> bool:
    """Whether `url` may be fetched at all: https, or http to a loopback host."""
    scheme, host, _ = origin_of(url)
    return bool(host) and (scheme == "https" or (scheme == "http" and _is_loopback(host)))


def fetch_json(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    limits: FetchLimits = FetchLimits(),
    client: httpx.Client | None = None,
) -> object:
    """GET `url` and parse its JSON body, within `limits` (see `fetch_json_sized`)."""
    return fetch_json_sized(url, headers=headers, limits=limits, client=client)[0]


def fetch_json_sized(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    limits: FetchLimits = FetchLimits(),
    client: httpx.Client | None = None,
) -> tuple[object, int]:
    """GET `url` and parse its JSON body, within `limits`; returns it and the bytes read.

    Raises
    ------
    FetchError
        Not an allowed URL, a redirect to another origin or too many, a status other than
        200, a body over the byte cap, the time limit passed, a network error, or not JSON.
    """
    if not is_allowed_url(url):
        raise FetchError("url-not-allowed")
    deadline = time.monotonic() + limits.timeout_s
    owned = client is None
    client = client or httpx.Client(follow_redirects=False, trust_env=False)
    try:
        body = _get_following_same_origin(client, url, dict(headers or {}), limits, deadline)
    except httpx.HTTPError:
        raise FetchError("network-error") from None
    finally:
        if owned:
            client.close()
    try:
        return json.loads(body), len(body)
    except (ValueError, UnicodeDecodeError):
        raise FetchError("not-json") from None


def _get_following_same_origin(client, url, headers, limits, deadline) -> bytes:
    origin = origin_of(url)
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout")
        timeout = httpx.Timeout(remaining)
        with client.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.is_redirect:
                target = urljoin(url, response.headers.get("location", ""))
                if origin_of(target) != origin:
                    raise FetchError("redirect-off-origin")
                url = target
                continue
            if response.status_code != 200:
                raise FetchError(f"status-{response.status_code}")
            return _read_capped(response, limits.max_bytes, deadline)
    raise FetchError("too-many-redirects")


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too-large")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too-large")
        if time.monotonic() > deadline:
            raise FetchError("timeout")
        chunks.append(chunk)
    return b"".join(chunks)
