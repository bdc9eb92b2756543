"""Whether the database takes a durable write now, for ``/readyz``.

Reaching the database is not enough: a full disk, a read-only file or a PostgreSQL standby answers
every read while every hook call (whose audit row must be committed) gets 503. So the check writes:
it upserts the one ``heartbeat`` row and commits — on SQLite through ``sqlite.WalSync``, the fsync that
every acknowledged write needs too. A transaction rolled back would prove nothing (SQLite writes
nothing to disk until COMMIT). A success is reused for ``interval`` seconds, so that frequent
probes from several load balancers add no write load; a failure is never reused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from .db import heartbeat, utcnow

INTERVAL_SECONDS = 5.0


class WriteProbe:
    def __init__(
        self, engine: Engine, *, interval: float = INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        self.engine = engine
        self.interval = interval
        self._clock = clock
        self._upsert = _upsert(engine)
        self._succeeded_at: float | None = None
        self._lock = threading.Lock()

    def check(self) -> str | None:
        """None when a write was just committed (or within ``interval``), else what is wrong."""
        with self._lock:
            if self._succeeded_at is not None and self._clock() - self._succeeded_at < self.interval:
                return None
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._upsert, {"id": 1, "at": utcnow()})
            except SQLAlchemyError as e:
                self._succeeded_at = None
                return f"database does not accept writes ({type(e).__name__})"
            self._succeeded_at = self._clock()
            return None


def _upsert(engine: Engine) -> Insert:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(heartbeat)
        return pg.on_conflict_do_update(index_elements=[heartbeat.c.id], set_={"at": pg.excluded.at})
    if dialect == "sqlite":
        lite = sqlite.insert(heartbeat)
        return lite.on_conflict_do_update(index_elements=[heartbeat.c.id], set_={"at": lite.excluded.at})
    raise NotImplementedError(f"database {dialect!r} is not supported (SQLite or PostgreSQL)")
