"""What the JWT replay check costs: claims per second and per-claim latency of the database store
(``service/auth/replay_store.py``) against the in-memory one it replaced, in-process.

``python -m benchmarks.replay_cost [--seconds 2] [--threads 8]``. Each claim is a new ``jti``, as
every real call's is; SQLite is a file in a temporary folder (WAL, fsync per commit: the durable
path), PostgreSQL is measured when ``VCF_CDS_TEST_POSTGRES_URL`` is set (``scripts/with-postgres``).
Quote ratios: the absolute numbers are this machine's on the day.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from typing import Any

from service.auth.replay import MemoryReplayStore, ReplayStore
from service.auth.replay_store import DatabaseReplayStore
from service.store.db import create_db_engine, migrate


def measure(store: ReplayStore, seconds: float, threads: int) -> tuple[float, float, float]:
    """(claims per second, median and p99 latency of one claim in ms) with ``threads`` callers."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds
    start = threading.Barrier(threads)

    def run(mine: list[float]) -> None:
        start.wait()
        while time.perf_counter() < stop:
            now = time.time()
            began = time.perf_counter()
            assert store.claim("https://ehr.example.org", uuid.uuid4().hex, expires_at=now + 300, now=now)
            mine.append(time.perf_counter() - began)

    workers = [threading.Thread(target=run, args=(mine,)) for mine in latencies]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for mine in latencies for x in mine)
    p99 = every[int(len(every) * 0.99)] if every else 0.0
    return len(every) / elapsed, statistics.median(every) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    stores: dict[str, Any] = {"memory (per process, before)": lambda: MemoryReplayStore(capacity=10**8)}
    folder = tempfile.mkdtemp(prefix="vcf-cds-replay-bench.")
    urls = {"SQLite file (WAL, fsync)": f"sqlite:///{folder}/bench.sqlite3"}
    if os.environ.get("VCF_CDS_TEST_POSTGRES_URL"):
        urls["PostgreSQL"] = os.environ["VCF_CDS_TEST_POSTGRES_URL"]
    engines = []
    for name, url in urls.items():
        engine = create_db_engine(url)
        migrate(engine)
        engines.append(engine)
        stores[name] = lambda engine=engine: DatabaseReplayStore(engine)
    print("| store | threads | claims/s | p50 | p99 |\n|---|---|---|---|---|")
    for name, make in stores.items():
        for threads in (1, args.threads):
            rate, p50, p99 = measure(make(), args.seconds, threads)
            print(f"| {name} | {threads} | {rate:,.0f} | {p50:.3f} ms | {p99:.3f} ms |")
    for engine in engines:
        engine.dispose()


if __name__ == "__main__":
    main()
