"""Security review of the SMART app (issue 20), the parts that need no server. See
tests/test_smart_review_attacks.py for the launch itself. ``xfail(strict=True)`` marks a finding."""

from __future__ import annotations

import json

import pytest
import responses

from service.normalize.record import normalize
from service.pipeline import Engine
from service.smart.discovery import Discovery, DiscoveryError
from service.smart.findings import FORMS, missing_findings, observation

from support.clock import NOW
from support.paths import FIXTURES

ISS = "https://ehr.example.org/fhir/r4"
ROW16 = FIXTURES / "patient-view" / "45-row16-tenderness-and-edema-unknown.json"


@pytest.mark.parametrize("endpoint", ["token_endpoint", "authorization_endpoint"])
def test_an_https_ehr_cannot_send_the_code_to_plain_http_on_the_services_own_loopback(
    endpoint: str, fhir_mock: responses.RequestsMock
) -> None:
    """``https_or_loopback`` is the development allowance for a *loopback iss*; applied to the
    endpoints of an https iss it lets a discovery document send the authorization code, the PKCE
    verifier and a confidential client's secret over plain http to whatever listens on the
    service's own loopback (SSRF). Expected: endpoints of an https iss are https."""
    doc = {
        "authorization_endpoint": "https://ehr.example.org/oauth2/authorize",
        "token_endpoint": "https://ehr.example.org/oauth2/token",
        "code_challenge_methods_supported": ["S256"],
    }
    doc[endpoint] = "http://127.0.0.1:6379/token"
    fhir_mock.get(f"{ISS}/.well-known/smart-configuration", json=doc)
    with pytest.raises(DiscoveryError, match=endpoint):
        Discovery()(ISS)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.code)
def test_every_recordable_finding_is_read_back_and_its_form_goes_away(engine: Engine, form: object) -> None:
    """What the app writes for each of the four forms is read by the hooks' own normalize, and the
    form is no longer offered for the record that contains it (tests/test_smart_unit.py checks
    marrow edema only)."""
    from service.smart.findings import FindingForm

    assert isinstance(form, FindingForm)
    doc = json.loads(ROW16.read_text())
    request = doc["request"]
    value: bool | float = 25.0 if form.quantity else True
    written = {
        **observation(form, value, patient_id="pv45", performer="Practitioner/x", when=NOW, body_site=None),
        "id": f"new-{form.code}",
    }
    result = engine.evaluate("vcf-patient-view", request, now=NOW, new_uuid=lambda: "u", fetch=None)
    assert result.record is not None and result.assessment is not None and result.facts is not None
    assert form in missing_findings(result.assessment, result.facts)
    facts = normalize(
        result.record.patient, [*result.record.resources, written], terminology=engine.terminology, now=NOW
    )
    read = facts.findings.get(form.code) or ()
    assert [f.ref for f in read] == [f"Observation/new-{form.code}"]
    assert (read[0].value == 25.0) if form.quantity else (read[0].present is True)
