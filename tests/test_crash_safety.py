"""Acknowledged writes survive a worker killed mid-load (``kill -9``), on SQLite and PostgreSQL.

``vcf-cds serve`` with two workers; client threads post feedback, each item with a card id of its
own, and hook calls, each with a hookInstance of its own, over keep-alive connections they renew
every few requests (so that new connections reach every worker). One worker is killed with
SIGKILL while they do, gunicorn's master starts another, the clients go on until the new worker
has stored feedback too (its own Prometheus sample file says so), then the server is stopped with
SIGTERM. Every card id that got a 200 must be in the database, and every hook call answered 200 must have
its audit row and its cards (no advice leaves unaudited). Requests cut off by the kill may fail (a
reset connection); they are not counted as acknowledged, and nothing was stored that was never sent.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy import select

from service.store.db import audit_log, create_db_engine, issued_card
from service.store.db import feedback as feedback_table

from support.builders import ICD10CM, condition, pain, request
from support.served import Served, serving

CLIENTS = 6
HOOK_CLIENTS = 2  # of them, posting hook calls; the others post feedback
HOOK_BODY = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
PER_CONNECTION = 10  # requests on one keep-alive connection before the client opens another
BEFORE_KILL = 150  # acknowledged items before the kill: the load is well under way
AFTER_REPLACEMENT = 150  # and after the new worker is up: the service went on taking writes
PATIENCE = 30.0  # seconds for each phase; the test takes ~10 s
FEEDBACK_PATH = "/cds-services/vcf-patient-view/feedback"
HOOK_PATH = "/cds-services/vcf-patient-view"


@dataclass
class Load:
    """What the clients sent and what they were told, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    sent: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # feedback card ids answered 200, stored
    answered: dict[str, list[str]] = field(default_factory=dict)  # hookInstance answered 200 → its card uuids
    failed: dict[str, str] = field(default_factory=dict)  # id → what went wrong (an exception name)
    refused: dict[str, int] = field(default_factory=dict)  # id → an HTTP status other than 200

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def post_until_stopped(served: Served, load: Load, client: int) -> None:
    port = int(served.base.rsplit(":", 1)[1])
    connection: http.client.HTTPConnection | None = None
    used = 0
    hooks = client < HOOK_CLIENTS
    while not load.stop.is_set():
        ident = f"kill9-{client}-{uuid.uuid4()}"
        if hooks:
            path, body = HOOK_PATH, json.dumps({**HOOK_BODY, "hookInstance": ident})
        else:
            feedback = {"card": ident, "outcome": "accepted", "outcomeTimestamp": "2026-06-15T14:00:00Z"}
            path, body = FEEDBACK_PATH, json.dumps({"feedback": [feedback]})
        with load.lock:
            load.sent.append(ident)
        try:
            if connection is None or used == PER_CONNECTION:
                if connection is not None:
                    connection.close()
                connection, used = http.client.HTTPConnection("127.0.0.1", port, timeout=20), 0
            used += 1
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as e:  # the worker holding the connection died
            with load.lock:
                load.failed[ident] = type(e).__name__
            if connection is not None:
                connection.close()
            connection = None
            continue
        with load.lock:
            if response.status != 200:
                load.refused[ident] = response.status
            elif hooks:
                load.answered[ident] = [card["uuid"] for card in json.loads(answer)["cards"]]
            elif json.loads(answer)["stored"] == 1:
                load.acknowledged.append(ident)
            else:
                load.refused[ident] = response.status
    if connection is not None:
        connection.close()


def feedback_stored_by(served: Served, pid: int) -> float:
    """Feedback items stored by worker ``pid``, from its file in prometheus-client's multiprocess folder."""
    total = 0.0
    for path in served.tmp_path.glob(f"vcf-cds-metrics-*/counter_{pid}.db"):
        samples = MmapedDict(str(path), read_mode=True)
        try:
            for key, value, _ in samples.read_all_values():
                name, sample, labels, _help = json.loads(key)
                if sample == "vcf_cds_feedback_items_total":
                    total += value
        finally:
            samples.close()
    return total


def wait_for(condition: Callable[[], bool], what: str, served: Served) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {PATIENCE} s: {served.logs()}")


def test_acknowledged_feedback_survives_a_worker_killed_mid_load(database_url: str, tmp_path: Path) -> None:
    load = Load()
    with serving(tmp_path, database_url, workers=2, threads=4) as served:
        wait_for(lambda: len(served.workers()) == 2, "two workers", served)
        first = served.workers()
        clients = [
            threading.Thread(target=post_until_stopped, args=(served, load, n), daemon=True) for n in range(CLIENTS)
        ]
        for c in clients:
            c.start()
        try:
            wait_for(lambda: load.count() >= BEFORE_KILL, f"{BEFORE_KILL} items acknowledged", served)
            victim = first[0]
            os.kill(victim, signal.SIGKILL)
            at_kill = load.count()
            wait_for(
                lambda: victim not in served.workers() and len(served.workers()) == 2,
                "the master replacing the killed worker",
                served,
            )
            replaced = load.count()
            (newcomer,) = set(served.workers()) - set(first)
            wait_for(lambda: feedback_stored_by(served, newcomer) > 0, "the new worker storing feedback", served)
            wait_for(
                lambda: load.count() >= replaced + AFTER_REPLACEMENT,
                f"{AFTER_REPLACEMENT} more items acknowledged after the replacement",
                served,
            )
        finally:
            load.stop.set()
            for c in clients:
                c.join(30)
    assert served.exit_code == 0, served.logs()  # stopped cleanly (SIGTERM, graceful)
    assert not any(c.is_alive() for c in clients)

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = set(connection.execute(select(feedback_table.c.card_uuid)).scalars())
            audited = set(
                connection.execute(select(audit_log.c.hook_instance).where(audit_log.c.status == 200)).scalars()
            )
            issued = set(connection.execute(select(issued_card.c.uuid)).scalars())
    finally:
        engine.dispose()
    acknowledged = set(load.acknowledged)
    assert at_kill >= BEFORE_KILL and len(acknowledged) >= at_kill + AFTER_REPLACEMENT
    assert load.refused == {}, "no 5xx (nor any other refusal) for well-formed feedback"
    assert acknowledged - stored == set(), "acknowledged feedback lost"
    assert load.answered and all(load.answered.values()), "hook calls answered with cards"
    assert set(load.answered) - audited == set(), "advice given without its audit row"
    assert {c for cards in load.answered.values() for c in cards} - issued == set(), "cards given, not recorded"
    # requests cut off by the kill may or may not have been committed; nothing else is in the table
    assert stored - acknowledged <= set(load.failed)
    print(
        f"\n{len(load.answered)} hook calls answered, all audited; {len(acknowledged)} feedback items "
        f"acknowledged, all stored; {len(load.failed)} cut off by the kill "
        f"({sorted(set(load.failed.values()))}), of which {len(stored & set(load.failed))} were stored"
    )
