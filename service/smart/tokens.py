"""The EHR's token response → a session: what the app keeps, and what it refuses.

The id_token comes straight from the token endpoint over the connection the app opened, so its
issuer is the one the app asked (OpenID Connect Core 3.1.3.7: TLS may stand in for the signature
there); its audience and expiry are still checked. Only ``fhirUser`` is read from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


def fhir_user(token: Mapping[str, Any], client: SmartClient, now: datetime) -> str | None:
    """``fhirUser`` from the id_token (or the token response), as a reference usable as a performer."""
    claims: Mapping[str, Any] = {}
    id_token = token.get("id_token")
    if isinstance(id_token, str):
        try:
            claims = jwt.decode(
                id_token,
                options={"verify_signature": False, "verify_exp": False, "verify_aud": False},
                algorithms=["RS256", "RS384", "ES256", "ES384"],
            )
        except jwt.PyJWTError:
            raise TokenError("the EHR's id_token is not a JWT") from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client.client_id not in audiences:
            raise TokenError("the EHR's id_token is for another client")
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp < now.timestamp() - 60:
            raise TokenError("the EHR's id_token has expired")
    user = claims.get("fhirUser") or token.get("fhirUser")
    if not isinstance(user, str) or not FHIR_USER.fullmatch(user):
        return None
    base = client.iss + "/"
    return user.removeprefix(base) if user.startswith(base) else user


def session_from_token(
    token: Mapping[str, Any], client: SmartClient, now: datetime, app_context: str | None = None
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
    return Session(
        iss=client.iss,
        patient_id=patient,
        fhir_user=fhir_user(token, client, now),
        access_token=access,
        scope=scope if isinstance(scope, str) else "",
        app_context=context[:256] if isinstance(context, str) and context else app_context,
        csrf_token=new_secret(),
        expires_at=now + timedelta(seconds=min(seconds, MAX_LIFETIME)),
    )
