"""Scale-out with real parts: nginx (Debian) in front of two ``vcf-cds serve`` on one PostgreSQL.

Every call carries a JWT signed by a trusted issuer (authentication on, ``aud`` the balancer's URL
in ``VCF_CDS_PUBLIC_URL``); the schema is made once by ``vcf-cds migrate`` and the instances run
with ``VCF_CDS_MIGRATE=off``, as the Kubernetes manifests do. Client threads send hook calls and
feedback through nginx at a steady pace, each request with a fresh token, each feedback item with a
card id of its own, over keep-alive connections they renew every few requests.

- ``kill -9`` of one instance (master and workers) mid-load: every feedback item answered 200 is in
  the database, every hook call answered 200 has its audit row, and every request sent after the
  kill is answered 200 by the other instance (nginx retries a refused connection there).
- a rolling restart (drain A: marked down in nginx and reloaded, until it gets no new requests;
  SIGTERM A, start A, wait until ready, put it back, wait until serving; then B) answers every
  request with 200.
- a token used at A is refused at B, and the same feedback sent to both is counted once.

PostgreSQL: the throwaway cluster of ``scripts/with-postgres`` (``VCF_CDS_TEST_POSTGRES_URL``);
without it, or without nginx, the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.store.db import audit_log, create_db_engine
from service.store.db import feedback as feedback_table

from support.builders import ICD10CM, condition, pain, request
from support.postgres import POSTGRES_URL, fresh_schema
from support.scaleout import (
    FEEDBACK_PATH,
    HOOK_PATH,
    Auth,
    Balancer,
    Instance,
    balancer,
    feedback_body,
    instance_environment,
    make_auth,
    migrate,
    nginx_binary,
    vcf_cds,
)
from support.served import free_port, http

pytestmark = [
    pytest.mark.skipif(not nginx_binary(), reason="no nginx (Debian package nginx, see scripts/setup-system)"),
    pytest.mark.skipif(
        not POSTGRES_URL,
        reason="VCF_CDS_TEST_POSTGRES_URL is unset: two instances need one PostgreSQL (bash scripts/with-postgres)",
    ),
]

HOOK_BODY = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
CLIENTS = 4
HOOK_CLIENTS = 1  # of them; the others send feedback
PACE = 0.03  # seconds between one client's requests: a steady load, not a saturating one
PER_CONNECTION = 10
PATIENCE = 60.0
QUIET = 1.0  # seconds a drained instance serves nothing new before it is stopped


@dataclass
class Cluster:
    a: Instance
    b: Instance
    lb: Balancer
    auth: Auth
    database_url: str

    def logs(self) -> str:
        return f"A: {self.a.logs()}\nB: {self.b.logs()}\nnginx: {self.lb.error_log()}"


@pytest.fixture
def shared_database() -> Iterator[str]:
    """A schema of its own in the test PostgreSQL, for both instances."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
def cluster(tmp_path: Path, shared_database: str) -> Iterator[Cluster]:
    port = free_port()
    auth = make_auth(tmp_path, f"http://127.0.0.1:{port}")
    migrate(shared_database)
    a, b = (
        Instance(name, tmp_path, instance_environment(0, shared_database, auth, tmp_path, VCF_CDS_MIGRATE="off"))
        for name in ("a", "b")
    )
    try:
        for instance in (a, b):
            instance.start()
            instance.wait_ready()
        with balancer(tmp_path / "nginx", port, [a, b]) as lb:
            yield Cluster(a, b, lb, auth, shared_database)
    finally:
        a.close()
        b.close()


@dataclass
class Answer:
    ident: str
    started: float  # time.monotonic() when the request was begun
    status: int | None  # None: no answer (the connection failed)
    error: str = ""


@dataclass
class Load:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # feedback card ids answered 200 with stored 1
    hooks: list[str] = field(default_factory=list)  # hookInstances answered 200
    resent: list[str] = field(default_factory=list)  # sent again: the balancer closed an idle keep-alive connection

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged) + len(self.hooks)

    def not_ok(self, since: float = 0.0) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.started >= since and a.status != 200]


