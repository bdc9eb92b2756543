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
