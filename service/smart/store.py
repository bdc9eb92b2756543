"""Launches and sessions of the SMART app, in the database (every worker and replica sees them).

The browser holds random values; rows are keyed by their SHA-256, so a copy of the table cannot be
used as a cookie or a state. A launch is consumed (deleted) by a callback from the browser that
started it, whatever happens next: a ``state`` works once; another browser cannot burn it. A session
ends with its access token, or when the clinician signs out. Access tokens are stored as the EHR
issued them (plain text): the database is as sensitive as the tokens it holds while they live.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select

from ..store.db import smart_launch, smart_session

LAUNCH_SECONDS = 600  # time to sign in at the EHR
# launches not yet called back; anyone can start one, so their rows are bounded (each lives 10 min)
MAX_PENDING_LAUNCHES = 10_000


class TooManyLaunchesError(Exception):
    """MAX_PENDING_LAUNCHES launches are waiting for their callback: no new one now."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Launch:
    iss: str
    code_verifier: str


@dataclass(frozen=True)
class Session:
    iss: str
    patient_id: str
    fhir_user: str | None
    access_token: str
    scope: str
    app_context: str | None
    csrf_token: str
    expires_at: datetime

    def __repr__(self) -> str:  # a Session in a log line or traceback must not show its token
        return f"Session(iss={self.iss!r}, expires_at={self.expires_at.isoformat()})"


def save_launch(engine: Engine, state: str, browser: str, launch: Launch, now: datetime) -> None:
    with engine.begin() as c:
        c.execute(delete(smart_launch).where(smart_launch.c.expires_at < now))
        if c.execute(select(func.count()).select_from(smart_launch)).scalar_one() >= MAX_PENDING_LAUNCHES:
            raise TooManyLaunchesError
        c.execute(
            insert(smart_launch).values(
                state_hash=digest(state),
                browser_hash=digest(browser),
                iss=launch.iss,
                code_verifier=launch.code_verifier,
                expires_at=now + timedelta(seconds=LAUNCH_SECONDS),
            )
        )


def take_launch(engine: Engine, state: str, browser: str | None, now: datetime) -> Launch | None:
    """The launch ``state`` started, deleted as it is read; None if unknown, used, expired or begun
    in another browser (whose launch is left alone: only its own browser can use or spend it)."""
    key = digest(state)
    with engine.begin() as c:
        row = c.execute(select(smart_launch).where(smart_launch.c.state_hash == key)).first()
        if row is None or browser is None or not secrets.compare_digest(row.browser_hash, digest(browser)):
            return None
        # two callbacks racing with the same state: only the one whose delete removes the row goes on
        if c.execute(delete(smart_launch).where(smart_launch.c.state_hash == key)).rowcount != 1:
            return None
    if row.expires_at < now:
        return None
    return Launch(row.iss, row.code_verifier)


def save_session(engine: Engine, session: Session, now: datetime) -> str:
    """Stores the session (and forgets expired ones); the cookie value that names it."""
    cookie = new_secret()
    with engine.begin() as c:
        c.execute(delete(smart_session).where(smart_session.c.expires_at <= now))
        c.execute(
            insert(smart_session).values(
                id_hash=digest(cookie),
                iss=session.iss,
                patient_id=session.patient_id,
                fhir_user=session.fhir_user,
                access_token=session.access_token,
                scope=session.scope,
                app_context=session.app_context,
                csrf_token=session.csrf_token,
                expires_at=session.expires_at,
            )
        )
    return cookie


def load_session(engine: Engine, cookie: str | None, now: datetime) -> Session | None:
    """The live session the cookie names; an expired one is deleted and None."""
    if not cookie:
        return None
    key = digest(cookie)
    with engine.begin() as c:
        row = c.execute(select(smart_session).where(smart_session.c.id_hash == key)).first()
        if row is None:
            return None
        if row.expires_at <= now:
            c.execute(delete(smart_session).where(smart_session.c.id_hash == key))
            return None
    return Session(
        row.iss,
        row.patient_id,
        row.fhir_user,
        row.access_token,
        row.scope,
        row.app_context,
        row.csrf_token,
        row.expires_at,
    )


def end_session(engine: Engine, cookie: str) -> None:
    with engine.begin() as c:
        c.execute(delete(smart_session).where(smart_session.c.id_hash == digest(cookie)))
