"""Security review of the SMART app (issue 20), the parts that need no server. See
tests/test_smart_review_attacks.py for the launch itself. ``xfail(strict=True)`` marks a finding."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
import responses

from service.normalize.record import normalize
from service.pipeline import Engine
from service.smart.discovery import Discovery, DiscoveryError
from service.smart.findings import FORMS, missing_findings, observation

from support.clock import NOW
from support.paths import FIXTURES

ISS = "https://ehr.example.org/fhir/r4"
ROW16 = FIXTURES / "patient-view" / "45-row16-tenderness-and-edema-unknown.json"


@pytest.mark.parametrize("endpoint", ["token_endpoint", "authorization_endpoint"])
def test_an_https_ehr_cannot_send_the_code_to_plain_http_on_the_services_own_loopback(
    endpoint: str, fhir_mock: responses.RequestsMock
) -> None:
    """``https_or_loopback`` is the development allowance for a *loopback iss*; applied to the
    endpoints of an https iss it lets a discovery document send the authorization code, the PKCE
    verifier and a confidential client's secret over plain http to whatever listens on the
    service's own loopback (SSRF). Expected: endpoints of an https iss are https."""
    doc = {
        "authorization_endpoint": "https://ehr.example.org/oauth2/authorize",
        "token_endpoint": "https://ehr.example.org/oauth2/token",
        "code_challenge_methods_supported": ["S256"],
    }
    doc[endpoint] = "http://127.0.0.1:6379/token"
    fhir_mock.get(f"{ISS}/.well-known/smart-configuration", json=doc)
    with pytest.raises(DiscoveryError, match=endpoint):
        Discovery()(ISS)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.code)
def test_every_recordable_finding_is_read_back_and_its_form_goes_away(engine: Engine, form: object) -> None:
    """What the app writes for each of the four forms is read by the hooks' own normalize, and the
    form is no longer offered for the record that contains it (tests/test_smart_unit.py checks
    marrow edema only)."""
    from service.smart.findings import FindingForm

    assert isinstance(form, FindingForm)
    doc = json.loads(ROW16.read_text())
    request = doc["request"]
    value: bool | float = 25.0 if form.quantity else True
    written = {
        **observation(form, value, patient_id="pv45", performer="Practitioner/x", when=NOW, body_site=None),
        "id": f"new-{form.code}",
    }
    result = engine.evaluate("vcf-patient-view", request, now=NOW, new_uuid=lambda: "u", fetch=None)
    assert result.record is not None and result.assessment is not None and result.facts is not None
    assert form in missing_findings(result.assessment, result.facts)
    facts = normalize(
        result.record.patient, [*result.record.resources, written], terminology=engine.terminology, now=NOW
    )
    read = facts.findings.get(form.code) or ()
    assert [f.ref for f in read] == [f"Observation/new-{form.code}"]
    assert (read[0].value == 25.0) if form.quantity else (read[0].present is True)


# ---------------------------------------------------------------------------------------------- fixes


def test_annotation_units_are_not_shown() -> None:
    from service.smart.evidence import value
    from service.smart.words import unit

    assert unit("{score}") == "" and unit("mg{total}") == "mg" and unit("%") == "%" and unit(None) == ""
    pain = {"valueQuantity": {"value": 7, "unit": "{score}", "system": "http://unitsofmeasure.org"}}
    assert value(pain) == "7"


def test_banner_names_the_patient_with_birth_date_sex_and_identifier() -> None:
    from service.smart.words import banner

    patient = {
        "name": [{"use": "maiden", "family": "Old"}, {"use": "official", "given": ["Ana", "M"], "family": "Ruiz"}],
        "birthDate": "1950-01-02",
        "gender": "female",
        "identifier": [
            {"system": "urn:x", "value": "ssn-like"},
            {"use": "usual", "type": {"text": "MRN"}, "value": "12345"},
        ],
    }
    assert str(banner(patient)) == "Ana M Ruiz, born 1950-01-02, female, MRN 12345"
    assert str(banner({})) == "Name not recorded"


def _app(engine: Engine, tmp_path: Any, clients: list[dict[str, Any]], public: str = "https://cds.example.org") -> Any:
    from service import create_app

    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": clients}))
    return create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: NOW,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "PUBLIC_URL": public,
            "SMART_CLIENTS": str(path),
        }
    )


TWO = [
    {"iss": ISS, "client_id": "vcf", "slug": "one"},
    {"iss": "https://other.example.net/fhir", "client_id": "vcf", "slug": "two"},
]
CONFIG = {
    "authorization_endpoint": "https://ehr.example.org/oauth2/authorize",
    "token_endpoint": "https://ehr.example.org/oauth2/token",
    "code_challenge_methods_supported": ["S256"],
}


