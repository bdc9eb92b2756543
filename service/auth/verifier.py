"""CDS Hooks client authentication: the EHR's signed JWT on every ``/cds-services`` call.

``verify_token`` is the whole decision and does no I/O of its own: the token, the audience (the URL
called), ``now``, the trusted issuers, a replay store and — only for issuers published by URL — a
JWK Set source are passed in. PyJWT (with ``cryptography``) parses the compact form and checks the
signature with an algorithm fixed before the key is chosen; the claims are checked here, against the
``now`` given. service/http/auth.py wires it in front of the hook handlers.

Rejections say nothing to the caller (401, one fixed OperationOutcome); the reason goes to the log
with the token's ``iss`` and ``kid`` only — never the token, never other claims.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import jwt
import orjson

from ..config import public_url as parse_public_url
from .issuers import (
    PRIVATE_JWK_MEMBERS,
    PUBLIC_URL_REQUIRED,
    IssuerRegistry,
    PublicUrlRequiredError,
    TrustedIssuer,
    load_issuers,
)
from .jwks import JwkList, JwksCache, JwksError
from .replay import MemoryReplayStore, ReplayStore, ReplayStoreFullError

if TYPE_CHECKING:
    from sqlalchemy import Engine

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


class TokenRejectedError(Exception):
    """Why a token was refused — for the log only. ``iss``/``kid`` as the token claimed them."""

    def __init__(self, reason: str, *, iss: object = None, kid: object = None):
        super().__init__(reason)
        self.reason = reason
        self.iss = iss
        self.kid = kid


Rejecter = Callable[[str], TokenRejectedError]


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


@dataclass
class Authenticator:
    """Per-app state: the issuers, the replay store and this process's JWK Set cache."""

    issuers: IssuerRegistry
    mode: str  # "on" or "off" (VCF_CDS_AUTH)
    replay: ReplayStore = field(default_factory=MemoryReplayStore)
    key_source: KeySource = field(default_factory=JwksCache)
    public_url: str = ""  # VCF_CDS_PUBLIC_URL, normalised; set whenever there are issuers


def authenticator(config: Mapping[str, Any], database: Engine) -> Authenticator:
    """The app's authenticator; ``PublicUrlRequiredError`` for trusted issuers without a public URL."""
    # here, not at the top: `vcf-cds serve` must set up multiprocess metrics before prometheus_client
    # is imported (service/observe/metrics.py), and the database replay store counts its failures
    from .replay_store import DatabaseReplayStore

    mode = str(config["AUTH"])
    issuers = config.get("ISSUERS")  # a test may hand a registry in directly
    if not isinstance(issuers, IssuerRegistry):
        issuers = load_issuers(config["TRUSTED_ISSUERS"]) if mode != "off" else IssuerRegistry()
    public_url = parse_public_url(str(config.get("PUBLIC_URL") or ""))
    if issuers and mode != "off" and not public_url:
        raise PublicUrlRequiredError(PUBLIC_URL_REQUIRED)
    auth = Authenticator(issuers=issuers, mode=mode, public_url=public_url)
    # in the database, shared by every worker and replica; the benchmark's ablation hands one in
    auth.replay = config.get("REPLAY_STORE") or DatabaseReplayStore(database)
    if config.get("JWKS_SOURCE") is not None:
        auth.key_source = config["JWKS_SOURCE"]
    return auth
