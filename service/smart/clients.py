"""The EHRs the SMART app may be launched from: ``VCF_CDS_SMART_CLIENTS``, a JSON file.

``{"clients": [{"iss": "https://ehr.example.org/fhir/r4", "client_id": "vcf-cds", "client_secret": null}]}``

``iss`` is the EHR's FHIR base URL, as the EHR sends it in ``/app/launch?iss=…``. A launch naming any
other ``iss`` is refused before anything is fetched from it: the app never contacts a server an
operator did not register. ``client_secret`` makes the client confidential (client_secret_basic).

``slug`` names the EHR's own redirect URI, ``{VCF_CDS_PUBLIC_URL}/app/callback/{slug}``; required when
several EHRs are registered. An answer arriving at one EHR's callback is only ever sent back to that
EHR (RFC 9700 4.4: a registered EHR turned hostile cannot replay another EHR's code to itself). A
single EHR registered without a slug keeps ``{VCF_CDS_PUBLIC_URL}/app/callback``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..gather.fhirclient import https_or_loopback

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


class SmartConfigError(ValueError):
    """The clients file cannot be used; the message says why and never echoes a secret."""


@dataclass(frozen=True)
class SmartClient:
    iss: str  # normalized: no trailing slash
    client_id: str
    client_secret: str | None = None
    slug: str | None = None  # its callback: /app/callback/{slug} (None: /app/callback, one EHR only)

    @property
    def confidential(self) -> bool:
        return bool(self.client_secret)


def normal_iss(value: str) -> str:
    return value.strip().rstrip("/")


def _client(entry: Any, where: str) -> SmartClient:
    if not isinstance(entry, dict):
        raise SmartConfigError(f"{where} must be an object with iss and client_id")
    iss, client_id, secret = entry.get("iss"), entry.get("client_id"), entry.get("client_secret")
    if not isinstance(iss, str) or not iss.strip():
        raise SmartConfigError(f"{where}.iss must be the EHR's FHIR base URL")
    parts = urlsplit(iss.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SmartConfigError(f"{where}.iss is not an http(s) URL without query: {iss[:200]!r}")
    # the same rule as a hook call's fhirServer: https, or http on loopback (development)
    if not https_or_loopback(iss.strip()):
        raise SmartConfigError(f"{where}.iss must use https (http is accepted on loopback only): {iss[:200]!r}")
    if not isinstance(client_id, str) or not client_id.strip():
        raise SmartConfigError(f"{where}.client_id must be the client id the EHR registered for this app")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise SmartConfigError(f"{where}.client_secret must be a string or null")
    slug = entry.get("slug")
    if slug is not None and (not isinstance(slug, str) or not SLUG.fullmatch(slug)):
        raise SmartConfigError(f"{where}.slug must be 1-40 of a-z, 0-9 and -, starting with a letter or digit")
    unknown = set(entry) - {"iss", "client_id", "client_secret", "slug"}
    if unknown:
        raise SmartConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    return SmartClient(normal_iss(iss), client_id.strip(), secret, slug)


def load_clients(path: str | Path) -> dict[str, SmartClient]:
    """``iss`` → client. Raises ``SmartConfigError`` for a missing or malformed file."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise SmartConfigError(f"VCF_CDS_SMART_CLIENTS: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise SmartConfigError(f"VCF_CDS_SMART_CLIENTS: {path} is not JSON: {e}") from None
    entries = doc.get("clients") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SmartConfigError(f'VCF_CDS_SMART_CLIENTS: {path} must be {{"clients": [{{"iss": …, "client_id": …}}]}}')
    clients: dict[str, SmartClient] = {}
    for n, entry in enumerate(entries):
        client = _client(entry, f"VCF_CDS_SMART_CLIENTS clients[{n}]")
        if client.iss in clients:
            raise SmartConfigError(f"VCF_CDS_SMART_CLIENTS: iss {client.iss!r} is listed twice")
        if len(entries) > 1 and client.slug is None:
            raise SmartConfigError(
                f"VCF_CDS_SMART_CLIENTS clients[{n}] needs a slug: with several EHRs each has its own redirect URI, "
                "{VCF_CDS_PUBLIC_URL}/app/callback/{slug}"
            )
        if client.slug is not None and any(c.slug == client.slug for c in clients.values()):
            raise SmartConfigError(f"VCF_CDS_SMART_CLIENTS: slug {client.slug!r} is listed twice")
        clients[client.iss] = client
    return clients
