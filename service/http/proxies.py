"""``X-Forwarded-*`` believed only from the reverse proxies named in ``VCF_CDS_TRUSTED_PROXIES``.

Anyone can send those headers, so from any other peer they are removed before the application sees
them. From a trusted proxy, ``X-Forwarded-For`` gives the client's address (the loopback development
check, the access log) and ``X-Forwarded-Proto`` the scheme. ``Host`` and ``X-Forwarded-Host`` decide
nothing: the JWT audience is ``VCF_CDS_PUBLIC_URL`` + the path (http/auth.py).

gunicorn applies the same list to its own scheme headers (``forwarded_allow_ips``, set by server.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from flask import Flask

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WsgiApp = Any  # (environ, start_response) -> iterable; Flask's own annotation is no stricter
UNKNOWN_CLIENT = "unknown"  # an X-Forwarded-For hop that is not an address: never loopback


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.5 from a dual-stack socket
    return mapped or address


class TrustedProxies:
    """WSGI middleware: forwarded headers applied from trusted peers, dropped from everyone else."""

    def __init__(self, app: WsgiApp, proxies: Iterable[str]):
        self.app = app
        self.networks: list[Network] = [ipaddress.ip_network(p) for p in proxies]

    def trusted(self, address: str | None) -> bool:
        parsed = _address(address or "")
        return parsed is not None and any(parsed in network for network in self.networks)

    def client(self, forwarded_for: str) -> str | None:
        """The first hop from the right that is not one of our proxies (each proxy appends its peer)."""
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return str(_address(hop) or UNKNOWN_CLIENT)
        return str(_address(hops[0]) or UNKNOWN_CLIENT) if hops else None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.networks and self.trusted(environ.get("REMOTE_ADDR")):
            client = self.client(str(environ.get("HTTP_X_FORWARDED_FOR", "")))
            if client is not None:
                environ["REMOTE_ADDR"] = client  # in place: gunicorn's access log reads this dict too
            proto = str(environ.get("HTTP_X_FORWARDED_PROTO", "")).strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        else:
            for key in [k for k in environ if k.startswith("HTTP_X_FORWARDED_") or k == "HTTP_FORWARDED"]:
                del environ[key]
        return self.app(environ, start_response)


def init_app(app: Flask) -> None:
    app.wsgi_app = TrustedProxies(app.wsgi_app, app.config["TRUSTED_PROXIES"])  # type: ignore[method-assign]
