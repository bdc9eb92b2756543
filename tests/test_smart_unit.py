"""The SMART app's parts without servers: on/off, the clients file, discovery rules, scopes, the
Observation it writes, the timeline figure. The launch itself: tests/test_smart_app.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses

from service import create_app
from service.normalize.record import normalize
from service.pipeline import Engine
from service.smart.clients import SmartConfigError, load_clients
from service.smart.discovery import Discovery, DiscoveryError, parse_configuration
from service.smart.findings import BY_CODE, FindingInputError, observation, parse_value
from service.smart.oauth import may_create_observations, scopes
from service.smart.timeline import figure

from support.clock import NOW
from support.paths import FIXTURES

ISS = "https://ehr.example.org/fhir/r4"
ROW16 = FIXTURES / "patient-view" / "45-row16-tenderness-and-edema-unknown.json"


def clients_file(tmp_path: Path, clients: Any) -> str:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients))
    return str(path)


def smart_app(engine: Engine, tmp_path: Path, **config: Any) -> Any:
    return create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: NOW,
            "DATABASE_URL": "sqlite://",
            "PUBLIC_URL": "https://cds.example.org",
            "SMART_CLIENTS": clients_file(tmp_path, {"clients": [{"iss": ISS, "client_id": "vcf"}]}),
            **config,
        }
    )


def recommendation(cards: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in cards if c["extension"]["org.vcfcds"]["kind"] == "recommendation")


def test_off_by_default_no_app_and_no_smart_link(engine: Engine) -> None:
    app = create_app({"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "DATABASE_URL": "sqlite://"})
    client = app.test_client()
    for path in ("/app/launch?iss=" + ISS, "/app/", "/app/callback?state=x&code=y"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "application/fhir+json"
    cards = client.post("/cds-services/vcf-patient-view", json=json.loads(ROW16.read_text())["request"]).get_json()
    assert all(link["type"] != "smart" for card in cards["cards"] for link in card.get("links", []))


def test_configured_the_recommendation_card_links_to_the_app(engine: Engine, tmp_path: Path) -> None:
    client = smart_app(engine, tmp_path).test_client()
    request = {**json.loads(ROW16.read_text())["request"], "hookInstance": "hook-42"}
    cards = client.post("/cds-services/vcf-patient-view", json=request).get_json()["cards"]
    smart = [link for link in recommendation(cards)["links"] if link["type"] == "smart"]
    assert len(smart) == 1
    assert (smart[0]["url"], smart[0]["appContext"]) == ("https://cds.example.org/app/launch", "hook-42")
    others = [c for c in cards if c["extension"]["org.vcfcds"]["kind"] != "recommendation"]
    assert all(link["type"] != "smart" for card in others for link in card.get("links", []))


def test_app_needs_public_url_https_off_loopback(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(SmartConfigError, match="VCF_CDS_PUBLIC_URL"):
        smart_app(engine, tmp_path, PUBLIC_URL="")
    with pytest.raises(SmartConfigError, match="https"):
        smart_app(engine, tmp_path, PUBLIC_URL="http://cds.example.org")
    smart_app(engine, tmp_path, PUBLIC_URL="http://127.0.0.1:8080")  # loopback: allowed


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ({}, "must be"),
        ({"clients": []}, "must be"),
        ({"clients": [{"client_id": "x"}]}, "iss"),
        ({"clients": [{"iss": "http://ehr.example.org/fhir", "client_id": "x"}]}, "https"),
        ({"clients": [{"iss": ISS}]}, "client_id"),
        ({"clients": [{"iss": ISS, "client_id": "x", "secret": "s"}]}, "unknown keys"),
        (
            {
                "clients": [
                    {"iss": ISS, "client_id": "x", "slug": "a"},
                    {"iss": ISS + "/", "client_id": "y", "slug": "b"},
                ]
            },
            "twice",
        ),
        ({"clients": [{"iss": ISS, "client_id": "x", "slug": "a"}, {"iss": ISS + "/2", "client_id": "y"}]}, "slug"),
        (
            {
                "clients": [
                    {"iss": ISS, "client_id": "x", "slug": "a"},
                    {"iss": ISS + "/2", "client_id": "y", "slug": "a"},
                ]
            },
            "slug 'a' is listed twice",
        ),
        ({"clients": [{"iss": ISS, "client_id": "x", "slug": "../x"}]}, "slug"),
    ],
)
def test_clients_file_errors_say_what_is_wrong(tmp_path: Path, clients: Any, message: str) -> None:
    with pytest.raises(SmartConfigError, match=message):
        load_clients(clients_file(tmp_path, clients))


def test_client_secret_is_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(SmartConfigError) as e:
        load_clients(clients_file(tmp_path, {"clients": [{"iss": ISS, "client_id": "", "client_secret": "s3cr3t!"}]}))
    assert "s3cr3t!" not in str(e.value)
    loaded = load_clients(
        clients_file(tmp_path, {"clients": [{"iss": ISS + "/", "client_id": "x", "client_secret": "k"}]})
    )
    assert loaded[ISS].confidential


@responses.activate
def test_unknown_iss_is_refused_without_any_request(engine: Engine, tmp_path: Path) -> None:
    client = smart_app(engine, tmp_path).test_client()
    response = client.get("/app/launch?iss=https://evil.example.net/fhir&launch=abc")
    assert response.status_code == 400 and b"not registered" in response.data
    assert len(responses.calls) == 0


@responses.activate
def test_launch_redirects_with_pkce_aud_and_state_and_sets_a_lax_httponly_cookie(
    engine: Engine, tmp_path: Path
) -> None:
    responses.get(
        f"{ISS}/.well-known/smart-configuration",
        json={
            "authorization_endpoint": "https://ehr.example.org/oauth2/authorize",
            "token_endpoint": "https://ehr.example.org/oauth2/token",
            "code_challenge_methods_supported": ["S256"],
        },
    )
    client = smart_app(engine, tmp_path).test_client()
    response = client.get(f"/app/launch?iss={ISS}/&launch=xyz")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("https://ehr.example.org/oauth2/authorize?")
    for part in (
        "code_challenge_method=S256",
        "aud=https%3A%2F%2Fehr.example.org%2Ffhir%2Fr4",
        "launch=xyz",
        "redirect_uri=https%3A%2F%2Fcds.example.org%2Fapp%2Fcallback&",  # one EHR, no slug: /app/callback
        "state=",
        "client_id=vcf",
    ):
        assert part in location
    cookie = response.headers["Set-Cookie"]
    # off loopback a __Host- cookie: Secure, Path=/, no Domain, so no sibling host can plant one
    assert cookie.startswith("__Host-vcf_cds_smart_launch=") and "Domain" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie and "Path=/;" in cookie


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "not a JSON object"),
        ({"authorization_endpoint": "https://a/x", "token_endpoint": "https://a/t"}, "S256"),
        (
            {
                "authorization_endpoint": "http://ehr.example.org/a",
                "token_endpoint": "https://a/t",
                "code_challenge_methods_supported": ["S256"],
            },
            "authorization_endpoint",
        ),
        ({"authorization_endpoint": "https://a/x", "code_challenge_methods_supported": ["S256"]}, "token_endpoint"),
    ],
)
def test_unusable_discovery_documents(doc: Any, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        parse_configuration(doc, ISS)


@responses.activate
def test_discovery_does_not_follow_a_redirect_to_another_host() -> None:
    responses.get(
        f"{ISS}/.well-known/smart-configuration", status=302, headers={"Location": "https://evil.example.net/x"}
    )
    with pytest.raises(DiscoveryError, match="another host"):
        Discovery()(ISS)
    assert [c.request.url for c in responses.calls] == [f"{ISS}/.well-known/smart-configuration"]


def test_scopes_are_smart_v2_and_write_scope_is_recognised() -> None:
    ehr = scopes(True).split()
    assert ehr[:3] == ["launch", "openid", "fhirUser"] and "patient/Observation.c" in ehr
    assert all(s.endswith(".rs") for s in ehr if s.startswith("patient/") and s != "patient/Observation.c")
    assert scopes(False).split()[0] == "launch/patient"
    assert may_create_observations("patient/Observation.rs patient/Observation.c")
    assert may_create_observations("patient/*.cruds") and may_create_observations("user/Observation.write")
    assert not may_create_observations("patient/Observation.rs patient/Condition.c openid")


def test_observation_of_a_finding() -> None:
    obs = observation(
        BY_CODE["height-loss"],
        parse_value(BY_CODE["height-loss"], {"percent": "30"}),
        patient_id="p1",
        performer="Practitioner/9",
        when=NOW,
        body_site={"text": "T12"},
    )
    assert obs["code"]["coding"][0] == {
        "system": "http://vcf-cds.org/fhir/CodeSystem/finding",
        "code": "height-loss",
        "display": "Vertebral body height loss",
    }
    assert obs["valueQuantity"] == {"value": 30.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert (obs["status"], obs["subject"], obs["performer"], obs["bodySite"]) == (
        "final",
        {"reference": "Patient/p1"},
        [{"reference": "Practitioner/9"}],
        {"text": "T12"},
    )
    assert obs["effectiveDateTime"] == NOW.isoformat(timespec="seconds")
    for bad in ({"percent": "abc"}, {"percent": "120"}):
        with pytest.raises(FindingInputError):
            parse_value(BY_CODE["height-loss"], bad)
    with pytest.raises(FindingInputError):
        parse_value(BY_CODE["point-tenderness"], {"value": "maybe"})


def test_observation_round_trips_through_normalize(engine: Engine) -> None:
    """What the app writes is read back as the finding by the same normalize the hooks use."""
    obs = {
        **observation(BY_CODE["marrow-edema"], True, patient_id="p1", performer=None, when=NOW, body_site=None),
        "id": "new-1",
    }
    facts = normalize({"resourceType": "Patient", "id": "p1"}, [obs], terminology=engine.terminology, now=NOW)
    assert [(f.ref, f.present) for f in facts.findings["marrow-edema"]] == [("Observation/new-1", True)]


def _texts(fig: Any) -> str:
    parts = [str(t) for trace in fig.data for t in (trace.text or [])]
    parts += [str(a.text) for a in fig.layout.annotations]
    return " | ".join(parts)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "28-row14-synthea-15724005-edema-dxa-therapy.json",
            ["DXA T-score", "Osteoporosis therapy", "Marrow edema: present"],
        ),
        ("33-caution-inr-2-1-icd10-who-system.json", ["INR 2.1"]),
        ("34-caution-platelets-40.json", ["Platelets 40"]),
        ("30-row14-kyphoplasty-height-loss-30.json", ["Height loss 30 %"]),
    ],
)
def test_timeline_shows_labs_bone_health_and_findings_as_text(
    engine: Engine, fixture: str, expected: list[str]
) -> None:
    doc = json.loads((FIXTURES / "patient-view" / fixture).read_text())
    result = engine.evaluate("vcf-patient-view", doc["request"], now=_now(doc), new_uuid=lambda: "u", fetch=None)
    assert result.facts is not None and result.assessment is not None and result.record is not None
    from service.smart.evidence import index

    text = _texts(figure(result.facts, result.assessment, index(result.record.resources)))
    card = next(c for c in doc["expected"]["cards"] if c["kind"] == "recommendation")
    procedure = {"either": "vertebroplasty or kyphoplasty", "kyphoplasty": "balloon kyphoplasty"}[card["procedure"]]
    assert "Row " not in text and "either" not in text and "LCD" not in text  # the rules' words, not a reader's
    for words in expected + [
        f"Decision: {card['recommendation']} ({procedure})",
        "NRS 5",
        "NRS 7",
        "NRS 8",
    ]:
        assert words in text, (words, text)


def _now(doc: dict[str, Any]) -> Any:
    from datetime import UTC

    from service.normalize.fhirtime import parse_fhir_datetime

    moment, _ = parse_fhir_datetime(doc["now"], UTC)
    return moment


def test_serve_refuses_to_start_with_a_broken_smart_setup(tmp_path: Path) -> None:
    """``vcf-cds serve`` says why before any worker starts (a worker failing in create_app would loop)."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VCF_CDS_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    missing_url = {
        **env,
        "VCF_CDS_SMART_CLIENTS": clients_file(tmp_path, {"clients": [{"iss": ISS, "client_id": "x"}]}),
    }
    broken_file = {**env, "VCF_CDS_SMART_CLIENTS": str(tmp_path / "nope.json"), "VCF_CDS_PUBLIC_URL": "https://c.org"}
    for environment, words in ((missing_url, "VCF_CDS_PUBLIC_URL is not"), (broken_file, "cannot read")):
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--port", "0"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 2 and words in done.stderr, done.stderr
