"""FHIR-server fallback: fetch from ``fhirServer`` what the EHR did not prefetch.

One of the outbound edges that import ``requests``, with auth/jwks.py, smart/http.py and
gather/watched.py (the watched sockets and pools this module and smart/http.py share;
tests/test_purity.py checks). ``client`` builds the app's ``FhirClient`` — a ``Fetcher`` of
gather/prefetch.py — which ``create_app`` keeps as ``AppState.fetch``.

An EHR's request is input, not trust, so:
- ``fhirServer`` must be one the calling EHR may name (``server_permit``): under a prefix of
  ``VCF_CDS_FHIR_ALLOWLIST`` or of the verified issuer's ``fhirServers``; in the loopback development
  mode (no trusted issuers) also http(s) on loopback; with ``VCF_CDS_AUTH=off``, the allowlist only.
  A refused server is never contacted, so a hook call cannot make the service probe a network.
- Connections go to the address that was checked (gather/egress.py, from ``_new_conn``): resolved
  within the budget, loopback only unless the server was explicitly listed, never resolved twice.
- The access token goes to fhirServer's origin only, under the caller's prefixes (``Permit.allows``):
  redirects and ``next`` links elsewhere are not followed (requests would follow a redirect itself,
  so redirects are handled here). Origins are decided by urllib3's parser, the one that connects
  (gather/origins.py), and ``_new_conn`` refuses any connection to another origin whatever the URL said.
- Work is bounded: pages, redirects, bytes read per search, a timeout per call, and one deadline
  shared by all the searches of a hook call (``VCF_CDS_FHIR_TIMEOUT``). A timeout bounds each read,
  not the whole answer: a server trickling a byte at a time would hold a pool thread forever, so
  when the hook call stops waiting, the sockets of its unfinished searches are shut down.
- Failure reasons and log lines name the search ("Condition search: …"), never the token nor a URL
  (query values are patient ids). The EHR is told one text per cause class — not permitted, could
  not be reached, answered with an error (and what was wrong with the answer) — so a refused port,
  a silent one and a name that does not resolve read the same; the log says which.

One module, over 350 lines, on purpose: every read of a FHIR server goes through it (the SMART app's
too), and the guarantees above hold only together (a split would let a caller use one part without the rest).
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import logging
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import orjson
import requests
import urllib3
from flask import Flask
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..state import app_state
from .egress import EgressRefusedError, Permit, connect, loopback_address
from .origins import UrlRefusedError, check_url, under
from .prefetch import FetchFailure, next_link
from .watched import Adapter, SocketWatch

if TYPE_CHECKING:
    from ..auth.verifier import Authenticator

log = logging.getLogger("vcf_cds.fhirclient")

# Six prefetch keys per call and a few calls at once per worker (gthread, --threads 4)
WORKERS = 12
CHUNK = 64 * 1024
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PLAIN_LINK = re.compile(r"[\x21-\x7e]{1,4096}")  # a Location or next link with anything else is refused
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: anything else breaks (or splits) the header
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
NOT_PERMITTED = "fhirServer is not permitted for this EHR; it was not contacted"
UNREACHABLE = "the FHIR server could not be reached"
ANSWERED = "the FHIR server answered with an error"

Result = list[dict[str, Any]] | FetchFailure


@dataclass(frozen=True)
class Limits:
    budget: float = 3.0  # seconds for all the searches of one hook call, pages and redirects included
    max_pages: int = 20  # a search needing more is not read in full, hence unavailable
    max_redirects: int = 3
    max_bytes: int = 20 * 1024 * 1024  # per search, all pages; counted after decompression


class _NotAskedError(Exception):
    """A search given up on for a reason of its own (the budget, the EHR's prefetch): the whole text."""


class SearchError(Exception):
    """What was wrong with the FHIR server's answer. Shown to the EHR after ``ANSWERED``: no token, no URL."""


class Cutoff(SocketWatch):
    """The sockets one search is using, shut down when its hook call stops waiting for it.

    Every read has a timeout, but a server sending a byte just before each one expires (headers
    or body, with no Content-Length) never trips it. ``trip`` wakes such a read at once: it fails,
    and the pool thread is free for the next call.
    """

    def __init__(self) -> None:
        super().__init__()
        # how far the current request got: what a cut-short search is reported as
        self.contacted = False
        self.answered = False


# .cutoff: the Cutoff of the search this pool thread is running; .permit: where it may connect
_current = threading.local()


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
        # The checked address, not a new lookup; urllib3 then wraps TLS for self.host (SNI, certificate)
        permit: Permit | None = getattr(_current, "permit", None)
        try:
            if permit is None:
                raise EgressRefusedError("a connection outside a permitted search")
            sock = connect(permit, self.host, self.port, self.timeout, self.socket_options or ())
        except TimeoutError as e:
            raise ConnectTimeoutError(self, f"connect: {e}") from None
        except OSError as e:
            if isinstance(e, EgressRefusedError):
                log.warning("FHIR fallback: connection refused by policy: %s", e)
            raise NewConnectionError(self, f"connect: {e}") from None
        _watch_current(sock)
        return sock

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


def server_permit(
    url: object, prefixes: Sequence[str], *, loopback_dev: bool = False, deadline: float = 0.0
) -> Permit | None:
    """Whether ``url`` may be contacted as a fhirServer, and at which addresses; None if not.

    Under one of ``prefixes`` (the allowlist and the caller's issuer's ``fhirServers``): any
    address. Else, with ``loopback_dev``, an http(s) URL whose host is ``localhost`` or a loopback
    address: loopback addresses only (checked again at connect time, after resolution)."""
    try:
        checked = check_url(url)
    except UrlRefusedError:
        return None
    if checked.query is not None or checked.fragment is not None:
        return None  # a "base" that is really a query: not a FHIR base
    same_origin = []
    for prefix in prefixes:
        try:
            usable = check_url(prefix)
        except UrlRefusedError:
            continue  # settings and the issuer file are checked at start; never admit on a bad entry
        if usable.origin == checked.origin:
            same_origin.append(usable)
    if any(under(checked, prefix) for prefix in same_origin):
        return Permit(checked.origin, explicit=True, deadline=deadline, within=tuple(same_origin))
    if loopback_dev and loopback_host(checked.origin.host):
        return Permit(checked.origin, explicit=False, deadline=deadline)
    return None


def https_or_loopback(url: object) -> bool:
    """An https URL, or http on loopback (development): what a registered EHR's endpoints must be."""
    try:
        checked = check_url(url)
    except UrlRefusedError:
        return False
    return checked.origin.scheme == "https" or loopback_host(checked.origin.host)


def loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return loopback_address(ipaddress.ip_address(host))
    except ValueError:
        return False


def _join(url: str, link: str) -> str:
    # urljoin is urllib.parse's reading: the result is checked again (check_url) before any use
    return urljoin(url, link) if _PLAIN_LINK.fullmatch(link) else ""


def _absolute(query: str) -> bool:
    # A prefetched page's next link; relative queries may hold "://" too (code=http://loinc.org|…)
    return query[:8].lower().startswith(("https://", "http://"))


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
    ``caller_servers`` gives, during a hook call, the ``fhirServers`` of the issuer that signed it.
    """

    def __init__(
        self,
        allowlist: Sequence[str] = (),
        limits: Limits | None = None,
        workers: int = WORKERS,
        *,
        loopback_dev: bool = False,
        caller_servers: Callable[[], Sequence[str]] = tuple,
    ):
        self.allowlist = tuple(allowlist)
        self.limits = limits or Limits()
        self.loopback_dev = loopback_dev
        self.caller_servers = caller_servers
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vcf-cds-fhir")
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __call__(self, request: Mapping[str, Any], queries: Mapping[str, str]) -> dict[str, Result]:
        deadline = time.monotonic() + self.limits.budget
        permit = self._permit(request, deadline)
        refused = permit if isinstance(permit, str) else self._refusal(request)
        if refused or not isinstance(permit, Permit):
            log.info("FHIR fallback for %s refused: %s", sorted(queries), refused)
            return {key: FetchFailure(refused or NOT_PERMITTED) for key in queries}
        base = str(request["fhirServer"]).rstrip("/")
        token = (request.get("fhirAuthorization") or {}).get("access_token")
        started = time.monotonic()
        cutoffs = {key: Cutoff() for key in queries}
        futures: dict[str, Future[Result]] = {
            key: self._pool.submit(self._search, base, query, token, permit, cutoffs[key])
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
                results[key] = FetchFailure(f"{_label(queries[key])}: {self._cut_short(cutoffs[key])}")
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

    def _cut_short(self, cutoff: Cutoff) -> str:
        """Why a search the hook call stopped waiting for failed: as if its read had timed out."""
        if cutoff.answered:
            return f"{ANSWERED}: it was not complete within the time budget ({self.limits.budget:g} s)"
        return UNREACHABLE if cutoff.contacted else self._spent()

    def _permit(self, request: Mapping[str, Any], deadline: float) -> Permit | str | None:
        server = request.get("fhirServer")
        if not isinstance(server, str) or not server:
            return "it was not prefetched and the request names no fhirServer"
        prefixes = self.allowlist + tuple(self.caller_servers())
        return server_permit(server, prefixes, loopback_dev=self.loopback_dev, deadline=deadline)

    def _refusal(self, request: Mapping[str, Any]) -> str | None:
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
            # No proxy from the environment: a proxy would resolve and connect in our place, past the
            # address check; a CA bundle named there is still used for TLS
            session.trust_env = False
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            adapter = Adapter(
                _WatchedHTTPConnection, _WatchedHTTPSConnection, pool_connections=4, pool_maxsize=4, max_retries=0
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._local.session = session
        return session

    def _search(self, base: str, query: str, token: str | None, permit: Permit, cutoff: Cutoff | None = None) -> Result:
        label = _label(query)
        cutoff = cutoff or Cutoff()
        _current.cutoff, _current.permit = cutoff, permit
        detail = ""
        try:
            return self._read_all(base, query, token, permit, cutoff)
        except SearchError as e:
            reason = f"{ANSWERED}: {e}"
        except _NotAskedError as e:
            reason = str(e)
        except requests.RequestException as e:  # its message holds the URL: keep the type only
            detail = f" ({type(e).__name__})"
            reason = f"{ANSWERED}: the answer was cut off" if cutoff.answered else UNREACHABLE
        except (ValueError, UnicodeError, urllib3.exceptions.HTTPError):
            # requests parses a redirect's Location with urlparse even when not following it: a
            # malformed one (bad port…) raises here instead of as a requests exception
            reason = f"{ANSWERED}: the answer is malformed"
        finally:
            _current.cutoff = _current.permit = None
            cutoff.release()
        if cutoff.tripped:
            reason = self._cut_short(cutoff)  # whatever the cut reads raised, the budget is why
        log.warning("FHIR fallback: %s: %s%s", label, reason, detail)
        return FetchFailure(f"{label}: {reason}")

    def _read_all(
        self, base: str, query: str, token: str | None, permit: Permit, cutoff: Cutoff
    ) -> list[dict[str, Any]]:
        absolute = _absolute(query)
        url = query if absolute else f"{base}/{query}"
        # a prefetched next link, relative ones too (`../other-base/…`); of a relative query only the
        # path decides where it leads (a template's query holds site codes, in any characters)
        if not permit.allows(url if absolute else url.split("?", 1)[0]):
            raise _NotAskedError("the prefetched Bundle's next link is not on fhirServer; not followed")
        read_type = None if absolute or "?" in query else query.split("/")[0]
        resources: list[dict[str, Any]] = []
        budget_bytes = self.limits.max_bytes
        for _ in range(self.limits.max_pages):
            doc, size = self._get(url, token, permit, cutoff, budget_bytes)
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
            url = _join(url, more)
            if not permit.allows(url):
                raise SearchError("its next link leads to another origin; not followed")
        raise SearchError(f"it has more than {self.limits.max_pages} pages; not read in full")

    def _get(self, url: str, token: str | None, permit: Permit, cutoff: Cutoff, cap: int) -> tuple[dict[str, Any], int]:
        """One JSON object from ``url``, following same-origin redirects; its size in bytes."""
        for _ in range(self.limits.max_redirects + 1):
            remaining = permit.deadline - time.monotonic()
            if remaining <= 0:
                raise _NotAskedError(self._cut_short(cutoff))
            cutoff.contacted, cutoff.answered = True, False
            try:
                with self._session().get(
                    url,
                    headers={"Accept": "application/fhir+json"},
                    auth=_Bearer(token),
                    timeout=(remaining, remaining),  # connect, and each read: never past the deadline
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    # a head that "ends" only because the cutoff shut the socket mid-header is no answer
                    cutoff.answered = not cutoff.tripped
                    status = response.status_code
                    if status in _REDIRECTS:
                        url = _join(url, response.headers.get("Location", ""))
                        if not permit.allows(url):
                            raise SearchError(f"HTTP {status} redirect to another origin; not followed")
                        continue
                    if status != 200:
                        refused = " (the access token was refused)" if status in (401, 403) else ""
                        raise SearchError(f"HTTP {status}{refused}")
                    body = self._read_capped(response, cap, permit.deadline, cutoff)
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

    def _read_capped(self, response: requests.Response, cap: int, deadline: float, cutoff: Cutoff) -> bytes:
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
                raise _NotAskedError(self._cut_short(cutoff))
            chunks.append(chunk)
        return b"".join(chunks)


def client(config: Mapping[str, Any], auth: Authenticator, caller_servers: Callable[[], Sequence[str]]) -> FhirClient:
    """The app's client; ``caller_servers`` gives the calling issuer's ``fhirServers`` during a hook call."""
    return FhirClient(
        list(config["FHIR_ALLOWLIST"]),
        Limits(budget=float(config["FHIR_TIMEOUT"])),
        loopback_dev=auth.mode == "on" and not auth.issuers,  # only loopback callers get this far then
        caller_servers=caller_servers,
    )


def init_app(app: Flask) -> None:
    allowlist = app.config["FHIR_ALLOWLIST"]
    auth = app_state(app).auth
    if auth.mode == "off" and not allowlist:
        log.warning("VCF_CDS_AUTH=off and VCF_CDS_FHIR_ALLOWLIST is empty: no fhirServer will be contacted")
    elif app_state(app).fetch.loopback_dev:
        log.info("FHIR fallback: fhirServer on loopback, or under VCF_CDS_FHIR_ALLOWLIST (development mode)")
    # urllib3 logs request lines at DEBUG, query strings (patient ids) included
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
