"""The EHR's token response → a session: what the app keeps, and what it refuses.

``fhirUser`` becomes the performer of every finding the clinician records, so the id_token it comes
from is verified in full: signed (an asymmetric algorithm, never ``none`` nor HMAC) by a key of the
EHR's ``jwks_uri``, issued by the EHR (its discovered ``issuer``, else the registered ``iss``), for
this client, not expired. A token response without a verifiable id_token starts no session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import jwt

from .clients import SmartClient
from .oauth import TokenError
from .store import Session, new_secret

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,8192}")  # what a bearer header can carry
FHIR_USER = re.compile(
    r"(https?://[^\s]{1,400}/)?(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}"
)
DEFAULT_LIFETIME = 3600  # when the EHR does not say (expires_in is RECOMMENDED only)
MAX_LIFETIME = 12 * 3600
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY = 60  # seconds of clock difference with the EHR
# An EHR publishes a few keys (the current one and the next); a JWK Set of thousands of P-521 keys
# under one kid would cost seconds of CPU per sign-in, each tried in turn
MAX_KEYS_TRIED = 8


def id_token_claims(
    id_token: object, client: SmartClient, issuer: str, keys: Sequence[Mapping[str, Any]], now: datetime
) -> Mapping[str, Any]:
    """The verified claims of the EHR's id_token; raises ``TokenError`` (never trusting it unverified)."""
    if not isinstance(id_token, str) or not id_token:
        raise TokenError("the EHR sent no id_token (the app asks for openid and fhirUser to know who records)")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise TokenError("the EHR's id_token is not a JWT") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in SIGNING_ALGORITHMS:
        raise TokenError("the EHR's id_token is not signed with an asymmetric algorithm")
    # a JWK with private members ("d") is a key anyone who read the JWK Set can sign with
    candidates = [
        k for k in keys if (kid is None or k.get("kid") == kid) and k.get("use", "sig") == "sig" and "d" not in k
    ]
    for jwk in candidates[:MAX_KEYS_TRIED]:
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=str(alg))
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[str(alg)],
                audience=client.client_id,
                issuer=issuer,
                options={"verify_exp": False, "require": ["iss", "aud", "exp"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue  # a key of another type or algorithm
        except jwt.InvalidAudienceError:
            raise TokenError("the EHR's id_token is for another client") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the EHR's id_token was issued by another server than this EHR") from None
        except jwt.PyJWTError:
            raise TokenError("the EHR's id_token is not valid") from None
        # OpenID Connect Core 3.1.3.7: a token issued to another client (its azp) that lists this one
        # among several audiences does not sign this one in
        azp, aud = claims.get("azp"), claims["aud"]
        if (azp is not None and azp != client.client_id) or (azp is None and isinstance(aud, list) and len(aud) > 1):
            raise TokenError("the EHR's id_token is for another client")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < now.timestamp() - LEEWAY:
            raise TokenError("the EHR's id_token has expired")
        return claims
    raise TokenError("the EHR's id_token is not signed by a key the EHR publishes (jwks_uri)")


def fhir_user(claims: Mapping[str, Any], client: SmartClient) -> str | None:
    """``fhirUser`` from the verified id_token, as a reference usable as a performer."""
    user = claims.get("fhirUser")
    if not isinstance(user, str) or not FHIR_USER.fullmatch(user):
        return None
    base = client.iss + "/"
    return user.removeprefix(base) if user.startswith(base) else user


def session_from_token(
    token: Mapping[str, Any],
    client: SmartClient,
    now: datetime,
    *,
    issuer: str,
    keys: Sequence[Mapping[str, Any]],
    app_context: str | None = None,
) -> Session:
    access = token.get("access_token")
    if not isinstance(access, str) or not TOKEN_CHARS.fullmatch(access):
        raise TokenError("the EHR's token response has no usable access_token")
    if str(token.get("token_type", "")).lower() != "bearer":
        raise TokenError("the EHR's token is not a Bearer token")
    patient = token.get("patient")
    if not isinstance(patient, str) or not FHIR_ID.fullmatch(patient):
        raise TokenError("the EHR gave no patient context (the app needs a patient in context)")
    scope = token.get("scope")
    lifetime = token.get("expires_in")
    seconds = int(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else DEFAULT_LIFETIME
    context = token.get("appContext")
    claims = id_token_claims(token.get("id_token"), client, issuer, keys, now)
    return Session(
        iss=client.iss,
        patient_id=patient,
        fhir_user=fhir_user(claims, client),
        access_token=access,
        scope=scope if isinstance(scope, str) else "",
        app_context=context[:256] if isinstance(context, str) and context else app_context,
        csrf_token=new_secret(),
        expires_at=now + timedelta(seconds=min(seconds, MAX_LIFETIME)),
    )
