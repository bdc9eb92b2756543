"""Review of issue 16: the patient's own reference under the fhirServer base with the default port.

``https://fhir.example.org:443/R4`` and ``https://fhir.example.org/R4`` are the same origin (RFC 3986
6.2.3 scheme-based normalisation; requests connects to the same place). Today service/whose.py
``_canonical`` lower-cases the authority but keeps ``:443``, so the patient's own fracture is dropped
as "not this patient's" and the patient gets no card at all. A false negative (safe direction), but a
missed card for a patient who needs one.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from builders import ICD10CM, condition, request


@pytest.mark.parametrize(
    ("server", "reference"),
    [
        ("https://fhir.example.org:443/R4", "https://fhir.example.org/R4/Patient/p1"),
        ("https://fhir.example.org/R4", "https://fhir.example.org:443/R4/Patient/p1"),
        ("http://fhir.example.org/R4", "http://fhir.example.org:80/R4/Patient/p1"),
    ],
)
def test_the_default_port_names_the_same_server(client: FlaskClient, server: str, reference: str) -> None:
    own = {**condition("c1", ICD10CM, "M80.08XA"), "subject": {"reference": reference}}
    body = {**request(own), "fhirServer": server}
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 200
    assert response.get_json()["cards"], "the patient's own fracture was dropped as another patient's"
