"""The pieces the SMART app's end-to-end tests share (tests/test_smart_app.py and
tests/test_smart_review_attacks.py): the patient's record loaded into sekmet-fhir, sekmet-fhir
itself, the service's log lines, and the service as those tests configure it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service import create_app
from service.normalize.fhirtime import parse_fhir_datetime
from service.pipeline import Engine

from support.apps import TEST_AUDIT_KEY
from support.paths import FIXTURES
from support.sekmet import stop, wait_until_up
from support.smart_ehr import start_sekmet

PATIENT_FIXTURE = FIXTURES / "patient-view" / "45-row16-tenderness-and-edema-unknown.json"
NOW, _ = parse_fhir_datetime(json.loads(PATIENT_FIXTURE.read_text())["now"], None)  # type: ignore[arg-type]


def record_resources(fixture: Path) -> list[dict[str, Any]]:
    prefetch = json.loads(fixture.read_text())["request"]["prefetch"]
    out = [prefetch["patient"]]
    for key, value in prefetch.items():
        if key != "patient" and isinstance(value, dict):
            out += [e["resource"] for e in value.get("entry", [])]
    return out


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + repr(record.__dict__))


@contextmanager
def collected_logs() -> Iterator[LogCollector]:
    """Every log record (with its extra fields) while inside: what the no-secrets-in-logs checks read."""
    collector = LogCollector()
    logging.getLogger().addHandler(collector)
    try:
        yield collector
    finally:
        logging.getLogger().removeHandler(collector)


@contextmanager
def sekmet_running(folder: Path, port: int, iss: str) -> Iterator[None]:
    """sekmet-fhir on ``port`` trusting ``iss``'s tokens, or the test skipped; stopped on exit."""
    try:
        process, root, log = start_sekmet(folder, port, iss)
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        if not wait_until_up(process, f"{root}/fhir"):
            pytest.skip(f"sekmet-fhir did not start: {log.read_text(errors='replace')[-600:]}")
        yield
    finally:
        stop(process)


def smart_service(engine: Engine, folder: Path, app_url: str, clients: Path) -> tuple[Flask, str]:
    """The service at ``app_url`` with the SMART app on for ``clients``, and its (SQLite) database URL."""
    database_url = f"sqlite:///{folder / 'service.sqlite3'}"
    started = time.monotonic()
    app = create_app(
        {
            "ENGINE": engine,
            # the fixture's moment, moving on in real time: sessions expire as they would
            "CLOCK": lambda: NOW + timedelta(seconds=time.monotonic() - started),
            "DATABASE_URL": database_url,
            "PUBLIC_URL": app_url,
            "SMART_CLIENTS": str(clients),
            "AUDIT_KEY": TEST_AUDIT_KEY,
        }
    )
    return app, database_url
