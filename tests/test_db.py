"""The schema: migrations create exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select

from service.store.db import (
    Database,
    audit_log,
    create_db_engine,
    display_url,
    has_schema,
    metadata,
    migrate,
    schema_revision,
)


def test_migrations_build_the_declared_schema(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert not has_schema(engine)
        migrate(engine)
        migrate(engine)  # a second start finds it current and changes nothing
        current, head = schema_revision(engine)
        assert current == head and head
        with engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), metadata)
        assert drift == [], "service/store/db.py and service/store/migrations disagree: write a migration"
    finally:
        engine.dispose()


def test_times_come_back_aware_utc(database_url: str) -> None:
    engine = create_db_engine(database_url)
    migrate(engine)
    local = datetime(2026, 6, 15, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-4)))
    row = {"service": "s", "rules_version": "r", "status": 200, "duration_ms": 1.0, "cards": 0}
    try:
        with engine.begin() as connection:
            connection.execute(insert(audit_log).values(at=local, **row))
        with engine.connect() as connection:
            stored = connection.execute(select(audit_log.c.at)).scalar_one()
        assert stored == local and stored.utcoffset() == timedelta(0)
        with engine.begin() as connection, pytest.raises(Exception, match="naive"):
            connection.execute(insert(audit_log).values(at=datetime(2026, 1, 1), **row))
    finally:
        engine.dispose()


def test_sqlite_commits_are_on_disk_before_they_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import os

    from service.store import sqlite

    path = tmp_path / "durable.sqlite3"
    engine = create_db_engine(f"sqlite:///{path}")
    synced: list[tuple[str, bool]] = []  # (file, whether a writer held the lock at that moment)
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def lock_held() -> bool:
        probe = os.open(f"{path}.lock", os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(probe)

    def spy(real: Any) -> Any:
        def sync(fd: int) -> None:
            synced.append((os.readlink(f"/proc/self/fd/{fd}"), lock_held()))
            real(fd)

        return sync

    monkeypatch.setattr(sqlite.os, "fdatasync", spy(real_fdatasync))
    monkeypatch.setattr(sqlite.os, "fsync", spy(real_fsync))
    try:
        with engine.begin() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            # SQLite's own fsync at COMMIT would hold the write lock; WalSync does it after
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        # the new log, then the folder that names it, synced once the lock is free
        assert synced == [(f"{path}-wal", False), (str(tmp_path), False)]
        synced.clear()
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert synced == []
        assert synced == [(f"{path}-wal", False)]  # before the commit returned
        synced.clear()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT x FROM t").scalar() == 1
        assert synced == []  # reading syncs nothing
    finally:
        engine.dispose()


def test_a_commit_whose_log_cannot_be_synced_fails_and_frees_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from sqlalchemy.exc import OperationalError

    from service.store import sqlite

    engine = create_db_engine(f"sqlite:///{tmp_path}/eio.sqlite3")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")

        def broken_disk(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(sqlite.os, "fdatasync", broken_disk)
        with pytest.raises(OperationalError, match="write-ahead log"), engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        monkeypatch.undo()
        with engine.begin() as connection:  # nothing is left locked
            connection.exec_driver_sql("INSERT INTO t VALUES (2)")
    finally:
        engine.dispose()


def test_in_memory_sqlite_keeps_sqlites_own_sync() -> None:
    engine = create_db_engine("sqlite://")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "memory"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_sqlite_file_folder_is_created(tmp_path: object) -> None:
    database = Database(f"sqlite:///{tmp_path}/new/folder/db.sqlite3")
    migrate(database.engine)
    assert database.check() is None and database.persistent
    database.engine.dispose()
    assert not Database("sqlite://").persistent


def test_plain_postgresql_url_means_psycopg3() -> None:
    engine = create_db_engine("postgresql://u:secret@db.example/x")
    assert engine.dialect.driver == "psycopg"
    assert "secret" not in display_url("postgresql://u:secret@db.example/x")


def test_check_names_an_unmigrated_or_unreachable_database(tmp_path: object) -> None:
    fresh = Database(f"sqlite:///{tmp_path}/fresh.sqlite3")
    assert "schema at nothing" in (fresh.check() or "")
    fresh.engine.dispose()
    gone = Database("postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=1")
    problem = gone.check() or ""
    assert problem.startswith("database unreachable") and "pw" not in problem


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    # several containers (or gunicorn masters) starting on a fresh database at the same moment
    probe = "import sys; from service.store.db import create_db_engine, migrate; migrate(create_db_engine(sys.argv[1]))"
    starters = [subprocess.Popen([sys.executable, "-c", probe, database_url], stderr=subprocess.PIPE) for _ in range(2)]
    errors = [p.communicate(timeout=60)[1].decode() for p in starters]
    assert [p.returncode for p in starters] == [0, 0], errors
    engine = create_db_engine(database_url)
    current, head = schema_revision(engine)
    engine.dispose()
    assert current == head


def test_sqlite_transactions_queue_on_locks_and_always_release_them(tmp_path: Path) -> None:
    import threading

    from sqlalchemy import event

    from service.store.db import create_db_engine

    path = tmp_path / "queue.sqlite3"
    # two engines stand for two worker processes (each its own thread lock, both on the file lock)
    engines = [create_db_engine(f"sqlite:///{path}") for _ in range(2)]
    for engine in engines:
        # no busy handler: a BEGIN that met another writer's lock would fail at once, not sleep. The
        # locks are held until the COMMIT is done, so it never does.
        event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=0"))
    with engines[0].begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), engines[0].begin() as connection:  # a rollback releases the lock too
        connection.exec_driver_sql("INSERT INTO t VALUES (0)")
        raise RuntimeError("boom")
    errors: list[Exception] = []

    def insert(n: int) -> None:
        try:
            for i in range(20):
                with engines[n % 2].begin() as connection:
                    connection.exec_driver_sql(f"INSERT INTO t VALUES ({n * 100 + i})")
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a transaction kept the lock"
    assert errors == []
    with engines[1].connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 160
    for engine in engines:
        engine.dispose()


def test_an_invalidated_connection_still_releases_the_sqlite_locks(tmp_path: Path) -> None:
    import threading

    engine = create_db_engine(f"sqlite:///{tmp_path / 'invalid.sqlite3'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    # an error that invalidates the connection mid-transaction (a lost database file, say): even
    # reading the connection's state raises then; the caller gets its own error, not that one
    with pytest.raises(RuntimeError, match="boom"), engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        connection.invalidate()
        raise RuntimeError("boom")
    written = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (2)")
        written.set()

    threading.Thread(target=write, daemon=True).start()
    assert written.wait(10), "the locks were never released: every later writer hangs"
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT x FROM t").scalars().all() == [2]
    engine.dispose()
