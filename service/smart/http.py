"""The SMART app's own HTTP calls: discovery, and creating an Observation. Token exchange goes through
Authlib (oauth.py) with the same timeout and no redirects.

The rules of the hooks' FHIR client (service/gather/fhirclient.py) hold here too: a timeout on every call,
answers read up to a size cap, redirects followed only within the origin that was asked, never
``~/.netrc`` nor cookies, and errors that name what failed, never a URL, a token or the body.
"""

from __future__ import annotations

import http.cookiejar
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests

TIMEOUT = 10.0  # seconds, per call (connect, and each read)
MAX_BYTES = 1024 * 1024  # a discovery document or an OperationOutcome: far below this
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CallError(Exception):
    """A call that failed; the message is safe to show (no URL, no token)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None  # the JSON object answered, if any


def origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return "", "", None


class _NoNetrc(requests.auth.AuthBase):
    def __init__(self, token: str | None = None):
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def session() -> requests.Session:
    s = requests.Session()
    s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    s.trust_env = False  # no proxies or netrc from the environment for the EHR's endpoints
    return s


def _read(response: requests.Response) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise CallError(f"the answer is larger than {MAX_BYTES} bytes")
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            raise CallError(f"the answer is larger than {MAX_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
    home = origin(url)
    data = orjson.dumps(body) if body is not None else None
    try:
        with session() as s:
            for _ in range(MAX_REDIRECTS + 1):
                with s.request(
                    method,
                    url,
                    data=data,
                    headers=dict(headers or {}),
                    auth=_NoNetrc(token),
                    timeout=(TIMEOUT, TIMEOUT),
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    if response.status_code in _REDIRECTS and method == "GET":
                        url = urljoin(url, response.headers.get("Location", ""))
                        if origin(url) != home:
                            raise CallError(f"{what}: redirected to another host; not followed")
                        continue
                    raw = _read(response)
                    status = response.status_code
                break
            else:
                raise CallError(f"{what}: more than {MAX_REDIRECTS} redirects")
    except requests.Timeout:
        raise CallError(f"{what}: timed out") from None
    except requests.ConnectionError:
        raise CallError(f"{what}: could not connect") from None
    except requests.RequestException as e:  # its message holds the URL: the type only
        raise CallError(f"{what}: the request failed ({type(e).__name__})") from None
    try:
        doc = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        doc = None
    return Answer(status, doc if isinstance(doc, dict) else None)
