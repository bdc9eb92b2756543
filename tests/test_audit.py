"""The audit log: a row per hook call (answered or refused), a keyed patient hash, no other PHI."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Connection, select, text

from service.observe.logs import json_handler
from service.pipeline import Engine
from service.state import app_state
from service.store.audit import AuditKey, CallRows, insert_calls
from service.store.db import audit_log, issued_card
from service.store.groupcommit import GroupCommit

from support.apps import TEST_AUDIT_KEY, make_app
from support.builders import ICD10CM, PATIENT_ID, condition, pain, request, vcf_extension

HOOK = "/cds-services/vcf-patient-view"
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def rows(app: Flask, table: Any = audit_log) -> list[dict[str, Any]]:
    with app_state(app).database.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(table))]


def expected_hash(patient_id: str) -> str:
    return hmac.new(TEST_AUDIT_KEY.encode(), patient_id.encode(), hashlib.sha256).hexdigest()


def test_answered_call_is_audited_with_its_cards(db_app: Flask, db_client: FlaskClient) -> None:
    response = db_client.post(HOOK, json=request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8)))
    assert response.status_code == 200
    [row] = rows(db_app)
    assert row["service"] == "vcf-patient-view" and row["hook"] == "patient-view"
    assert row["hook_instance"] == HOOK_INSTANCE
    assert row["status"] == 200 and row["cards"] == 2 and row["duration_ms"] > 0
    recommendation = vcf_extension(response.get_json()["cards"][0])["recommendation"]
    assert row["recommendation"] == recommendation
    assert row["rules_version"] == app_state(db_app).engine.rules_version
    assert row["patient_hash"] == expected_hash(PATIENT_ID)
    assert row["key_id"] == AuditKey.from_setting(TEST_AUDIT_KEY).key_id
    cards = {c["uuid"]: c for c in rows(db_app, issued_card)}
    assert set(cards) == {c["uuid"] for c in response.get_json()["cards"]}
    assert sorted(c["kind"] for c in cards.values()) == ["recommendation", "secondary-prevention"]
    assert all(c["audit_id"] == row["id"] and c["recommendation"] == recommendation for c in cards.values())


def test_no_phi_beyond_the_hash(app: Flask, client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"), patientId="MRN-SECRET-4711")
    body["prefetch"]["patient"]["id"] = "MRN-SECRET-4711"
    body["fhirAuthorization"] = {"access_token": "TOKEN-SECRET", "token_type": "Bearer"}
    assert client.post(HOOK, json=body).status_code == 200
    stored = json.dumps([rows(app), rows(app, issued_card)], default=str)
    assert "SECRET" not in stored and "Practitioner" not in stored
    assert rows(app)[0]["patient_hash"] == expected_hash("MRN-SECRET-4711")


def test_prefixed_patient_id_hashes_the_same(app: Flask, client: FlaskClient) -> None:
    client.post(HOOK, json=request(condition("c1", ICD10CM, "M81.0"), patientId=f"Patient/{PATIENT_ID}"))
    client.post(HOOK, json=request(condition("c1", ICD10CM, "M81.0")))
    assert {r["patient_hash"] for r in rows(app)} == {expected_hash(PATIENT_ID)}


def _412(body: dict[str, Any]) -> dict[str, Any]:
    del body["prefetch"]["conditions"]
    return body


@pytest.mark.parametrize(
    ("status", "send"),
    [
        (400, lambda c: c.post(HOOK, json={**request(), "hookInstance": 7})),
        (412, lambda c: c.post(HOOK, json=_412(request(condition("c1", ICD10CM, "M80.08XA"))))),
        (415, lambda c: c.post(HOOK, data=b"x", content_type="text/plain")),
        (413, lambda c: c.post(HOOK, data=b"[" + b" " * (11 * 1024 * 1024) + b"]", content_type="application/json")),
        (400, lambda c: c.post(HOOK, data=b"{", content_type="application/json")),
    ],
)
def test_refused_calls_are_audited(app: Flask, client: FlaskClient, status: int, send: Any) -> None:
    assert send(client).status_code == status
    [row] = rows(app)
    assert row["status"] == status and row["service"] == "vcf-patient-view"
    assert row["recommendation"] is None and row["cards"] == 0
    assert rows(app, issued_card) == []


def test_412_keeps_what_the_body_said(app: Flask, client: FlaskClient) -> None:
    client.post(HOOK, json=_412(request(condition("c1", ICD10CM, "M80.08XA"))))
    [row] = rows(app)
    assert row["hook_instance"] == HOOK_INSTANCE and row["patient_hash"] == expected_hash(PATIENT_ID)


def test_unknown_service_and_other_endpoints_are_not_audited(app: Flask, client: FlaskClient) -> None:
    client.post("/cds-services/nope", json=request())
    client.get("/cds-services")
    client.get("/healthz")
    assert rows(app) == []


def test_no_advice_leaves_unaudited(app: Flask, client: FlaskClient) -> None:
    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    refused = {"service": "vcf-patient-view", "status": "503"}
    before = count("vcf_cds_hook_requests_total", **refused), count("vcf_cds_audit_write_failures_total")
    with app_state(app).database.engine.begin() as connection:  # the audit tables are gone
        connection.execute(text("DROP TABLE issued_card"))
        connection.execute(text("DROP TABLE audit_log"))
    response = client.post(HOOK, json=request(condition("c1", ICD10CM, "M80.08XA")))
    assert response.status_code == 503
    assert response.get_json()["issue"][0]["code"] == "transient"
    after = count("vcf_cds_hook_requests_total", **refused), count("vcf_cds_audit_write_failures_total")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    # a refusal stays what it was when its audit row fails too
    assert client.post(HOOK, data=b"x", content_type="text/plain").status_code == 415


def test_advice_whose_audit_row_may_not_survive_a_crash_is_withheld(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from service.store import sqlite

    def broken_disk(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sqlite.os, "fdatasync", broken_disk)  # the SQLite log cannot be synced
    response = client.post(HOOK, json=request(condition("c1", ICD10CM, "M80.08XA")))
    assert response.status_code == 503
    assert response.get_json()["issue"][0]["code"] == "transient"
    monkeypatch.undo()
    assert client.post(HOOK, json=request(condition("c1", ICD10CM, "M80.08XA"))).status_code == 200


def test_log_lines_carry_hook_instance_and_no_phi(client: FlaskClient) -> None:
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger("vcf_cds")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        vcf = condition("c1", ICD10CM, "M80.08XA", subject={"reference": "Patient/MRN-SECRET-4711"})
        body = request(vcf, patientId="MRN-SECRET-4711")
        body["prefetch"]["patient"]["id"] = "MRN-SECRET-4711"
        client.post(HOOK, json=body)
        del body["prefetch"]["conditions"]  # a refusal logs from the error handler too
        client.post(HOOK, json=body)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    calls = [line for line in lines if line["message"] == "hook call"]
    assert [c["status"] for c in calls] == [200, 412]
    assert calls[0]["service"] == "vcf-patient-view" and calls[0]["recommendation"] and calls[0]["cards"] == 2
    refused = [line for line in lines if line["message"].startswith("request refused")]
    assert refused and all(line["hookInstance"] == HOOK_INSTANCE for line in calls + refused)
    assert "SECRET" not in stream.getvalue()


def test_missing_key_is_said_loudly_and_makes_an_ephemeral_one(
    engine: Engine, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(engine, f"sqlite:///{tmp_path}/a.sqlite3", AUDIT_KEY="")
    key = app_state(app).audit_key
    assert key.ephemeral and len(key.secret) >= 32
    assert any("VCF_CDS_AUDIT_KEY is not set" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    app_state(app).database.engine.dispose()


def test_audit_hash_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main

    monkeypatch.setenv("VCF_CDS_AUDIT_KEY", TEST_AUDIT_KEY)
    assert main(["audit-hash", "Patient/p1"]) == 0
    assert capsys.readouterr().out.split()[0] == expected_hash("p1")
    monkeypatch.delenv("VCF_CDS_AUDIT_KEY")
    assert main(["audit-hash", "p1"]) == 1


def test_short_keys_are_refused_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import load_settings

    with pytest.raises(ValueError, match="32 characters") as error:
        load_settings({"VCF_CDS_AUDIT_KEY": "hunter2"})
    assert "hunter2" not in str(error.value)


def test_concurrent_calls_share_commits_and_each_card_is_filed_under_its_own_call(
    db_app: Flask,
) -> None:
    batches: list[int] = []

    def slow_insert(connection: Connection, calls: Sequence[CallRows]) -> list[int]:
        batches.append(len(calls))
        time.sleep(0.05)  # a slow disk: calls answered meanwhile queue for the next commit
        return insert_calls(connection, calls)

    # the writer init_app builds, counting its batches
    app_state(db_app).audit_writer = GroupCommit(app_state(db_app).database.engine.begin, slow_insert)

    def call(n: int) -> tuple[str, set[str]]:
        body = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
        body["hookInstance"] = f"call-{n}"
        response = db_app.test_client().post(HOOK, json=body)
        assert response.status_code == 200
        return body["hookInstance"], {card["uuid"] for card in response.get_json()["cards"]}

    with ThreadPoolExecutor(8) as pool:
        answered = dict(pool.map(call, range(24)))
    assert max(batches) > 1 and sum(batches) == 24  # commits were shared, every call written once
    calls = {row["id"]: row["hook_instance"] for row in rows(db_app)}
    assert sorted(calls.values()) == sorted(answered)
    filed: dict[str, set[str]] = {}
    for card in rows(db_app, issued_card):
        filed.setdefault(calls[card["audit_id"]], set()).add(card["uuid"])
    assert filed == answered
