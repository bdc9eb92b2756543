"""Card feedback: CDS Hooks 2.0 bodies accepted, stored durably and idempotently; the report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.cli import main
from service.http.openapi import build_spec
from service.pipeline import Engine
from service.state import app_state
from service.store.db import feedback
from service.store.feedback import feedback_report, format_report

from support.apps import make_app
from support.builders import vcf_extension
from support.feedback import FEEDBACK, issue_cards, item
from support.paths import CONFORMANCE

SPEC = CONFORMANCE / "spec-2.0.1"
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"


def stored(app: Flask) -> list[dict[str, Any]]:
    with app_state(app).database.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(feedback).order_by(feedback.c.id))]


@pytest.mark.parametrize(
    "example", ["21-feedback-accepted", "22-feedback-overridden", "23-feedback-overridden-with-reason"]
)
def test_spec_examples_are_accepted_and_flagged_unknown(db_app: Flask, db_client: FlaskClient, example: str) -> None:
    body = json.loads((SPEC / f"{example}.json").read_text())
    response = db_client.post(FEEDBACK, json=body)
    assert response.status_code == 200
    card = body["feedback"][0]["card"]
    assert response.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": [card]}
    [row] = stored(db_app)
    assert row["card_uuid"] == card and row["outcome"] == body["feedback"][0]["outcome"]
    assert row["card_known"] is False


def test_feedback_is_stored_with_its_reason_and_is_idempotent(db_app: Flask, db_client: FlaskClient) -> None:
    cards = issue_cards(db_client)
    reason = {"system": NON_ADHERENCE, "code": "recipient-disagrees-evidence", "display": "Disagrees"}
    body = {
        "feedback": [
            item(cards[0]["uuid"], "overridden", overrideReason={"reason": reason, "userComment": "Pt John Doe"}),
            item(cards[1]["uuid"], acceptedSuggestions=[{"id": "s-1"}]),
        ]
    }
    assert db_client.post(FEEDBACK, json=body).get_json() == {"stored": 2, "duplicates": 0, "unknownCards": []}
    again = db_client.post(FEEDBACK, json=body)  # an EHR retrying after a lost answer
    assert again.status_code == 200 and again.get_json() == {"stored": 0, "duplicates": 2, "unknownCards": []}
    rows = stored(db_app)
    assert len(rows) == 2
    overridden, accepted = rows
    assert (
        overridden["override_code"] == "recipient-disagrees-evidence" and overridden["override_system"] == NON_ADHERENCE
    )
    assert overridden["has_comment"] is True and overridden["user_comment"] is None  # free text may hold PHI
    assert json.loads(accepted["accepted_suggestions"]) == ["s-1"]
    assert all(r["card_known"] for r in rows)
    assert overridden["outcome_at"].isoformat() == "2026-06-15T14:05:31+00:00"


def test_same_moment_with_another_offset_is_a_duplicate(client: FlaskClient) -> None:
    card = issue_cards(client)[0]["uuid"]
    client.post(FEEDBACK, json={"feedback": [item(card, when="2026-06-15T14:05:31Z")]})
    response = client.post(FEEDBACK, json={"feedback": [item(card, when="2026-06-15T10:05:31-04:00")]})
    assert response.get_json()["duplicates"] == 1
    later = client.post(FEEDBACK, json={"feedback": [item(card, "overridden", when="2026-06-15T14:06:00Z")]})
    assert later.get_json()["stored"] == 1


def test_comments_are_kept_when_the_site_asks(engine: Engine, tmp_path: object) -> None:
    app = make_app(engine, f"sqlite:///{tmp_path}/c.sqlite3", FEEDBACK_COMMENTS=True)
    client = app.test_client()
    body = {"feedback": [item("x", "overridden", overrideReason={"userComment": "too frail"})]}
    assert client.post(FEEDBACK, json=body).status_code == 200
    assert stored(app)[0]["user_comment"] == "too frail"
    app_state(app).database.engine.dispose()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-06-15T10:00:00Z"}]}, "feedback.0.card"),
        ({"feedback": [item("c", "maybe")]}, "feedback.0.outcome"),
        ({"feedback": [item("c", when="yesterday")]}, "feedback.0.outcomeTimestamp"),
        ({"feedback": [{"card": "c", "outcome": "accepted"}]}, "feedback.0.outcomeTimestamp"),
        ({"feedback": [item("c", acceptedSuggestions=[{}])]}, "feedback.0.acceptedSuggestions.0.id"),
        ({"feedback": [item("c", "overridden", overrideReason={"reason": {"system": "x"}})]}, "reason.code"),
        ({"feedback": [item("c", overrideReason={"reason": {"code": "x"}})]}, "feedback.0.overrideReason"),
        ({"feedback": [item("c")] * 101}, "feedback"),
        ([], "JSON object"),
    ],
)
def test_invalid_feedback_is_400_naming_the_field(client: FlaskClient, body: Any, field: str) -> None:
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and field in outcome["issue"][0]["diagnostics"]


def test_feedback_errors_share_the_one_shape(client: FlaskClient) -> None:
    assert client.post("/cds-services/nope/feedback", json={"feedback": []}).status_code == 404
    assert client.post(FEEDBACK, data=b"x", content_type="text/plain").status_code == 415
    assert client.get(FEEDBACK).status_code == 405


def test_a_database_failure_is_503_so_the_ehr_retries(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr("service.http.feedback.store_feedback", broken)
    response = client.post(FEEDBACK, json={"feedback": [item("c")]})
    assert response.status_code == 503 and response.get_json()["resourceType"] == "OperationOutcome"


def test_report_rates_per_recommendation_and_reasons(db_app: Flask, db_client: FlaskClient) -> None:
    first, second = issue_cards(db_client), issue_cards(db_client)
    recommendation = vcf_extension(first[0])["recommendation"]
    reason = {"system": NON_ADHERENCE, "code": "does-not-align-preferences", "display": "Preferences"}
    db_client.post(
        FEEDBACK,
        json={
            "feedback": [
                item(first[0]["uuid"]),
                item(second[0]["uuid"], "overridden", overrideReason={"reason": reason}),
                item(first[1]["uuid"], "overridden"),
                item("never-issued", "overridden"),
            ]
        },
    )
    report = feedback_report(app_state(db_app).database).as_json()
    by_kind = {r["kind"]: r for r in report["recommendations"]}
    main_row = by_kind["recommendation"]
    assert main_row["recommendation"] == recommendation
    assert (main_row["issued"], main_row["accepted"], main_row["overridden"]) == (2, 1, 1)
    assert main_row["acceptanceRate"] == 0.5 and main_row["overrideRate"] == 0.5
    prevention = by_kind["secondary-prevention"]
    assert (prevention["issued"], prevention["overridden"], prevention["acceptanceRate"]) == (2, 1, 0.0)
    reasons = {(r["kind"], (r["reason"] or {}).get("code")): r["count"] for r in report["overrideReasons"]}
    assert reasons == {("recommendation", "does-not-align-preferences"): 1, ("secondary-prevention", None): 1}
    assert report["unknownCards"] == {"overridden": 1}
    text = format_report(feedback_report(app_state(db_app).database))
    assert "50.0%" in text and "does-not-align-preferences (Preferences)" in text and "no record of: 1" in text


def _main_row(app: Flask) -> tuple[int, int]:
    row = next(
        r
        for r in feedback_report(app_state(app).database).as_json()["recommendations"]
        if r["kind"] == "recommendation"
    )
    return row["accepted"], row["overridden"]


def test_a_far_future_timestamp_does_not_pin_a_cards_outcome(db_app: Flask, db_client: FlaskClient) -> None:
    """Issue 18 review: an EHR with a wrong clock (2926 typed for 2026) says "accepted"; the clinician's
    override that follows must become the card's latest outcome. A clinician cannot act after the
    feedback saying so arrived, so a timestamp after arrival ranks at its arrival."""
    card = issue_cards(db_client)[0]["uuid"]
    assert db_client.post(FEEDBACK, json={"feedback": [item(card, when="2926-06-15T14:00:00Z")]}).status_code == 200
    assert _main_row(db_app) == (1, 0)
    after_it_arrived = datetime.now(UTC).isoformat()
    override = item(card, "overridden", when=after_it_arrived)
    assert db_client.post(FEEDBACK, json={"feedback": [override]}).status_code == 200
    assert _main_row(db_app) == (0, 1)


def test_the_latest_outcome_is_the_latest_action_not_the_latest_arrival(db_app: Flask, db_client: FlaskClient) -> None:
    card = issue_cards(db_client)[0]["uuid"]
    later, earlier = "2026-06-15T15:00:00Z", "2026-06-15T14:00:00Z"  # both before their arrival
    db_client.post(FEEDBACK, json={"feedback": [item(card, "overridden", when=later)]})
    db_client.post(FEEDBACK, json={"feedback": [item(card, when=earlier)]})  # delayed, arrives last
    assert _main_row(db_app) == (0, 1)


@pytest.mark.parametrize(
    ("when", "valid"),
    [
        ("1899-12-31T23:59:59Z", False),
        ("0687-03-01T00:00:00Z", False),
        ("1900-01-01T00:00:00+14:00", True),  # 1899 in UTC: stored all the same
        ("1900-01-01T00:00:00Z", True),
        ("2999-12-31T23:59:59-14:00", True),  # 3000 in UTC
        ("3000-01-01T00:00:00Z", False),
        ("9494-01-01T00:00:00Z", False),
        ("29260615T140000Z", True),  # the parser's compact form: the document's pattern reads its year too
    ],
)
def test_the_openapi_document_says_which_timestamps_are_valid(
    db_app: Flask, db_client: FlaskClient, when: str, valid: bool
) -> None:
    """The document's pattern for outcomeTimestamp and the service's check agree (schemathesis found
    years 0687 and 9494 answered 400 while the document called them valid)."""
    document = build_spec(Engine.load())["components"]["schemas"]["FeedbackItem"]["properties"]["outcomeTimestamp"]
    assert (re.search(document["pattern"], when) is not None) is valid
    response = db_client.post(FEEDBACK, json={"feedback": [item("c", when=when)]})
    assert response.status_code == (200 if valid else 400), response.get_json()
    if valid:
        assert len(stored(db_app)) == 1
    else:
        assert "1900 to 2999" in response.get_json()["issue"][0]["diagnostics"]


def test_report_command(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    cards = issue_cards(client)
    client.post(FEEDBACK, json={"feedback": [item(cards[0]["uuid"])]})
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", app.config["DATABASE_URL"])
    assert main(["feedback-report"]) == 0
    out = capsys.readouterr().out
    assert "acceptance" in out and "100.0%" in out and "(no overrides yet)" in out
    assert main(["feedback-report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recommendations"][0]["accepted"] == 1


def test_report_command_on_an_empty_or_missing_database(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", f"sqlite:///{tmp_path}/nothing.sqlite3")
    assert main(["feedback-report"]) == 1
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", "postgresql://x:y@127.0.0.1:1/none?connect_timeout=1")
    assert main(["feedback-report"]) == 1


def test_report_when_nothing_happened_yet(app: Flask) -> None:
    text = format_report(feedback_report(app_state(app).database))
    assert "(no cards issued yet)" in text and "(no overrides yet)" in text


def test_feedback_is_counted_by_result(client: FlaskClient) -> None:
    from prometheus_client import REGISTRY

    def count(result: str) -> float:
        labels = {"service": "vcf-patient-view", "outcome": "accepted", "result": result}
        return REGISTRY.get_sample_value("vcf_cds_feedback_items_total", labels) or 0.0

    before = {r: count(r) for r in ("stored", "duplicate", "unknown-card")}
    card = issue_cards(client)[0]["uuid"]
    client.post(FEEDBACK, json={"feedback": [item(card), item(card), item("stranger")]})
    assert {r: count(r) - before[r] for r in before} == {"stored": 1, "duplicate": 1, "unknown-card": 1}
