"""JWK Sets fetched over HTTPS (an issuer's ``jwks_url``, or an allowlisted ``jku``), cached.

This is the only I/O of authentication. URLs come from the trusted-issuer file only (a token's
``jku`` is fetched only when that issuer allowlists it), so a caller cannot make the service fetch
an address of its choosing. A fetch has a timeout, a size cap and follows no redirect, and its URL
must be one every parser reads alike (service/gather/origins.py), so the host checked is the host asked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from ..gather.origins import UrlRefusedError, check_url

log = logging.getLogger("vcf_cds.auth")

FETCH_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds
MAX_JWKS_BYTES = 256 * 1024  # a JWK Set is a few kB; anything near this is not one
CACHE_TTL = 15 * 60.0  # seconds a fetched set is used before it is fetched again
MIN_REFRESH_INTERVAL = 60.0  # an unknown `kid` forces a refetch at most this often per URL

JwkList = list[dict[str, Any]]


class JwksError(Exception):
    """The JWK Set could not be fetched or is not a JWK Set. The message names no token data."""


def fetch_jwks(url: str, *, timeout: tuple[float, float] = FETCH_TIMEOUT, max_bytes: int = MAX_JWKS_BYTES) -> JwkList:
    """GET ``url`` and return its ``keys`` (JSON objects only); ``JwksError`` on any failure."""
    try:
        check_url(url)
    except UrlRefusedError as e:
        raise JwksError(f"not a usable URL ({e})") from None
    try:
        with requests.get(
            url, timeout=timeout, stream=True, allow_redirects=False, headers={"Accept": "application/json"}
        ) as response:
            if response.status_code != 200:
                raise JwksError(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise JwksError("response larger than the JWK Set size cap")
            body = bytearray()
            for chunk in response.iter_content(chunk_size=16384):
                body += chunk
                if len(body) > max_bytes:
                    raise JwksError("response larger than the JWK Set size cap")
    except requests.RequestException as e:
        raise JwksError(type(e).__name__) from None
    try:
        doc = orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        raise JwksError("response is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError("response is not a JWK Set (no `keys` list)")
    return [k for k in doc["keys"] if isinstance(k, dict)]


@dataclass
class _Entry:
    keys: JwkList | None = None
    fetched_at: float = float("-inf")
    attempted_at: float = float("-inf")


class JwksCache:
    """Fetched JWK Sets by URL: reused for ``ttl`` seconds; a forced refresh (unknown ``kid``) at most
    once per ``min_refresh`` seconds per URL, so tokens naming random ``kid`` values cannot make the
    service hammer an issuer. A failed refetch keeps serving the last good set. Thread-safe."""

    def __init__(
        self,
        fetch: Callable[[str], JwkList] = fetch_jwks,
        *,
        ttl: float = CACHE_TTL,
        min_refresh: float = MIN_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fetch = fetch
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def keys(self, url: str, *, refresh: bool = False) -> JwkList:
        """The keys published at ``url``; ``JwksError`` when they cannot be had."""
        with self._guard:
            entry = self._entries.setdefault(url, _Entry())
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:  # one fetch per URL at a time; other URLs are not held up
            now = self._clock()
            fresh = now - entry.fetched_at < self._ttl
            recently_tried = now - entry.attempted_at < self._min_refresh
            if entry.keys is not None and (recently_tried or (fresh and not refresh)):
                return entry.keys
            if entry.keys is None and recently_tried:
                raise JwksError("fetch failed recently; not retried yet")
            entry.attempted_at = now
            try:
                entry.keys = self._fetch(url)
            except JwksError as e:
                if entry.keys is None:
                    raise
                log.warning("JWK Set refresh failed (%s) for host %s; using the cached set", e, urlsplit(url).hostname)
                return entry.keys
            entry.fetched_at = now
            return entry.keys