def client_loop(cluster: Cluster, load: Load, client: int) -> None:
    port = int(cluster.lb.base.rsplit(":", 1)[1])
    connection: HTTPConnection | None = None
    used = 0
    hooks = client < HOOK_CLIENTS
    while not load.stop.is_set():
        ident = f"scaleout-{client}-{uuid.uuid4()}"
        if hooks:
            path, body = HOOK_PATH, json.dumps({**HOOK_BODY, "hookInstance": ident})
        else:
            path, body = FEEDBACK_PATH, json.dumps(feedback_body(ident))
        started = time.monotonic()
        try:
            for attempt in (1, 2):
                headers = {"Content-Type": "application/json", **cluster.auth.headers(path)}
                if connection is None or used == PER_CONNECTION:
                    if connection is not None:
                        connection.close()
                    connection, used = HTTPConnection("127.0.0.1", port, timeout=30), 0
                reused, used = used > 0, used + 1
                try:
                    connection.request("POST", path, body, headers)
                    response = connection.getresponse()
                    answer = response.read()
                    break
                except (BrokenPipeError, ConnectionResetError, RemoteDisconnected):
                    # A keep-alive connection the balancer closed while idle (nginx does on reload):
                    # closed before any byte of an answer, so sent again on a new connection, as
                    # HTTP clients do (urllib3 and Go's net/http for an idempotent request: feedback
                    # is, a hook call is advice). Never on a new connection: that failure is counted.
                    connection.close()
                    connection = None
                    if not reused or attempt == 2:
                        raise
                    with load.lock:
                        load.resent.append(ident)
        except (OSError, HTTPException) as e:
            with load.lock:
                load.answers.append(Answer(ident, started, None, type(e).__name__))
            if connection is not None:
                connection.close()
            connection = None
            continue
        with load.lock:
            load.answers.append(Answer(ident, started, response.status, answer[:200].decode(errors="replace")))
            if response.status == 200:
                if hooks:
                    load.hooks.append(ident)
                elif json.loads(answer)["stored"] == 1:
                    load.acknowledged.append(ident)
        time.sleep(PACE)
    if connection is not None:
        connection.close()


