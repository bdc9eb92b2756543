"""The card viewer's server side: the page and its headers, the fixture endpoints, prepare and check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.devtools.expect import differences
from service.devtools.replay import expand
from service.pipeline import Engine

from support.clock import NOW, counter_uuids
from support.golden import golden, golden_files
from support.paths import FIXTURES

ROW14 = "patient-view/27-row14-epic-imo-multicoded-tenderness.json"
# the service's clock in these tests: later than the fixtures' now, in another zone, at another hour
LATER = datetime(2026, 11, 22, 3, 17, tzinfo=timezone(timedelta(hours=9)))


@pytest.fixture
def later_app(engine: Engine) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: LATER,
            "NEW_UUID": counter_uuids(),
            "DATABASE_URL": "sqlite://",
        }
    )


def test_the_page_is_served_with_a_strict_csp(client: FlaskClient) -> None:
    with client.get("/") as page:
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "require-trusted-types-for 'script'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in html and " style=" not in html  # nothing inline for the CSP to forbid
    for asset in ("viewer.js", "markdown.js", "viewer.css", "favicon.svg"):
        assert f"viewer/static/{asset}" in html
        with client.get(f"/viewer/static/{asset}") as response:
            assert response.status_code == 200 and "Content-Security-Policy" in response.headers


def test_the_scripts_never_parse_html() -> None:
    static = Path(__file__).resolve().parent.parent / "service" / "devtools" / "static" / "viewer"
    for script in static.glob("*.js"):
        # comments may name what the code must not do
        code = "\n".join(line for line in script.read_text().splitlines() if not line.strip().startswith("//"))
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code, f"{script.name} uses {sink}"


def test_fixture_list_names_every_file_with_its_description(client: FlaskClient) -> None:
    listed = client.get("/viewer/fixtures").get_json()["fixtures"]
    names = {f["name"]: f for f in listed}
    assert set(names) == {p.relative_to(FIXTURES).as_posix() for p in expand([FIXTURES])}
    row14 = names[ROW14]
    assert row14["description"].startswith("Row 14") and row14["hook"] == "patient-view"
    assert row14["service"] == "vcf-patient-view" and row14["expected"]["cards"][0]["kind"] == "recommendation"


def test_fixture_request_is_moved_to_the_service_clock(later_app: Flask) -> None:
    body = later_app.test_client().get(f"/viewer/fixtures/{ROW14}").get_json()
    assert body["name"] == ROW14 and body["now"] == "2026-06-15T10:00:00-04:00"
    # dates move by the UTC days between the clocks, dateTimes by the exact interval (rules 2026.12)
    assert body["shiftedDays"] == (LATER.astimezone(UTC).date() - NOW.astimezone(UTC).date()).days == 159
    [cond] = body["request"]["prefetch"]["conditions"]["entry"]
    assert cond["resource"]["onsetDateTime"] == "2026-09-12T13:17:00-04:00"  # + 159 days 4 h 17 min
    unmoved = later_app.test_client().get(f"/viewer/fixtures/{ROW14}?shift=0").get_json()
    assert unmoved["shiftedDays"] == 0
    [cond] = unmoved["request"]["prefetch"]["conditions"]["entry"]
    assert cond["resource"]["onsetDateTime"].startswith("2026-04-06")


def _as_the_viewer_does(client: FlaskClient, name: str) -> list[str]:
    prepared = client.get(f"/viewer/fixtures/{name}").get_json()
    response = client.post(f"/cds-services/{prepared['service']}", json=prepared["request"])
    if response.status_code != prepared["expected"].get("status", 200):
        return [f"HTTP {response.status_code}"]
    if response.status_code != 200:
        return []
    cards = response.get_json()["cards"]
    checked = client.post("/viewer/check", json={"cards": cards, "expected": prepared["expected"]}).get_json()
    assert checked["problems"] == differences(cards, prepared["expected"])
    return list(checked["problems"])


@pytest.mark.parametrize("path", golden(golden_files()))
def test_every_golden_fixture_holds_when_replayed_through_the_viewer(later_app: Flask, path: Path) -> None:
    """The viewer's path (prepare at another clock, then the EHR endpoint) gives the golden result."""
    problems = _as_the_viewer_does(later_app.test_client(), path.relative_to(FIXTURES).as_posix())
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    "name", ["../README.md", "..%2Fpyproject.toml", "/etc/passwd", "patient-view/../../pyproject.toml", "nope.json"]
)
def test_no_path_leads_out_of_the_fixtures_folder(client: FlaskClient, name: str) -> None:
    response = client.get(f"/viewer/fixtures/{name}", follow_redirects=True)  # "//etc" is merged: 308
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_symlink_out_of_the_folder_is_not_served(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "fixtures"
    folder.mkdir()
    secret = tmp_path / "secret.json"
    secret.write_text('{"hook": "patient-view"}')
    (folder / "link.json").symlink_to(secret)
    (folder / "broken.json").write_text("{not json")
    app = create_app({"TESTING": True, "ENGINE": engine, "FIXTURES": str(folder), "DATABASE_URL": "sqlite://"})
    client = app.test_client()
    listed = client.get("/viewer/fixtures").get_json()["fixtures"]
    assert [f["name"] for f in listed] == ["broken.json"] and "cannot read" in listed[0]["error"]
    assert client.get("/viewer/fixtures/link.json").status_code == 404
    assert client.get("/viewer/fixtures/broken.json").status_code == 400


def test_no_fixtures_folder_is_an_empty_list(engine: Engine, tmp_path: Path) -> None:
    app = create_app(
        {"TESTING": True, "ENGINE": engine, "FIXTURES": str(tmp_path / "none"), "DATABASE_URL": "sqlite://"}
    )
    assert app.test_client().get("/viewer/fixtures").get_json() == {"fixtures": []}
    assert app.test_client().get(f"/viewer/fixtures/{ROW14}").status_code == 404


def _bundle() -> dict[str, Any]:
    doc = json.loads((FIXTURES / ROW14).read_text())
    prefetch = doc["request"]["prefetch"]
    entries = [{"resource": prefetch["patient"]}] + prefetch["conditions"]["entry"] + prefetch["observations"]["entry"]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_prepare_wraps_a_pasted_bundle(client: FlaskClient) -> None:
    body = client.post("/viewer/prepare", json=_bundle()).get_json()
    assert body["request"]["hook"] == "patient-view" and body["service"] == "vcf-patient-view"
    assert body["request"]["context"]["patientId"] == "pv27" and body["expected"] is None
    assert len(body["request"]["prefetch"]["observations"]["entry"]) == 2
    cards = client.post("/cds-services/vcf-patient-view", json=body["request"]).get_json()["cards"]
    assert cards[0]["extension"]["org.vcfcds"]["recommendation"] == "augmentation"


def test_prepare_passes_a_request_through_and_moves_a_pasted_fixture(later_app: Flask) -> None:
    client = later_app.test_client()
    doc = json.loads((FIXTURES / ROW14).read_text())
    assert client.post("/viewer/prepare", json=doc["request"]).get_json()["request"] == doc["request"]
    moved = client.post("/viewer/prepare", json=doc).get_json()
    assert moved["shiftedDays"] == 159 and moved["expected"] == doc["expected"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "not a JSON object"),
        ({"resourceType": "Bundle", "entry": []}, "no Patient"),
        ({"resourceType": "Patient"}, "neither"),
        ({"bundle": "x"}, "Cannot use"),
        ({"request": [], "now": "2026-01-01"}, "not a JSON object"),
        ({"request": {"hook": "patient-view"}, "now": "yesterday"}, "not a FHIR dateTime"),
    ],
)
def test_prepare_refuses_what_it_cannot_use(client: FlaskClient, body: Any, message: str) -> None:
    response = client.post("/viewer/prepare", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["issue"][0]["diagnostics"]


def test_prepare_needs_json(client: FlaskClient) -> None:
    assert client.post("/viewer/prepare", data=b"{oops", content_type="application/json").status_code == 400
    assert client.post("/viewer/prepare", data=b"x", content_type="text/plain").status_code == 415


def test_check_compares_with_expect(client: FlaskClient) -> None:
    wrong = {"cards": [{"kind": "recommendation", "recommendation": "referral"}]}
    body = client.post("/viewer/check", json={"cards": [], "expected": wrong}).get_json()
    assert body["problems"] == differences([], wrong) != []
    assert client.post("/viewer/check", json={"cards": "x"}).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"cards": [None, None], "expected": {}},  # found by tests/test_schemathesis.py: was a 500
        {"cards": [{"extension": []}], "expected": {"cards": [{}]}},
        {"cards": [{}], "expected": {"cards": [{"cautions": [{}]}]}},
        {"cards": [{"extension": {"org.vcfcds": {"criteria": [1]}}}], "expected": {"cards": [{}]}},
        {"cards": [], "expected": {"cards": "x"}},
    ],
)
def test_check_refuses_cards_or_expectations_it_cannot_read(client: FlaskClient, body: Any) -> None:
    response = client.post("/viewer/check", json=body)
    assert response.status_code == 400
    assert "not shaped like" in response.get_json()["issue"][0]["diagnostics"]