def _launch(client: Any) -> tuple[str, str]:
    from urllib.parse import parse_qs, urlsplit

    response = client.get(f"/app/launch?iss={ISS}")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return query["state"][0], query["redirect_uri"][0]


def test_each_ehr_has_its_own_redirect_uri_and_an_answer_at_another_ehrs_is_refused(
    engine: Engine, tmp_path: Any, fhir_mock: responses.RequestsMock
) -> None:
    fhir_mock.get(f"{ISS}/.well-known/smart-configuration", json=CONFIG)
    client = _app(engine, tmp_path, TWO).test_client()
    state, redirect_uri = _launch(client)
    assert redirect_uri == "https://cds.example.org/app/callback/one"
    answer = client.get(f"/app/callback/two?state={state}&code=c")
    assert answer.status_code == 400 and b"another EHR" in answer.data
    assert client.get(f"/app/callback?state={state}&code=c").status_code == 404  # no slug-less EHR here
    assert not [c for c in fhir_mock.calls if "token" in c.request.url]  # no code sent anywhere


@pytest.mark.parametrize(
    ("config", "iss", "why"),
    [
        ({}, "https://evil.example.net", b"another issuer"),
        ({"authorization_response_iss_parameter_supported": True}, None, b"does not name its issuer"),
        ({"issuer": "https://ehr.example.org/auth"}, ISS, b"another issuer"),
    ],
)
def test_rfc9207_iss_in_the_answer_must_be_the_ehrs(
    engine: Engine, tmp_path: Any, fhir_mock: responses.RequestsMock, config: Any, iss: str | None, why: bytes
) -> None:
    fhir_mock.get(f"{ISS}/.well-known/smart-configuration", json={**CONFIG, **config})
    client = _app(engine, tmp_path, [{"iss": ISS, "client_id": "vcf"}]).test_client()
    state, _ = _launch(client)
    extra = f"&iss={iss}" if iss else ""
    answer = client.get(f"/app/callback?state={state}&code=c{extra}")
    assert answer.status_code == 400 and why in answer.data
    assert not [c for c in fhir_mock.calls if "token" in c.request.url]


def test_a_state_from_another_browser_does_not_burn_it(engine: Engine, tmp_path: Any) -> None:
    from service.smart.store import Launch, save_launch, take_launch

    app = _app(engine, tmp_path, [{"iss": ISS, "client_id": "vcf"}])
    from service.state import app_state

    db = app_state(app).database.engine
    save_launch(db, "s", "mine", Launch(ISS, "v"), NOW)
    assert take_launch(db, "s", "someone-else", NOW) is None
    assert take_launch(db, "s", "mine", NOW) == Launch(ISS, "v")
    assert take_launch(db, "s", "mine", NOW) is None  # once


def test_pending_launches_are_capped(
    engine: Engine, tmp_path: Any, fhir_mock: responses.RequestsMock, monkeypatch: Any
) -> None:
    monkeypatch.setattr("service.smart.store.MAX_PENDING_LAUNCHES", 2)
    fhir_mock.get(f"{ISS}/.well-known/smart-configuration", json=CONFIG)
    client = _app(engine, tmp_path, [{"iss": ISS, "client_id": "vcf"}]).test_client()
    assert [client.get(f"/app/launch?iss={ISS}").status_code for _ in range(3)] == [302, 302, 503]


def test_a_token_response_without_a_verifiable_id_token_starts_no_session() -> None:
    from service.smart.clients import SmartClient
    from service.smart.oauth import TokenError
    from service.smart.tokens import session_from_token

    token = {"access_token": "a", "token_type": "Bearer", "patient": "p1"}
    with pytest.raises(TokenError, match="no id_token"):
        session_from_token(token, SmartClient(ISS, "vcf"), NOW, issuer=ISS, keys=[])
    hmac_signed = jwt.encode({"iss": ISS, "aud": "vcf", "exp": 2**40}, "k" * 32, algorithm="HS256")
    with pytest.raises(TokenError, match="asymmetric"):
        session_from_token({**token, "id_token": hmac_signed}, SmartClient(ISS, "vcf"), NOW, issuer=ISS, keys=[])


# ---------------------------------------------------------------------------------------------- second review

JWKS_URI = "https://ehr.example.org/oauth2/jwks"
TOKEN_URI = CONFIG["token_endpoint"]


def _rsa_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = _rsa_key()


def _jwk(key: Any, **extra: Any) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key)), "kid": "k1", **extra}


