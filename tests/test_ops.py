"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from service.observe import metrics
from service.state import app_state
from service.store.db import Database

from support.builders import ICD10CM, condition, pain, request, vcf_extension


def samples(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_when_ready(db_client: FlaskClient) -> None:
    body = db_client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["checks"] == {"database": "ok", "mappings": "ok"}
    assert "vcf-patient-view" in body["services"]


def test_readyz_when_the_database_is_gone(app: Flask, client: FlaskClient) -> None:
    app_state(app).database.engine.dispose()
    app_state(app).database = Database("postgresql://u:pw@127.0.0.1:1/none?connect_timeout=1")
    response = client.get("/readyz")
    assert response.status_code == 503
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "database unreachable" in diagnostics and "pw" not in diagnostics
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the database


def test_readyz_when_the_schema_is_behind(app: Flask, client: FlaskClient) -> None:
    with app_state(app).database.engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
    assert "schema at nothing" in client.get("/readyz").get_json()["issue"][0]["diagnostics"]


def test_readyz_with_a_newer_schema_stays_ready(app: Flask, client: FlaskClient) -> None:
    # a newer release migrated the database during a rolling update: this one keeps serving
    with app_state(app).database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    assert client.get("/readyz").status_code == 200


def test_readyz_without_value_sets(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_state(app).engine, "catalog", {})
    response = client.get("/readyz")
    assert response.status_code == 503 and "not loaded" in response.get_json()["issue"][0]["diagnostics"]


def test_hook_calls_are_counted(client: FlaskClient) -> None:
    before = samples(client)
    response = client.post(
        "/cds-services/vcf-patient-view", json=request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
    )
    recommendation = vcf_extension(response.get_json()["cards"][0])["recommendation"]
    client.post("/cds-services/vcf-patient-view", data=b"x", content_type="text/plain")
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    service = {"service": "vcf-patient-view"}
    assert delta("vcf_cds_hook_requests_total", status="200", **service) == 1
    assert delta("vcf_cds_hook_requests_total", status="415", **service) == 1
    assert delta("vcf_cds_hook_duration_seconds_count", **service) == 2
    assert delta("vcf_cds_cards_total", kind="recommendation", recommendation=recommendation, **service) == 1
    assert delta("vcf_cds_cards_total", kind="secondary-prevention", recommendation=recommendation, **service) == 1
    assert delta("vcf_cds_http_requests_total", endpoint="/metrics", method="GET", status="200") == 1


def test_fhir_fallback_counters_are_exposed_for_the_fhir_client(client: FlaskClient) -> None:
    before = samples(client)
    metrics.count_fhir_call("Observation")
    metrics.count_fhir_failure("Observation", "timeout")
    metrics.count_fhir_failure("Observation", "something-new")
    after = samples(client)
    calls = "vcf_cds_fhir_fallback_calls_total"
    failures = "vcf_cds_fhir_fallback_failures_total"
    assert value(after, calls, resource="Observation") - value(before, calls, resource="Observation") == 1
    for reason in ("timeout", "other"):
        grew = value(after, failures, resource="Observation", reason=reason)
        assert grew - value(before, failures, resource="Observation", reason=reason) == 1


def test_unmatched_paths_do_not_explode_the_labels(client: FlaskClient) -> None:
    client.get("/random/path/123")
    found = samples(client)
    assert value(found, "vcf_cds_http_requests_total", endpoint="unmatched", method="GET", status="404") >= 1
    assert not any("/random" in dict(labels).get("endpoint", "") for _, labels in found)
