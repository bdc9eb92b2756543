"""``vcf-cds migrate`` makes the schema once; ``vcf-cds serve`` with ``VCF_CDS_MIGRATE=off`` leaves it alone.

This is how several replicas start on one database (deploy/kubernetes/job-migrate.yaml): a replica
that finds no schema stays alive (``/healthz``) but not ready (``/readyz`` 503), and becomes ready
without a restart once the one-off migration has run. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from sqlalchemy import inspect

from service.store.db import create_db_engine, has_schema, schema_revision

from support.served import http, serving, vcf_cds


def run_migrate(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_")}
    return subprocess.run(
        [vcf_cds(), "migrate"], env={**env, "VCF_CDS_DATABASE_URL": database_url}, capture_output=True, text=True
    )


def test_migrate_creates_the_schema_once(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []
        first = run_migrate(database_url)
        assert first.returncode == 0, first.stderr
        current, head = schema_revision(engine)
        assert has_schema(engine) and current == head
        again = run_migrate(database_url)  # current already: nothing to do, still success
        assert again.returncode == 0, again.stderr
        assert schema_revision(engine) == (head, head)
    finally:
        engine.dispose()


def test_migrate_says_why_it_cannot_and_hides_the_password() -> None:
    done = run_migrate("postgresql+psycopg://vcfcds:s3cret-pw@127.0.0.1:9/vcfcds?connect_timeout=2")
    assert done.returncode == 1
    assert "cannot prepare the database" in done.stderr and "127.0.0.1" in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout


def test_serve_without_migrating_is_not_ready_until_the_schema_is_made(database_url: str, tmp_path: Path) -> None:
    with serving(tmp_path, database_url, env={"VCF_CDS_MIGRATE": "off"}) as served:
        engine = create_db_engine(database_url)
        try:
            assert not has_schema(engine)  # serve did not make it, nor did its worker
        finally:
            engine.dispose()
        assert http("GET", served.base + "/healthz")[0] == 200
        status, body = http("GET", served.base + "/readyz")
        assert status == 503 and b"schema" in body
        assert run_migrate(database_url).returncode == 0
        deadline = time.monotonic() + 10
        while http("GET", served.base + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, served.logs()
            time.sleep(0.1)
    assert served.exit_code == 0
