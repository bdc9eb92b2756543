"""Shared fixtures: ``app`` → ``client`` (Flask tutorial style), a frozen non-UTC clock, fixed ids."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from service.pipeline import Engine
from service.state import app_state
from service.store.db import create_db_engine, migrate

from support import examples  # noqa: F401  (loads the hypothesis profile before any test module)
from support.apps import make_app
from support.postgres import POSTGRES_URL, fresh_schema

# `pytest -m "not slow" --no-cov` (about a minute) leaves these out; `bash scripts/test` runs everything.
# End to end: real server processes, a browser, a wheel build, schemathesis, wrk, a FHIR server, a
# misbehaving FHIR server on loopback; and the hypothesis property runs, the longest in-process tests.
SLOW_MODULES = {
    "test_bench_scaleout.py",
    "test_benchmarks.py",
    "test_containers.py",
    "test_crash_safety.py",
    "test_decide_properties.py",
    "test_fhir_faults.py",
    "test_fhir_integration.py",
    "test_hostile_http.py",
    "test_migrate.py",
    "test_normalize_2026_12_properties.py",
    "test_normalize_properties.py",
    "test_scaleout.py",
    "test_schemathesis.py",
    "test_smart_app.py",
    "test_soak_smoke.py",
    "test_viewer_browser.py",
    "test_wheel.py",
}
# real server processes (vcf-cds serve) in modules that are otherwise quick
SLOW_TESTS = {
    "test_processes_starting_together_migrate_once",
    "test_serve_refuses_issuers_without_a_public_url",
    "test_serve_refuses_to_start_with_a_broken_smart_setup",
    "test_served_another_patients_fracture_gives_no_card",
    "test_served_audience_is_the_public_url_whatever_the_request_claims",
    "test_served_forwarded_for_counts_from_a_trusted_proxy",
    "test_served_next_link_stays_under_the_callers_fhir_servers",
    "test_served_redirect_and_server_binding",
    "test_served_with_two_workers_one_token_is_accepted_once",
    # hypothesis property runs in modules that are otherwise quick: each takes seconds
    "test_every_id_decide_can_list_as_missing_has_words",
    "test_cards_of_any_facts_have_safe_text_and_no_empty_values",
    "test_no_request_leaves_for_an_origin_other_than_the_one_checked",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.params.values()
        name = getattr(item, "originalname", item.name)
        if item.path.name in SLOW_MODULES or name in SLOW_TESTS or on_postgres:
            item.add_marker(pytest.mark.slow)


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
def service_loggers_as_found() -> Iterator[None]:
    """``vcf-cds serve`` run in-process configures the service's loggers (a handler on the stderr
    pytest captured, no propagation): put them back, or later tests log into a closed stream and
    their log assertions see nothing."""
    names = ("vcf_cds", "alembic")
    saved = [(logging.getLogger(n), list(logging.getLogger(n).handlers)) for n in names]
    states = [(logger.level, logger.propagate) for logger, _ in saved]
    yield
    for (logger, handlers), (level, propagate) in zip(saved, states, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the developer's own VCF_CDS_* settings (trusted issuers, CORS...) must not leak into tests
    for name in [n for n in os.environ if n.startswith("VCF_CDS_") and n != "VCF_CDS_TEST_POSTGRES_URL"]:
        monkeypatch.delenv(name)
    # `vcf-cds serve` run in-process (gunicorn stubbed, tests/test_serve.py) sets this in os.environ
    # itself; left set, every later test in the process would read metrics from its deleted folder.
    # set, then deleted: monkeypatch then unsets it after the test, whoever set it meanwhile
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    # an app a test makes without naming a database gets a throwaway one, not ./vcf-cds.sqlite3
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'default.sqlite3'}")


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.load()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test: faster than migrating a new one each time."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db_engine = create_db_engine(f"sqlite:///{path}")
    migrate(db_engine)
    db_engine.dispose()
    return path


@pytest.fixture
def app(engine: Engine, tmp_path: Path, sqlite_template: Path) -> Iterator[Flask]:
    shutil.copy(sqlite_template, tmp_path / "test.sqlite3")
    app = make_app(engine, f"sqlite:///{tmp_path / 'test.sqlite3'}")
    yield app
    app_state(app).database.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a new SQLite file, or a new schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("VCF_CDS_TEST_POSTGRES_URL is unset: PostgreSQL variant skipped (scripts/test sets it)")
    with fresh_schema() as url:
        yield url


@pytest.fixture
def db_app(engine: Engine, database_url: str) -> Iterator[Flask]:
    """The app on SQLite and on PostgreSQL (each test using it runs twice)."""
    app = make_app(engine, database_url)
    yield app
    app_state(app).database.engine.dispose()


@pytest.fixture
def db_client(db_app: Flask) -> FlaskClient:
    return db_app.test_client()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