def _id_token(key: Any = SIGNING_KEY, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    body = {"iss": ISS, "sub": "u", "aud": "vcf", "exp": int(NOW.timestamp()) + 300, "fhirUser": "Practitioner/p1"}
    header = {k: v for k, v in {"kid": "k1", **(headers or {})}.items() if v is not None}
    if "kid" not in header:  # PyJWT adds none itself; None above means "no kid at all"
        return jwt.encode({**body, **claims}, key, algorithm="RS256", headers=header or None)
    return jwt.encode({**body, **claims}, key, algorithm="RS256", headers=header)


def _token_response(**extra: Any) -> dict[str, Any]:
    return {"access_token": "at", "token_type": "Bearer", "patient": "p1", "scope": "launch openid", **extra}


def _callback(
    engine: Engine,
    tmp_path: Any,
    fhir_mock: responses.RequestsMock,
    token_body: str,
    keys: list[dict[str, Any]] | None = None,
) -> Any:
    """A whole sign-in of one EHR whose token endpoint answers ``token_body``: the callback's answer."""
    fhir_mock.get(f"{ISS}/.well-known/smart-configuration", json={**CONFIG, "jwks_uri": JWKS_URI})
    fhir_mock.get(JWKS_URI, json={"keys": keys if keys is not None else [_jwk(SIGNING_KEY.public_key())]})
    fhir_mock.post(TOKEN_URI, body=token_body, content_type="application/json")
    client = _app(engine, tmp_path, [{"iss": ISS, "client_id": "vcf"}]).test_client()
    state, _ = _launch(client)
    return client.get(f"/app/callback?state={state}&code=c")


def test_the_sign_in_of_the_review_harness_works(
    engine: Engine, tmp_path: Any, fhir_mock: responses.RequestsMock
) -> None:
    answer = _callback(engine, tmp_path, fhir_mock, json.dumps(_token_response(id_token=_id_token())))
    assert answer.status_code == 303 and answer.headers["Location"] == "/app/"


@pytest.mark.parametrize("expires_in", ["1e400", "Infinity", "[1]", '{"s": 1}'])
def test_a_malformed_expires_in_fails_the_sign_in_not_the_service(
    engine: Engine, tmp_path: Any, fhir_mock: responses.RequestsMock, expires_in: str
) -> None:
    """``expires_in`` is parsed by Authlib (``int(expires_in)``) before the app sees the token: a number
    too large for an int (JSON ``1e400`` is infinity in Python) or not a number at all was a 500."""
    body = json.dumps(_token_response(id_token=_id_token())).replace('"scope"', f'"expires_in": {expires_in}, "scope"')
    answer = _callback(engine, tmp_path, fhir_mock, body)
    assert answer.status_code == 400 and b"Sign-in failed" in answer.data


def test_a_jwks_publishing_a_private_key_is_not_used(
    engine: Engine, tmp_path: Any, fhir_mock: responses.RequestsMock
) -> None:
    """A JWK Set carrying private key members (``d``): whoever reads it can sign id_tokens, so that
    key proves nothing (PyJWT's verification with a private key object was an AttributeError: a 500)."""
    leaked = _jwk(SIGNING_KEY)
    assert "d" in leaked
    answer = _callback(engine, tmp_path, fhir_mock, json.dumps(_token_response(id_token=_id_token())), [leaked])
    assert answer.status_code == 400 and b"not signed by a key the EHR publishes" in answer.data


@pytest.mark.parametrize(
    "headers",
    [
        {"kid": "unknown"},
        {"jku": "https://attacker.example/jwks"},
        {"x5u": "https://attacker.example/cert.pem", "kid": None},
        {"jwk": "inline"},
    ],
)
def test_an_id_token_signed_by_a_key_the_ehr_does_not_publish_is_refused(headers: dict[str, Any]) -> None:
    """Held: only the keys of the EHR's own jwks_uri count; ``jku``, ``x5u`` and ``jwk`` headers are
    never followed, an unknown ``kid`` matches nothing."""
    from service.smart.clients import SmartClient
    from service.smart.oauth import TokenError
    from service.smart.tokens import id_token_claims

    attacker = _rsa_key()
    published = [_jwk(SIGNING_KEY.public_key())]
    inline = {"jwk": _jwk(attacker.public_key())} if "jwk" in headers else {}
    token = _id_token(attacker, headers={**headers, **inline})
    with pytest.raises(TokenError, match="not signed by a key the EHR publishes"):
        id_token_claims(token, SmartClient(ISS, "vcf"), ISS, published, NOW)
    # and a key of another type under the right kid is no key for RS256
    ec = {"kty": "EC", "crv": "P-256", "kid": "k1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x"}
    with pytest.raises(TokenError, match="not signed by a key"):
        id_token_claims(_id_token(), SmartClient(ISS, "vcf"), ISS, [ec], NOW)


@pytest.mark.parametrize(
    ("aud", "azp", "accepted"),
    [
        ("vcf", None, True),
        (["vcf"], None, True),
        (["vcf", "other-app"], "vcf", True),
        (["vcf", "other-app"], None, False),
        (["vcf", "other-app"], "other-app", False),
        ("vcf", "other-app", False),
        (["other-app"], "vcf", False),
    ],
)
def test_an_id_token_for_several_audiences_names_this_client_as_its_authorized_party(
    aud: Any, azp: str | None, accepted: bool
) -> None:
    """OpenID Connect Core 3.1.3.7 (3-5): extra audiences must be trusted, and ``azp``, when present
    (and needed with several audiences), must be this client: a token issued to another app listing
    this one among its audiences does not sign this app in."""
    from service.smart.clients import SmartClient
    from service.smart.oauth import TokenError
    from service.smart.tokens import id_token_claims

    claims = {"aud": aud} | ({"azp": azp} if azp else {})
    token = _id_token(**claims)
    keys = [_jwk(SIGNING_KEY.public_key())]
    if accepted:
        assert id_token_claims(token, SmartClient(ISS, "vcf"), ISS, keys, NOW)["aud"] == aud
    else:
        with pytest.raises(TokenError, match="another client"):
            id_token_claims(token, SmartClient(ISS, "vcf"), ISS, keys, NOW)


@pytest.mark.parametrize("path", ["/app/logout", "/app/findings"])
@pytest.mark.parametrize("csrf", ["é", "\u202e", "x" * 5000])
def test_a_csrf_field_that_is_not_ascii_is_refused_not_a_500(
    engine: Engine, tmp_path: Any, path: str, csrf: str
) -> None:
    """``hmac.compare_digest`` raises TypeError for str with non-ASCII characters: a form field the
    browser sends was a 500 for a signed-in clinician (any non-ASCII paste in a tampered form)."""
    from datetime import timedelta

    from service.smart.store import Session, save_session
    from service.state import app_state

    app = _app(engine, tmp_path, [{"iss": ISS, "client_id": "vcf"}])
    session = Session(ISS, "p1", None, "at", "patient/Observation.c", None, "csrf-ok", NOW + timedelta(hours=1))
    cookie = save_session(app_state(app).database.engine, session, NOW)
    client = app.test_client()
    client.set_cookie("__Host-vcf_cds_smart", cookie, path="/", secure=True)
    answer = client.post(path, data={"csrf": csrf, "finding": "point-tenderness", "value": "present"})
    assert answer.status_code == 403 and b"CSRF" in answer.data


def test_only_the_first_few_matching_keys_of_a_jwks_are_tried() -> None:
    """A registered EHR answering a 1 MiB JWK Set of P-521 keys all under the token's kid cost 3 s of
    CPU per callback (each key built and tried): past MAX_KEYS_TRIED candidates, none is."""
    from service.smart.clients import SmartClient
    from service.smart.oauth import TokenError
    from service.smart.tokens import MAX_KEYS_TRIED, id_token_claims

    decoys = [_jwk(_rsa_key().public_key()) for _ in range(MAX_KEYS_TRIED)]
    right = _jwk(SIGNING_KEY.public_key())
    client = SmartClient(ISS, "vcf")
    assert id_token_claims(_id_token(), client, ISS, [*decoys[:-1], right], NOW)["sub"] == "u"
    with pytest.raises(TokenError, match="not signed by a key"):
        id_token_claims(_id_token(), client, ISS, [*decoys, right], NOW)


def test_a_redirect_two_url_parsers_read_differently_never_reaches_the_other_port() -> None:
    """Issue 16's attack on the app's own HTTP client: ``http://127.0.0.1:TRAP\\@127.0.0.1:HOME/`` is
    HOME to urllib.parse but TRAP to urllib3, which connects. The token must never reach TRAP."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from service.smart.http import CallError, call

    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.settimeout(0.5)
    trap_port = trap.getsockname()[1]

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            home_port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{trap_port}\\@127.0.0.1:{home_port}/fhir/Patient/p1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    home = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=home.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CallError):
            call("GET", f"http://127.0.0.1:{home.server_address[1]}/fhir/Patient/p1", what="read", token="at-secret")
        try:
            connection, _ = trap.accept()
        except TimeoutError:
            connection = None
        if connection is not None:
            connection.close()
        assert connection is None, "the app's HTTP client connected to the other port"
    finally:
        home.shutdown()
        home.server_close()
        trap.close()
