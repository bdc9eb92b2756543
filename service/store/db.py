"""The database: engine, tables, schema migration on start (SQLAlchemy Core + Alembic).

SQLite file by default (no setup), PostgreSQL via ``VCF_CDS_DATABASE_URL``. SQL lives here and in
``audit`` and ``feedback``, never in views. An acknowledged write is durable: callers commit before
they answer, and a SQLite commit returns only once its write-ahead log is on disk (``sqlite.WalSync``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    inspect,
    make_url,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .sqlite import BUSY_TIMEOUT_SECONDS, configure_sqlite

log = logging.getLogger("vcf_cds.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key: two processes starting at once must not both create the tables
MIGRATION_LOCK = 0x7FCFCD5


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity
BigId = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per hook call, answered or refused. No PHI: the patient id only as a keyed hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("service", String(64), nullable=False),
    Column("hook", String(64)),
    Column("hook_instance", String(128)),
    Column("patient_hash", String(64)),  # HMAC-SHA256(audit key, patient id), hex
    Column("key_id", String(16)),  # which audit key made patient_hash (a fingerprint, not the key)
    Column("recommendation", String(32)),
    Column("rules_version", String(128), nullable=False),
    Column("status", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("cards", Integer, nullable=False, default=0),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_patient_hash", "patient_hash"),
    Index("ix_audit_log_hook_instance", "hook_instance"),
)

# Every card handed out, so that feedback (which names only the card uuid) maps to a recommendation
issued_card = Table(
    "issued_card",
    metadata,
    Column("uuid", String(64), primary_key=True),
    Column("audit_id", BigId, ForeignKey("audit_log.id"), nullable=False),
    Column("service", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("recommendation", String(32)),
    Column("issued_at", UtcDateTime(), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("card_uuid", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("accepted_suggestions", Text, nullable=False),  # JSON array of suggestion uuids
    Column("override_system", String(255)),
    Column("override_code", String(128)),
    Column("override_display", String(255)),
    Column("has_comment", Boolean, nullable=False, default=False),
    Column("user_comment", Text),  # only with VCF_CDS_FEEDBACK_COMMENTS=on: free text may hold PHI
    Column("card_known", Boolean, nullable=False),  # False: no card with this uuid was issued here
    # An EHR that retries sends the same item again: the same card, outcome and moment is one event
    UniqueConstraint("service", "card_uuid", "outcome", "outcome_at", name="uq_feedback_item"),
)

# JWT `jti`s seen, shared by every worker and replica (auth/replay_store.py); a row outlives its token
jwt_replay = Table(
    "jwt_replay",
    metadata,
    Column("key", String(64), primary_key=True),  # SHA-256 of (iss, jti), hex: fixed width, no token text
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_jwt_replay_expires_at", "expires_at"),
)

# One row, rewritten by /readyz: proof that the database still takes a durable write (store/heartbeat.py)
heartbeat = Table(
    "heartbeat",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime(), nullable=False),
)


# The SMART app (service/smart): a launch between its redirect to the EHR and the callback (state is
# single-use: the callback deletes the row), and a signed-in session. Keys are SHA-256 of the random
# values the browser holds, so the table alone cannot be replayed as a cookie. The access token
# stays here, on the server, until the session expires with it.
smart_launch = Table(
    "smart_launch",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("browser_hash", String(64), nullable=False),  # the launch cookie: a state works only in its browser
    Column("iss", String(512), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

smart_session = Table(
    "smart_session",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("iss", String(512), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("fhir_user", String(512)),
    Column("access_token", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("app_context", String(256)),
    Column("csrf_token", String(64), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_smart_session_expires_at", "expires_at"),
)


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, durable commits (``WalSync``) and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # "postgresql://" means psycopg2 to SQLAlchemy; we ship psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS}}
        if parsed.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool  # one shared in-memory database, not one per connection
        elif parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    return engine


def alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration; safe when several processes start at once."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        log.info("database schema migrated from %s to %s", before or "nothing", after)


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """(revision in the database, newest revision shipped)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head or ""


def is_known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False


def has_schema(engine: Engine) -> bool:
    return set(metadata.tables) <= set(inspect(engine).get_table_names())


def display_url(url: str) -> str:
    """The URL without its password, for messages (never the raw string: it may hold one)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable database URL)"


class Database:
    """The app's engine; created in each process (gunicorn workers do not share connections)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_db_engine(url)

    @property
    def persistent(self) -> bool:
        return not (self.engine.dialect.name == "sqlite" and self.engine.url.database in (None, "", ":memory:"))

    def check(self) -> str | None:
        """None when the database answers and its schema is current, else what is wrong (no secrets)."""
        try:
            current, head = schema_revision(self.engine)
        except SQLAlchemyError as e:
            return f"database unreachable ({type(e).__name__})"
        # A revision this code does not know is a newer one, migrated by a newer release during a
        # rolling update: stay ready (migrations add, they do not break the previous release)
        if current != head and (current is None or is_known_revision(current)):
            return f"database schema at {current or 'nothing'}, expected {head}"
        return None


def open_database(url: str, *, migrate_schema: bool = True) -> Database:
    """The app's database, its schema migrated to the current revision (unless ``VCF_CDS_MIGRATE=off``:
    then a one-off ``vcf-cds migrate`` owns the schema)."""
    database = Database(url)
    if migrate_schema:
        migrate(database.engine)
    log.info("database ready: %s", display_url(database.url))
    return database


def utcnow() -> datetime:
    return datetime.now(UTC)
