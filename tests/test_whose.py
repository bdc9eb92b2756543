"""Whose data (CLINICAL.md): only resources that reference the context patient are used, however they came.

Reference forms one by one (service/normalize/whose.py), as properties over records (hypothesis), through the
app (prefetch and FHIR fallback, the card's ignored note, the 400 for a Patient that is not the
context patient) and against ``vcf-cds serve``. The golden fixtures per form are fixtures/whose-data/.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from service.decide import decide
from service.decide.facts import NOT_THIS_PATIENT, Facts, Ignored
from service.normalize.record import normalize
from service.normalize.whose import PatientReferences
from service.pipeline import Engine
from service.state import app_state

from support.apps import make_app
from support.builders import ICD10CM, PATIENT_ID, bundle, condition, finding, pain, patient, request, vcf_extension
from support.clock import NOW
from support.examples import examples
from support.records import SEEDS, VCF, VCF_PERIOD
from support.served import http, serving
from support.strategies import (
    FOREIGN_REFERENCES,
    OWN_FULL_URL,
    OWN_REFERENCES,
    OWN_SERVER,
    foreign_resources,
    own_subjects,
    with_subject,
)

ENGINE = Engine.load()  # hypothesis runs many examples per test: no function-scoped fixtures
WHOSE = PatientReferences.of(PATIENT_ID, OWN_SERVER, (OWN_FULL_URL,))
PATIENT = {"resourceType": "Patient", "id": PATIENT_ID, "birthDate": "1950-03-02"}
FHIR_BASE = "https://ehr.example.org/fhir"


def facts_of(resources: list[Any]) -> Facts:
    return normalize(PATIENT, resources, terminology=ENGINE.terminology, now=NOW, whose=WHOSE)


@pytest.mark.parametrize("reference", OWN_REFERENCES)
def test_the_forms_that_name_the_patient(reference: str) -> None:
    assert WHOSE.name(reference)


@pytest.mark.parametrize("reference", FOREIGN_REFERENCES)
def test_every_other_form_does_not(reference: str) -> None:
    assert not WHOSE.name(reference)


def test_without_a_patient_id_nothing_is_the_patients() -> None:
    nobody = PatientReferences.of(None, OWN_SERVER, (OWN_FULL_URL,))
    assert not any(nobody.name(r) for r in [*OWN_REFERENCES, "Patient/", "Patient/None"])


def test_allergies_name_the_patient_in_patient_the_others_in_subject() -> None:
    own = {"reference": f"Patient/{PATIENT_ID}"}
    assert WHOSE.owns({"resourceType": "AllergyIntolerance", "patient": own})
    assert not WHOSE.owns({"resourceType": "AllergyIntolerance", "subject": own})
    assert WHOSE.owns({"resourceType": "Encounter", "subject": own})
    assert not WHOSE.owns({"resourceType": "Encounter", "patient": own})
    assert not WHOSE.owns({"resourceType": ["Encounter"], "patient": own})  # a JSON list is no type


@examples(150)
@given(
    st.lists(st.sampled_from(SEEDS), max_size=6),
    st.lists(foreign_resources(), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=6),
)
def test_another_patients_resources_change_no_assessment(relevant: list[Any], foreign: list[Any], at: int) -> None:
    base = facts_of([VCF, *relevant])
    mixed = facts_of([*foreign[:at], VCF, *relevant[:at], *foreign[at:], *relevant[at:]])
    assert decide(mixed) == decide(base)
    assert dataclasses.replace(mixed, ignored=()) == dataclasses.replace(base, ignored=())
    # counted by reason, never named; the patient's own items unchanged
    assert [i for i in mixed.ignored if i.reason != NOT_THIS_PATIENT] == list(base.ignored)
    assert [i for i in mixed.ignored if i.reason == NOT_THIS_PATIENT] == [Ignored(NOT_THIS_PATIENT, "")] * len(foreign)


@examples(100)
@given(st.lists(st.sampled_from(SEEDS), max_size=8), st.data())
def test_every_form_of_the_patients_own_reference_is_used(resources: list[Any], data: st.DataObject) -> None:
    named = [with_subject(r, data.draw(own_subjects())) for r in [VCF_PERIOD, *resources]]
    assert facts_of(named) == facts_of([VCF_PERIOD, *resources])


# --- through the app ---------------------------------------------------------------------------
OTHER_PATIENT = {"reference": "https://other-ehr.example.net/fhir/Patient/p1"}  # same id, other server
TENDER = finding("o-tender", "point-tenderness", valueBoolean=True)


def _row14_but_tenderness_is_another_patients() -> dict[str, Any]:
    """Own VCF (75 days) and NRS 7; tenderness and an inpatient stay of another patient's."""
    encounter = {
        "resourceType": "Encounter",
        "id": "e-other",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": OTHER_PATIENT,
    }
    return request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 7), {**TENDER, "subject": OTHER_PATIENT}, encounter)


