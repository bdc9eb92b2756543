"""Authorization code with PKCE (S256), through Authlib's OAuth 2 client (requests-based).

SMART App Launch 2.x: ``aud`` is the FHIR base URL (``iss``), ``launch`` is passed back for an EHR
launch, scopes are SMART v2. A public client authenticates with its ``client_id`` in the body
(``none``); a confidential one with HTTP Basic (``client_secret_basic``).
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from .clients import SmartClient
from .http import TIMEOUT, CallError, Deadline, configure, failures, read_capped

log = logging.getLogger("vcf_cds.smart")

# what the decision reads (service/catalog.py's prefetch), and the one thing the app writes
READ_SCOPES = (
    "patient/Patient.rs",
    "patient/Condition.rs",
    "patient/Observation.rs",
    "patient/MedicationRequest.rs",
    "patient/Encounter.rs",
    "patient/AllergyIntolerance.rs",
    "patient/Procedure.rs",
)
WRITE_SCOPE = "patient/Observation.c"


def scopes(ehr_launch: bool) -> str:
    return " ".join(("launch" if ehr_launch else "launch/patient", "openid", "fhirUser", *READ_SCOPES, WRITE_SCOPE))


def may_create_observations(granted: str) -> bool:
    """Whether granted scopes allow creating an Observation (SMART v2 ``c``, or v1 ``write``/``*``)."""
    for scope in granted.split():
        context, _, rest = scope.partition("/")
        resource, _, permissions = rest.partition(".")
        if context not in ("patient", "user") or resource not in ("Observation", "*"):
            continue
        permissions = permissions.split("?", 1)[0]
        if permissions in ("write", "*") or (permissions.isalpha() and "c" in permissions):
            return True
    return False


class TokenError(Exception):
    """The token exchange failed; the message is safe to show (an OAuth error code, never a token)."""


class _CappedOAuth2Session(OAuth2Session):  # type: ignore[misc]
    """Authlib's session, reading each answer as the app's other calls do: up to MAX_BYTES, within
    the Deadline of the call (Authlib itself would read the whole body, however large or slow)."""

    def request(self, method: str, url: str, withhold_token: bool = False, auth: Any = None, **kwargs: Any) -> Any:
        deadline: Deadline = self.deadline
        kwargs.update(stream=True, timeout=(max(deadline.remaining(), 0.01),) * 2)
        response = super().request(method, url, withhold_token, auth, **kwargs)
        with response:
            response._content = read_capped(response, deadline, "the EHR's token endpoint")
            response._content_consumed = True
        return response


def _client(client: SmartClient, redirect_uri: str, deadline: Deadline | None = None) -> OAuth2Session:
    oauth = _CappedOAuth2Session(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_endpoint_auth_method="client_secret_basic" if client.confidential else "none",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    oauth.deadline = deadline
    return configure(oauth)  # cookie, environment and socket policy of the app's other calls


def new_code_verifier() -> str:
    return str(generate_token(64))  # RFC 7636: 43-128 characters of the unreserved set


def authorization_url(
    client: SmartClient,
    endpoint: str,
    *,
    redirect_uri: str,
    state: str,
    code_verifier: str,
    launch: str | None,
) -> str:
    extra: dict[str, str] = {"aud": client.iss}
    if launch is not None:
        extra["launch"] = launch
    with _client(client, redirect_uri) as oauth:
        url, _ = oauth.create_authorization_url(
            endpoint, state=state, code_verifier=code_verifier, scope=scopes(launch is not None), **extra
        )
    return str(url)


def exchange_code(
    client: SmartClient, endpoint: str, *, redirect_uri: str, code: str, code_verifier: str
) -> dict[str, Any]:
    """The token response for ``code``, within TIMEOUT seconds in all; raises ``TokenError``."""
    what = "the EHR's token endpoint"
    try:
        with Deadline(TIMEOUT) as deadline, failures(what, deadline), _client(client, redirect_uri, deadline) as oauth:
            try:
                token = oauth.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    redirect_uri=redirect_uri,
                    allow_redirects=False,
                )
            except OAuthError as e:  # the EHR's answer: its error code says enough (descriptions are free text)
                raise TokenError(f"the EHR refused the authorization code ({e.error})") from None
            except ValueError:  # before failures(): requests' JSONDecodeError is also a RequestException
                raise TokenError(f"{what} did not answer with JSON") from None
            except (TypeError, OverflowError):  # Authlib's int(expires_in): a list, an object, 1e400
                raise TokenError(f"{what} answered an expiry (expires_in) that is not a number of seconds") from None
    except CallError as e:
        raise TokenError(str(e)) from None
    return dict(token)
