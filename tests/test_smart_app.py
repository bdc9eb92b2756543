"""The SMART app end to end, with real parts: Authlib's OAuth 2 server with PKCE and a real FHIR
server process (tests/smart_ehr.py), the service on a loopback HTTP server, and the whole launch
driven by ``requests`` (the negative cases) and by headless Chromium (the clinician's path, with
screenshots in ``artifacts/``).

Records: golden fixture 45 (row 16: tenderness and edema not documented) for the patient, fixture 20
for another patient, loaded into sekmet-fhir.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import create_engine, func, select, update

from service.pipeline import Engine
from service.store.db import smart_launch, smart_session

from support.chromium import CHROMEDRIVER, CHROMIUM, HEADLESS, headless_chromium
from support.paths import FIXTURES, ROOT
from support.served import free_port
from support.smart_ehr import (
    CLINICIAN,
    FakeEhr,
    LaunchContext,
    Served,
    build_ehr_app,
    fhir,
)
from support.smart_world import (
    PATIENT_FIXTURE,
    LogCollector,
    collected_logs,
    record_resources,
    sekmet_running,
    smart_service,
    transaction,
)

OTHER_FIXTURE = FIXTURES / "patient-view" / "20-row11-acute-outpatient-conservative.json"
FIXTURE = json.loads(PATIENT_FIXTURE.read_text())
ARTIFACTS = ROOT / "artifacts"


@dataclass
class World:
    ehr: FakeEhr
    app_url: str
    database: Any  # an engine on the service's database
    logs: LogCollector
    pages: list[str]

    def rows(self, table: Any) -> int:
        with self.database.connect() as c:
            return int(c.execute(select(func.count()).select_from(table)).scalar_one())

    def observations(self, patient: str) -> list[dict[str, Any]]:
        bundle = fhir(self.ehr.iss, "GET", f"Observation?patient={patient}&_count=100")
        return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Observation"]


@pytest.fixture(scope="module")
def world(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test EHR is http on loopback
    folder = tmp_path_factory.mktemp("smart")
    ehr_port, sekmet_port, app_port = free_port(), free_port(), free_port()
    ehr = FakeEhr(f"http://127.0.0.1:{ehr_port}", f"http://127.0.0.1:{sekmet_port}")
    served: list[Served] = []
    with sekmet_running(folder, sekmet_port, ehr.iss), collected_logs() as collector:
        try:
            app_url = f"http://127.0.0.1:{app_port}"
            served.append(Served(build_ehr_app(ehr, f"{app_url}/app/callback"), ehr_port))
            for fixture in (PATIENT_FIXTURE, OTHER_FIXTURE):
                fhir(ehr.iss, "POST", body=transaction(record_resources(fixture)))
            clients = folder / "smart-clients.json"
            clients.write_text(
                json.dumps({"clients": [{"iss": ehr.iss, "client_id": "vcf-cds-app", "client_secret": None}]})
            )
            app, database_url = smart_service(engine, folder, app_url, clients)
            served.append(Served(app, app_port))
            yield World(ehr, app_url, create_engine(database_url), collector, [])
        finally:
            for s in served:
                s.close()


def hook_call(world: World, hook_instance: str) -> dict[str, Any]:
    """The EHR's patient-view call for the patient (prefetched), as the card that links to the app."""
    body = {**FIXTURE["request"], "hookInstance": hook_instance}
    answer = requests.post(f"{world.app_url}/cds-services/vcf-patient-view", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    return next(c for c in cards if c["extension"]["org.vcfcds"]["kind"] == "recommendation")


def to_callback(world: World, context: LaunchContext | None) -> tuple[requests.Session, str]:
    """Launch (EHR launch with ``context``, standalone without) up to the EHR's redirect back to the
    app; the browser session and the callback URL (code and state)."""
    browser = requests.Session()
    params = {"iss": world.ehr.iss}
    if context is not None:
        params["launch"] = world.ehr.launch(context)
    first = browser.get(f"{world.app_url}/app/launch?{urlencode(params)}", allow_redirects=False, timeout=30)
    assert first.status_code == 302, first.text
    query = parse_qs(urlsplit(first.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["aud"] == [world.ehr.iss]
    scopes = query["scope"][0].split()
    assert "patient/Observation.c" in scopes and {"openid", "fhirUser"} <= set(scopes)
    assert ("launch" if context is not None else "launch/patient") in scopes
    authorized = browser.get(first.headers["Location"], allow_redirects=False, timeout=30)
    assert authorized.status_code == 302, authorized.text
    callback = authorized.headers["Location"]
    assert callback.startswith(f"{world.app_url}/app/callback?")
    return browser, callback


def get(world: World, browser: requests.Session, url: str) -> requests.Response:
    response = browser.get(url, allow_redirects=False, timeout=60)
    world.pages.append(response.text)
    return response


def signed_in(world: World, context: LaunchContext | None) -> requests.Session:
    browser, callback = to_callback(world, context)
    response = get(world, browser, callback)
    assert response.status_code == 303 and response.headers["Location"] == "/app/", response.text
    return browser


def test_card_links_to_the_app_with_an_opaque_app_context(world: World) -> None:
    card = hook_call(world, "hook-link-1")
    smart = [link for link in card["links"] if link["type"] == "smart"]
    assert smart == [
        {"label": smart[0]["label"], "url": f"{world.app_url}/app/launch", "type": "smart", "appContext": "hook-link-1"}
    ]


def test_ehr_launch_shows_the_assessment_read_with_the_apps_token(world: World) -> None:
    card = hook_call(world, "hook-ehr-1")
    browser = signed_in(world, LaunchContext("pv45", app_context="hook-ehr-1"))
    cookie = next(c for c in browser.cookies if c.name == "vcf_cds_smart")
    assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure  # loopback: not Secure
    page = get(world, browser, f"{world.app_url}/app/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    # the same recommendation as the card the EHR got from the hook endpoint
    ext = card["extension"]["org.vcfcds"]
    assert f'id="recommendation-value">{ext["recommendation"]}<' in page.text
    assert 'id="form-point-tenderness"' in page.text and 'id="form-marrow-edema"' in page.text
    assert 'id="timeline-figure"' in page.text


def test_standalone_launch_asks_for_a_patient_and_works(world: World) -> None:
    world.ehr.default_context = LaunchContext("pv20")
    browser, callback = to_callback(world, None)
    assert get(world, browser, callback).status_code == 303
    page = get(world, browser, f"{world.app_url}/app/")
    assert page.status_code == 200 and "VCF timeline" in page.text


def test_unknown_iss_is_refused_without_a_request(world: World) -> None:
    # a server that would notice any request: none may come
    hits: list[str] = []
    from flask import Flask

    trap = Flask("trap")

    @trap.route("/<path:p>")
    def any_path(p: str) -> str:
        hits.append(p)
        return "{}"

    server = Served(trap)
    try:
        iss = f"http://127.0.0.1:{server.port}/fhir"
        response = requests.get(f"{world.app_url}/app/launch", params={"iss": iss, "launch": "x"}, timeout=30)
    finally:
        server.close()
    assert response.status_code == 400 and "not registered" in response.text
    assert hits == []


def test_bad_and_reused_state_are_refused_and_store_nothing(world: World) -> None:
    browser, callback = to_callback(world, LaunchContext("pv45"))
    sessions = world.rows(smart_session)
    forged = re.sub(r"state=[^&]+", "state=forged-state", callback)
    bad = get(world, browser, forged)
    assert bad.status_code == 400 and "state is unknown, expired or already used" in bad.text
    assert world.rows(smart_session) == sessions
    assert get(world, browser, callback).status_code == 303  # the real one still works, once
    again = get(world, browser, callback)
    assert again.status_code == 400 and "already used" in again.text
    assert world.rows(smart_session) == sessions + 1


def test_state_from_another_browser_is_refused(world: World) -> None:
    _, callback = to_callback(world, LaunchContext("pv45"))
    sessions = world.rows(smart_session)
    other = requests.Session()
    assert get(world, other, callback).status_code == 400
    assert world.rows(smart_session) == sessions


def test_wrong_pkce_verifier_is_refused_by_the_ehr(world: World) -> None:
    browser, callback = to_callback(world, LaunchContext("pv45"))
    with world.database.begin() as c:  # the verifier the app will send is no longer the one it challenged with
        c.execute(update(smart_launch).values(code_verifier="x" * 64))
    sessions = world.rows(smart_session)
    response = get(world, browser, callback)
    assert response.status_code == 400 and "invalid_grant" in response.text
    assert world.rows(smart_session) == sessions


def test_token_for_another_patient_than_the_card_is_refused(world: World) -> None:
    hook_call(world, "hook-other-1")  # the card was about pv45
    browser, callback = to_callback(world, LaunchContext("pv20", app_context="hook-other-1"))
    sessions = world.rows(smart_session)
    response = get(world, browser, callback)
    assert response.status_code == 403 and "another patient" in response.text
    assert world.rows(smart_session) == sessions


def test_expired_session_is_a_clear_page(world: World) -> None:
    browser = signed_in(world, LaunchContext("pv45", expires_in=1))
    time.sleep(1.5)
    page = get(world, browser, f"{world.app_url}/app/")
    assert page.status_code == 401 and "expired" in page.text


def _form(page: str, finding: str) -> dict[str, str]:
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    return {"csrf": csrf.group(1), "finding": finding}


def test_without_write_scope_the_finding_is_refused_and_not_written(world: World) -> None:
    browser = signed_in(world, LaunchContext("pv45", grant_write=False))
    page = get(world, browser, f"{world.app_url}/app/")
    assert 'id="no-write"' in page.text
    before = len(world.observations("pv45"))
    answer = browser.post(
        f"{world.app_url}/app/findings", data={**_form(page.text, "point-tenderness"), "value": "present"}, timeout=60
    )
    world.pages.append(answer.text)
    assert answer.status_code == 403 and "patient/Observation.c" in answer.text
    assert len(world.observations("pv45")) == before


def test_fhir_server_refusing_the_write_is_a_clear_page(world: World) -> None:
    browser = signed_in(world, LaunchContext("pv45", fhir_write=False))
    page = get(world, browser, f"{world.app_url}/app/")
    before = len(world.observations("pv45"))
    answer = browser.post(
        f"{world.app_url}/app/findings", data={**_form(page.text, "marrow-edema"), "value": "present"}, timeout=60
    )
    world.pages.append(answer.text)
    assert answer.status_code == 502 and "refused the Observation (HTTP 403" in answer.text
    assert len(world.observations("pv45")) == before


def test_csrf_token_is_required(world: World) -> None:
    browser = signed_in(world, LaunchContext("pv45"))
    answer = browser.post(
        f"{world.app_url}/app/findings",
        data={"csrf": "not-the-token", "finding": "point-tenderness", "value": "present"},
        timeout=60,
    )
    assert answer.status_code == 403 and "CSRF" in answer.text


CHROMIUM_FLAGS = (*HEADLESS, "--window-size=1400,1800")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian 'chromium' and 'chromium-driver' (bash scripts/setup-system installs them)")
    pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency: bash scripts/setup")
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile"), CHROMIUM_FLAGS, 60) as driver:
        yield driver


def _ready(driver: Any, world: World | None = None) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: (
            d.execute_script("return document.readyState") == "complete"
            and d.execute_script("return document.body.dataset.ready") == "true"
        )
    )
    if world is not None:  # what the browser got, and where it is, for the token check at the end
        world.pages += [driver.page_source, driver.current_url]


def _problems(driver: Any) -> list[str]:
    """Console errors, CSP violations among them (Chromium reports them as SEVERE)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]


def _record(driver: Any, finding: str, choice: str) -> None:
    from selenium.webdriver.common.by import By

    form = driver.find_element(By.ID, f"form-{finding}")
    form.find_element(By.CSS_SELECTOR, f'input[value="{choice}"]').click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def _recommendation(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "recommendation-value").text)


def test_clinician_launches_sees_the_timeline_and_records_findings(world: World, chromium: Any) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    card = hook_call(world, "hook-browser-1")
    link = next(x for x in card["links"] if x["type"] == "smart")
    launch = world.ehr.launch(LaunchContext("pv45", app_context=link["appContext"]))
    before = {o["id"] for o in world.observations("pv45")}

    # the EHR opens the card's link with iss and launch; the rest is redirects to the EHR and back
    chromium.get(f"{link['url']}?{urlencode({'iss': world.ehr.iss, 'launch': launch})}")
    _ready(chromium, world)
    assert urlsplit(chromium.current_url).path == "/app/"
    assert chromium.get_screenshot_as_file(str(ARTIFACTS / "smart-1-launch.png"))
    assert _problems(chromium) == []  # no CSP violation: plotly.js drew under the page's policy
    old = card["extension"]["org.vcfcds"]["recommendation"]
    assert _recommendation(chromium) == old

    plot = chromium.find_element(By.ID, "timeline")
    svg_text = " ".join(t.text for t in plot.find_elements(By.CSS_SELECTOR, "text"))
    # readable without colour: thresholds, bands, lanes and the decision are written on the chart
    for words in ("NRS 5", "NRS 7", "NRS 8", "3 weeks", "6 weeks", "Fracture", "Decision", f"{old}"):
        assert words in svg_text, words
    assert plot.screenshot(str(ARTIFACTS / "smart-2-timeline.png"))
    evidence = chromium.find_element(By.ID, "criteria").text
    assert re.search(r"2026-\d\d-\d\d", evidence)  # evidence resolved to dates

    form = chromium.find_element(By.ID, "form-point-tenderness")
    form.find_element(By.CSS_SELECTOR, 'input[value="present"]').click()
    chromium.execute_script("arguments[0].scrollIntoView()", form)
    assert chromium.get_screenshot_as_file(str(ARTIFACTS / "smart-3-record-finding.png"))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _ready(chromium, world)
    assert "Recorded on the EHR" in chromium.find_element(By.ID, "notice").text
    assert not chromium.find_elements(By.ID, "form-point-tenderness")  # documented now
    _record(chromium, "marrow-edema", "present")
    _ready(chromium, world)
    assert _problems(chromium) == []
    new = _recommendation(chromium)
    chromium.execute_script("window.scrollTo(0, 0)")
    assert chromium.get_screenshot_as_file(str(ARTIFACTS / "smart-4-new-card.png"))

    created = [o for o in world.observations("pv45") if o["id"] not in before]
    assert sorted(o["code"]["coding"][0]["code"] for o in created) == ["marrow-edema", "point-tenderness"]
    for o in created:
        assert o["code"]["coding"][0]["system"] == "http://vcf-cds.org/fhir/CodeSystem/finding"
        assert o["subject"] == {"reference": "Patient/pv45"}
        assert o["performer"] == [{"reference": CLINICIAN}]
        assert o["status"] == "final" and o["valueBoolean"] is True and o["effectiveDateTime"].startswith("2026-06-15")
    # the app's new recommendation is the hook endpoint's for the record with the two findings
    body = json.loads(json.dumps(FIXTURE["request"]))
    body["hookInstance"] = "hook-browser-2"
    body["prefetch"]["observations"]["entry"] += [{"resource": o} for o in created]
    answer = requests.post(f"{world.app_url}/cds-services/vcf-patient-view", json=body, timeout=30).json()
    expected = next(c for c in answer["cards"] if c["extension"]["org.vcfcds"]["kind"] == "recommendation")
    assert new == expected["extension"]["org.vcfcds"]["recommendation"] != old


def test_no_token_in_pages_logs_or_urls(world: World) -> None:
    # runs after the others in this module (pytest keeps file order): every token the EHR issued
    assert world.ehr.issued
    texts = world.pages + world.logs.lines
    for token in world.ehr.issued:
        assert not any(token in t for t in texts)
        for part in token.split("."):  # nor any part of the JWT
            assert not any(part in t for t in texts if len(part) > 20)
