"""SQLite made fit for several gunicorn workers: one writer at a time without busy-waiting, and
commits durable before they return.

``configure_sqlite`` sets each connection's pragmas (WAL journal, busy timeout, foreign keys) and
queues transactions on a thread lock and an ``flock`` beside the database; ``WalSync`` fsyncs the
write-ahead log after each COMMIT, outside those locks. PostgreSQL needs none of this.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

BUSY_TIMEOUT_SECONDS = 15


def configure_sqlite(engine: Engine) -> None:
    event.listen(engine, "connect", _sqlite_pragmas)
    _serialize_sqlite_transactions(engine)


def _serialize_sqlite_transactions(engine: Engine) -> None:
    """One transaction at a time, queued on a thread lock and, across worker processes, on
    ``flock`` of a file beside the database.

    SQLite admits one writer; whoever races for it waits in SQLite's busy handler, which sleeps in
    steps of up to 100 ms, which under load (gunicorn workers × threads) shows in the p99 latency.
    Queued on these locks, a waiter wakes as soon as the writer is done.
    """
    lock = threading.Lock()
    database = engine.url.database
    lock_file: int | None = None
    wal: WalSync | None = None
    if database not in (None, "", ":memory:"):
        lock_file = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        weakref.finalize(engine, os.close, lock_file)
        wal = WalSync(f"{database}-wal")

    # who holds the locks: the thread (a transaction runs on one), not the connection, which an
    # error can invalidate so that even reading its ``info`` raises, and the locks would never be
    # released: every later writer would hang
    holder = threading.local()

    def begin(connection: Any) -> None:
        lock.acquire()
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        holder.locked = True
        try:
            # IMMEDIATE: take the write lock up front (waiting up to busy_timeout) rather than fail
            # when a read snapshot cannot be upgraded because another process wrote meanwhile
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            release()
            raise

    def release() -> None:
        if getattr(holder, "locked", False):
            holder.locked = False
            if lock_file is not None:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock.release()

    def finish(statement: str) -> Callable[[Any], None]:
        # SQLAlchemy fires "commit"/"rollback" before it ends the transaction itself: end it here,
        # so that the locks outlast it (released earlier, the next writer's BEGIN IMMEDIATE meets the
        # write lock still held and SQLite's busy handler sleeps, ms at a time). Its own COMMIT then
        # finds no transaction open and does nothing.
        def listener(connection: Any) -> None:
            if not getattr(holder, "locked", False):
                return
            committed = False
            try:
                if connection.connection.dbapi_connection.in_transaction:
                    connection.exec_driver_sql(statement)
                    committed = statement == "COMMIT"
            except Exception:
                if statement == "COMMIT":
                    raise  # the commit failed: the caller must know
                # a failed ROLLBACK (an invalidated connection): SQLAlchemy's own follows and reports
            finally:
                release()
            if committed and wal is not None:
                wal.sync()  # after the locks: the next writer does not wait for our disk

        return listener

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", finish("COMMIT"))
    event.listen(engine, "rollback", finish("ROLLBACK"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Python's sqlite3 would open transactions itself, only before DML and never before DDL: take
    # over (SQLAlchemy's documented recipe) so that a migration is one atomic, single-fsync commit
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    journal = _enable_wal(cursor)  # readers do not block the writer (gunicorn workers)
    # In WAL mode, NORMAL leaves out the fsync at COMMIT, which SQLite does holding the write lock;
    # WalSync does it once the lock is free. Any other journal (in-memory): SQLite's own, FULL.
    cursor.execute("PRAGMA synchronous=NORMAL" if journal == "wal" else "PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enable_wal(cursor: Any) -> str:
    """The journal mode now in force: "wal", or what SQLite kept (in-memory databases have no WAL)."""
    # Turning a new database file to WAL needs it to itself, and SQLite answers "locked" at once,
    # without its busy handler, when another process is in it (containers starting together on a
    # fresh file): retry for as long as the busy timeout would have waited.
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class WalSync:
    """What makes a SQLite commit durable: an fdatasync (as SQLite's own) of the write-ahead log once
    COMMIT has written it.

    ``synchronous=FULL`` would have SQLite do this fsync inside COMMIT, holding the database's one
    write lock, so every writer of every worker queued behind the disk (and behind the GIL the
    committing thread had to win back afterwards). ``synchronous=NORMAL`` leaves it out, and SQLite
    syncs the log itself only before a checkpoint. Called after each COMMIT and before the caller
    answers, outside the locks: the commit is on disk before it is acknowledged, and writers that
    commit meanwhile share the fsync.
    """

    def __init__(self, path: str):
        self.path = path
        self._durable_entry: int | None = None  # inode of the log whose directory entry is synced

    def sync(self) -> None:
        try:
            self._sync()
        except OSError as e:  # EIO, ENOSPC…: the commit may not survive a crash; the caller must not answer
            raise OperationalError("fsync of the SQLite write-ahead log", None, e) from e

    def _sync(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # SQLite removes the log only after checkpointing it into the database and syncing that
        try:
            os.fdatasync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._durable_entry:  # a log created since: its name must survive a crash too
            folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            self._durable_entry = inode
