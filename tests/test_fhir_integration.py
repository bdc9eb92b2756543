"""End to end against a real FHIR server process on loopback: sekmet-fhir (PyPI, pinned in the
``test`` extra), loaded with a real Synthea bundle and a VCF patient built here.

The hook calls carry no prefetch: everything comes from the server through service/gather/fhirclient.py.
Skips (saying why) when the server cannot be installed or started; `bash scripts/test` installs it.
``FHIR_IT_BASE`` (and ``FHIR_IT_TOKEN``) point the same tests at a running server instead, e.g. HAPI
FHIR: ``FHIR_IT_BASE=http://localhost:8080/fhir .venv/bin/python -m pytest tests/test_fhir_integration.py``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service import create_app
from service.gather.fhirclient import FhirClient, Limits
from service.normalize.record import OBSERVATION_CONCEPTS

from support.builders import bundle
from support.cds_rules import response_problems
from support.clock import NOW
from support.paths import FIXTURES, ROOT
from support.sekmet import STARTUP_SECONDS, fhir_call, launch, sekmet_executable, stop, wait_until_up
from support.served import free_port

TOKEN = os.environ.get("FHIR_IT_TOKEN", "vcf-cds-integration-token")
EXTERNAL = os.environ.get("FHIR_IT_BASE", "").rstrip("/")
# the unmodified Synthea bundle, as copied into fixtures/realdata (source and licence in its README)
LONNIE = ROOT / "fixtures" / "realdata" / "lonnie-von-osteoporotic-fracture-not-vertebral.json"
ROW14 = next((FIXTURES / "patient-view").glob("27-*.json"))
EXTRA_PAIN_SCORES = 24  # with the fixture's two observations: 26, over the server's 20-entry pages


def fhir(base: str, method: str, path: str = "", body: Any = None, token: str = TOKEN) -> Any:
    return fhir_call(base, method, path, body, token)


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    executable = sekmet_executable()
    if executable is None:
        pytest.skip("sekmet-fhir is not installed (bash scripts/setup installs it with the test extra)")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = {
        "base_url": base,  # next links are built from it
        "host": "127.0.0.1",  # its default is 0.0.0.0
        "port": port,
        "data_dir": str(folder / "data"),
        "server_auth": {"types": ["bearer"], "tokens": [TOKEN]},  # 401 without the token
        "simulator": {"enabled": False},  # no lab/pharmacy robot writing into the record
        "log_inbound": False,
        "own_private_key_path": str(folder / "keys" / "sekmet.pem"),
    }
    try:
        process, log = launch(executable, folder, port, settings)
    except OSError as e:
        pytest.skip(f"sekmet-fhir could not be started: {e}")
    return process, base, log


@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if EXTERNAL:
        yield EXTERNAL
        return
    process, base, log = start_server(tmp_path_factory.mktemp("sekmet"))
    try:
        if not wait_until_up(process, base):
            tail = log.read_text(errors="replace")[-600:]
            how = f"exited ({process.returncode})" if process.poll() is not None else f"not up in {STARTUP_SECONDS} s"
            pytest.skip(f"sekmet-fhir did not start on {base}: {how}. {tail}")
        yield base
    finally:
        stop(process)


def vcf_record() -> dict[str, Any]:
    """Row 14 of the golden fixtures as a server record, plus older pain scores to force paging."""
    prefetch = json.loads(ROW14.read_text())["request"]["prefetch"]
    record = copy.deepcopy(prefetch)
    template = record["observations"]["entry"][0]["resource"]
    for n in range(EXTRA_PAIN_SCORES):
        extra = copy.deepcopy(template)
        extra["id"] = f"{template['id']}-older-{n}"
        extra["effectiveDateTime"] = f"2026-05-{n + 1:02d}T09:00:00-04:00"
        record["observations"]["entry"].append({"resource": extra})
    return record


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture(scope="module")
def loaded(fhir_server: str) -> dict[str, Any]:
    """Loads the records once; {"vcf": VCF record (as prefetch), "lonnie": her Patient id}."""
    fhir(fhir_server, "POST", body=json.loads(LONNIE.read_bytes())["bundle"])  # a Synthea transaction bundle
    record = vcf_record()
    resources = [record["patient"]] + [
        e["resource"] for key, value in record.items() if key != "patient" and value for e in value["entry"]
    ]
    fhir(fhir_server, "POST", body=transaction(resources))
    found = fhir(fhir_server, "GET", "Patient?family=Von")
    return {"vcf": record, "lonnie": found["entry"][0]["resource"]["id"]}


@pytest.fixture
def client(engine: Any, fhir_server: str) -> FlaskClient:
    """The app with the test server as its only allowed fhirServer."""
    app = create_app({"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "FHIR_ALLOWLIST": [fhir_server]})
    return app.test_client()


def hook(patient_id: str, base: str, token: str = TOKEN) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "3b1f4c9e-8a57-4f0e-9d6e-2a1c5b7e9f10",
        "fhirServer": base,
        "fhirAuthorization": {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "x"},
        "context": {"patientId": patient_id, "userId": "Practitioner/it"},
    }


def without_uuids(cards: list[dict[str, Any]]) -> str:
    text = json.dumps(cards, sort_keys=True)
    for card in cards:
        text = text.replace(card["uuid"], "-")
        for s in card.get("suggestions", []):
            text = text.replace(s["uuid"], "-")
    return text


def test_vcf_patient_from_the_fhir_server_gets_the_same_cards_as_prefetched(
    client: FlaskClient, fhir_server: str, loaded: dict[str, Any]
) -> None:
    record = loaded["vcf"]
    patient_id = record["patient"]["id"]
    fetched = client.post("/cds-services/vcf-patient-view", json=hook(patient_id, fhir_server))
    assert fetched.status_code == 200, fetched.get_data(as_text=True)
    cards = fetched.get_json()["cards"]
    assert response_problems(fetched.get_json()) == []
    ext = cards[0]["extension"]["org.vcfcds"]
    assert (ext["kind"], ext["recommendation"]) == ("recommendation", "augmentation")

    prefetch = {k: v or bundle() for k, v in record.items()}
    prefetched = client.post(
        "/cds-services/vcf-patient-view", json={**hook(patient_id, fhir_server), "prefetch": prefetch}
    )
    assert without_uuids(prefetched.get_json()["cards"]) == without_uuids(cards)


def test_pages_of_a_real_server_are_followed(engine: Any, fhir_server: str, loaded: dict[str, Any]) -> None:
    patient_id = loaded["vcf"]["patient"]["id"]
    query = engine.service("vcf-patient-view").prefetch["observations"].replace("{{context.patientId}}", patient_id)
    first_page = fhir(fhir_server, "GET", f"Observation?patient={patient_id}")
    assert any(link["relation"] == "next" for link in first_page["link"])  # the server does page them
    client = FhirClient([fhir_server], limits=Limits(budget=10))
    try:
        result = client(hook(patient_id, fhir_server), {"observations": query})["observations"]
    finally:
        client.close()
    assert isinstance(result, list) and len(result) == 2 + EXTRA_PAIN_SCORES


def test_real_synthea_record_is_read_from_the_server(
    engine: Any, client: FlaskClient, fhir_server: str, loaded: dict[str, Any]
) -> None:
    response = client.post("/cds-services/vcf-patient-view", json=hook(loaded["lonnie"], fhir_server))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response_problems(response.get_json()) == []
    # every observation of the file with a code the service reads came back through the narrowed search
    wanted = set(engine.terminology.codings_for(sorted(OBSERVATION_CONCEPTS)))
    in_file = [
        e["resource"]["id"]
        for e in json.loads(LONNIE.read_bytes())["bundle"]["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and any((c.get("system"), c.get("code")) in wanted for c in e["resource"]["code"].get("coding", []))
    ]
    template = engine.service("vcf-patient-view").prefetch["observations"]
    fhir_client = FhirClient([fhir_server], limits=Limits(budget=10))
    try:
        query = template.replace("{{context.patientId}}", loaded["lonnie"])
        got = fhir_client(hook(loaded["lonnie"], fhir_server), {"observations": query})["observations"]
    finally:
        fhir_client.close()
    assert isinstance(got, list) and len(in_file) > 0 and len(got) == len(in_file)


@pytest.mark.skipif(bool(EXTERNAL) and "FHIR_IT_TOKEN" not in os.environ, reason="FHIR_IT_BASE without auth")
def test_wrong_token_is_412_naming_the_data(client: FlaskClient, fhir_server: str, loaded: dict[str, Any]) -> None:
    body = hook(loaded["vcf"]["patient"]["id"], fhir_server, token="not-the-token")
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 412
    text = response.get_json()["issue"][0]["diagnostics"]
    refused = "the FHIR server answered with an error: HTTP 401"
    assert f"Condition search: {refused}" in text and f"Patient read: {refused}" in text
    assert "not-the-token" not in response.get_data(as_text=True)