def test_another_patients_data_is_not_used_and_counted_on_the_card(client: FlaskClient) -> None:
    response = client.post("/cds-services/vcf-patient-view", json=_row14_but_tenderness_is_another_patients())
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    ext = vcf_extension(card)
    # row 16: 6-52 weeks, NRS 7, this patient's tenderness unknown (row 14, were the other's used)
    assert ext["recommendation"] == "conservative"
    assert "point_tenderness" in ext["missing"]
    assert "2 not this patient's" in card["detail"]
    assert "other-ehr" not in card["detail"] and "e-other" not in card["detail"]


@pytest.fixture
def fallback_client(engine: Any, tmp_path: Path, sqlite_template: Path) -> Iterator[FlaskClient]:
    """The development-mode app with FHIR_BASE allowlisted, so that its fallback searches may run."""
    shutil.copy(sqlite_template, tmp_path / "test.sqlite3")
    app = make_app(engine, f"sqlite:///{tmp_path / 'test.sqlite3'}", FHIR_ALLOWLIST=[FHIR_BASE])
    yield app.test_client()
    app_state(app).database.engine.dispose()


def test_fhir_fallback_results_are_held_to_the_same_rule(
    fallback_client: FlaskClient, fhir_mock: responses.RequestsMock
) -> None:
    client = fallback_client
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    del body["prefetch"]["observations"]
    body["fhirServer"] = FHIR_BASE
    body["fhirAuthorization"] = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300}
    own_pain = {**pain("o1", 7), "subject": {"reference": f"{FHIR_BASE}/Patient/{PATIENT_ID}"}}  # the base form
    fhir_mock.add(
        "GET", f"{FHIR_BASE}/Observation", body=orjson.dumps(bundle(own_pain, {**TENDER, "subject": OTHER_PATIENT}))
    )
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    ext = vcf_extension(response.get_json()["cards"][0])
    assert ext["recommendation"] == "conservative"
    assert "pain_score" not in ext["missing"] and "point_tenderness" in ext["missing"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: p.pop("id"), "has no id"),
        (lambda p: p.update(id=None), "has no id"),
        (lambda p: p.update(id="someone-else-42"), "is not the patient of context.patientId"),
    ],
    ids=["no-id", "null-id", "other-id"],
)
def test_a_patient_that_is_not_the_context_patient_is_400(client: FlaskClient, change: Any, says: str) -> None:
    body = request(VCF, pain("o1", 7))
    change(body["prefetch"]["patient"])
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert says in diagnostics and "context.patientId" in diagnostics
    assert "someone-else" not in diagnostics


def test_a_patient_in_a_bundle_lends_its_full_url(client: FlaskClient) -> None:
    body = _row14_but_tenderness_is_another_patients()
    body["prefetch"]["patient"] = {
        "resourceType": "Bundle",
        "entry": [{"fullUrl": OWN_FULL_URL, "resource": patient()}],
    }
    body["prefetch"]["observations"]["entry"].append(
        {"resource": {**TENDER, "id": "o-own", "subject": {"reference": OWN_FULL_URL}}}
    )
    ext = vcf_extension(client.post("/cds-services/vcf-patient-view", json=body).get_json()["cards"][0])
    assert ext["recommendation"] == "augmentation"  # row 14: now this patient's tenderness is documented


FHIR = "https://fhir.example.org/R4"


@pytest.mark.parametrize(
    "full_url",
    [
        f"{FHIR}/Patient/p2",  # another patient on the very fhirServer the Condition below names
        f"{FHIR}/Patient/p2/_history/3",
        f"{FHIR}/Patient/{PATIENT_ID}0",
        f"{FHIR}/Observation/{PATIENT_ID}",
        f"{FHIR}/{PATIENT_ID}",
        f"{FHIR}/Patient/{PATIENT_ID}/x",
        f"Patient/{PATIENT_ID}",  # fullUrl is absolute
        "urn:isbn:0451450523",
    ],
)
def test_a_patient_entry_whose_full_url_names_another_resource_is_400(client: FlaskClient, full_url: str) -> None:
    """Issue 16 review: Patient p1 under p2's fullUrl, and p2's fracture on the same server. Taking the
    fullUrl as p1's gave p1 the cards; the Bundle contradicts itself (FHIR: a RESTful fullUrl agrees
    with the resource's id), so neither half can be trusted."""
    others = {**condition("c-other", ICD10CM, "M80.08XA"), "subject": {"reference": f"{FHIR}/Patient/p2"}}
    body = {**request(others, pain("o1", 8)), "fhirServer": FHIR}
    body["prefetch"]["patient"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": full_url, "resource": patient()}],
    }
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    issue = response.get_json()["issue"][0]
    assert "fullUrl" in issue["diagnostics"] and "inconsistent" in issue["diagnostics"]
    assert "p2" not in issue["diagnostics"]


