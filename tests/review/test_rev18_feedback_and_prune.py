"""Review of issue 18: feedback-report's "latest outcome" and ``vcf-cds prune-audit`` inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.cli import main
from service.feedback import feedback_report

from builders import ICD10CM, condition, pain, request

FEEDBACK = "/cds-services/vcf-patient-view/feedback"


def test_a_far_future_timestamp_does_not_pin_a_cards_outcome(db_app: Flask, db_client: FlaskClient) -> None:
    """An EHR with a wrong clock (or a typo, 2926 for 2026) sends "accepted" in the far future; the
    clinician's real override an hour later can then never become the card's latest outcome: the
    report counts the card accepted forever. The schema's own comment says outcomeTimestamp is "a
    clinician's action, so near now" (service/feedback.py), yet it admits anything before 3000.
    Expected: a timestamp beyond now + clock skew is a 400 (or is not allowed to outrank a later arrival)."""
    hook = db_client.post(
        "/cds-services/vcf-patient-view", json=request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
    )
    card = hook.get_json()["cards"][0]["uuid"]
    wrong = {"card": card, "outcome": "accepted", "outcomeTimestamp": "2926-06-15T14:00:00Z"}
    first = db_client.post(FEEDBACK, json={"feedback": [wrong]})
    if first.status_code == 400:
        return  # refused: the report cannot be pinned
    real = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-06-15T15:00:00Z"}
    assert db_client.post(FEEDBACK, json={"feedback": [real]}).status_code == 200
    rows = feedback_report(db_app.extensions["vcf_cds_db"]).recommendations
    overridden = sum(r.overridden for r in rows)
    assert overridden == 1, [(r.recommendation, r.accepted, r.overridden) for r in rows]


@pytest.mark.parametrize("days", ["800000", "3000000", "99999999999"])
def test_prune_audit_with_a_huge_retention_is_not_a_traceback(
    days: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retention longer than the calendar (keep "forever" written as a big number) raises
    OverflowError from ``utcnow() - timedelta(days=…)`` (service/cli.py run_prune_audit): a traceback
    and exit status 1 instead of a message (or deleting nothing, which is what it means)."""
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert main(["migrate"]) == 0
    status = main(["prune-audit", "--older-than", days])
    assert status in (0, 2)
    assert "Traceback" not in capsys.readouterr().err
