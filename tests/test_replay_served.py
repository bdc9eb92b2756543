"""A JWT is accepted once, served: across two gunicorn workers (SQLite) and two instances
(PostgreSQL), under concurrent and back-to-back replays (review of issue 18: the attacks held)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.builders import ICD10CM, condition, pain, request
from support.postgres import POSTGRES_URL
from support.scaleout import HOOK_PATH, Auth, Instance, instance_environment, make_auth, migrate
from support.served import free_port, http
from support.tokens import EHR, claims

pytestmark = pytest.mark.slow
BODY = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))


def hammer(bases: list[str], token: str, n: int) -> list[int]:
    """``n`` concurrent uses of one token, spread over ``bases``; their statuses."""
    statuses: list[int] = []
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        status, _ = http("POST", bases[i % len(bases)] + HOOK_PATH, BODY, timeout=30, Authorization=f"Bearer {token}")
        statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def run(instances: list[Instance], public_url: str, auth: Auth) -> None:
    bases = [i.base for i in instances]
    for round_ in range(5):
        token = auth.signer.sign(claims(datetime.now(UTC), aud=public_url + HOOK_PATH, iss=EHR))
        statuses = hammer(bases, token, 16)
        assert sorted(statuses).count(200) == 1 and statuses.count(401) == 15, (round_, sorted(statuses))
    # ten immediate replays, one after another, alternating instances/workers
    token = auth.signer.sign(claims(datetime.now(UTC), aud=public_url + HOOK_PATH, iss=EHR))
    header = {"Authorization": f"Bearer {token}"}
    seen = [http("POST", bases[i % len(bases)] + HOOK_PATH, BODY, **header)[0] for i in range(11)]
    assert seen == [200] + [401] * 10


def test_sqlite_two_workers_accept_a_token_once(tmp_path: Path) -> None:
    public_url = "https://cds.example.org"
    auth = make_auth(tmp_path, public_url)
    env = instance_environment(free_port(), f"sqlite:///{tmp_path / 'db.sqlite3'}", auth, tmp_path, VCF_CDS_WORKERS="2")
    a = Instance("a", tmp_path, env)
    a.start()
    try:
        a.wait_ready()
        run([a], public_url, auth)
    finally:
        a.close()


@pytest.mark.skipif(not POSTGRES_URL, reason="bash scripts/with-postgres")
def test_two_instances_on_postgresql_accept_a_token_once(tmp_path: Path) -> None:
    public_url = "https://cds.example.org"
    auth = make_auth(tmp_path, public_url)
    migrate(POSTGRES_URL)
    instances = [
        Instance(n, tmp_path, instance_environment(free_port(), POSTGRES_URL, auth, tmp_path, VCF_CDS_MIGRATE="off"))
        for n in ("a", "b")
    ]
    try:
        for i in instances:
            i.start()
            i.wait_ready()
        run(instances, public_url, auth)
    finally:
        for i in instances:
            i.close()