@contextmanager
def loaded(cluster: Cluster) -> Iterator[Load]:
    """Client threads sending through nginx until the block ends (then they finish their request)."""
    load = Load()
    clients = [threading.Thread(target=client_loop, args=(cluster, load, n), daemon=True) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    try:
        yield load
    finally:
        load.stop.set()
        for c in clients:
            c.join(40)
    assert not any(c.is_alive() for c in clients)


def wait_for(condition: Callable[[], bool], what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {PATIENCE} s: {cluster.logs()}")


def served_calls(instance: Instance) -> int:
    """POSTs this start of the instance answered with 200, from its JSON access log."""
    assert instance.served is not None
    lines = instance.served.stdout.read_text(errors="replace").splitlines()
    return sum('"method":"POST"' in line and '"status":200' in line for line in lines)


def stored_in(database_url: str) -> tuple[set[str], set[str]]:
    """(feedback card ids, hookInstances audited with status 200) in the database."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            cards = set(connection.execute(select(feedback_table.c.card_uuid)).scalars())
            audited = set(
                connection.execute(select(audit_log.c.hook_instance).where(audit_log.c.status == 200)).scalars()
            )
    finally:
        engine.dispose()
    return cards, audited


def test_kill_9_of_one_instance_loses_no_acknowledged_write_and_the_other_serves(cluster: Cluster) -> None:
    with loaded(cluster) as load:
        wait_for(lambda: served_calls(cluster.a) >= 30 and served_calls(cluster.b) >= 30, "both serving", cluster)
        cluster.a.kill()
        killed_at = time.monotonic()
        at_kill, b_at_kill = load.count(), served_calls(cluster.b)
        # beyond nginx's fail_timeout (2 s), so that it tries A again and finds it refusing connections
        wait_for(
            lambda: load.count() >= at_kill + 150 and time.monotonic() > killed_at + 3,
            "150 more calls answered after the kill, over 3 s",
            cluster,
        )
    assert not cluster.a.running()
    stored, audited = stored_in(cluster.database_url)
    acknowledged, hooks = set(load.acknowledged), set(load.hooks)
    assert acknowledged and hooks
    assert acknowledged - stored == set(), "acknowledged feedback lost"
    assert hooks - audited == set(), "advice given without its audit row"
    # only the calls A held when it died may have failed; every call begun after it was answered by B
    assert load.not_ok(since=killed_at) == [], (killed_at, load.not_ok(), cluster.lb.error_log())
    assert served_calls(cluster.b) >= b_at_kill + 150
    in_flight = load.not_ok()
    assert len(in_flight) <= CLIENTS, in_flight  # at most one call per client was with A when it died
    assert all(a.status in (None, 502) for a in in_flight), in_flight
    # nothing was stored that was never sent: every feedback row is one the clients sent
    sent = {a.ident for a in load.answers}
    assert stored - sent == set()
    assert cluster.lb.refused_connects() > 0  # nginx did meet the dead instance, and passed the calls on
    cut_off = sorted({str(a.status) for a in in_flight})
    print(
        f"\n{len(load.answers)} calls; {len(in_flight)} cut off with A ({cut_off}), "
        f"{cluster.lb.refused_connects()} refused connections retried at B"
    )


def drained(instance: Instance, load: Load, cluster: Cluster) -> None:
    """Until ``instance`` has served nothing new for QUIET seconds while the others answered calls."""
    seen, count, since = served_calls(instance), load.count(), time.monotonic()

    def quiet() -> bool:
        nonlocal seen, count, since
        now_seen, now_count = served_calls(instance), load.count()
        if now_seen != seen or now_count == count:  # still served, or nothing to tell by
            seen, count, since = now_seen, now_count, time.monotonic()
        return time.monotonic() - since >= QUIET

    wait_for(quiet, f"{instance.name} drained", cluster)


def test_rolling_restart_under_steady_load_answers_every_request(cluster: Cluster) -> None:
    """As operators restart an instance behind a balancer (README, "Rolling restarts"): drain it (marked
    down, nginx reloaded) until it gets no new requests, SIGTERM, start, wait until ready, put it back.
    SIGTERM alone is not enough: a connection nginx opened an instant before is in the closing
    listener's backlog and is reset with the POST already written, which nginx rightly does not retry."""
    with loaded(cluster) as load:
        wait_for(lambda: load.count() >= 60, "60 calls answered", cluster)
        for instance in (cluster.a, cluster.b):
            cluster.lb.drain(instance)
            drained(instance, load, cluster)
            assert instance.stop() == 0, instance.logs()  # SIGTERM: graceful, in-flight calls finish
            during = load.count()
            wait_for(lambda during=during: load.count() >= during + 30, "calls answered while one is down", cluster)
            instance.start()
            instance.wait_ready()
            cluster.lb.restore(instance)
            wait_for(lambda instance=instance: served_calls(instance) >= 30, f"{instance.name} serving again", cluster)
    assert load.not_ok() == [], cluster.logs()
    assert len(load.answers) >= 200
    stored, audited = stored_in(cluster.database_url)
    assert set(load.acknowledged) - stored == set()
    assert set(load.hooks) - audited == set()
    assert cluster.lb.refused_connects() == 0, cluster.lb.error_log()  # nothing was sent to a stopped instance
    # each of the four reloads closes at most each client's one idle keep-alive connection
    assert len(load.resent) <= 4 * CLIENTS, load.resent
    print(f"\n{len(load.answers)} calls, all 200, through two drained restarts; {len(load.resent)} resent")


def test_a_token_used_at_one_instance_is_refused_at_the_other(cluster: Cluster) -> None:
    body = {**HOOK_BODY, "hookInstance": str(uuid.uuid4())}
    headers = cluster.auth.headers(HOOK_PATH)
    assert http("POST", cluster.a.base + HOOK_PATH, body, **headers)[0] == 200
    assert http("POST", cluster.a.base + HOOK_PATH, body, **headers)[0] == 401  # the same instance remembers it
    assert http("POST", cluster.b.base + HOOK_PATH, body, **headers)[0] == 401


def feedback_report(database_url: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_")}
    done = subprocess.run(
        [vcf_cds(), "feedback-report", "--json"],
        env={**env, "VCF_CDS_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_same_feedback_sent_to_both_instances_is_counted_once(cluster: Cluster) -> None:
    body = {**HOOK_BODY, "hookInstance": str(uuid.uuid4())}
    status, answer = http("POST", cluster.lb.base + HOOK_PATH, body, **cluster.auth.headers(HOOK_PATH))
    assert status == 200
    cards = json.loads(answer)["cards"]
    (card,) = [c for c in cards if c["extension"]["org.vcfcds"]["kind"] == "recommendation"]
    recommendation = card["extension"]["org.vcfcds"]["recommendation"]
    item = feedback_body(card["uuid"])
    # an EHR that retried through the balancer, reaching each instance once, both at the same moment
    answers: list[tuple[int, bytes]] = []

    def post(base: str, headers: dict[str, str]) -> None:
        answers.append(http("POST", base + FEEDBACK_PATH, item, **headers))

    posts = [
        threading.Thread(target=post, args=(instance.base, cluster.auth.headers(FEEDBACK_PATH)))
        for instance in (cluster.a, cluster.b)
    ]
    for thread in posts:
        thread.start()
    for thread in posts:
        thread.join(30)
    assert sorted(status for status, _ in answers) == [200, 200]
    assert sorted(json.loads(body)["stored"] for _, body in answers) == [0, 1]  # one stored, one a duplicate
    (row,) = [
        r
        for r in feedback_report(cluster.database_url)["recommendations"]
        if r["service"] == "vcf-patient-view" and r["kind"] == "recommendation"
    ]
    assert (row["recommendation"], row["issued"], row["accepted"], row["overridden"]) == (recommendation, 1, 1, 0)
