"""Review of issue 16 ("Whose data"): a Patient entry's fullUrl is trusted even when it names another patient.

CLINICAL.md: a resource is the patient's when it references "the urn:uuid: / full URL under which the
Patient appears". FHIR (Bundle, bdl rule on fullUrl) requires a RESTful fullUrl to end in the
resource's own type and id, so ``https://fhir.example.org/R4/Patient/p2`` can never be where Patient
p1 appears. Today service/whose.py (patient_references) collects the fullUrl of the entry holding the
context Patient without checking it, so another patient's Condition on the very same fhirServer
(``…/Patient/p2``, which the base form correctly calls another patient) becomes this patient's.
"""

from __future__ import annotations

from flask.testing import FlaskClient

from builders import ICD10CM, condition, patient, request, vcf_extension

FHIR = "https://fhir.example.org/R4"


def test_another_patients_fracture_is_not_used_through_a_mismatched_full_url(client: FlaskClient) -> None:
    others = {**condition("c-other", ICD10CM, "M80.08XA"), "subject": {"reference": f"{FHIR}/Patient/p2"}}
    body = request(others)
    body["fhirServer"] = FHIR
    # a careless EHR assembled the Bundle from another patient's search: the entry URL is p2's
    body["prefetch"]["patient"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"{FHIR}/Patient/p2", "resource": patient()}],
    }
    response = client.post("/cds-services/vcf-patient-view", json=body)
    # expected: p1 has no fracture of their own -> no card (or a 400 for the inconsistent Bundle)
    if response.status_code == 200:
        cards = response.get_json()["cards"]
        assert cards == [], [vcf_extension(c).get("recommendation") for c in cards]
    else:
        assert response.status_code == 400
