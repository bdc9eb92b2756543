"""``vcf-cds serve``: the production server (gunicorn) around ``create_app``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from gunicorn.app.base import BaseApplication

from .auth import IssuerConfigError, is_loopback, load_issuers
from .config import load_settings
from .cors import parse_origins

log = logging.getLogger("vcf_cds.server")

RULE = "*" * 76
OPEN_WARNING = f"""
{RULE}
NO AUTHENTICATION: no trusted issuers are configured (VCF_CDS_TRUSTED_ISSUERS).
Anyone who can reach {{bind}} may call /cds-services with patient data.
Allowed on loopback only, for development. See README, "Authentication and CORS".
{RULE}"""
OFF_WARNING = f"""
{RULE}
AUTHENTICATION IS OFF (VCF_CDS_AUTH=off): /cds-services on {{bind}} accepts
unauthenticated calls from anyone who can reach it. Never with real patient data.
{RULE}"""


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from . import create_app

        return create_app()


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def check_startup(host: str, port: int, settings: Mapping[str, Any]) -> str | None:
    """Why the service must not start on ``host`` with these settings, or None (warnings are logged).

    With no trusted issuers it is open: allowed on loopback only, unless ``VCF_CDS_AUTH=off``.
    """
    bind = bind_address(host, port)
    try:
        issuers = load_issuers(settings["TRUSTED_ISSUERS"])
    except IssuerConfigError as e:
        return str(e)
    if settings["AUTH"] == "off":
        log.warning(OFF_WARNING.format(bind=bind))
        return None
    if not issuers:
        if not is_loopback(host):
            return (
                f"refusing to serve on {bind} without authentication: no trusted issuers are configured. "
                "Set VCF_CDS_TRUSTED_ISSUERS to a trusted-issuer file (see README, 'Authentication and CORS'), "
                "bind to 127.0.0.1, or set VCF_CDS_AUTH=off explicitly (never with real patient data)."
            )
        log.warning(OPEN_WARNING.format(bind=bind))
        return None
    if not settings.get("PUBLIC_URL"):
        log.warning(
            "VCF_CDS_PUBLIC_URL is not set: a JWT's `aud` is checked against the URL as received. "
            "Behind a proxy or load balancer, set it to the URL the EHR calls."
        )
    return None


def run(host: str, port: int, workers: int, threads: int) -> int:
    try:
        settings = load_settings()
        parse_origins(list(settings["CORS_ORIGINS"]))
    except ValueError as e:
        print(f"vcf-cds serve: {e}", file=sys.stderr)
        return 2
    problem = check_startup(host, port, settings)
    if problem:
        print(f"vcf-cds serve: {problem}", file=sys.stderr)
        return 2
    Server(
        {
            "bind": bind_address(host, port),
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "graceful_timeout": 20,
            "timeout": 30,
            "accesslog": "-",
            # no query strings, no bodies: request line without "?…" is %(U)s
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
        }
    ).run()
    return 0
