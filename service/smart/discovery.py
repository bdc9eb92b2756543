"""SMART discovery: ``{iss}/.well-known/smart-configuration`` (SMART App Launch 2.x), cached briefly."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..gather.fhirclient import https_or_loopback
from .http import CallError, call

CACHE_SECONDS = 300


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    scopes_supported: tuple[str, ...] = ()


class DiscoveryError(Exception):
    """The EHR's SMART configuration is unusable; the message says why (no URL, no secret)."""


def _endpoint(doc: dict[str, object], name: str) -> str:
    value = doc.get(name)
    # Endpoints may be on another host than the FHIR server (several EHRs do that); they must be
    # https all the same (http on loopback only, for development)
    if not isinstance(value, str) or not https_or_loopback(value):
        raise DiscoveryError(f"its {name} is missing or not an https URL")
    return value


def parse_configuration(doc: dict[str, object] | None) -> SmartConfiguration:
    if doc is None:
        raise DiscoveryError("it is not a JSON object")
    methods = doc.get("code_challenge_methods_supported")
    # SMART 2.x servers SHALL support S256 and say so; without it the code could be stolen in transit
    if not isinstance(methods, list) or "S256" not in methods:
        raise DiscoveryError("it does not offer PKCE with S256 (code_challenge_methods_supported)")
    scopes = doc.get("scopes_supported")
    return SmartConfiguration(
        _endpoint(doc, "authorization_endpoint"),
        _endpoint(doc, "token_endpoint"),
        tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
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
        configuration = parse_configuration(answer.body)
        with self._lock:
            self._cache[iss] = (time.monotonic() + CACHE_SECONDS, configuration)
        return configuration
