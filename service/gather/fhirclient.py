"""FHIR-server fallback: fetch from ``fhirServer`` what the EHR did not prefetch.

The only module that imports ``requests`` (tests/test_purity.py checks). ``init_app`` puts a
``FhirClient`` — a ``Fetcher`` of gather/prefetch.py — as ``AppState.fetch``.

An EHR's request is input, not trust, so:
- ``fhirServer`` must match the allowlist (none configured: https anywhere, http on loopback only);
  a refused server is never contacted, so a hook call cannot make the service probe a network.
- The access token goes to fhirServer's origin only: redirects and ``next`` links elsewhere are not
  followed (requests would follow a redirect itself, so redirects are handled here).
- Work is bounded: pages, redirects, bytes read per search, a timeout per call, and one deadline
  shared by all the searches of a hook call (``VCF_CDS_FHIR_TIMEOUT``). A timeout bounds each read,
  not the whole answer: a server trickling a byte at a time would hold a pool thread forever, so
  when the hook call stops waiting, the sockets of its unfinished searches are shut down.
- Failure reasons and log lines name the search ("Condition search: HTTP 401"), never the token
  nor a URL (query values are patient ids).

One module, over 350 lines, on purpose: every outbound request of the service goes through it, and
the guarantees above hold only together (a split would let a caller use one part without the rest).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import ipaddress
import logging
import re
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
import urllib3
from flask import Flask
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection

from .prefetch import FetchFailure, next_link

log = logging.getLogger("vcf_cds.fhirclient")

# Six prefetch keys per call and a few calls at once per worker (gthread, --threads 4)
WORKERS = 12
CHUNK = 64 * 1024
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: anything else breaks (or splits) the header
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Result = list[dict[str, Any]] | FetchFailure


@dataclass(frozen=True)
class Limits:
    budget: float = 3.0  # seconds for all the searches of one hook call, pages and redirects included
    max_pages: int = 20  # a search needing more is not read in full, hence unavailable
    max_redirects: int = 3
    max_bytes: int = 20 * 1024 * 1024  # per search, all pages; counted after decompression


class SearchError(Exception):
    """A search that cannot complete. The message is shown to the EHR: no token, no URL."""


class Cutoff:
    """The sockets one search is using, shut down when its hook call stops waiting for it.

    Every read has a timeout, but a server sending a byte just before each one expires (headers
    or body, with no Content-Length) never trips it. ``trip`` wakes such a read at once: it fails,
    and the pool thread is free for the next call. The sockets are watched through duplicates of
    their descriptors, so a socket closed and its number reused meanwhile is never touched.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self.tripped = False

    def watch(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:  # already closed: nothing to wake
            return
        with self._lock:
            self._watched.append(duplicate)
            if self.tripped:
                _shut(duplicate)

    def trip(self) -> None:
        with self._lock:
            self.tripped = True
            for sock in self._watched:
                _shut(sock)

    def release(self) -> None:
        """Close the duplicates (not the connections: they go back to the pool)."""
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected any more
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # .cutoff: the Cutoff of the search this pool thread is running


def _release_current() -> None:
    cutoff: Cutoff | None = getattr(_current, "cutoff", None)
    if cutoff is not None:
        cutoff.release()


def _watch_current(sock: socket.socket | None) -> None:
    cutoff: Cutoff | None = getattr(_current, "cutoff", None)
    if cutoff is not None and sock is not None:
        cutoff.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    # Both places a connection starts blocking on the server: a new socket (connect, TLS handshake,
    # request) and, on a reused one, waiting for the response's headers (the body comes after)
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_current(sock)
        return sock

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def server_allowed(url: str, allowlist: Sequence[str]) -> bool:
    """Whether ``url`` may be contacted as a fhirServer (see the module docstring)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if not parts.hostname or parts.username is not None or parts.query or parts.fragment:
        return False  # credentials in a URL, or a "base" that is really a query: not a FHIR base
    if allowlist:
        return any(_under(url, prefix) for prefix in allowlist)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and _loopback(parts.hostname)


def _under(url: str, prefix: str) -> bool:
    # At a path boundary: "https://ehr.org" must not admit "https://ehr.org.evil.net/"
    u, p = _normal(url), _normal(prefix)
    return u == p.rstrip("/") or u.startswith(p if p.endswith("/") else p + "/")


def _normal(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return "", "", None


def _absolute(query: str) -> bool:
    # A prefetched page's next link; relative queries may hold "://" too (code=http://loinc.org|…)
    return query.startswith(("https://", "http://"))


def _label(query: str) -> str:
    """How failure reasons name a search: "Condition search", "Patient read", "next page"."""
    if _absolute(query):
        return "next page"
    path = query.split("?", 1)[0]
    return f"{path.split('/')[0]} {'search' if '?' in query or '/' not in path else 'read'}"


class _Bearer(requests.auth.AuthBase):
    # Passing an auth object also stops requests from reading ~/.netrc, which would replace the header
    def __init__(self, token: str | None):
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            r.headers["Authorization"] = f"Bearer {self.token}"
        return r


class FhirClient:
    """A ``Fetcher``: the searches of one hook call, concurrently, within ``limits``.

    One pool of threads per process, one ``requests.Session`` per pool thread (a Session is not
    documented thread-safe; its connection pool is reused by the thread across hook calls).
    """

    def __init__(self, allowlist: Sequence[str] = (), limits: Limits | None = None, workers: int = WORKERS):
        self.allowlist = tuple(allowlist)
        self.limits = limits or Limits()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vcf-cds-fhir")
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __call__(self, request: Mapping[str, Any], queries: Mapping[str, str]) -> dict[str, Result]:
        deadline = time.monotonic() + self.limits.budget
        refused = self._refusal(request)
        if refused:
            log.info("FHIR fallback for %s refused: %s", sorted(queries), refused)
            return {key: FetchFailure(refused) for key in queries}
        base = str(request["fhirServer"]).rstrip("/")
        token = (request.get("fhirAuthorization") or {}).get("access_token")
        started = time.monotonic()
        cutoffs = {key: Cutoff() for key in queries}
        futures: dict[str, Future[Result]] = {
            key: self._pool.submit(self._search, base, query, token, deadline, cutoffs[key])
            for key, query in queries.items()
        }
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        results: dict[str, Result] = {}
        for key, future in futures.items():
            if future.done():
                results[key] = future.result()
            else:  # the answer cannot wait for it: not started, it never will; running, its reads fail now
                future.cancel()
                cutoffs[key].trip()
                results[key] = FetchFailure(f"{_label(queries[key])}: {self._spent()}")
        failed = {k: r.reason for k, r in results.items() if isinstance(r, FetchFailure)}
        log.info(
            "FHIR fallback: %d searches in %.0f ms, failed: %s",
            len(queries),
            (time.monotonic() - started) * 1000,
            failed or "none",
        )
        return results

    def _spent(self) -> str:
        return f"the time budget for FHIR-server searches ({self.limits.budget:g} s) was spent"

    def _refusal(self, request: Mapping[str, Any]) -> str | None:
        server = request.get("fhirServer")
        if not isinstance(server, str) or not server:
            return "it was not prefetched and the request names no fhirServer"
        if not server_allowed(server, self.allowlist):
            return "fhirServer is not allowed by this service (VCF_CDS_FHIR_ALLOWLIST); it was not contacted"
        # The id goes into a URL path: anything but a FHIR id could point the query elsewhere
        if not _FHIR_ID.fullmatch(str(request.get("context", {}).get("patientId", ""))):
            return "context.patientId is not a FHIR id; the FHIR server was not asked"
        token = (request.get("fhirAuthorization") or {}).get("access_token")
        if token is not None and not _HEADER_SAFE.fullmatch(str(token)):
            return "fhirAuthorization.access_token is not a valid bearer token; the FHIR server was not asked"
        return None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Cookies would carry one EHR user's server session into another's call
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            adapter = _Adapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._local.session = session
        return session

    def _search(
        self, base: str, query: str, token: str | None, deadline: float, cutoff: Cutoff | None = None
    ) -> Result:
        label = _label(query)
        _current.cutoff = cutoff
        try:
            return self._read_all(base, query, token, deadline)
        except SearchError as e:
            reason = str(e)
        except requests.Timeout:
            reason = "timed out"
        except requests.ConnectionError:
            reason = "could not connect to the FHIR server"
        except requests.RequestException as e:  # its message holds the URL: keep the type only
            reason = f"the request failed ({type(e).__name__})"
        finally:
            _current.cutoff = None
            if cutoff is not None:
                cutoff.release()
        if cutoff is not None and cutoff.tripped:
            reason = self._spent()  # whatever the cut reads raised, the budget is why
        log.warning("FHIR fallback: %s: %s", label, reason)
        return FetchFailure(f"{label}: {reason}")

    def _read_all(self, base: str, query: str, token: str | None, deadline: float) -> list[dict[str, Any]]:
        home = _origin(base)
        absolute = _absolute(query)
        url = query if absolute else f"{base}/{query}"
        if absolute and _origin(url) != home:
            raise SearchError("the prefetched Bundle's next link is not on fhirServer; not followed")
        read_type = None if absolute or "?" in query else query.split("/")[0]
        resources: list[dict[str, Any]] = []
        budget_bytes = self.limits.max_bytes
        for _ in range(self.limits.max_pages):
            doc, size = self._get(url, token, deadline, home, budget_bytes)
            budget_bytes -= size
            if read_type:
                if doc.get("resourceType") != read_type:
                    raise SearchError(f"the answer is not a {read_type} resource")
                return [doc]
            if doc.get("resourceType") != "Bundle" or doc.get("type") != "searchset":
                raise SearchError("the answer is not a FHIR searchset Bundle")
            entries = doc.get("entry", [])
            if not isinstance(entries, list):
                raise SearchError("the answer's Bundle.entry is not a list")
            resources += [
                e["resource"]
                for e in entries
                # search.mode "outcome" entries are the server's warnings, not record data
                if isinstance(e, dict)
                and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") != "OperationOutcome"
            ]
            more = next_link(doc)
            if more is None:
                return resources
            url = urljoin(url, more)
            if _origin(url) != home:
                raise SearchError("its next link leads to another host; not followed")
        raise SearchError(f"it has more than {self.limits.max_pages} pages; not read in full")

    def _get(
        self, url: str, token: str | None, deadline: float, home: tuple[str, str, int | None], cap: int
    ) -> tuple[dict[str, Any], int]:
        """One JSON object from ``url``, following same-origin redirects; its size in bytes."""
        for _ in range(self.limits.max_redirects + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SearchError(self._spent())
            try:
                with self._session().get(
                    url,
                    headers={"Accept": "application/fhir+json"},
                    auth=_Bearer(token),
                    timeout=(remaining, remaining),  # connect, and each read: never past the deadline
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    status = response.status_code
                    if status in _REDIRECTS:
                        url = urljoin(url, response.headers.get("Location", ""))
                        if _origin(url) != home:
                            raise SearchError(f"HTTP {status} redirect to another host; not followed")
                        continue
                    if status != 200:
                        refused = " (the access token was refused)" if status in (401, 403) else ""
                        raise SearchError(f"HTTP {status}{refused}")
                    body = self._read_capped(response, cap, deadline)
            finally:
                _release_current()  # this answer is read: its socket need not be watched (nor kept open)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise SearchError("the answer is not JSON") from None
            if not isinstance(doc, dict):
                raise SearchError("the answer is not a FHIR resource")
            return doc, len(body)
        raise SearchError(f"more than {self.limits.max_redirects} redirects")

    def _read_capped(self, response: requests.Response, cap: int, deadline: float) -> bytes:
        too_big = SearchError(f"the answer is larger than {self.limits.max_bytes} bytes; not read")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            if size > cap:
                raise too_big
            if time.monotonic() > deadline:  # a server trickling bytes defeats the read timeout
                raise SearchError(self._spent())
            chunks.append(chunk)
        return b"".join(chunks)


def client(config: Mapping[str, Any]) -> FhirClient:
    return FhirClient(list(config["FHIR_ALLOWLIST"]), Limits(budget=float(config["FHIR_TIMEOUT"])))


def init_app(app: Flask) -> None:
    if not app.config["FHIR_ALLOWLIST"]:
        log.info("VCF_CDS_FHIR_ALLOWLIST is empty: any https fhirServer (and http on loopback) is accepted")
    # urllib3 logs request lines at DEBUG, query strings (patient ids) included
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
