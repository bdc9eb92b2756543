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
from hypothesis import settings

from service import create_app
from service.pipeline import Engine

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# vendored copy of ../shared/conformance/cds-hooks (sources and licences in its README.md)
CONFORMANCE = ROOT / "tests" / "data" / "cds-hooks"
# Property tests replay the same examples on every run (CI must be reproducible); a run with
# HYPOTHESIS_PROFILE=explore draws new ones, 20 times as many (a bug hunt, not a CI job).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(n: int) -> settings:
    """``@examples(n)``: n examples in CI, more when exploring."""
    return settings(max_examples=n * (20 if PROFILE == "explore" else 1))


# A non-UTC offset catches code that mixes naive and aware times or assumes UTC
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=timezone(timedelta(hours=-4)))


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
