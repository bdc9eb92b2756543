"""Issue 18's shared state beyond the replay store: the feedback key and per-card report, input the
database could never store (400, not 503), /readyz that proves a write, ``vcf-cds prune-audit``."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, make_url, select

from service.cli import main
from service.pipeline import Engine
from service.state import app_state
from service.store.db import audit_log, create_db_engine, feedback, issued_card, migrate, utcnow
from service.store.feedback import feedback_report, format_report

from support.apps import make_app
from support.builders import ICD10CM, condition, request
from support.feedback import FEEDBACK, issue_cards, item


def count(app: Flask, table: Any) -> int:
    with app_state(app).database.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# --- feedback ------------------------------------------------------------------------------------


def test_the_same_item_to_two_services_is_two_items(db_app: Flask, db_client: FlaskClient) -> None:
    body = {"feedback": [item("one-uuid")]}
    for service in ("vcf-patient-view", "vcf-order-sign"):
        response = db_client.post(f"/cds-services/{service}/feedback", json=body)
        assert response.status_code == 200 and response.get_json()["stored"] == 1
    assert count(db_app, feedback) == 2


def test_the_report_counts_each_card_once_by_its_latest_outcome(db_app: Flask, db_client: FlaskClient) -> None:
    first, second = issue_cards(db_client)[0], issue_cards(db_client)[0]
    assert first["uuid"] != second["uuid"]
    later, earlier = "2026-06-15T15:00:00Z", "2026-06-15T14:00:00Z"
    # first: accepted, then overridden; second: the later acceptance arrives before the earlier override
    for feedback_item in (
        item(first["uuid"], "accepted", earlier),
        item(first["uuid"], "overridden", later),
        item(second["uuid"], "accepted", later),
        item(second["uuid"], "overridden", earlier),
        item("never-issued", "accepted", earlier),
        item("never-issued", "overridden", later),
    ):
        assert db_client.post(FEEDBACK, json={"feedback": [feedback_item]}).status_code == 200
    report = feedback_report(app_state(db_app).database)
    [row] = [r for r in report.recommendations if r.kind == "recommendation"]
    assert (row.issued, row.accepted, row.overridden) == (2, 1, 1)
    assert [o.count for o in report.override_reasons if o.kind == "recommendation"] == [1]
    assert report.unknown_cards == {"overridden": 1}
    assert report.as_json()["countedPer"].startswith("issued card")
    assert "Counted per issued card, by its latest outcome" in format_report(report)


NUL = "\x00"


@pytest.mark.parametrize(
    ("feedback_item", "field"),
    [
        (item(f"card{NUL}"), "feedback.1.card"),
        (item("c", acceptedSuggestions=[{"id": f"s{NUL}"}]), "feedback.1.acceptedSuggestions.0.id"),
        (
            item("c", "overridden", overrideReason={"reason": {"code": f"x{NUL}"}}),
            "feedback.1.overrideReason.reason.code",
        ),
        (item("c", "overridden", overrideReason={"userComment": f"a{NUL}b"}), "feedback.1.overrideReason.userComment"),
        (item("c", when="0001-01-01T00:00:00+01:00"), "feedback.1.outcomeTimestamp"),  # before year 1 in UTC
        (item("c", when="9999-12-31T23:59:59-14:00"), "feedback.1.outcomeTimestamp"),  # after 9999 in UTC
        (item("c", when="9999-12-31T23:59:59+14:00"), "feedback.1.outcomeTimestamp"),
        (item("c", when="1899-12-31T23:59:59Z"), "feedback.1.outcomeTimestamp"),
        (item("c" * 129), "feedback.1.card"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_input_the_database_cannot_store_is_400_and_nothing_is_written(
    db_app: Flask, db_client: FlaskClient, feedback_item: dict[str, Any], field: str
) -> None:
    body = {"feedback": [item("a-good-one"), feedback_item]}
    response = db_client.post(FEEDBACK, json=body)
    assert response.status_code == 400, response.get_json()
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["expression"] == [field]
    assert count(db_app, feedback) == 0  # validated whole: the good item was not written either


def test_a_nul_in_a_hook_request_is_audited_not_a_503(db_app: Flask, db_client: FlaskClient) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    body["hookInstance"] = f"abc{NUL}def"
    assert db_client.post("/cds-services/vcf-patient-view", json=body).status_code == 200
    assert count(db_app, audit_log) == 1


# --- /readyz -------------------------------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Any:
    """A 4 MiB tmpfs: a disk that can really fill up (needs root to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a small file system here (not root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_readyz_is_503_on_a_full_disk_sqlite(engine: Engine, small_filesystem: Path) -> None:
    app = make_app(engine, f"sqlite:///{small_filesystem / 'db.sqlite3'}")
    app_state(app).write_probe.interval = 0  # every probe writes
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        filler = fill(small_filesystem)
        full = client.get("/readyz")
        assert full.status_code == 503 and "does not accept writes" in full.get_json()["issue"][0]["diagnostics"]
        filler.unlink()
        assert client.get("/readyz").status_code == 200  # space again: ready again
    finally:
        app_state(app).database.engine.dispose()


def test_readyz_is_503_when_postgresql_refuses_writes(engine: Engine, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the SQLite case is the full disk above")
    schema = create_db_engine(database_url)
    migrate(schema)
    schema.dispose()
    # a server that answers reads but no writes: a standby, or a database set read-only
    url = make_url(database_url)
    read_only = url.update_query_dict({"options": url.query["options"] + " -cdefault_transaction_read_only=on"})
    app = make_app(engine, read_only.render_as_string(hide_password=False))
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert "does not accept writes" in response.get_json()["issue"][0]["diagnostics"]
    finally:
        app_state(app).database.engine.dispose()


# --- vcf-cds prune-audit --------------------------------------------------------------------------


def test_prune_audit_deletes_old_rows_their_cards_and_their_feedback(
    db_app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = utcnow()
    database = app_state(db_app).database.engine
    call = {"service": "vcf-patient-view", "rules_version": "r", "status": 200, "duration_ms": 1.0, "cards": 1}
    with database.begin() as connection:
        for n, age in enumerate((400, 31, 29, 1)):
            at = now - timedelta(days=age)
            audit_id = connection.execute(insert(audit_log).values(at=at, **call).returning(audit_log.c.id)).scalar()
            card = {"uuid": f"card-{n}", "audit_id": audit_id, "service": "vcf-patient-view", "kind": "recommendation"}
            connection.execute(insert(issued_card).values(issued_at=at, **card))
    db_client = db_app.test_client()
    cards = ["card-0", "card-1", "card-2", "card-3", "never-issued"]
    assert db_client.post(FEEDBACK, json={"feedback": [item(c) for c in cards]}).status_code == 200
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", database_url)

    assert main(["prune-audit", "--older-than", "30"]) == 0
    out = capsys.readouterr().out
    assert "deleted 2 audit rows, 2 issued cards and 2 feedback items older than" in out
    with database.connect() as connection:
        assert sorted(connection.execute(select(issued_card.c.uuid)).scalars()) == ["card-2", "card-3"]
        left = sorted(connection.execute(select(feedback.c.card_uuid)).scalars())
    assert left == ["card-2", "card-3", "never-issued"]  # received just now: within any retention
    assert count(db_app, audit_log) == 2

    assert main(["prune-audit", "--older-than", "0"]) == 2
    assert count(db_app, audit_log) == 2


@pytest.mark.parametrize("days", ["800000", "3000000", "99999999999"])
def test_prune_audit_past_the_calendar_is_a_message_not_a_traceback(
    db_app: Flask, database_url: str, days: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18 review: "keep forever" written as a big number raised OverflowError (exit 1, traceback)."""
    call = {"service": "vcf-patient-view", "rules_version": "r", "status": 200, "duration_ms": 1.0, "cards": 1}
    with app_state(db_app).database.engine.begin() as connection:
        connection.execute(insert(audit_log).values(at=utcnow() - timedelta(days=400), **call))
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", database_url)
    assert main(["prune-audit", "--older-than", days]) == 2
    err = capsys.readouterr().err
    assert f"--older-than {days} days reaches before the year 1" in err and "Traceback" not in err
    assert count(db_app, audit_log) == 1
    assert main(["prune-audit", "--older-than", "700000"]) == 0  # the year 84 or so: within the calendar
    assert "deleted 0 audit rows" in capsys.readouterr().out
    assert count(db_app, audit_log) == 1


def test_prune_audit_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "vcf-cds prune-audit --older-than" in readme
