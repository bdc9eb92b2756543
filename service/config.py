"""Settings: embedded defaults, then ``VCF_CDS_*`` environment variables, then a test override.

Every setting is declared once here, with its default and meaning; the README documents each one
(a test fails when it does not).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .gather.origins import UrlRefusedError, check_url

PREFIX = "VCF_CDS_"


@dataclass(frozen=True)
class Setting:
    name: str  # without the prefix
    default: Any
    parse: Callable[[str], Any]
    doc: str
    secret: bool = False  # never echoed in error messages


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def _bool(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "off", "false", "no")


def _on_off(value: str) -> str:
    # a typo ("of", "disabled") must not silently leave authentication in an unexpected state
    word = value.strip().lower()
    if word not in ("on", "off"):
        raise ValueError("expected `on` or `off`")
    return word


# scheme, a host name or bracketed IPv6 address, an optional port, a path: nothing else
_PLAIN_URL = r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?(/[^?#\s\\@]*)?"


def public_url(value: str) -> str:
    """``VCF_CDS_PUBLIC_URL`` checked and normalised (no trailing slash): a JWT's ``aud`` is compared to it as text."""
    url = value.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    # one plain form only: userinfo, a query, a fragment or a backslash would make two readers disagree
    # on which service an audience names
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if not (port_ok and parts.hostname and re.fullmatch(_PLAIN_URL, url)):
        raise ValueError(
            "expected an absolute http(s) URL without userinfo, query or fragment, e.g. https://cds.example.org"
        )
    return url


def _proxies(value: str) -> list[str]:
    # gunicorn's forwarded_allow_ips takes the same list: strict, so 10.0.0.1/8 is an error, not a guess
    proxies = _list(value)
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy)
        except ValueError:
            raise ValueError(f"{proxy!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24)") from None
    return proxies


def _url_prefixes(value: str) -> list[str]:
    prefixes = _list(value)
    for prefix in prefixes:
        try:
            checked = check_url(prefix)
        except UrlRefusedError as e:
            raise ValueError(f"{prefix!r} is not a usable URL prefix ({e})") from None
        if checked.query is not None or checked.fragment is not None:
            raise ValueError(f"{prefix!r}: a FHIR base URL prefix has no query or fragment")
    return prefixes


def _secret(value: str) -> str:
    # A short key makes the patient-id hashes guessable by brute force over plausible MRNs
    if value and len(value) < 32:
        raise ValueError("use at least 32 characters (e.g. `openssl rand -hex 32`)")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "sqlite:///vcf-cds.sqlite3",
        str,
        "SQLAlchemy URL; SQLite file in the working directory by default, `postgresql://…` in production",
    ),
    Setting("TRUSTED_ISSUERS", "", str, "path of the trusted-issuer JSON file (CDS Hooks JWT); empty = none"),
    Setting("AUTH", "on", _on_off, "`off` accepts unauthenticated calls on any address (never in production)"),
    Setting(
        "PUBLIC_URL",
        "",
        public_url,
        "public base URL the EHR calls (e.g. `https://cds.example.org`); a JWT's `aud` must be this plus the "
        "path called. Required with trusted issuers: `Host` and `X-Forwarded-*` never decide the audience",
    ),
    Setting(
        "TRUSTED_PROXIES",
        [],
        _proxies,
        "comma-separated addresses or CIDR networks of the reverse proxies whose `X-Forwarded-For`/`-Proto` "
        "are believed; from any other peer those headers are ignored. Empty: none",
    ),
    Setting(
        "FHIR_ALLOWLIST",
        [],
        _url_prefixes,
        "comma-separated FHIR base URL prefixes any caller may name as `fhirServer`, at any address (private "
        "ones included); added to each issuer's `fhirServers`. With `VCF_CDS_AUTH=off` the only ones allowed",
    ),
    Setting("CORS_ORIGINS", [], _list, "comma-separated browser origins allowed by CORS (`*` for any)"),
    Setting("FHIR_TIMEOUT", 3.0, float, "total time budget in seconds for FHIR-server fallback searches"),
    Setting("MAX_BODY", 10 * 1024 * 1024, int, "largest accepted request body in bytes (413 above)"),
    Setting("BODY_TIMEOUT", 20.0, float, "seconds a client has to send the whole request body (408 after)"),
    Setting("EXTRA_MAPPINGS", "", str, "folder of site value sets merged over the shipped `mappings/`"),
    Setting("LOG_LEVEL", "INFO", str, "Python logging level"),
    Setting(
        "FIXTURES",
        "",
        str,
        "folder the card viewer lists fixtures from; empty = `fixtures/` beside the package (a source checkout)",
    ),
    Setting(
        "AUDIT_KEY",
        "",
        _secret,
        "HMAC-SHA256 key (≥ 32 characters, e.g. `openssl rand -hex 32`) for the patient-id hash of the audit "
        "log; unset: a random key per start, allowed on loopback only",
        secret=True,
    ),
    Setting(
        "FEEDBACK_COMMENTS",
        False,
        _bool,
        "`on` stores the clinician's free-text override comment (it may hold PHI); off: only whether one was given",
    ),
    Setting(
        "SMART_CLIENTS",
        "",
        str,
        "path of the SMART app's clients JSON file (the EHRs it may be launched from, README 'The SMART app'); "
        "empty = the app is off: no `/app/…`, no `smart` link on cards. Needs `VCF_CDS_PUBLIC_URL`",
    ),
    Setting("HOST", "127.0.0.1", str, "address `vcf-cds serve` binds (`0.0.0.0` in the container)"),
    Setting("PORT", 8080, int, "port `vcf-cds serve` listens on (and `vcf-cds healthcheck` probes)"),
    Setting("WORKERS", 2, int, "gunicorn worker processes of `vcf-cds serve`"),
    Setting("THREADS", 4, int, "threads per gunicorn worker (gthread)"),
    Setting(
        "MIGRATE",
        "on",
        _on_off,
        "`off`: `vcf-cds serve` leaves the schema alone (`vcf-cds migrate` runs once, e.g. a Kubernetes Job)",
    ),
)


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults overlaid with the environment; a malformed value raises ``ValueError`` naming it."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = environ.get(PREFIX + s.name)
        if raw is None:
            values[s.name] = s.default
            continue
        try:
            values[s.name] = s.parse(raw)
        except ValueError as e:
            shown = "(hidden)" if s.secret else repr(raw)
            raise ValueError(f"{PREFIX}{s.name}={shown} is not valid: {e}") from None
    return values
