"""Shared fixtures: ``app`` → ``client`` (Flask tutorial style), a frozen non-UTC clock, fixed ids."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.pipeline import Engine

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# vendored copy of ../shared/conformance/cds-hooks (sources and licences in its README.md)
CONFORMANCE = ROOT / "tests" / "data" / "cds-hooks"
# A non-UTC offset catches code that mixes naive and aware times or assumes UTC
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=timezone(timedelta(hours=-4)))


@pytest.fixture(autouse=True)
def fhir_mock() -> Iterator[responses.RequestsMock]:
    """Every test runs with ``requests`` mocked: an unregistered URL fails as a connection error.

    Requests in tests carry fhirServer URLs of real hosts (the conformance corpus); none may be
    contacted. Loopback passes through, for the integration test's own FHIR server, and so does the
    server ``FHIR_IT_BASE`` names (tests/test_fhir_integration.py).
    """
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"http://127\.0\.0\.1[:/]"))
        if os.environ.get("FHIR_IT_BASE"):
            mock.add_passthru(os.environ["FHIR_IT_BASE"])
        yield mock


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # the developer's own VCF_CDS_* settings (trusted issuers, CORS...) must not leak into tests
    for name in [n for n in os.environ if n.startswith("VCF_CDS_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.load()


def counter_uuids() -> Any:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


@pytest.fixture
def app(engine: Engine, tmp_path: Path) -> Iterator[Flask]:
    yield create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: NOW,
            "NEW_UUID": counter_uuids(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}",
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
