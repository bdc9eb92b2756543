"""Settings: embedded defaults, then ``VCF_CDS_*`` environment variables, then a test override.

Every setting is declared once here, with its default and meaning; the README documents each one
(a test fails when it does not).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


def _public_url(value: str) -> str:
    url = value.strip().rstrip("/")
    if url and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", url):
        raise ValueError("expected an absolute http(s) URL without query or fragment, e.g. https://cds.example.org")
    return url


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
        _public_url,
        "public base URL the EHR calls (e.g. `https://cds.example.org`), behind a proxy; a JWT's `aud` must be "
        "this plus the path. Empty: the URL of the request as received",
    ),
    Setting("FHIR_ALLOWLIST", [], _list, "comma-separated URL prefixes a `fhirServer` must start with"),
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
