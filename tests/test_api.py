"""Discovery and the patient-view call over the Flask app: prefetch semantics, envelope validation."""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from support.builders import ICD10CM, bundle, condition, pain, request, vcf_extension

CDS_HOOKS_TOKEN = re.compile(r"\{\{([^}]*)\}\}")
VALID_TOKENS = {
    "context.patientId",
    "context.userId",
    "context.encounterId",
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}


def call(client: FlaskClient, body: Any, service: str = "vcf-patient-view") -> Any:
    return client.post(f"/cds-services/{service}", json=body)


def test_discovery_lists_patient_view_with_valid_prefetch_tokens(client: FlaskClient) -> None:
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    pv = services["vcf-patient-view"]
    assert pv["hook"] == "patient-view" and pv["title"] and pv["description"]
    assert set(pv["prefetch"]) == {"patient", "conditions", "observations", "medications", "encounters", "allergies"}
    for template in pv["prefetch"].values():
        assert set(CDS_HOOKS_TOKEN.findall(template)) <= VALID_TOKENS, template
    assert "http://loinc.org|72514-3" in pv["prefetch"]["observations"]  # narrowed to the codes it reads


def test_vcf_patient_gets_one_recommendation_card(client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 7))
    cards = call(client, body).get_json()["cards"]
    kinds = [vcf_extension(c)["kind"] for c in cards]
    assert kinds.count("recommendation") == 1
    assert kinds == ["recommendation", "secondary-prevention"]


def test_no_vcf_no_card(client: FlaskClient) -> None:
    assert call(client, request(condition("c1", ICD10CM, "M81.0"))).get_json() == {"cards": []}


def test_null_prefetch_means_no_data_not_missing(client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    body["prefetch"].update(observations=None, medications=None, encounters=None, allergies=None)
    response = call(client, body)
    assert response.status_code == 200
    assert "pain_score" in vcf_extension(response.get_json()["cards"][0])["missing"]


@pytest.mark.parametrize("key", ["patient", "conditions"])
@pytest.mark.parametrize("how", ["missing", "OperationOutcome"])
def test_required_data_unavailable_is_412(client: FlaskClient, key: str, how: str) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    if how == "missing":
        del body["prefetch"][key]
    else:
        body["prefetch"][key] = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "timeout"}],
        }
    response = call(client, body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert key in outcome["issue"][0]["diagnostics"]


def test_missing_optional_data_leaves_criteria_unknown(client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    del body["prefetch"]["observations"]
    response = call(client, body)
    assert response.status_code == 200
    ext = vcf_extension(response.get_json()["cards"][0])
    assert {"pain_score", "point_tenderness"} <= set(ext["missing"])


def test_other_patients_data_is_ignored(client: FlaskClient) -> None:
    body = request(pain("o1", 8))
    stranger = condition("c9", ICD10CM, "M80.08XA")
    stranger["subject"] = {"reference": "Patient/someone-else"}
    body["prefetch"]["conditions"] = bundle(stranger)
    assert call(client, body).get_json() == {"cards": []}


def test_prefetched_patient_must_match_context(client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    body["prefetch"]["patient"]["id"] = "other"
    assert call(client, body).status_code == 400


def test_patient_id_with_resource_prefix_is_accepted(client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"), patientId="Patient/p1")
    assert call(client, body).status_code == 200


@pytest.mark.parametrize("patient_id", ["Patient/", "", " ", "p1 ", "a b", "p1&_include=*", "../Observation", "é"])
def test_patient_id_must_be_a_fhir_id(client: FlaskClient, patient_id: str) -> None:
    # it is substituted into prefetch queries (Condition?patient=…) and card references (Patient/…)
    body = request(condition("c1", ICD10CM, "M80.08XA"), patientId=patient_id)
    del body["prefetch"]["patient"]["id"]
    response = call(client, body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["context.patientId"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.update(hook="order-sign"), "hook"),
        (lambda b: b.update(context="p1"), "context"),
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (lambda b: b.update(fhirServer="ftp://x"), "fhirServer"),
        (lambda b: b.update(fhirAuthorization={"token_type": "Bearer"}), "fhirAuthorization.access_token"),
        (lambda b: b["prefetch"].update(conditions=42), "prefetch.conditions"),
    ],
)
def test_bad_envelope_is_400_naming_the_field(client: FlaskClient, mutate: Any, field: str) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    mutate(body)
    response = call(client, body)
    assert response.status_code == 400
    assert field in response.get_json()["issue"][0]["diagnostics"]


def test_invalid_vcf_condition_is_400_without_values(client: FlaskClient) -> None:
    bad = condition("c1", ICD10CM, "M80.08XA", onsetDateTime="SECRET-not-a-date")
    response = call(client, request(bad))
    assert response.status_code == 400
    text = response.get_json()["issue"][0]["diagnostics"]
    assert "Condition/c1" in text and "SECRET" not in text


def test_invalid_observation_is_ignored_and_said_on_the_card(client: FlaskClient) -> None:
    bad = pain("o1", 7)
    bad["valueQuantity"]["value"] = "seven"
    cards = call(client, request(condition("c1", ICD10CM, "M80.08XA"), bad)).get_json()["cards"]
    assert "Observation/o1" in cards[0]["detail"]
    assert "pain_score" in vcf_extension(cards[0])["missing"]


def chunked_post(client: FlaskClient, data: bytes) -> Any:
    """A body without Content-Length, as gunicorn hands it over (it decodes the chunks)."""
    return client.post(
        "/cds-services/vcf-patient-view",
        input_stream=io.BytesIO(data),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_is_read(client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    assert chunked_post(client, orjson.dumps(body)).status_code == 200


@pytest.mark.parametrize("tail", [b"", b"x"])
def test_a_chunked_body_over_the_limit_is_413_not_cut(app: Flask, client: FlaskClient, tail: bytes) -> None:
    # a valid request padded past the limit used to be cut to the limit and answered 200
    valid = orjson.dumps(request(condition("c1", ICD10CM, "M80.08XA")))
    padded = valid + b" " * (app.config["MAX_CONTENT_LENGTH"] - len(valid)) + tail
    response = chunked_post(client, padded)
    assert response.status_code == 413
    assert response.get_json()["issue"][0]["code"] == "too-costly"


@pytest.mark.parametrize(
    ("field", "value"),
    [("valueQuantity", {"value": "9"}), ("valueInteger", "9"), ("effectiveDateTime", 20260614)],
)
def test_an_observation_with_a_wrongly_typed_value_is_ignored_and_said(
    client: FlaskClient, field: str, value: Any
) -> None:
    # fhir.resources accepts "9" for a number and 20260614 for a dateTime; it used to vanish unsaid
    bad = pain("o2", 9, when="2026-06-14")
    del bad["valueQuantity"]
    bad[field] = value
    cards = call(client, request(condition("c1", ICD10CM, "M80.08XA"), bad)).get_json()["cards"]
    assert "Observation/o2 is not valid FHIR R4 Observation" in cards[0]["detail"]
    assert "pain_score" in vcf_extension(cards[0])["missing"]


@pytest.mark.parametrize("field", ["onsetDateTime", "recordedDate", "abatementDateTime"])
def test_a_vcf_condition_with_a_numeric_date_is_400(client: FlaskClient, field: str) -> None:
    bad = condition("c1", ICD10CM, "M80.08XA", **{field: 20260401})
    response = call(client, request(bad))
    assert response.status_code == 400
    assert f"{field}: must be a string" in response.get_json()["issue"][0]["diagnostics"]
