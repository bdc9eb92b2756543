"""Settings: embedded defaults, then ``VCF_CDS_*`` environment variables, then a test override.

Every setting is declared once here, with its default and meaning; the README documents each one
(a test fails when it does not).
"""

from __future__ import annotations

import os
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


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def _bool(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "off", "false", "no")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "sqlite:///vcf-cds.sqlite3",
        str,
        "SQLAlchemy URL; SQLite file in the working directory by default, `postgresql://…` in production",
    ),
    Setting("TRUSTED_ISSUERS", "", str, "path of the trusted-issuer JSON file (CDS Hooks JWT); empty = none"),
    Setting("AUTH", "on", str, "`off` accepts unauthenticated calls on any address (never in production)"),
    Setting("FHIR_ALLOWLIST", [], _list, "comma-separated URL prefixes a `fhirServer` must start with"),
    Setting("CORS_ORIGINS", [], _list, "comma-separated browser origins allowed by CORS (`*` for any)"),
    Setting("FHIR_TIMEOUT", 3.0, float, "total time budget in seconds for FHIR-server fallback searches"),
    Setting("MAX_BODY", 10 * 1024 * 1024, int, "largest accepted request body in bytes (413 above)"),
    Setting("BODY_TIMEOUT", 20.0, float, "seconds a client has to send the whole request body (408 after)"),
    Setting("EXTRA_MAPPINGS", "", str, "folder of site value sets merged over the shipped `mappings/`"),
    Setting("LOG_LEVEL", "INFO", str, "Python logging level"),
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
            raise ValueError(f"{PREFIX}{s.name}={raw!r} is not valid: {e}") from e
    return values