@pytest.mark.parametrize(
    "full_url",
    [
        OWN_FULL_URL,
        "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14",
        f"{FHIR}/Patient/{PATIENT_ID}",
        f"{FHIR}/Patient/{PATIENT_ID}/_history/3",
        f"https://elsewhere.example.net/fhir/Patient/{PATIENT_ID}",
    ],
)
def test_a_full_url_that_can_be_the_patients_is_theirs(client: FlaskClient, full_url: str) -> None:
    own = {**condition("c1", ICD10CM, "M80.08XA"), "subject": {"reference": full_url}}
    body = {**request(own, pain("o1", 8)), "fhirServer": FHIR}
    body["prefetch"]["patient"] = {"resourceType": "Bundle", "entry": [{"fullUrl": full_url, "resource": patient()}]}
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"], "the patient's own fracture, named by their fullUrl, was not used"


@pytest.mark.parametrize(
    ("server", "reference"),
    [
        ("https://fhir.example.org:443/R4", f"https://fhir.example.org/R4/Patient/{PATIENT_ID}"),
        ("https://fhir.example.org/R4", f"https://fhir.example.org:443/R4/Patient/{PATIENT_ID}"),
        ("https://FHIR.example.org:443/R4/", f"https://fhir.example.org:/R4/Patient/{PATIENT_ID}"),
        ("http://fhir.example.org/R4", f"http://fhir.example.org:80/R4/Patient/{PATIENT_ID}"),
        ("https://[2001:db8::1]:443/R4", f"https://[2001:db8::1]/R4/Patient/{PATIENT_ID}"),
    ],
)
def test_the_default_port_names_the_same_server(client: FlaskClient, server: str, reference: str) -> None:
    """Issue 16 review: RFC 3986 6.2.3, ``https://h:443/`` and ``https://h/`` are one origin."""
    assert PatientReferences.of(PATIENT_ID, server).name(reference)
    own = {**condition("c1", ICD10CM, "M80.08XA"), "subject": {"reference": reference}}
    response = client.post("/cds-services/vcf-patient-view", json={**request(own), "fhirServer": server})
    assert response.status_code == 200
    assert response.get_json()["cards"], "the patient's own fracture was dropped as another patient's"


@pytest.mark.parametrize(
    ("server", "reference"),
    [
        ("https://fhir.example.org/R4", f"https://fhir.example.org:80/R4/Patient/{PATIENT_ID}"),
        ("http://fhir.example.org/R4", f"http://fhir.example.org:443/R4/Patient/{PATIENT_ID}"),
        ("https://fhir.example.org/R4", f"https://fhir.example.org:4430/R4/Patient/{PATIENT_ID}"),
        ("https://fhir.example.org/R4", f"https://fhir.example.org:0/R4/Patient/{PATIENT_ID}"),
        ("https://fhir.example.org/R4", f"https://fhir.example.org:443@evil.example/R4/Patient/{PATIENT_ID}"),
        ("https://fhir.example.org:8443/R4", f"https://fhir.example.org/R4/Patient/{PATIENT_ID}"),
    ],
)
def test_another_port_is_another_server(server: str, reference: str) -> None:
    assert not PatientReferences.of(PATIENT_ID, server).name(reference)


def test_served_another_patients_fracture_gives_no_card(database_url: str, tmp_path: Path) -> None:
    onset = (date.today() - timedelta(days=20)).isoformat()  # the served clock is the real one
    recent = (date.today() - timedelta(days=1)).isoformat()
    own = request(condition("c1", ICD10CM, "M80.08XA", onset=onset), pain("o1", 8, when=recent))
    foreign = request(
        {**condition("c2", ICD10CM, "M80.08XA", onset=onset), "subject": OTHER_PATIENT},
        {**pain("o2", 8, when=recent), "subject": {"reference": "Group/ward-4b"}},
    )
    with serving(tmp_path, database_url) as served:
        status, answer = http("POST", f"{served.base}/cds-services/vcf-patient-view", foreign)
        assert (status, json.loads(answer)) == (200, {"cards": []}), served.logs()
        status, answer = http("POST", f"{served.base}/cds-services/vcf-patient-view", own)
        assert status == 200 and json.loads(answer)["cards"], served.logs()  # the same record, this patient's
