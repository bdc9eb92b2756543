"""The authentication hook: every ``/cds-services`` call but a CORS preflight needs a verified JWT.

The decision is ``service.auth.verifier.verify_token``; here it is given the request's bearer token,
the audience (``VCF_CDS_PUBLIC_URL`` + the path called) and the clock. A refusal is one fixed 401
OperationOutcome, counted by reason class; the reason goes to the log with the token's ``iss`` and
``kid`` only — never the token, never other claims.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, current_app, g, has_request_context, request

from ..auth.issuers import is_loopback
from ..auth.verifier import TokenRejectedError, VerifiedToken, verify_token
from ..errors import AuthenticationError
from ..observe import metrics
from ..state import app_state

log = logging.getLogger("vcf_cds.auth")

CLINICAL_PREFIX = "/cds-services"

BEARER = re.compile(r"Bearer[ \t]+([^\s]+)[ \t]*", re.IGNORECASE)


def expected_audience() -> str:
    """``VCF_CDS_PUBLIC_URL`` + the path called; never the ``Host`` header or ``X-Forwarded-*``."""
    return app_state().auth.public_url + request.path


def is_clinical_path(path: str) -> bool:
    return path == CLINICAL_PREFIX or path.startswith(CLINICAL_PREFIX + "/")


def caller_fhir_servers() -> tuple[str, ...]:
    """The ``fhirServers`` of the issuer whose token this request carried (none without one)."""
    caller: VerifiedToken | None = g.get("cds_client") if has_request_context() else None
    issuer = app_state().auth.issuers.get(caller.iss) if caller else None
    return issuer.fhir_servers if issuer else ()


def reason_class(reason: str) -> str:
    """A closed vocabulary for the metric's label (the reasons themselves may quote the token)."""
    if reason == "no Bearer token":
        return "no-token"
    if reason == "jti replayed":
        return "replayed"
    if reason in ("expired", "not valid yet (nbf)", "iat in the future", "exp too far in the future"):
        return "time"
    if reason in ("iss not trusted", "tenant not trusted for this issuer", "aud is not the URL called"):
        return "not-trusted"
    if reason == "replay store full":
        return "replay-store-full"
    return "invalid"


def _printable(value: object) -> str | None:
    # the log names the claimed issuer and key; both are attacker-chosen strings, so bound and quote them
    return repr(value[:100]) if isinstance(value, str) else None


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
            metrics.UNAUTHENTICATED.labels(reason="no-issuers").inc()
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
            metrics.UNAUTHENTICATED.labels(reason=reason_class(e.reason)).inc()
            raise AuthenticationError("Authentication failed.") from None
