"""CORS for browser CDS clients (the CDS Hooks sandbox): an origin allowlist on every endpoint.

An allowed ``Origin`` is echoed in ``Access-Control-Allow-Origin`` (``*`` when the allowlist is
``*``); a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered 204 here,
before authentication, since browsers send it without credentials. No cookies are used, so
``Access-Control-Allow-Credentials`` is never sent: the JWT travels in ``Authorization``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

from flask import Flask, Response, request

log = logging.getLogger("vcf_cds.cors")

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Accept"
EXPOSE_HEADERS = "WWW-Authenticate"
MAX_AGE = "600"  # seconds a browser may cache a preflight answer

ORIGIN = re.compile(r"https?://[^/?#\s]+")
REFUSED_ORIGINS_REMEMBERED = 1024  # per process; a new origin past that forgets the oldest
ORIGIN_LOGGED_CHARS = 200  # the header is the caller's text: bounded in the log line


def parse_origins(values: list[str]) -> frozenset[str]:
    """Normalised allowlist; ``ValueError`` for an entry that is not ``*`` or ``scheme://host[:port]``."""
    origins: set[str] = set()
    for value in values:
        origin = value.strip().rstrip("/").lower()
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise ValueError(f"VCF_CDS_CORS_ORIGINS: {value!r} is not an origin such as https://sandbox.cds-hooks.org")
        origins.add(origin)
    return frozenset(origins)


class RefusedOrigins:
    """Says once per origin that its preflight was refused, so an integrator whose sandbox shows "no
    cards" finds the reason in the log. Only preflights: a same-origin POST (the viewer) carries an
    ``Origin`` too, and is no refusal. The set is a bounded LRU: a stream of made-up origins costs at
    most one line per request (as the access log does) and never more memory than the cap."""

    def __init__(self, cap: int = REFUSED_ORIGINS_REMEMBERED) -> None:
        self.cap = cap
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def report(self, origin: str) -> None:
        key = origin[:ORIGIN_LOGGED_CHARS]
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
            self._seen[key] = None
            if len(self._seen) > self.cap:
                self._seen.popitem(last=False)
        # the origin alone (repr: a control character cannot forge a log line); no other header
        log.warning(
            "CORS preflight from %r refused: the origin is not in VCF_CDS_CORS_ORIGINS (reported once per origin)",
            key,
        )


def init_app(app: Flask) -> None:
    origins = parse_origins(list(app.config["CORS_ORIGINS"]))
    any_origin = "*" in origins
    refused = RefusedOrigins()

    def is_preflight() -> bool:
        return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers

    @app.before_request
    def answer_preflight() -> Response | None:
        return Response(status=204) if is_preflight() else None

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        response.vary.add("Origin")  # the answer depends on Origin: shared caches must key on it
        origin = request.headers.get("Origin")
        if not origin or not (any_origin or origin.lower() in origins):
            if origin and is_preflight():
                refused.report(origin)
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
        if is_preflight():
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE
        else:
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response
