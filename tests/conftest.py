"""Shared fixtures: ``app`` → ``client`` (Flask tutorial style), a frozen non-UTC clock, fixed ids."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.pipeline import Engine

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance" / "cds-hooks"
# A non-UTC offset catches code that mixes naive and aware times or assumes UTC
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=timezone(timedelta(hours=-4)))


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
