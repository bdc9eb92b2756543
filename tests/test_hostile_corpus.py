"""Every request of the bad-input corpus (tests/support/corpus.py) gets its status, one error shape, no 500,
no traceback, no record value in a message - and the app answers a valid request right after.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from support.builders import vcf_extension
from support.corpus import CASES, JSON, Case, check_answer, dumps, valid_request


def assert_still_serving(client: FlaskClient) -> None:
    response = client.post("/cds-services/vcf-patient-view", data=dumps(valid_request()), content_type=JSON)
    assert response.status_code == 200
    assert [vcf_extension(c)["kind"] for c in response.get_json()["cards"]][0] == "recommendation"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_request_gets_a_clear_answer(client: FlaskClient, case: Case) -> None:
    kwargs: dict[str, Any] = {"data": case.body(), "headers": case.headers}
    if case.content_type:
        kwargs["content_type"] = case.content_type
    response = client.post(f"/cds-services/{case.service}", **kwargs)
    text = response.get_data(as_text=True)
    body = response.get_json(silent=True)
    check_answer(case, response.status_code, response.content_type or "", text, body)
    assert_still_serving(client)


def test_the_corpus_covers_every_envelope_field() -> None:
    named = {c.id.split("=")[0] for c in CASES}
    fields = ["hook", "hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch"]
    fields += [f"fhirAuthorization.{f}" for f in ("access_token", "token_type", "expires_in", "scope", "subject")]
    fields += ["context.patientId", "context.userId"] + [f"prefetch.{k}" for k in valid_request()["prefetch"]]
    assert [f for f in fields if f not in named] == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_outcomes(client: FlaskClient, method: str) -> None:
    response = client.open("/cds-services/vcf-patient-view", method=method, data=b"{not json")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]
    assert response.get_json()["resourceType"] == "OperationOutcome"
