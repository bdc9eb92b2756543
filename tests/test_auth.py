"""CDS Hooks JWT authentication with real signatures: a hostile-token corpus (every one 401), valid
ES384/RS384/ES256/RS256 tokens, the spec's own example token, issuer files and the replay store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.auth.issuers import (
    IssuerConfigError,
    IssuerRegistry,
    PublicUrlRequiredError,
    is_loopback,
    load_issuers,
    parse_issuers,
)
from service.auth.jwks import JwkList, JwksError
from service.auth.replay import MemoryReplayStore, ReplayStoreFullError
from service.auth.verifier import MAX_TOKEN_CHARS, TokenRejectedError, verify_token
from service.pipeline import Engine

from support.builders import ICD10CM, condition, request
from support.clock import NOW, counter_uuids
from support.paths import CONFORMANCE
from support.tokens import (
    EHR,
    PUBLIC_URL,
    SERVICE_URL,
    Signer,
    claims,
    ec_signer,
    hs256_with_public_key,
    issuer_file,
    rsa_signer,
    unsigned,
)

SPEC = CONFORMANCE / "spec-2.0.1"
OTHER = "https://other-ehr.example.net"
JKU = "https://ehr.example.org/.well-known/jwks.json"
DISCOVERY_URL = f"{PUBLIC_URL}/cds-services"
T = int(NOW.timestamp())

# The complete example token of CDS Hooks 2.0.1, "Trusting CDS Clients" (HL7/cds-hooks, tag v2.0.1,
# input/pagecontent/index.md): header 24-jwt-header.json, payload 25-jwt-payload.json, signed with
# the published example key 27-jwk-private-spec-example-key.json; verifiable with 26-jwks-public.json.
SPEC_TOKEN = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9q"
    "d2tfdXJpIn0.eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZ"
    "XJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNW"
    "ItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0.d1WfLjGRKlcWB94l9do4cM8REXeY"
    "JLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb"
)


@dataclass
class Keys:
    es384: Signer
    rs384: Signer
    es256: Signer
    rs256: Signer
    impostor: Signer  # claims es384's kid, but its key was never published
    unknown: Signer  # a kid no issuer publishes
    other: Signer  # the second issuer's key
    jku_only: Signer  # published only at the allowlisted jku URL
    short_rsa: Signer  # RSA 1024: published, but too short to trust


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        es384=ec_signer("ehr-es384"),
        rs384=rsa_signer("ehr-rs384", "RS384", 3072),
        es256=ec_signer("ehr-es256", "ES256"),
        rs256=rsa_signer("ehr-rs256", "RS256", 2048),
        impostor=ec_signer("ehr-es384"),
        unknown=ec_signer("nobody"),
        other=ec_signer("other-1"),
        jku_only=ec_signer("ehr-jku"),
        short_rsa=rsa_signer("ehr-rsa1024", "RS384", 1024),
    )


def registry_doc(k: Keys) -> dict[str, Any]:
    return issuer_file(
        {
            "iss": EHR,
            "jwks": {"keys": [s.public_jwk() for s in (k.es384, k.rs384, k.es256, k.rs256, k.short_rsa)]},
            "jku": [JKU],
        },
        {"iss": OTHER, "jwks": {"keys": [k.other.public_jwk()]}, "tenant": "hospital-a"},
    )


class FakeKeySource:
    """JWK Sets by URL, as the JWKS cache would return them; records what was asked."""

    def __init__(self, sets: dict[str, list[JwkList]]):
        self.sets = sets
        self.calls: list[tuple[str, bool]] = []

    def keys(self, url: str, *, refresh: bool = False) -> JwkList:
        self.calls.append((url, refresh))
        versions = self.sets.get(url)
        if not versions:
            raise JwksError("HTTP 404")
        return versions[min(sum(1 for u, r in self.calls if u == url and r), len(versions) - 1)]


def bearer(token: str) -> str:
    return f"Bearer {token}"


def tampered(token: str, k: Keys) -> str:
    head, _, sig = token.split(".")
    forged = k.es384.sign(claims(NOW, sub="Practitioner/attacker")).split(".")[1]
    return f"{head}.{forged}.{sig}"


# Each builds the Authorization header value (None: no header) for a call to SERVICE_URL at NOW.
HOSTILE: dict[str, Callable[[Keys], str | None]] = {
    "missing Authorization header": lambda k: None,
    "Basic scheme": lambda k: "Basic dXNlcjpwYXNz",
    "Bearer without a token": lambda k: "Bearer ",
    "token without Bearer": lambda k: k.es384.sign(claims(NOW)),
    "not a JWT": lambda k: bearer("not-a-jwt"),
    "two segments": lambda k: bearer(".".join(k.es384.sign(claims(NOW)).split(".")[:2])),
    "segments not base64": lambda k: bearer("a!.b!.c!"),
    "alg none": lambda k: bearer(unsigned({"alg": "none", "typ": "JWT", "kid": k.es384.kid}, claims(NOW))),
    "alg none with a signature": lambda k: bearer(
        unsigned({"alg": "none", "kid": k.es384.kid}, claims(NOW), b"\x01" * 96)
    ),
    "alg missing": lambda k: bearer(unsigned({"typ": "JWT", "kid": k.es384.kid}, claims(NOW), b"\x01" * 96)),
    "HS256 signed with the public key": lambda k: bearer(hs256_with_public_key(k.es384, claims(NOW))),
    "PS384 (not accepted)": lambda k: bearer(k.rs384.sign(claims(NOW), alg="PS384")),
    "ES512 (not accepted)": lambda k: bearer(unsigned({"alg": "ES512", "kid": k.es384.kid}, claims(NOW), b"\x01")),
    "no kid": lambda k: bearer(unsigned({"alg": "ES384", "typ": "JWT"}, claims(NOW), b"\x01" * 96)),
    "unknown kid": lambda k: bearer(k.unknown.sign(claims(NOW))),
    "bad signature (impostor key, known kid)": lambda k: bearer(k.impostor.sign(claims(NOW))),
    "tampered payload": lambda k: bearer(tampered(k.es384.sign(claims(NOW)), k)),
    "signature of another token": lambda k: bearer(
        ".".join(k.es384.sign(claims(NOW)).split(".")[:2] + k.es384.sign(claims(NOW)).split(".")[2:])
    ),
    "RS384 header naming an EC key": lambda k: bearer(k.rs384.sign(claims(NOW), kid=k.es384.kid)),
    "ES256 header naming a P-384 key": lambda k: bearer(k.es256.sign(claims(NOW), kid=k.es384.kid)),
    "RSA key under 2048 bits": lambda k: bearer(k.short_rsa.sign(claims(NOW))),
    "another issuer's key": lambda k: bearer(k.other.sign(claims(NOW))),
    "expired": lambda k: bearer(k.es384.sign(claims(NOW, iat=T - 600, exp=T - 1))),
    "expires this second": lambda k: bearer(k.es384.sign(claims(NOW, iat=T - 300, exp=T))),
    "iat in the future": lambda k: bearer(k.es384.sign(claims(NOW, iat=T + 600, exp=T + 900))),
    "nbf in the future": lambda k: bearer(k.es384.sign(claims(NOW, nbf=T + 600))),
    "exp days ahead": lambda k: bearer(k.es384.sign(claims(NOW, exp=T + 3 * 86400))),
    "exp missing": lambda k: bearer(k.es384.sign(claims(NOW, exp=None))),
    "exp a string": lambda k: bearer(k.es384.sign(claims(NOW, exp=str(T + 300)))),
    "exp a boolean": lambda k: bearer(k.es384.sign(claims(NOW, exp=True))),
    "iat missing": lambda k: bearer(k.es384.sign(claims(NOW, iat=None))),
    "jti missing": lambda k: bearer(k.es384.sign(claims(NOW, jti=None))),
    "jti empty": lambda k: bearer(k.es384.sign(claims(NOW, jti=""))),
    "wrong aud (another service)": lambda k: bearer(k.es384.sign(claims(NOW, aud=f"{DISCOVERY_URL}/other"))),
    "wrong aud (another host)": lambda k: bearer(
        k.es384.sign(claims(NOW, aud="https://evil.example.com/cds-services/vcf-patient-view"))
    ),
    "wrong aud (http, not https)": lambda k: bearer(k.es384.sign(claims(NOW, aud=SERVICE_URL.replace("s:", ":", 1)))),
    "aud list without this URL": lambda k: bearer(k.es384.sign(claims(NOW, aud=[DISCOVERY_URL, "x"]))),
    "aud missing": lambda k: bearer(k.es384.sign(claims(NOW, aud=None))),
    "untrusted iss": lambda k: bearer(k.es384.sign(claims(NOW, iss="https://evil.example.com"))),
    "iss missing": lambda k: bearer(k.es384.sign(claims(NOW, iss=None))),
    "un-allowlisted jku": lambda k: bearer(k.es384.sign(claims(NOW), jku="https://evil.example.com/jwks.json")),
    "jku of another issuer": lambda k: bearer(k.other.sign(claims(NOW, iss=OTHER, tenant="hospital-a"), jku=JKU)),
    "tenant not trusted": lambda k: bearer(k.other.sign(claims(NOW, iss=OTHER, tenant="hospital-b"))),
    "typ not JWT": lambda k: bearer(k.es384.sign(claims(NOW), typ="at+jwt")),
    "crit header": lambda k: bearer(k.es384.sign(claims(NOW), crit=["exp"])),
    "payload not an object": lambda k: bearer(
        jwt.PyJWS().encode(b"[1, 2]", k.es384.private_key, algorithm="ES384", headers={"kid": k.es384.kid})
    ),
    "truncated": lambda k: bearer(k.es384.sign(claims(NOW))[:-12]),
    "oversized": lambda k: bearer(k.es384.sign(claims(NOW, pad="x" * MAX_TOKEN_CHARS))),
}


@pytest.fixture
def secured_app(engine: Engine, tmp_path: Path, keys: Keys) -> Flask:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(registry_doc(keys)))
    return create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: NOW,
            "NEW_UUID": counter_uuids(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}",
            "TRUSTED_ISSUERS": str(path),
            "PUBLIC_URL": PUBLIC_URL,
            "JWKS_SOURCE": FakeKeySource({JKU: [[keys.jku_only.public_jwk()]]}),
        }
    )


@pytest.fixture
def secured(secured_app: Flask) -> FlaskClient:
    return secured_app.test_client()


def hook_call(client: FlaskClient, authorization: str | None, **kwargs: Any) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    return client.post("/cds-services/vcf-patient-view", json=body, headers=headers, **kwargs)


# --- over HTTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_token_is_401_without_detail(
    secured: FlaskClient, keys: Keys, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    authorization = HOSTILE[case](keys)
    with caplog.at_level(logging.INFO, logger="vcf_cds"):
        response = hook_call(secured, authorization)
    assert response.status_code == 401, case
    assert response.mimetype == "application/fhir+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": "Authentication failed."}],
    }
    logged = caplog.text
    assert "JWT rejected" in logged or "refused" in logged
    if authorization and len(authorization) > 20:
        token = authorization.split()[-1]
        signature = token.split(".")[-1]
        assert token not in logged and (not signature or signature not in logged)  # never the token


@pytest.mark.parametrize("signer", ["es384", "rs384", "es256", "rs256"])
def test_valid_tokens_are_accepted(secured: FlaskClient, keys: Keys, signer: str) -> None:
    s: Signer = getattr(keys, signer)
    discovery = secured.get("/cds-services", headers={"Authorization": bearer(s.sign(claims(NOW, aud=DISCOVERY_URL)))})
    assert discovery.status_code == 200 and discovery.get_json()["services"]
    call = hook_call(secured, bearer(s.sign(claims(NOW))))
    assert call.status_code == 200 and call.get_json()["cards"]


def test_lenient_where_the_spec_allows(secured: FlaskClient, keys: Keys) -> None:
    token = keys.es384.sign(
        claims(NOW, aud=["https://elsewhere.example.org", SERVICE_URL], sub="client-1", nbf=T, tenant="anything"),
        typ="jwt",  # media types are case-insensitive
    )
    assert hook_call(secured, f"bearer  {token}").status_code == 200
    skewed = keys.es384.sign(claims(NOW, iat=T + 30))  # EHR clock half a minute ahead
    assert hook_call(secured, bearer(skewed)).status_code == 200


def test_replayed_jti_is_401(secured: FlaskClient, keys: Keys) -> None:
    token = keys.es384.sign(claims(NOW))
    assert hook_call(secured, bearer(token)).status_code == 200
    assert hook_call(secured, bearer(token)).status_code == 401
    # the same jti under a fresh signature is still the same token
    again = keys.rs384.sign(claims(NOW, jti=jwt.decode(token, options={"verify_signature": False})["jti"]))
    assert hook_call(secured, bearer(again)).status_code == 401


def test_allowlisted_jku_is_honoured(secured_app: Flask, keys: Keys) -> None:
    token = keys.jku_only.sign(claims(NOW), jku=JKU)
    assert hook_call(secured_app.test_client(), bearer(token)).status_code == 200
    assert secured_app.config["JWKS_SOURCE"].calls == [(JKU, False)]


def test_a_rejected_call_reads_no_body(secured: FlaskClient) -> None:
    # authentication comes first: an unauthenticated caller cannot make the service parse anything
    huge = b"[" + b" " * (11 * 1024 * 1024) + b"]"
    response = secured.post("/cds-services/vcf-patient-view", data=huge, content_type="application/json")
    assert response.status_code == 401
    assert secured.post("/cds-services/no-such-service", json={}).status_code == 401  # ids are not probed
    assert secured.post("/cds-services/vcf-patient-view/feedback", json={}).status_code == 401


def test_body_limits_apply_to_authenticated_calls(secured: FlaskClient, keys: Keys) -> None:
    def auth() -> dict[str, str]:
        return {"Authorization": bearer(keys.es384.sign(claims(NOW)))}

    url = "/cds-services/vcf-patient-view"
    big = b"[" + b" " * (11 * 1024 * 1024) + b"]"
    assert secured.post(url, data=big, content_type="application/json", headers=auth()).status_code == 413
    assert secured.post(url, data=b"hook=x", content_type="text/plain", headers=auth()).status_code == 415
    deep = b"[" * 100 + b"]" * 100
    assert secured.post(url, data=deep, content_type="application/json", headers=auth()).status_code == 400


def test_only_clinical_endpoints_need_a_token(secured: FlaskClient) -> None:
    assert secured.get("/nowhere").status_code == 404
    assert secured.options("/cds-services").status_code == 200  # Flask's automatic OPTIONS: no data in it


@pytest.mark.parametrize("public_url", [None, "", "  "])
def test_issuers_without_a_public_url_do_not_start(engine: Engine, keys: Keys, public_url: str | None) -> None:
    # the audience would otherwise come from the Host header, which any caller chooses
    config = {"TESTING": True, "ENGINE": engine, "ISSUERS": parse_issuers(registry_doc(keys)), "PUBLIC_URL": public_url}
    with pytest.raises(PublicUrlRequiredError, match="VCF_CDS_PUBLIC_URL"):
        create_app(config)
    create_app({**config, "AUTH": "off"})  # no JWT is checked, so no audience is needed


def test_public_url_with_a_path_prefix(engine: Engine, keys: Keys) -> None:
    app = create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: NOW,
            "ISSUERS": parse_issuers(registry_doc(keys)),
            "PUBLIC_URL": "https://apps.example.org/vcf/",
        }
    )
    token = keys.es384.sign(claims(NOW, aud="https://apps.example.org/vcf/cds-services"))
    response = app.test_client().get("/cds-services", headers={"Authorization": bearer(token)})
    assert response.status_code == 200


def test_without_issuers_only_loopback_callers_are_served(client: FlaskClient) -> None:
    assert client.get("/cds-services").status_code == 200  # the test client calls from 127.0.0.1
    assert client.get("/cds-services", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    remote = client.get("/cds-services", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert remote.status_code == 401 and remote.get_json()["resourceType"] == "OperationOutcome"


def test_loopback_addresses() -> None:
    loopback = ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]
    remote = [None, "", "0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "localhost.example.com"]
    assert all(map(is_loopback, loopback)) and not any(map(is_loopback, remote))


def test_auth_off_serves_any_address(engine: Engine, tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "ENGINE": engine, "AUTH": "off", "TRUSTED_ISSUERS": str(tmp_path / "absent")})
    response = app.test_client().get("/cds-services", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 200


def test_spec_example_token_over_http(engine: Engine) -> None:
    payload = json.loads((SPEC / "25-jwt-payload.json").read_text())
    app = create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "ISSUERS": spec_registry(),
            "PUBLIC_URL": "https://cds.example.org",
            "CLOCK": lambda: datetime.fromtimestamp(payload["exp"] - 60, UTC),
        }
    )
    client = app.test_client()
    headers = {"Authorization": bearer(SPEC_TOKEN)}
    first = client.post("/cds-services/some-service", json={}, headers=headers)
    assert first.status_code == 404  # authenticated; the spec's "some-service" just is not one of ours
    assert client.post("/cds-services/some-service", json={}, headers=headers).status_code == 401  # replay


# --- the verification function alone -----------------------------------------------------------


def spec_registry(**extra: Any) -> IssuerRegistry:
    entry = {
        "iss": "https://fhir-ehr.example.com/",
        "jwks": json.loads((SPEC / "26-jwks-public.json").read_text()),
        "jku": ["https://fhir-ehr.example.com/jwk_uri"],
        **extra,
    }
    return parse_issuers(issuer_file({k: v for k, v in entry.items() if v is not None}))


def verify(token: str, registry: IssuerRegistry, *, now: datetime = NOW, audience: str = SERVICE_URL, **kw: Any) -> Any:
    return verify_token(
        token, audience=audience, now=now, issuers=registry, replay=kw.pop("replay", MemoryReplayStore()), **kw
    )


def reason(call: Callable[[], Any]) -> str:
    with pytest.raises(TokenRejectedError) as e:
        call()
    return e.value.reason


def test_spec_example_token_verifies_with_the_spec_key_when_time_is_frozen() -> None:
    payload = json.loads((SPEC / "25-jwt-payload.json").read_text())
    frozen = datetime.fromtimestamp(payload["exp"] - 60, NOW.tzinfo)  # a non-UTC offset, as elsewhere
    verified = verify(SPEC_TOKEN, spec_registry(), now=frozen, audience=payload["aud"])
    assert (verified.iss, verified.kid, verified.jti, verified.tenant) == (
        payload["iss"],
        "example-kid",
        payload["jti"],
        payload["tenant"],
    )
    today = datetime.now(UTC)
    assert reason(lambda: verify(SPEC_TOKEN, spec_registry(), now=today, audience=payload["aud"])) == "expired"


def test_spec_example_key_signs_the_spec_header_and_payload() -> None:
    header = json.loads((SPEC / "24-jwt-header.json").read_text())
    payload = json.loads((SPEC / "25-jwt-payload.json").read_text())
    private = jwt.PyJWK(json.loads((SPEC / "27-jwk-private-spec-example-key.json").read_text()))
    token = jwt.encode(payload, private.key, algorithm=header.pop("alg"), headers=header)
    frozen = datetime.fromtimestamp(payload["exp"] - 1, UTC)
    assert verify(token, spec_registry(), now=frozen, audience=payload["aud"]).kid == "example-kid"


def test_spec_example_key_via_its_allowlisted_jku() -> None:
    payload = json.loads((SPEC / "25-jwt-payload.json").read_text())
    jwks = json.loads((SPEC / "26-jwks-public.json").read_text())
    source = FakeKeySource({"https://fhir-ehr.example.com/jwk_uri": [jwks["keys"]]})
    frozen = datetime.fromtimestamp(payload["exp"] - 60, UTC)
    registry = spec_registry(jwks=None)  # keys only at the jku URL
    assert verify(SPEC_TOKEN, registry, now=frozen, audience=payload["aud"], keys=source).tenant == payload["tenant"]
    not_allowlisted = spec_registry(jwks=None, jku=["https://fhir-ehr.example.com/other"])
    assert (
        reason(lambda: verify(SPEC_TOKEN, not_allowlisted, now=frozen, audience=payload["aud"], keys=source))
        == "jku not allowlisted for this issuer"
    )
    assert len(source.calls) == 1  # the un-allowlisted URL was never fetched


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("alg none", "alg 'none' not accepted"),
        ("HS256 signed with the public key", "alg 'HS256' not accepted"),
        ("unknown kid", "unknown kid"),
        ("bad signature (impostor key, known kid)", "bad signature"),
        ("tampered payload", "bad signature"),
        ("expired", "expired"),
        ("iat in the future", "iat in the future"),
        ("nbf in the future", "not valid yet (nbf)"),
        ("exp days ahead", "exp too far in the future"),
        ("wrong aud (another service)", "aud is not the URL called"),
        ("untrusted iss", "iss not trusted"),
        ("un-allowlisted jku", "jku not allowlisted for this issuer"),
        ("jku of another issuer", "jku not allowlisted for this issuer"),
        ("tenant not trusted", "tenant not trusted for this issuer"),
        ("truncated", "bad signature"),
        ("oversized", "token oversized"),
        ("RSA key under 2048 bits", "RSA key too short"),
        ("ES256 header naming a P-384 key", "key is published for another alg"),
        ("typ not JWT", "typ is not JWT"),
        ("crit header", "not a well-formed JWT"),  # PyJWT refuses extensions it does not implement
        ("payload not an object", "payload is not a JSON object"),
    ],
)
def test_rejection_reasons(keys: Keys, case: str, expected: str) -> None:
    authorization = HOSTILE[case](keys)
    assert authorization is not None
    registry = parse_issuers(registry_doc(keys))
    assert reason(lambda: verify(authorization.split()[-1], registry)) == expected


def test_unknown_kid_refreshes_the_published_set_once(keys: Keys) -> None:
    url = "https://rotating.example.org/jwks.json"
    registry = parse_issuers(issuer_file({"iss": EHR, "jwks_url": url}))
    source = FakeKeySource({url: [[keys.es384.public_jwk()], [keys.es384.public_jwk(), keys.rs384.public_jwk()]]})
    assert verify(keys.es384.sign(claims(NOW)), registry, keys=source).kid == keys.es384.kid
    assert source.calls == [(url, False)]
    assert verify(keys.rs384.sign(claims(NOW)), registry, keys=source).kid == keys.rs384.kid  # rotated in
    assert source.calls == [(url, False), (url, False), (url, True)]
    assert reason(lambda: verify(keys.unknown.sign(claims(NOW)), registry, keys=source)) == "unknown kid"
    assert reason(lambda: verify(keys.es384.sign(claims(NOW)), registry)) == "unknown kid"  # no source given


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"use": "enc"}, "key is not a signing key"),
        ({"key_ops": ["encrypt"]}, "key is not for verification"),
        ({"key_ops": "verify"}, "key is not for verification"),
        ({"crv": "P-256", "alg": None}, "key curve does not fit alg"),
        ({"d": "AAAA"}, "published key carries private members"),
        ({"x": "AAAA"}, "key unusable"),
        ({"key_ops": ["verify"], "use": None, "alg": None}, None),
    ],
)
def test_published_keys_are_checked_before_use(keys: Keys, change: dict[str, Any], expected: str | None) -> None:
    # inline keys are checked when the file is loaded; keys fetched from a URL are checked here
    url = "https://ehr.example.org/jwks"
    jwk = {k: v for k, v in {**keys.es384.public_jwk(), **change}.items() if v is not None}
    registry = parse_issuers(issuer_file({"iss": EHR, "jwks_url": url}))
    token = keys.es384.sign(claims(NOW))
    source = FakeKeySource({url: [[jwk]]})
    if expected is None:
        assert verify(token, registry, keys=source).kid == keys.es384.kid
    else:
        assert reason(lambda: verify(token, registry, keys=source)) == expected


def test_unreachable_jwks_is_a_rejection(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    registry = parse_issuers(issuer_file({"iss": EHR, "jwks_url": "https://down.example.org/jwks"}))
    with caplog.at_level(logging.WARNING, logger="vcf_cds"):
        assert reason(lambda: verify(keys.es384.sign(claims(NOW)), registry, keys=FakeKeySource({}))) == "unknown kid"
    assert "down.example.org" in caplog.text


def test_verified_token_carries_no_more_than_identity(keys: Keys) -> None:
    registry = parse_issuers(registry_doc(keys))
    verified = verify(keys.es384.sign(claims(NOW, sub="ehr-client", patient="Patient/123")), registry)
    assert (verified.iss, verified.sub, verified.exp) == (EHR, "ehr-client", T + 300)
    assert "Patient/123" not in repr(verified)


# --- replay store ------------------------------------------------------------------------------


def test_replay_store_remembers_until_expiry() -> None:
    store = MemoryReplayStore(capacity=10)
    assert store.claim("iss", "a", expires_at=100, now=0)
    assert not store.claim("iss", "a", expires_at=100, now=50)
    assert store.claim("other-iss", "a", expires_at=100, now=50)  # jti is unique per issuer
    assert store.claim("iss", "a", expires_at=200, now=100)  # expired entries are forgotten
    assert len(store) == 1


def test_replay_store_is_bounded_and_fails_closed() -> None:
    store = MemoryReplayStore(capacity=2)
    assert store.claim("i", "a", expires_at=10, now=0)
    assert store.claim("i", "b", expires_at=20, now=0)
    with pytest.raises(ReplayStoreFullError):
        store.claim("i", "c", expires_at=30, now=5)
    assert not store.claim("i", "a", expires_at=10, now=5)  # nothing unexpired was evicted
    assert store.claim("i", "c", expires_at=30, now=10)  # "a" expired: room again


def test_full_replay_store_rejects(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    registry = parse_issuers(registry_doc(keys))
    store = MemoryReplayStore(capacity=1)
    verify(keys.es384.sign(claims(NOW)), registry, replay=store)
    with caplog.at_level(logging.ERROR, logger="vcf_cds"):
        assert reason(lambda: verify(keys.es384.sign(claims(NOW)), registry, replay=store)) == "replay store full"
    assert "replay store is full" in caplog.text


# --- the trusted-issuer file -------------------------------------------------------------------


def test_product_md_issuer_file_format(tmp_path: Path, keys: Keys) -> None:
    doc = issuer_file(
        {"iss": "https://ehr.example.org", "jwks": {"keys": [keys.es384.public_jwk()]}},
        {
            "iss": "https://sandbox.cds-hooks.org",
            "jwks_url": "https://sandbox.cds-hooks.org/.well-known/jwks.json",
            "jku": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],
            "tenant": None,
        },
    )
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(doc))
    registry = load_issuers(path)
    sandbox = registry.get("https://sandbox.cds-hooks.org")
    assert sandbox is not None and sandbox.jku and sandbox.tenant is None
    assert registry.urls() == [sandbox.jwks_url, *sandbox.jku]
    assert not load_issuers("") and not load_issuers(None)


def private_spec_key() -> dict[str, Any]:
    return json.loads((SPEC / "27-jwk-private-spec-example-key.json").read_text())  # type: ignore[no-any-return]


BAD_FILES: dict[str, Any] = {
    "not an object": [],
    "no issuers list": {"issuer": []},
    "entry not an object": {"issuers": ["https://ehr.example.org"]},
    "iss missing": {"issuers": [{"jwks_url": "https://ehr.example.org/jwks"}]},
    "no key source": {"issuers": [{"iss": EHR}]},
    "typo in a field": {"issuers": [{"iss": EHR, "jwks_uri": "https://ehr.example.org/jwks"}]},
    "jwks not a set": {"issuers": [{"iss": EHR, "jwks": [private_spec_key()]}]},
    "private key": {"issuers": [{"iss": EHR, "jwks": {"keys": [private_spec_key()]}}]},
    "symmetric key": {"issuers": [{"iss": EHR, "jwks": {"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}}]},
    "key without kid": {
        "issuers": [{"iss": EHR, "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "a", "y": "b"}]}}]
    },
    "broken key": {"issuers": [{"iss": EHR, "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k", "x": "a"}]}}]},
    "key not an object": {"issuers": [{"iss": EHR, "jwks": {"keys": ["k"]}}]},
    "plain http jwks_url": {"issuers": [{"iss": EHR, "jwks_url": "http://ehr.example.org/jwks"}]},
    "jwks_url not a string": {"issuers": [{"iss": EHR, "jwks_url": 5}]},
    "jku not a list": {"issuers": [{"iss": EHR, "jku": "https://ehr.example.org/jwks"}]},
    "tenant not a string": {"issuers": [{"iss": EHR, "jwks_url": "https://ehr.example.org/jwks", "tenant": 1}]},
    "duplicate iss": {
        "issuers": [
            {"iss": EHR, "jwks_url": "https://a.example.org/j"},
            {"iss": EHR, "jku": ["https://b.example.org/j"]},
        ]
    },
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_issuer_file_is_refused_at_start(tmp_path: Path, case: str) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(BAD_FILES[case]))
    with pytest.raises(IssuerConfigError, match="issuers.json"):
        create_app({"TESTING": True, "TRUSTED_ISSUERS": str(path)})


def test_unreadable_issuer_files(tmp_path: Path) -> None:
    with pytest.raises(IssuerConfigError, match="cannot read"):
        load_issuers(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{issuers")
    with pytest.raises(IssuerConfigError, match="not JSON"):
        load_issuers(tmp_path / "bad.json")


def test_http_key_urls_only_on_loopback() -> None:
    registry = parse_issuers(issuer_file({"iss": EHR, "jwks_url": "http://127.0.0.1:9000/jwks", "jku": []}))
    assert registry.get(EHR) is not None


def test_now_is_taken_from_the_clock_given(keys: Keys) -> None:
    registry = parse_issuers(registry_doc(keys))
    token = keys.es384.sign(claims(NOW))
    later = NOW + timedelta(minutes=10)
    assert reason(lambda: verify(token, registry, now=later)) == "expired"
    assert verify(token, registry, now=NOW).iss == EHR
