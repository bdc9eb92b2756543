"""CORS for browser CDS clients (the CDS Hooks sandbox): an origin allowlist on every endpoint.

An allowed ``Origin`` is echoed in ``Access-Control-Allow-Origin`` (``*`` when the allowlist is
``*``); a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered 204 here,
before authentication, since browsers send it without credentials. No cookies are used, so
``Access-Control-Allow-Credentials`` is never sent: the JWT travels in ``Authorization``.
"""

from __future__ import annotations

import re

from flask import Flask, Response, request

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Accept"
EXPOSE_HEADERS = "WWW-Authenticate"
MAX_AGE = "600"  # seconds a browser may cache a preflight answer

ORIGIN = re.compile(r"https?://[^/?#\s]+")


def parse_origins(values: list[str]) -> frozenset[str]:
    """Normalised allowlist; ``ValueError`` for an entry that is not ``*`` or ``scheme://host[:port]``."""
    origins: set[str] = set()
    for value in values:
        origin = value.strip().rstrip("/").lower()
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise ValueError(f"VCF_CDS_CORS_ORIGINS: {value!r} is not an origin such as https://sandbox.cds-hooks.org")
        origins.add(origin)
    return frozenset(origins)


def init_app(app: Flask) -> None:
    origins = parse_origins(list(app.config["CORS_ORIGINS"]))
    any_origin = "*" in origins

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
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
        if is_preflight():
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE
        else:
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response
