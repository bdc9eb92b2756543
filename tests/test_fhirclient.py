"""The FHIR-server fallback (service/gather/fhirclient.py): every branch against ``responses``.

Through the app where the answer to the EHR is the point (200 card, 412 naming the data), on
``FhirClient`` directly where a limit is (budget, bytes, pages), with small limits.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.errors import PrefetchUnavailableError
from service.gather.fhirclient import FhirClient, Limits, server_permit
from service.gather.prefetch import FetchFailure
from service.state import app_state

from support.apps import make_app
from support.builders import ICD10CM, PATIENT_ID, bundle, condition, pain, patient, request, vcf_extension
from support.clock import NOW

BASE = "https://ehr.example.org/fhir"
TOKEN = "at-5ecret-Token-value"
JWT = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlLm9yZyJ9.c2lnbmF0dXJl"
KEYS = ("patient", "conditions", "observations", "medications", "encounters", "allergies")
TYPES = {
    "conditions": "Condition",
    "observations": "Observation",
    "medications": "MedicationRequest",
    "encounters": "Encounter",
    "allergies": "AllergyIntolerance",
}
VCF = condition("c1", ICD10CM, "M80.08XA")
UNREACHABLE = "the FHIR server could not be reached"
ERROR = "the FHIR server answered with an error"


def searchset(*resources: dict[str, Any], more: str | None = None) -> dict[str, Any]:
    doc = bundle(*resources)
    if more:
        doc["link"] = [{"relation": "self", "url": f"{BASE}/x"}, {"relation": "next", "url": more}]
    return doc


def hook_call(*omit: str, server: str | None = BASE) -> dict[str, Any]:
    """A patient-view request with ``omit`` keys left out of prefetch (to be fetched)."""
    body = request(VCF, pain("o1", 7))
    for key in omit:
        del body["prefetch"][key]
    if server:
        body["fhirServer"] = server
        body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300}
    return body


def serve(mock: responses.RequestsMock, key: str, doc: Any, status: int = 200, **kwargs: Any) -> None:
    url = f"{BASE}/Patient/{PATIENT_ID}" if key == "patient" else f"{BASE}/{TYPES[key]}"
    body = doc if isinstance(doc, (bytes, str, Exception)) else orjson.dumps(doc)
    mock.add("GET", url, body=body, status=status, **kwargs)


def call(client: FlaskClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/cds-services/vcf-patient-view", json=body, headers=headers)


def diagnostics(response: Any) -> str:
    assert response.status_code == 412, response.get_data(as_text=True)
    text: str = response.get_json()["issue"][0]["diagnostics"]
    return text


@pytest.fixture
def app(engine: Any, tmp_path: Path, sqlite_template: Path) -> Iterator[Flask]:
    """The development-mode app (no trusted issuers) with BASE in VCF_CDS_FHIR_ALLOWLIST."""
    shutil.copy(sqlite_template, tmp_path / "test.sqlite3")
    app = make_app(engine, f"sqlite:///{tmp_path / 'test.sqlite3'}", FHIR_ALLOWLIST=[BASE])
    yield app
    app_state(app).database.engine.dispose()


@pytest.fixture
def direct() -> Iterator[Any]:
    """``run(queries, **limits)`` on a FhirClient of its own, closed (threads joined) afterwards."""
    made: list[FhirClient] = []

    def run(queries: dict[str, str], **limits: Any) -> dict[str, Any]:
        made.append(FhirClient([BASE], limits=Limits(**limits)))
        return made[-1](hook_call(), queries)

    yield run
    for c in made:
        c.close()


# --- through the app ---------------------------------------------------------------------------


def test_missing_keys_are_fetched_with_the_template_query_and_token(
    client: FlaskClient, fhir_mock: responses.RequestsMock
) -> None:
    serve(fhir_mock, "patient", patient())
    serve(fhir_mock, "conditions", searchset(VCF))
    serve(fhir_mock, "observations", searchset(pain("o1", 7)))
    response = call(client, hook_call("patient", "conditions", "observations"))
    assert response.status_code == 200
    assert vcf_extension(response.get_json()["cards"][0])["recommendation"]
    urls = sorted(c.request.url or "" for c in fhir_mock.calls)
    assert urls[0].startswith(f"{BASE}/Condition?patient={PATIENT_ID}")
    assert urls[1].startswith(f"{BASE}/Observation?patient={PATIENT_ID}&code=http") and "72514-3" in urls[1]
    assert urls[2] == f"{BASE}/Patient/{PATIENT_ID}"
    for c in fhir_mock.calls:
        assert c.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert c.request.headers["Accept"] == "application/fhir+json"


def test_null_is_no_data_and_not_fetched(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    body = hook_call("conditions")
    body["prefetch"].update(observations=None, medications=None)
    serve(fhir_mock, "conditions", searchset(VCF))
    assert call(client, body).status_code == 200
    assert [c.request.url.split("?")[0] for c in fhir_mock.calls] == [f"{BASE}/Condition"]  # type: ignore[union-attr]


def test_operation_outcome_in_prefetch_is_fetched(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    body = hook_call()
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    serve(fhir_mock, "conditions", searchset(VCF))
    assert call(client, body).get_json()["cards"]
    assert len(fhir_mock.calls) == 1


def test_next_links_are_followed(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    # the VCF is only on page 2: no card unless the next link was followed
    fhir_mock.add("GET", f"{BASE}/Condition", json=searchset(more=f"{BASE}?_getpages=abc&_page=2"))
    fhir_mock.add("GET", f"{BASE}", json=searchset(VCF))
    response = call(client, hook_call("conditions"))
    assert [vcf_extension(c)["kind"] for c in response.get_json()["cards"]][0] == "recommendation"


def test_outcome_entries_of_a_searchset_are_not_record_data(
    client: FlaskClient, fhir_mock: responses.RequestsMock
) -> None:
    warning = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "incomplete"}]}
    serve(fhir_mock, "conditions", searchset(VCF, warning))
    assert call(client, hook_call("conditions")).status_code == 200


def test_next_link_to_another_host_is_not_followed(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    serve(fhir_mock, "conditions", searchset(more="https://elsewhere.example.net/fhir/Condition?page=2"))
    text = diagnostics(call(client, hook_call("conditions")))
    assert "'conditions'" in text and "answered with an error: its next link leads to another origin" in text
    assert len(fhir_mock.calls) == 1


def test_paginated_prefetch_is_completed_from_fhir_server(
    client: FlaskClient, fhir_mock: responses.RequestsMock
) -> None:
    # CDS Hooks 3.0 ballot: a prefetched page with a next link; the VCF is on the next page
    body = hook_call()
    body["prefetch"]["conditions"] = searchset(more=f"{BASE}/Condition?patient={PATIENT_ID}&_page=2")
    fhir_mock.add("GET", f"{BASE}/Condition", json=searchset(VCF))
    assert call(client, body).get_json()["cards"]
    body["prefetch"]["conditions"] = searchset(more="https://elsewhere.example.net/Condition?_page=2")
    assert "not on fhirServer" in diagnostics(call(client, body))


def test_partial_failure_of_optional_data_leaves_criteria_unknown(
    client: FlaskClient, fhir_mock: responses.RequestsMock
) -> None:
    serve(fhir_mock, "conditions", searchset(VCF))
    serve(fhir_mock, "observations", b"oops", status=500)
    serve(fhir_mock, "medications", requests.exceptions.ReadTimeout("read timed out"))
    serve(fhir_mock, "encounters", searchset())
    serve(fhir_mock, "allergies", b"<html>not json</html>")
    response = call(client, hook_call("conditions", "observations", "medications", "encounters", "allergies"))
    assert response.status_code == 200
    assert "pain_score" in vcf_extension(response.get_json()["cards"][0])["missing"]


@pytest.mark.parametrize(
    ("key", "answer", "status", "says"),
    [
        ("conditions", {"resourceType": "OperationOutcome"}, 401, f"Condition search: {ERROR}: HTTP 401 (the access"),
        ("conditions", {"resourceType": "OperationOutcome"}, 403, f"Condition search: {ERROR}: HTTP 403"),
        ("patient", b"Service Unavailable", 503, f"Patient read: {ERROR}: HTTP 503"),
        # no answer, whatever the reason: one text (a refused port and a silent one read the same)
        ("conditions", requests.exceptions.ConnectTimeout("x"), 200, f"Condition search: {UNREACHABLE}"),
        ("conditions", requests.exceptions.ReadTimeout("x"), 200, f"Condition search: {UNREACHABLE}"),
        ("conditions", requests.exceptions.ConnectionError("x"), 200, f"Condition search: {UNREACHABLE}"),
        ("conditions", requests.exceptions.InvalidHeader("x"), 200, f"Condition search: {UNREACHABLE}"),
        ("conditions", b"\x00garbage", 200, f"Condition search: {ERROR}: the answer is not JSON"),
        ("conditions", [1, 2], 200, f"Condition search: {ERROR}: the answer is not a FHIR resource"),
        ("conditions", {"resourceType": "Bundle", "type": "collection"}, 200, "not a FHIR searchset Bundle"),
        ("conditions", {"resourceType": "Bundle", "type": "searchset", "entry": {}}, 200, "entry is not a list"),
        ("patient", searchset(patient()), 200, f"Patient read: {ERROR}: the answer is not a Patient resource"),
    ],
)
def test_required_data_that_fails_is_412_saying_which_and_why(
    client: FlaskClient, fhir_mock: responses.RequestsMock, key: str, answer: Any, status: int, says: str
) -> None:
    serve(fhir_mock, key, answer, status=status)
    response = call(client, hook_call(key), Authorization=f"Bearer {JWT}")
    text = diagnostics(response)
    assert f"'{key}'" in text and says in text
    raw = response.get_data(as_text=True)
    assert TOKEN not in raw and JWT not in raw and "patient=" not in raw and BASE not in raw


def test_cross_host_redirect_is_refused_and_same_host_followed(
    client: FlaskClient, fhir_mock: responses.RequestsMock
) -> None:
    fhir_mock.add("GET", f"{BASE}/Condition", status=302, headers={"Location": "https://evil.example.net/steal"})
    assert "redirect to another origin" in diagnostics(call(client, hook_call("conditions")))
    assert len(fhir_mock.calls) == 1  # evil.example.net was never asked (and got no token)

    fhir_mock.replace("GET", f"{BASE}/Condition", status=307, headers={"Location": "/fhir/moved/Condition?p=1"})
    fhir_mock.add("GET", f"{BASE}/moved/Condition", json=searchset(VCF))
    assert call(client, hook_call("conditions")).status_code == 200


def test_redirect_loop_is_bounded(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    fhir_mock.add("GET", f"{BASE}/Condition", status=301, headers={"Location": f"{BASE}/Condition?again=1"})
    assert "more than 3 redirects" in diagnostics(call(client, hook_call("conditions")))
    assert len(fhir_mock.calls) == 4


@pytest.mark.parametrize(
    "server",
    [
        "http://10.1.2.3/fhir",
        "http://ehr.example.org/fhir",
        "https://user:pw@ehr.example.org/fhir",
        "https://other.example.org/fhir",  # https anywhere was the old default: no longer
        "http://169.254.169.254/latest/meta-data",
        "https://ehr.example.org.evil.net/fhir",
        "https://ehr.example.org/fhir/../admin",
    ],
)
def test_server_outside_the_policy_is_refused_without_a_connection(
    client: FlaskClient, fhir_mock: responses.RequestsMock, server: str
) -> None:
    text = diagnostics(call(client, hook_call("conditions", server=server)))
    assert "fhirServer is not permitted for this EHR; it was not contacted" in text
    assert len(fhir_mock.calls) == 0


def test_configured_allowlist_is_enforced(engine: Any, fhir_mock: responses.RequestsMock) -> None:
    app = create_app({"TESTING": True, "ENGINE": engine, "FHIR_ALLOWLIST": ["https://fhir.hospital.example/r4/"]})
    client = app.test_client()
    assert "not permitted" in diagnostics(call(client, hook_call("conditions")))
    assert len(fhir_mock.calls) == 0
    fhir_mock.add("GET", "https://fhir.hospital.example/r4/Condition", json=searchset(VCF))
    body = hook_call("conditions", server="https://fhir.hospital.example/r4")
    assert call(client, body).status_code == 200


def test_no_fhir_server_is_412(client: FlaskClient) -> None:
    assert "names no fhirServer" in diagnostics(call(client, hook_call("conditions", server=None)))


def test_patient_id_that_is_not_a_fhir_id_is_not_sent(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    body = hook_call("conditions")
    body["context"]["patientId"] = "p1&_has:Observation:patient:code=x"
    response = call(client, body)  # refused by the request schema, before any search is built
    assert response.status_code == 400 and "must be a FHIR id" in response.get_json()["issue"][0]["diagnostics"]
    assert len(fhir_mock.calls) == 0


def test_searches_run_concurrently(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    # Not timed: each answer waits until all three searches are in flight at once
    barrier = threading.Barrier(3, timeout=5)

    def answer(doc: dict[str, Any]) -> Any:
        def callback(_: Any) -> tuple[int, dict[str, str], bytes]:
            barrier.wait()
            return 200, {}, orjson.dumps(doc)

        return callback

    fhir_mock.add_callback("GET", f"{BASE}/Patient/{PATIENT_ID}", callback=answer(patient()))
    fhir_mock.add_callback("GET", f"{BASE}/Condition", callback=answer(searchset(VCF)))
    fhir_mock.add_callback("GET", f"{BASE}/Observation", callback=answer(searchset(pain("o1", 7))))
    assert call(client, hook_call("patient", "conditions", "observations")).status_code == 200
    assert len({c.request.url for c in fhir_mock.calls}) == 3


def test_token_and_jwt_never_logged(
    client: FlaskClient, fhir_mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    serve(fhir_mock, "conditions", searchset(VCF))
    serve(fhir_mock, "observations", {"resourceType": "OperationOutcome"}, status=401)
    serve(fhir_mock, "patient", b"", status=500)
    call(client, hook_call("conditions", "observations"), Authorization=f"Bearer {JWT}")
    call(client, hook_call("patient"), Authorization=f"Bearer {JWT}")
    assert "FHIR fallback" in caplog.text  # the log was captured
    assert TOKEN not in caplog.text and JWT not in caplog.text
    assert "patient=" not in caplog.text and BASE not in caplog.text


# --- the limits, on FhirClient directly --------------------------------------------------------


def test_oversized_answer_is_not_read(direct: Any, fhir_mock: responses.RequestsMock) -> None:
    big = orjson.dumps(searchset(*[pain(f"o{i}", 5) for i in range(50)]))
    serve(fhir_mock, "conditions", big)
    serve(fhir_mock, "observations", b"{}", headers={"Content-Length": str(10**9)})
    result = direct({"conditions": "Condition?patient=p1", "observations": "Observation?patient=p1"}, max_bytes=2000)
    for key in ("conditions", "observations"):
        assert isinstance(result[key], FetchFailure) and "larger than 2000 bytes" in result[key].reason


def test_byte_cap_counts_all_pages(direct: Any, fhir_mock: responses.RequestsMock) -> None:
    page = searchset(VCF, more=f"{BASE}/Condition?page=n")
    serve(fhir_mock, "conditions", page)
    one_page = len(orjson.dumps(page))
    result = direct({"conditions": "Condition?patient=p1"}, max_bytes=int(one_page * 2.5), max_pages=10)
    assert "larger than" in result["conditions"].reason


def test_pages_are_bounded(direct: Any, fhir_mock: responses.RequestsMock) -> None:
    serve(fhir_mock, "conditions", searchset(VCF, more=f"{BASE}/Condition?page=again"))
    result = direct({"conditions": "Condition?patient=p1"}, max_pages=3)
    assert "more than 3 pages" in result["conditions"].reason
    assert len(fhir_mock.calls) == 3


def test_time_budget_is_shared_and_enforced(direct: Any, fhir_mock: responses.RequestsMock) -> None:
    release, answered = threading.Event(), threading.Event()

    def stuck(_: Any) -> tuple[int, dict[str, str], bytes]:
        release.wait(10)  # a server that does not answer until the test lets it
        answered.set()
        return 200, {}, orjson.dumps(searchset(VCF))

    fhir_mock.add_callback("GET", f"{BASE}/Condition", callback=stuck)
    serve(fhir_mock, "patient", patient())
    result = direct({"conditions": "Condition?patient=p1", "patient": "Patient/p1"}, budget=0.2)
    assert not answered.is_set()  # the answer did not wait for the stuck search (no timing involved)
    release.set()
    # a server silent past the budget reads as one that cannot be reached (not as "open but slow")
    assert result["conditions"].reason == f"Condition search: {UNREACHABLE}"
    assert result["patient"] == [patient()]


def test_search_started_after_the_deadline_is_not_sent(direct: Any, fhir_mock: responses.RequestsMock) -> None:
    result = direct({"conditions": "Condition?patient=p1"}, budget=0)
    assert "time budget" in result["conditions"].reason
    assert len(fhir_mock.calls) == 0


@pytest.mark.parametrize(
    ("url", "allowlist", "loopback_dev", "permit"),
    [
        # the loopback development mode: loopback hosts, checked again after resolution
        ("http://127.0.0.1:8080/fhir", [], True, "loopback"),
        ("https://localhost/fhir", [], True, "loopback"),
        ("http://[::1]:8080/fhir", [], True, "loopback"),
        ("http://127.9.9.9/fhir", [], True, "loopback"),
        ("http://[::ffff:127.0.0.1]/fhir", [], True, "loopback"),
        ("https://ehr.example.org/fhir", [], True, None),
        ("http://192.168.1.5/fhir", [], True, None),
        ("http://127.0.0.1/fhir", [], False, None),  # VCF_CDS_AUTH=off or issuers: lists only
        ("http://127.1/fhir", [], True, None),  # shorthand IPv4: parsers and resolvers differ
        ("http://localhost./fhir", [], True, None),
        ("http://127.0.0.1:1\\@127.0.0.1:2/fhir", [], True, None),
        ("ftp://ehr.example.org/fhir", [], True, None),
        # explicit prefixes: any address, at a path boundary, read as urllib3 connects
        ("https://ehr.example.org/fhir", ["https://ehr.example.org/fhir"], False, "explicit"),
        ("https://ehr.example.org/fhir/", ["https://ehr.example.org/fhir"], False, "explicit"),
        ("https://EHR.example.org/fhir/r4", ["https://ehr.example.org/fhir/"], False, "explicit"),
        ("https://ehr.example.org:443/fhir", ["https://ehr.example.org/fhir/"], False, "explicit"),
        ("http://10.0.0.7:8080/fhir", ["http://10.0.0.7:8080/"], False, "explicit"),
        ("https://ehr.example.org/fhirx", ["https://ehr.example.org/fhir"], False, None),
        ("https://ehr.example.org/fhir/../admin", ["https://ehr.example.org/fhir"], False, None),
        ("https://ehr.example.org/fhir/%2e%2e/admin", ["https://ehr.example.org/fhir"], False, None),
        ("https://ehr.example.org.evil.net/fhir", ["https://ehr.example.org"], False, None),
        ("https://ehr.example.org@evil.net/fhir", ["https://ehr.example.org"], False, None),
        ("https://ehr.example.org\\@evil.net/fhir", ["https://ehr.example.org"], False, None),
        ("https://ehr.example.org:8443/fhir", ["https://ehr.example.org/"], False, None),
        ("https://u:p@ehr.example.org/fhir", ["https://ehr.example.org/"], False, None),
        ("https://ehr.example.org/fhir?x=1", ["https://ehr.example.org/"], False, None),
        ("https://ehr.example.org:99999/fhir", ["https://ehr.example.org/"], False, None),
        ("http://ehr.example.org/fhir", ["https://ehr.example.org/"], False, None),
        ("http://127.0.0.1/fhir", ["https://ehr.example.org/"], True, "loopback"),
        ("https:///fhir", [], True, None),
    ],
)
def test_server_permit(url: str, allowlist: list[str], loopback_dev: bool, permit: str | None) -> None:
    found = server_permit(url, allowlist, loopback_dev=loopback_dev)
    assert (None if found is None else "explicit" if found.explicit else "loopback") == permit


def test_without_fhir_authorization_no_token_is_sent(client: FlaskClient, fhir_mock: responses.RequestsMock) -> None:
    body = hook_call("conditions")
    del body["fhirAuthorization"]  # an open FHIR server (e.g. a public test server)
    serve(fhir_mock, "conditions", searchset(VCF))
    assert call(client, body).status_code == 200
    assert "Authorization" not in fhir_mock.calls[0].request.headers


def test_next_link_with_a_malformed_port_is_not_followed(direct: Any, fhir_mock: responses.RequestsMock) -> None:
    serve(fhir_mock, "conditions", searchset(more="https://ehr.example.org:99999/fhir/Condition?page=2"))
    assert "another origin" in direct({"conditions": "Condition?patient=p1"})["conditions"].reason


def test_a_key_the_fetcher_does_not_answer_is_unavailable(engine: Any) -> None:
    body = hook_call("conditions")
    with pytest.raises(PrefetchUnavailableError, match="no answer"):
        engine.evaluate("vcf-patient-view", body, now=NOW, new_uuid=lambda: "u", fetch=lambda request, queries: {})


def test_cookies_are_not_kept_between_calls(fhir_mock: responses.RequestsMock) -> None:
    fetch = FhirClient([BASE], workers=1)  # one thread, one Session: a kept cookie would be sent again
    try:
        serve(fhir_mock, "conditions", searchset(VCF), headers={"Set-Cookie": "SESSION=user-a; Path=/"})
        fetch(hook_call(), {"conditions": "Condition?patient=p1"})
        fetch(hook_call(), {"conditions": "Condition?patient=p1"})
    finally:
        fetch.close()
    assert [c.request.headers.get("Cookie") for c in fhir_mock.calls] == [None, None]


@pytest.mark.parametrize("token", ["two words", "line\nbreak", "caf\u00e9"])
def test_token_that_cannot_be_a_header_is_not_sent(
    client: FlaskClient, fhir_mock: responses.RequestsMock, token: str
) -> None:
    body = hook_call("conditions")
    body["fhirAuthorization"]["access_token"] = token
    text = diagnostics(call(client, body))
    assert "not a valid bearer token" in text and token not in text
    assert len(fhir_mock.calls) == 0


def test_the_token_does_not_outlive_gather(engine: Any, fhir_mock: responses.RequestsMock) -> None:
    serve(fhir_mock, "conditions", searchset(VCF))
    fetch = FhirClient([BASE])
    try:
        result = engine.evaluate(
            "vcf-patient-view", hook_call("conditions"), now=NOW, new_uuid=lambda: "u", fetch=fetch
        )
    finally:
        fetch.close()
    assert result.cards and TOKEN not in repr(result)


TENANT_A, TENANT_B = f"{BASE}/tenant-a", f"{BASE}/tenant-b"


@pytest.mark.parametrize(
    "escape",
    ["prefetched absolute", "prefetched relative", "prefetched dot segments", "search next link", "redirect"],
)
def test_a_search_stays_under_the_callers_prefixes(fhir_mock: responses.RequestsMock, escape: str) -> None:
    # Issuers sharing one FHIR host are told apart by path: a prefetched or answered next link, or a
    # redirect, must not take one EHR's token (and its card's data) to a base only another may name
    client = FhirClient([TENANT_A + "/"], limits=Limits(budget=2.0), workers=1)
    fhir_mock.add("GET", f"{TENANT_B}/Condition", json=searchset(VCF))
    stolen = f"{TENANT_B}/Condition?patient={PATIENT_ID}"
    query = f"Condition?patient={PATIENT_ID}"
    if escape == "prefetched absolute":
        query = stolen
    elif escape == "prefetched relative":
        query = f"../tenant-b/Condition?patient={PATIENT_ID}"
    elif escape == "prefetched dot segments":
        query = f"{TENANT_A}/../tenant-b/Condition?patient={PATIENT_ID}"
    elif escape == "search next link":
        fhir_mock.add("GET", f"{TENANT_A}/Condition", json=searchset(more=stolen))
    else:
        fhir_mock.add("GET", f"{TENANT_A}/Condition", status=302, headers={"Location": "/fhir/tenant-b/Condition"})
    try:
        result = client(hook_call(server=TENANT_A), {"conditions": query})["conditions"]
    finally:
        client.close()
    assert isinstance(result, FetchFailure) and "not followed" in result.reason
    assert [c.request.url for c in fhir_mock.calls if "tenant-b" in c.request.url] == []
