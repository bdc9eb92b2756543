"""CDS Hooks client authentication: the EHR's signed JWT on every ``/cds-services`` call.

``verify_token`` is the whole decision and does no I/O of its own: the token, the audience (the URL
called), ``now``, the trusted issuers, a replay store and — only for issuers published by URL — a
JWK Set source are passed in. PyJWT (with ``cryptography``) parses the compact form and checks the
signature with an algorithm fixed before the key is chosen; the claims are checked here, against the
``now`` given. ``init_app`` wires it in front of the hook handlers.

Rejections say nothing to the caller (401, one fixed OperationOutcome); the reason goes to the log
with the token's ``iss`` and ``kid`` only — never the token, never other claims.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
import orjson
from flask import Flask, current_app, g, request

from ..errors import AuthenticationError
from ..state import app_state
from .jwks import JwkList, JwksCache, JwksError

log = logging.getLogger("vcf_cds.auth")

# RFC 7518 names. ES384/RS384 are the CDS Hooks recommendation; never `none`, never HMAC (a shared
# secret would let anyone holding the "public" key mint tokens).
ALGORITHMS: Mapping[str, tuple[str, str | None]] = {  # alg -> (kty, crv)
    "ES384": ("EC", "P-384"),
    "RS384": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
}
MIN_RSA_BITS = 2048
CLOCK_SKEW = 60  # seconds an EHR's clock may run ahead of ours (`iat`, `nbf`)
MAX_LIFETIME = 3600  # seconds: a later `exp` is refused; it also bounds how long a `jti` is remembered
MAX_TOKEN_CHARS = 8192  # a CDS Hooks JWT is well under 2 kB; gunicorn caps a header line near here anyway
MAX_JTI_CHARS = 256
REPLAY_CAPACITY = 200_000  # remembered `jti`s per process (~200 B each)
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
CLINICAL_PREFIX = "/cds-services"

BEARER = re.compile(r"Bearer[ \t]+([^\s]+)[ \t]*", re.IGNORECASE)


class TokenRejectedError(Exception):
    """Why a token was refused — for the log only. ``iss``/``kid`` as the token claimed them."""

    def __init__(self, reason: str, *, iss: object = None, kid: object = None):
        super().__init__(reason)
        self.reason = reason
        self.iss = iss
        self.kid = kid


Rejecter = Callable[[str], TokenRejectedError]


class IssuerConfigError(ValueError):
    """The trusted-issuer file is unreadable or malformed (raised at start-up)."""


@dataclass(frozen=True)
class TrustedIssuer:
    iss: str
    keys: tuple[dict[str, Any], ...] = ()  # inline public JWKs
    jwks_url: str | None = None
    jku: tuple[str, ...] = ()  # `jku` header values honoured for this issuer
    tenant: str | None = None  # when set, the token's `tenant` claim must equal it


@dataclass(frozen=True)
class VerifiedToken:
    """What a valid token establishes about the caller (for audit; not PHI)."""

    iss: str
    kid: str
    jti: str
    exp: float
    sub: str | None = None
    tenant: str | None = None


class KeySource(Protocol):
    def keys(self, url: str, *, refresh: bool = False) -> JwkList: ...


class ReplayStore(Protocol):
    def claim(self, iss: str, jti: str, *, expires_at: float, now: float) -> bool:
        """Record ``(iss, jti)`` until ``expires_at``; False if it is already recorded (a replay).
        Raises ``ReplayStoreFullError`` rather than forget an unexpired entry."""
        ...


class ReplayStoreFullError(Exception):
    pass


class MemoryReplayStore:
    """Seen ``(iss, jti)`` pairs of this process, each kept until its token expires.

    Bounded: ``capacity`` unexpired entries at most; when full it refuses (fail closed) instead of
    evicting an entry whose token could still be replayed. Only verified tokens reach it, so only a
    trusted issuer can fill it. Per process: see the README on several workers or replicas.
    """

    def __init__(self, capacity: int = REPLAY_CAPACITY):
        self.capacity = capacity
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, iss: str, jti: str, *, expires_at: float, now: float) -> bool:
        key = hashlib.sha256(f"{iss}\0{jti}".encode()).digest()
        with self._lock:
            while self._heap and self._heap[0][0] <= now:  # each key is in the heap once: the only removal
                del self._expiry[heapq.heappop(self._heap)[1]]
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.capacity:
                raise ReplayStoreFullError
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True


@dataclass
class IssuerRegistry:
    by_iss: dict[str, TrustedIssuer] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_iss)

    def get(self, iss: str) -> TrustedIssuer | None:
        return self.by_iss.get(iss)

    def urls(self) -> list[str]:
        return [u for i in self.by_iss.values() for u in ([i.jwks_url] if i.jwks_url else []) + list(i.jku)]


# --- the trusted-issuer file -------------------------------------------------------------------

ISSUER_FIELDS = {"iss", "jwks", "jwks_url", "jku", "tenant"}


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
    return TrustedIssuer(iss=iss, keys=tuple(keys), jwks_url=jwks_url, jku=tuple(jku), tenant=tenant)


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
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return  # a local test EHR
    raise IssuerConfigError(f"{where}: must be an https URL (http only on loopback)")


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


# --- verification ------------------------------------------------------------------------------


def verify_token(
    token: str,
    *,
    audience: str,
    now: datetime,
    issuers: IssuerRegistry,
    replay: ReplayStore,
    keys: KeySource | None = None,
) -> VerifiedToken:
    """Verify a CDS Hooks JWT for a call to ``audience`` at ``now`` (timezone-aware).

    Returns what the token establishes; raises ``TokenRejectedError`` (reason for the log) on any
    failure. ``keys`` supplies JWK Sets for ``jwks_url``/allowlisted ``jku``; without it only inline
    keys are used. The ``jti`` is recorded in ``replay`` only once everything else has passed.
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejectedError("token oversized")
    try:
        unverified = jwt.PyJWS().decode_complete(token, options={"verify_signature": False})
        header, claims = unverified["header"], orjson.loads(unverified["payload"])
    except (jwt.PyJWTError, orjson.JSONDecodeError):
        raise TokenRejectedError("not a well-formed JWT") from None
    if not isinstance(claims, dict):
        raise TokenRejectedError("payload is not a JSON object")
    iss, kid, alg = claims.get("iss"), header.get("kid"), header.get("alg")

    def reject(reason: str) -> TokenRejectedError:
        return TokenRejectedError(reason, iss=iss, kid=kid)

    if alg not in ALGORITHMS:
        raise reject(f"alg {str(alg)[:20]!r} not accepted")
    if str(header.get("typ", "JWT")).upper() != "JWT":
        raise reject("typ is not JWT")
    if not isinstance(kid, str) or not kid:
        raise reject("no kid")
    if not isinstance(iss, str) or (issuer := issuers.get(iss)) is None:
        raise reject("iss not trusted")
    jku = header.get("jku")
    if jku is not None and jku not in issuer.jku:
        raise reject("jku not allowlisted for this issuer")

    jwk = _find_key(issuer, kid, alg, jku, keys, reject)
    public_key = _public_key(jwk, alg, reject)
    try:
        jwt.PyJWS(options={"enforce_minimum_key_length": True}).decode_complete(token, public_key, algorithms=[alg])
    except jwt.PyJWTError:
        raise reject("bad signature") from None

    moment = now.timestamp()
    _check_audience(claims.get("aud"), audience, reject)
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None:
        raise reject("exp missing")
    if exp <= moment:
        raise reject("expired")
    if exp > moment + MAX_LIFETIME + CLOCK_SKEW:
        raise reject("exp too far in the future")
    if iat is None:
        raise reject("iat missing")
    if iat > moment + CLOCK_SKEW:
        raise reject("iat in the future")
    if "nbf" in claims and ((nbf := _number(claims["nbf"])) is None or nbf > moment + CLOCK_SKEW):
        raise reject("not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise reject("jti missing or too long")
    tenant = claims.get("tenant")
    if issuer.tenant is not None and tenant != issuer.tenant:
        raise reject("tenant not trusted for this issuer")
    try:
        fresh = replay.claim(iss, jti, expires_at=exp + CLOCK_SKEW, now=moment)
    except ReplayStoreFullError:
        log.error("JWT replay store is full; refusing tokens until some expire")
        raise reject("replay store full") from None
    if not fresh:
        raise reject("jti replayed")
    sub = claims.get("sub")
    return VerifiedToken(
        iss=iss,
        kid=kid,
        jti=jti,
        exp=exp,
        sub=sub if isinstance(sub, str) else None,
        tenant=tenant if isinstance(tenant, str) else None,
    )


def _number(value: object) -> float | None:
    """A NumericDate as a float; None for anything else (booleans are not numbers here)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _check_audience(aud: object, expected: str, reject: Rejecter) -> None:
    wanted = expected.rstrip("/")
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(v, str) and v.rstrip("/") == wanted for v in values):
        raise reject("aud is not the URL called")


def _find_key(
    issuer: TrustedIssuer, kid: str, alg: str, jku: str | None, source: KeySource | None, reject: Rejecter
) -> dict[str, Any]:
    """The issuer's JWK named ``kid`` that fits ``alg``: inline keys, then ``jwks_url``, then the
    token's (allowlisted) ``jku``; URL sets are refetched once when the ``kid`` is unknown."""
    kty = ALGORITHMS[alg][0]

    def pick(candidates: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        return next((k for k in candidates if k.get("kid") == kid and k.get("kty") == kty), None)

    found = pick(issuer.keys)
    if found is not None:
        return found
    urls = [u for u in (issuer.jwks_url, jku) if u]
    if not urls or source is None:
        raise reject("unknown kid")
    for refresh in (False, True):
        for url in urls:
            try:
                found = pick(source.keys(url, refresh=refresh))
            except JwksError as e:
                log.warning("JWK Set unavailable for host %s: %s", urlsplit(url).hostname, e)
                continue
            if found is not None:
                return found
    raise reject("unknown kid")


def _public_key(jwk: dict[str, Any], alg: str, reject: Rejecter) -> Any:
    kty, crv = ALGORITHMS[alg]
    if jwk.get("alg") not in (None, alg):
        raise reject("key is published for another alg")
    if jwk.get("use") not in (None, "sig"):
        raise reject("key is not a signing key")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise reject("key is not for verification")
    if crv is not None and jwk.get("crv") != crv:
        raise reject("key curve does not fit alg")
    if any(m in jwk for m in PRIVATE_JWK_MEMBERS):
        raise reject("published key carries private members")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except jwt.PyJWTError:
        raise reject("key unusable") from None
    if kty == "RSA" and key.key_size < MIN_RSA_BITS:
        raise reject("RSA key too short")
    return key


# --- Flask -------------------------------------------------------------------------------------


@dataclass
class Authenticator:
    """Per-app state: the issuers, this process's replay store and the JWK Set cache."""

    issuers: IssuerRegistry
    mode: str  # "on" or "off" (VCF_CDS_AUTH)
    replay: ReplayStore = field(default_factory=MemoryReplayStore)
    key_source: KeySource = field(default_factory=JwksCache)


def expected_audience() -> str:
    """The URL called, as the EHR sees it: ``VCF_CDS_PUBLIC_URL`` + path when set (behind a proxy)."""
    public = str(current_app.config.get("PUBLIC_URL") or "")
    return public.rstrip("/") + request.path if public else request.base_url


def is_clinical_path(path: str) -> bool:
    return path == CLINICAL_PREFIX or path.startswith(CLINICAL_PREFIX + "/")


def _printable(value: object) -> str | None:
    # the log names the claimed issuer and key; both are attacker-chosen strings, so bound and quote them
    return repr(value[:100]) if isinstance(value, str) else None


def authenticator(config: Mapping[str, Any]) -> Authenticator:
    mode = str(config["AUTH"])
    issuers = config.get("ISSUERS")  # a test may hand a registry in directly
    if not isinstance(issuers, IssuerRegistry):
        issuers = load_issuers(config["TRUSTED_ISSUERS"]) if mode != "off" else IssuerRegistry()
    auth = Authenticator(issuers=issuers, mode=mode)
    if config.get("JWKS_SOURCE") is not None:
        auth.key_source = config["JWKS_SOURCE"]
    return auth


def init_app(app: Flask) -> None:
    auth = app_state(app).auth

    @app.before_request
    def authenticate() -> None:
        # a CORS preflight carries no credentials and no data; everything else under /cds-services does
        if request.method == "OPTIONS" or not is_clinical_path(request.path) or auth.mode == "off":
            return
        if not auth.issuers:
            if is_loopback(request.remote_addr):
                return  # development on this machine (vcf-cds serve warns loudly)
            log.warning("unauthenticated call from a non-loopback address refused: no trusted issuers configured")
            raise AuthenticationError("Authentication failed.")
        match = BEARER.fullmatch(request.headers.get("Authorization", ""))
        try:
            if match is None:
                raise TokenRejectedError("no Bearer token")
            g.cds_client = verify_token(
                match.group(1),
                audience=expected_audience(),
                now=current_app.config["CLOCK"](),
                issuers=auth.issuers,
                replay=auth.replay,
                keys=auth.key_source,
            )
        except TokenRejectedError as e:
            log.warning("JWT rejected: %s (iss=%s kid=%s)", e.reason, _printable(e.iss), _printable(e.kid))
            raise AuthenticationError("Authentication failed.") from None
