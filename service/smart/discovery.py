"""SMART discovery: ``{iss}/.well-known/smart-configuration`` (SMART App Launch 2.x), cached briefly."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..gather.fhirclient import loopback_host
from ..gather.origins import origin_of
from .http import CallError, call

CACHE_SECONDS = 300


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    scopes_supported: tuple[str, ...] = ()
    issuer: str | None = None  # the authorization server's issuer identifier (id_token iss, RFC 9207 iss)
    jwks_uri: str | None = None  # the keys its id_tokens are signed with
    iss_parameter_required: bool = False  # authorization_response_iss_parameter_supported (RFC 9207)


class DiscoveryError(Exception):
    """The EHR's SMART configuration is unusable; the message says why (no URL, no secret)."""


def loopback_http(url: str) -> bool:
    origin = origin_of(url)
    return origin is not None and origin.scheme == "http" and loopback_host(origin.host)


def _endpoint(doc: dict[str, object], name: str, iss: str, *, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    # Endpoints may be on another host than the FHIR server (several EHRs do that); they must be
    # https all the same. http on loopback is for a development EHR only: an https EHR must not send
    # the code, the verifier or a secret over plain http to whatever listens on this host
    if not isinstance(value, str):
        raise DiscoveryError(f"its {name} is missing or not an https URL")
    origin = origin_of(value)  # as urllib3, which connects, reads it
    usable = origin is not None and (origin.scheme == "https" or (loopback_http(value) and loopback_http(iss)))
    if not usable:
        raise DiscoveryError(f"its {name} is missing or not an https URL")
    return value


def parse_configuration(doc: dict[str, object] | None, iss: str) -> SmartConfiguration:
    if doc is None:
        raise DiscoveryError("it is not a JSON object")
    methods = doc.get("code_challenge_methods_supported")
    # SMART 2.x servers SHALL support S256 and say so; without it the code could be stolen in transit
    if not isinstance(methods, list) or "S256" not in methods:
        raise DiscoveryError("it does not offer PKCE with S256 (code_challenge_methods_supported)")
    scopes = doc.get("scopes_supported")
    issuer = doc.get("issuer")
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise DiscoveryError("its issuer is not a URL")
    return SmartConfiguration(
        str(_endpoint(doc, "authorization_endpoint", iss)),
        str(_endpoint(doc, "token_endpoint", iss)),
        tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
        issuer,
        _endpoint(doc, "jwks_uri", iss, required=False),
        doc.get("authorization_response_iss_parameter_supported") is True,
    )


class Discovery:
    """Fetches and caches each registered EHR's configuration (only ever called for a known iss)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}

    def __call__(self, iss: str) -> SmartConfiguration:
        with self._lock:
            cached = self._cache.get(iss)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            answer = call(
                "GET",
                f"{iss}/.well-known/smart-configuration",
                what="SMART configuration",
                headers={"Accept": "application/json"},
            )
        except CallError as e:
            raise DiscoveryError(str(e)) from None
        if answer.status != 200:
            raise DiscoveryError(f"HTTP {answer.status}")
        configuration = parse_configuration(answer.body, iss)
        with self._lock:
            self._cache[iss] = (time.monotonic() + CACHE_SECONDS, configuration)
        return configuration


def signing_keys(configuration: SmartConfiguration) -> list[dict[str, object]]:
    """The EHR's JWK Set (its ``jwks_uri``), to verify its id_token; raises ``DiscoveryError``."""
    if configuration.jwks_uri is None:
        raise DiscoveryError("it names no jwks_uri, so the EHR's id_token cannot be verified")
    try:
        answer = call("GET", configuration.jwks_uri, what="JWK Set", headers={"Accept": "application/json"})
    except CallError as e:
        raise DiscoveryError(str(e)) from None
    keys = answer.body.get("keys") if answer.status == 200 and answer.body else None
    if not isinstance(keys, list):
        raise DiscoveryError("its jwks_uri does not answer with a JWK Set")
    return [k for k in keys if isinstance(k, dict)]
