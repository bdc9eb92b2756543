"""The SMART app's own HTTP calls: discovery, its JWK Set, and creating an Observation. Token exchange
goes through Authlib (oauth.py) over the same sessions: the same deadline, size cap and no redirects.

The rules of the hooks' FHIR client (service/gather/fhirclient.py) hold here too: one deadline for each
whole call (a server trickling a byte before every read timeout does not outlast it: its socket is
shut when the deadline passes), answers read up to a size cap, redirects followed only within the
origin that was asked, never ``~/.netrc`` nor cookies, and errors that name what failed, never a URL,
a token or the body.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import orjson
import requests
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..gather.origins import origin_of
from ..gather.watched import Adapter, SocketWatch

TIMEOUT = 10.0  # seconds for a whole call: connect, redirects, headers and body
MAX_BYTES = 1024 * 1024  # a discovery document or an OperationOutcome: far below this
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class CallError(Exception):
    """A call that failed; the message is safe to show (no URL, no token)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None  # the JSON object answered, if any


class _NoNetrc(requests.auth.AuthBase):
    def __init__(self, token: str | None = None):
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            r.headers["Authorization"] = f"Bearer {self.token}"
        return r


class Deadline(SocketWatch):
    """The sockets one call opens, shut down when its deadline passes: a blocked read fails at once."""

    def __init__(self, seconds: float):
        super().__init__()
        self.at = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, self.trip)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def __enter__(self) -> Deadline:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.deadline = None
        self.release()


_current = threading.local()  # .deadline: the Deadline of the call this thread is making


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        deadline: Deadline | None = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.watch(sock)
        return sock


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


def configure(s: requests.Session) -> requests.Session:
    """No cookies kept, nothing from the environment (proxies, netrc), sockets under the call's Deadline."""
    s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    s.trust_env = False
    s.mount("http://", Adapter(_WatchedHTTPConnection, _WatchedHTTPSConnection))
    s.mount("https://", Adapter(_WatchedHTTPConnection, _WatchedHTTPSConnection))
    return s


def session() -> requests.Session:
    return configure(requests.Session())


def read_capped(response: requests.Response, deadline: Deadline, what: str) -> bytes:
    too_big = CallError(f"{what}: the answer is larger than {MAX_BYTES} bytes")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise too_big
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            raise too_big
        if deadline.remaining() <= 0:
            raise CallError(f"{what}: timed out")
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def failures(what: str, deadline: Deadline) -> Iterator[None]:
    """requests' errors as ``CallError``s that name ``what`` (their own messages hold the URL)."""
    try:
        yield
    except requests.Timeout:
        raise CallError(f"{what}: timed out") from None
    except requests.RequestException as e:
        if deadline.tripped:
            raise CallError(f"{what}: timed out") from None
        if isinstance(e, requests.ConnectionError):
            raise CallError(f"{what}: could not connect") from None
        raise CallError(f"{what}: the request failed ({type(e).__name__})") from None


def call(
    method: str,
    url: str,
    *,
    what: str,
    token: str | None = None,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One call, following same-origin redirects (GET only); ``what`` names it in errors."""
    # origins as urllib3, which connects, reads them (gather/origins.py): a form two parsers read
    # differently is refused, never compared
    home = origin_of(url)
    if home is None:
        raise CallError(f"{what}: not a URL this service connects to")
    data = orjson.dumps(body) if body is not None else None
    with Deadline(TIMEOUT) as deadline, failures(what, deadline), session() as s:
        for _ in range(MAX_REDIRECTS + 1):
            remaining = deadline.remaining()
            if remaining <= 0:
                raise CallError(f"{what}: timed out")
            with s.request(
                method,
                url,
                data=data,
                headers=dict(headers or {}),
                auth=_NoNetrc(token),
                timeout=(remaining, remaining),
                allow_redirects=False,
                stream=True,
            ) as response:
                if response.status_code in _REDIRECTS and method == "GET":
                    url = urljoin(url, response.headers.get("Location", ""))
                    if origin_of(url) != home:
                        raise CallError(f"{what}: redirected to another host; not followed")
                    continue
                raw = read_capped(response, deadline, what)
                status = response.status_code
            break
        else:
            raise CallError(f"{what}: more than {MAX_REDIRECTS} redirects")
    try:
        doc = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        doc = None
    return Answer(status, doc if isinstance(doc, dict) else None)
