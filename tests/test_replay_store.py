"""The JWT replay store in the database: one use per ``jti`` across threads, worker processes and
app instances sharing a database, on SQLite and PostgreSQL; it fails closed."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from service.auth.replay_store import DatabaseReplayStore
from service.pipeline import Engine
from service.state import app_state
from service.store.db import create_db_engine, jwt_replay, migrate

from support.apps import make_app
from support.builders import ICD10CM, condition, request
from support.clock import NOW
from support.served import http, serving
from support.tokens import EHR, PUBLIC_URL, SERVICE_URL, Signer, claims, ec_signer, issuer_file

T = NOW.timestamp()
THREADS = 16


@pytest.fixture(scope="module")
def signer() -> Signer:
    return ec_signer("ehr-1")


def store(database_url: str) -> DatabaseReplayStore:
    engine = create_db_engine(database_url)
    migrate(engine)
    return DatabaseReplayStore(engine)


def rows(replay: DatabaseReplayStore) -> int:
    with replay.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(jwt_replay)).scalar_one())


def test_a_jti_is_claimed_once_per_issuer_until_it_expires(database_url: str) -> None:
    replay = store(database_url)
    try:
        assert replay.claim(EHR, "j1", expires_at=T + 300, now=T) is True
        assert replay.claim(EHR, "j1", expires_at=T + 300, now=T + 1) is False
        assert replay.claim("https://other.example", "j1", expires_at=T + 300, now=T + 1) is True
        assert replay.claim(EHR, "j2", expires_at=T + 300, now=T + 1) is True
        # the first j1 has expired: a new token may carry the same jti (PRODUCT: "within the token lifetime")
        assert replay.claim(EHR, "j1", expires_at=T + 900, now=T + 301) is True
        assert replay.claim(EHR, "j1", expires_at=T + 900, now=T + 302) is False
    finally:
        replay.engine.dispose()


def test_expired_rows_are_pruned_without_a_cron(database_url: str) -> None:
    engine = create_db_engine(database_url)
    migrate(engine)
    replay = DatabaseReplayStore(engine, prune_every=5)
    try:
        for n in range(4):
            assert replay.claim(EHR, f"old-{n}", expires_at=T + 10, now=T)
        assert rows(replay) == 4
        # the fifth claim, after the first four expired, deletes them; its own row stays
        assert replay.claim(EHR, "new", expires_at=T + 400, now=T + 100)
        assert rows(replay) == 1
        assert replay.claim(EHR, "new", expires_at=T + 400, now=T + 101) is False
    finally:
        engine.dispose()


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-engines"])
def test_concurrent_uses_of_one_jti_exactly_one_wins(database_url: str, instances: int) -> None:
    """16 threads; with two engines on one database, as two workers or two replicas would have."""
    stores = [store(database_url) for _ in range(instances)]
    start = threading.Barrier(THREADS)

    def use(n: int) -> bool:
        start.wait()
        return stores[n % instances].claim(EHR, "shared-jti", expires_at=T + 300, now=T)

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(use, range(THREADS)))
        assert results.count(True) == 1, results
    finally:
        for s in stores:
            s.engine.dispose()


# --- through the app ---------------------------------------------------------------------------


def secured(engine: Engine, database_url: str, tmp_path: Path, signer: Signer) -> Flask:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(issuer_file({"iss": EHR, "jwks": {"keys": [signer.public_jwk()]}})))
    # real card uuids: two instances on one database must not issue the same ones
    new_uuid = lambda: str(uuid.uuid4())  # noqa: E731
    return make_app(engine, database_url, TRUSTED_ISSUERS=str(path), PUBLIC_URL=PUBLIC_URL, NEW_UUID=new_uuid)


def call(app: Flask, token: str) -> Any:
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    return app.test_client().post(
        "/cds-services/vcf-patient-view", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_two_app_instances_on_one_database_share_the_store(
    engine: Engine, database_url: str, tmp_path: Path, signer: Signer
) -> None:
    first, second = (secured(engine, database_url, tmp_path, signer) for _ in range(2))
    try:
        tokens = [signer.sign(claims(NOW)) for _ in range(5)]
        for token in tokens:
            assert call(first, token).status_code == 200
        assert [call(second, token).status_code for token in tokens] == [401] * 5
        fresh = signer.sign(claims(NOW))
        assert call(second, fresh).status_code == 200 and call(first, fresh).status_code == 401
    finally:
        for app in (first, second):
            app_state(app).database.engine.dispose()


def test_a_replay_check_the_database_cannot_answer_is_503_and_the_token_is_not_accepted(
    engine: Engine, database_url: str, tmp_path: Path, signer: Signer
) -> None:
    app = secured(engine, database_url, tmp_path, signer)
    database = app_state(app).database.engine
    try:
        with database.begin() as connection:
            jwt_replay.drop(connection)  # every claim now fails in the database
        token = signer.sign(claims(NOW))
        response = call(app, token)
        assert response.status_code == 503
        outcome = response.get_json()
        assert outcome["resourceType"] == "OperationOutcome" and "try again" in outcome["issue"][0]["diagnostics"]
        assert "Bearer" not in response.get_data(as_text=True)
    finally:
        database.dispose()


def test_unauthenticated_calls_write_no_audit_rows_and_are_counted(
    engine: Engine, database_url: str, tmp_path: Path, signer: Signer
) -> None:
    from prometheus_client import REGISTRY

    from service.store.db import audit_log

    def counted(reason: str) -> float:
        return REGISTRY.get_sample_value("vcf_cds_unauthenticated_calls_total", {"reason": reason}) or 0.0

    app = secured(engine, database_url, tmp_path, signer)
    database = app_state(app).database.engine
    before = {reason: counted(reason) for reason in ("no-token", "replayed", "invalid")}
    try:
        token = signer.sign(claims(NOW))
        assert call(app, token).status_code == 200
        for _ in range(30):
            assert call(app, token).status_code == 401
        assert call(app, "not-a-jwt").status_code == 401
        no_token = app.test_client().post("/cds-services/vcf-patient-view", json={})
        assert no_token.status_code == 401
        with database.connect() as connection:
            statuses = Counter(connection.execute(select(audit_log.c.status)).scalars())
        assert statuses == {200: 1}
        assert counted("replayed") - before["replayed"] == 30
        assert counted("invalid") - before["invalid"] == 1
        assert counted("no-token") - before["no-token"] == 1
    finally:
        database.dispose()


# --- against vcf-cds serve with two worker processes -------------------------------------------


def test_served_with_two_workers_one_token_is_accepted_once(database_url: str, tmp_path: Path) -> None:
    signer = ec_signer("ehr-served")
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(issuer_file({"iss": EHR, "jwks": {"keys": [signer.public_jwk()]}})))
    env = {"VCF_CDS_TRUSTED_ISSUERS": str(path), "VCF_CDS_PUBLIC_URL": PUBLIC_URL}
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    with serving(tmp_path, database_url, workers=2, threads=8, env=env) as served:
        assert len(served.workers()) == 2

        def use(token: str) -> int:
            start.wait()
            url = served.base + "/cds-services/vcf-patient-view"
            return http("POST", url, body, Authorization=f"Bearer {token}")[0]

        now = datetime.now(UTC)
        token = signer.sign(claims(now, aud=SERVICE_URL))
        start = threading.Barrier(THREADS)
        with ThreadPoolExecutor(THREADS) as pool:
            statuses = Counter(pool.map(use, [token] * THREADS))
        assert statuses == {200: 1, 401: THREADS - 1}, statuses

        # immediate replays of a token just accepted: every one refused, whichever worker takes it
        token = signer.sign(claims(now + timedelta(seconds=1), aud=SERVICE_URL))
        start = threading.Barrier(1)
        assert use(token) == 200
        assert [use(token) for _ in range(10)] == [401] * 10
