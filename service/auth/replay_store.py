"""The JWT replay store in the database: a ``jti`` is accepted once, by any worker or replica.

Each claim is one ``INSERT … ON CONFLICT DO NOTHING`` of ``(SHA-256(iss, jti), expiry)`` under a
primary key, committed before the call proceeds: the database, not a process, decides which of any
number of concurrent uses of one token is first (SQLite serialises writers, across worker
processes too; PostgreSQL's unique index makes a second insert wait for the first and then skip).
A row that conflicts but has expired is a new token reusing an old ``jti``: it is taken over by an
``UPDATE … WHERE expires_at <= now``, atomic in the same way.

Claims of concurrent calls share a transaction and its durable commit (``groupcommit``), as audit
rows do; a claim cannot ride on the audit row's own commit, which happens only after the answer is
built, long after the token must have been accepted or refused.

Expired rows are deleted without a cron: every ``PRUNE_EVERY`` claims a process deletes up to
``PRUNE_BATCH`` of them (by the index on ``expires_at``) in a transaction of its own.

Fail closed: a claim the database cannot answer raises ``ServiceUnavailableError`` (503, try
again), never accepts the token.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Insert, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ServiceUnavailableError
from ..observe import metrics
from ..store.db import jwt_replay
from ..store.groupcommit import GroupCommit

log = logging.getLogger("vcf_cds.replay_store")

PRUNE_EVERY = 500  # claims per process between two deletions of expired rows
PRUNE_BATCH = 5000  # rows deleted at most at once: a short transaction, whatever piled up


@dataclass(frozen=True)
class Claim:
    key: str
    expires_at: datetime
    now: datetime


def replay_key(iss: str, jti: str) -> str:
    """Fixed width whatever the claims' length, and no token text stored; ``iss`` is length-prefixed
    so that no two (iss, jti) pairs make the same string."""
    return hashlib.sha256(f"{len(iss)}:{iss}{jti}".encode("utf-8", "surrogatepass")).hexdigest()


class DatabaseReplayStore:
    """``ReplayStore`` (auth/replay.py) over the ``jwt_replay`` table."""

    def __init__(self, engine: Engine, *, prune_every: int = PRUNE_EVERY):
        self.engine = engine
        self._insert = _insert_ignoring_conflict(engine)
        self._writer: GroupCommit[Connection, Claim, bool] = GroupCommit(engine.begin, self._write)
        self._claims = itertools.count(1)
        self._prune_every = prune_every

    def claim(self, iss: str, jti: str, *, expires_at: float, now: float) -> bool:
        item = Claim(replay_key(iss, jti), _moment(expires_at), _moment(now))
        try:
            fresh = self._writer.submit(item)
        except SQLAlchemyError as e:
            metrics.REPLAY_STORE_FAILURES.inc()
            log.error("JWT replay store unavailable (%s): token refused with 503", type(e).__name__)
            raise ServiceUnavailableError("The service cannot check this token right now; try again.") from None
        if next(self._claims) % self._prune_every == 0:
            self.prune(item.now)
        return fresh

    def _write(self, connection: Connection, claims: Sequence[Claim]) -> list[bool]:
        # one statement per claim, in order: two uses of one token in the same batch are first and replay
        return [self._claim_one(connection, claim) for claim in claims]

    def _claim_one(self, connection: Connection, claim: Claim) -> bool:
        row = {"key": claim.key, "expires_at": claim.expires_at}
        if connection.execute(self._insert, row).first() is not None:
            return True
        # the key is taken: by a live token (a replay), or by one that expired (the jti may be reused)
        taken_over = connection.execute(
            update(jwt_replay)
            .where(jwt_replay.c.key == claim.key, jwt_replay.c.expires_at <= claim.now)
            .values(expires_at=claim.expires_at)
            .returning(jwt_replay.c.key)
        ).first()
        return taken_over is not None

    def prune(self, now: datetime) -> int:
        """Delete up to ``PRUNE_BATCH`` expired rows; how many. A failure is logged, never raised."""
        expired = select(jwt_replay.c.key).where(jwt_replay.c.expires_at <= now).limit(PRUNE_BATCH)
        try:
            with self.engine.begin() as connection:
                deleted = connection.execute(delete(jwt_replay).where(jwt_replay.c.key.in_(expired))).rowcount
        except SQLAlchemyError as e:
            log.warning("expired JWT ids not pruned (%s); tried again later", type(e).__name__)
            return 0
        return int(deleted or 0)


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _insert_ignoring_conflict(engine: Engine) -> Insert:
    dialect = engine.dialect.name
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING
    if dialect == "postgresql":
        return postgresql.insert(jwt_replay).on_conflict_do_nothing().returning(jwt_replay.c.key)
    if dialect == "sqlite":
        return sqlite.insert(jwt_replay).on_conflict_do_nothing().returning(jwt_replay.c.key)
    raise NotImplementedError(f"database {dialect!r} is not supported (SQLite or PostgreSQL)")
