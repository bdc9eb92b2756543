"""The trusted-issuer file (``VCF_CDS_TRUSTED_ISSUERS``): which EHRs may call, and their keys.

Parsed and checked once at start-up: public keys only (EC or RSA, each with a ``kid``), key URLs
over https (http only on loopback), each issuer's ``fhirServers`` as FHIR base URL prefixes.
``IssuerConfigError`` says what is wrong and where. With issuers, ``VCF_CDS_PUBLIC_URL`` is required
(``PUBLIC_URL_REQUIRED``): a JWT's audience is that URL, never what a request's headers say.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson

from ..gather.origins import UrlRefusedError, check_url

PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class IssuerConfigError(ValueError):
    """The trusted-issuer file is unreadable or malformed (raised at start-up)."""


PUBLIC_URL_REQUIRED = (
    "VCF_CDS_PUBLIC_URL is required when trusted issuers are configured: a JWT's `aud` must be the URL the "
    "EHR calls, and `Host` or `X-Forwarded-*` (which any caller sets) must not decide it. "
    "Set VCF_CDS_PUBLIC_URL to that base URL, e.g. https://cds.example.org."
)


class PublicUrlRequiredError(ValueError):
    """Trusted issuers without ``VCF_CDS_PUBLIC_URL``: the service must not start."""


@dataclass(frozen=True)
class TrustedIssuer:
    iss: str
    keys: tuple[dict[str, Any], ...] = ()  # inline public JWKs
    jwks_url: str | None = None
    jku: tuple[str, ...] = ()  # `jku` header values honoured for this issuer
    tenant: str | None = None  # when set, the token's `tenant` claim must equal it
    fhir_servers: tuple[str, ...] = ()  # FHIR base URL prefixes a call signed by this issuer may name


@dataclass
class IssuerRegistry:
    by_iss: dict[str, TrustedIssuer] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_iss)

    def get(self, iss: str) -> TrustedIssuer | None:
        return self.by_iss.get(iss)

    def urls(self) -> list[str]:
        return [u for i in self.by_iss.values() for u in ([i.jwks_url] if i.jwks_url else []) + list(i.jku)]


ISSUER_FIELDS = {"iss", "jwks", "jwks_url", "jku", "tenant", "fhirServers"}


def load_issuers(path: str | Path | None) -> IssuerRegistry:
    """The registry of ``VCF_CDS_TRUSTED_ISSUERS`` (empty for no path); ``IssuerConfigError`` if malformed."""
    if not path:
        return IssuerRegistry()
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise IssuerConfigError(f"trusted-issuer file {path}: cannot read ({e.strerror})") from None
    except orjson.JSONDecodeError as e:
        raise IssuerConfigError(f"trusted-issuer file {path}: not JSON ({e})") from None
    try:
        return parse_issuers(doc)
    except IssuerConfigError as e:
        raise IssuerConfigError(f"trusted-issuer file {path}: {e}") from None


def parse_issuers(doc: Any) -> IssuerRegistry:
    if not isinstance(doc, dict) or not isinstance(doc.get("issuers"), list):
        raise IssuerConfigError('expected {"issuers": [...]}')
    registry = IssuerRegistry()
    for n, entry in enumerate(doc["issuers"]):
        issuer = _parse_issuer(entry, f"issuers[{n}]")
        if issuer.iss in registry.by_iss:
            raise IssuerConfigError(f"issuers[{n}]: iss {issuer.iss!r} is listed twice")
        registry.by_iss[issuer.iss] = issuer
    return registry


def _parse_issuer(entry: Any, where: str) -> TrustedIssuer:
    if not isinstance(entry, dict):
        raise IssuerConfigError(f"{where}: expected an object")
    unknown = sorted(set(entry) - ISSUER_FIELDS)
    if unknown:  # a typo such as "jwks_uri" would otherwise leave an issuer without keys
        raise IssuerConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss:
        raise IssuerConfigError(f"{where}: `iss` must be a non-empty string")
    jwks, jwks_url, jku, tenant = entry.get("jwks"), entry.get("jwks_url"), entry.get("jku", []), entry.get("tenant")
    if jwks is None and jwks_url is None and not jku:
        raise IssuerConfigError(f"{where}: give `jwks`, `jwks_url` or `jku`")
    keys: list[dict[str, Any]] = []
    if jwks is not None:
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise IssuerConfigError(f'{where}.jwks: expected a JWK Set {{"keys": [...]}}')
        for k, jwk in enumerate(jwks["keys"]):
            keys.append(_check_public_jwk(jwk, f"{where}.jwks.keys[{k}]"))
    if jwks_url is not None:
        _check_url(jwks_url, f"{where}.jwks_url")
    if not isinstance(jku, list):
        raise IssuerConfigError(f"{where}.jku: expected a list of URLs")
    for u, url in enumerate(jku):
        _check_url(url, f"{where}.jku[{u}]")
    if tenant is not None and not isinstance(tenant, str):
        raise IssuerConfigError(f"{where}.tenant: expected a string or null")
    fhir_servers = entry.get("fhirServers", [])
    if not isinstance(fhir_servers, list):
        raise IssuerConfigError(f"{where}.fhirServers: expected a list of FHIR base URLs")
    for u, url in enumerate(fhir_servers):
        _check_fhir_prefix(url, f"{where}.fhirServers[{u}]")
    return TrustedIssuer(
        iss=iss, keys=tuple(keys), jwks_url=jwks_url, jku=tuple(jku), tenant=tenant, fhir_servers=tuple(fhir_servers)
    )


def _check_public_jwk(jwk: Any, where: str) -> dict[str, Any]:
    if not isinstance(jwk, dict):
        raise IssuerConfigError(f"{where}: expected a JWK object")
    if jwk.get("kty") not in ("EC", "RSA"):
        raise IssuerConfigError(f"{where}: kty must be EC or RSA (symmetric keys are not accepted)")
    if any(m in jwk for m in PRIVATE_JWK_MEMBERS):
        raise IssuerConfigError(f"{where}: a private key; give the issuer's public key only")
    if not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
        raise IssuerConfigError(f"{where}: `kid` is required (tokens name their key by it)")
    try:
        jwt.PyJWK(jwk)
    except jwt.PyJWTError as e:
        raise IssuerConfigError(f"{where}: not a usable public key ({e})") from None
    return jwk


def _check_url(url: Any, where: str) -> None:
    if not isinstance(url, str):
        raise IssuerConfigError(f"{where}: expected a URL string")
    try:  # the parser requests connects with decides the host (service/gather/origins.py)
        origin = check_url(url).origin
    except UrlRefusedError as e:
        raise IssuerConfigError(f"{where}: not a usable URL ({e})") from None
    if origin.scheme == "https" or is_loopback(origin.host):
        return  # http: a local test EHR
    raise IssuerConfigError(f"{where}: must be an https URL (http only on loopback)")


def _check_fhir_prefix(url: Any, where: str) -> None:
    if not isinstance(url, str):
        raise IssuerConfigError(f"{where}: expected a URL string")
    try:
        checked = check_url(url)
    except UrlRefusedError as e:
        raise IssuerConfigError(f"{where}: not a usable URL ({e})") from None
    if checked.query is not None or checked.fragment is not None:
        raise IssuerConfigError(f"{where}: a FHIR base URL has no query or fragment")


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return address.is_loopback or bool(mapped and mapped.is_loopback)
