"""One OperationOutcome shape for every error status (Datasette's test_error_shape idea)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.state import app_state

from support.builders import ICD10CM, condition, request


def _412(client: FlaskClient) -> Any:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    del body["prefetch"]["conditions"]
    return client.post("/cds-services/vcf-patient-view", json=body)


def _503(client: FlaskClient) -> Any:
    # readiness with the database gone: the one 503 reachable without monkeypatching
    from service.store.db import Database

    app_state(client.application).database.engine.dispose()
    app_state(client.application).database = Database("postgresql://u:p@127.0.0.1:1/x?connect_timeout=1")
    return client.get("/readyz")


class _Socket:
    def gettimeout(self) -> float | None:
        return None

    def settimeout(self, value: float | None) -> None:
        pass


class _Stalled(io.RawIOBase):
    """A client that sent the headers and stopped (what a socket read timeout looks like)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise TimeoutError("timed out")


CASES = {
    400: lambda c: c.post("/cds-services/vcf-patient-view", data=b"{not json", content_type="application/json"),
    # no trusted issuers configured: only loopback callers are served
    401: lambda c: c.post("/cds-services/vcf-patient-view", json={}, environ_overrides={"REMOTE_ADDR": "203.0.113.9"}),
    404: lambda c: c.post("/cds-services/no-such-service", json={}),
    405: lambda c: c.put("/cds-services/vcf-patient-view", json={}),
    408: lambda c: c.post(
        "/cds-services/vcf-patient-view",
        content_type="application/json",
        environ_overrides={"wsgi.input": _Stalled(), "CONTENT_LENGTH": "100", "gunicorn.socket": _Socket()},
    ),
    412: _412,
    413: lambda c: c.post(
        "/cds-services/vcf-patient-view", data=b"[" + b" " * (11 * 1024 * 1024) + b"]", content_type="application/json"
    ),
    415: lambda c: c.post("/cds-services/vcf-patient-view", data=b"hook=x", content_type="text/plain"),
    503: _503,
}


@pytest.mark.parametrize("status", sorted(CASES))
def test_every_error_is_one_operation_outcome(client: FlaskClient, status: int) -> None:
    response = CASES[status](client)
    assert response.status_code == status
    assert response.mimetype == "application/fhir+json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert len(body["issue"]) == 1
    issue = body["issue"][0]
    assert issue["severity"] == "error" and issue["code"]
    assert isinstance(issue["diagnostics"], str) and len(issue["diagnostics"]) > 10
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_path_is_404_outcome(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.get_json()["resourceType"] == "OperationOutcome"


def test_a_bug_is_a_500_outcome_without_details(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("patient John Doe secret")

    monkeypatch.setattr("service.pipeline.decide", boom)
    response = client.post("/cds-services/vcf-patient-view", json=request(condition("c1", ICD10CM, "M80.08XA")))
    assert response.status_code == 500
    assert "John" not in response.get_data(as_text=True)
    assert response.get_json()["resourceType"] == "OperationOutcome"
