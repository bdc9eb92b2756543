"""Audit rows: the row of a hook call and of each card it issued, keyed by an HMAC of the patient id.

Built from a ``CallRecord`` (filled in by the HTTP half, service/http/audit.py) and written in the
caller's transaction (group commit batches concurrent calls). No PHI but the keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from ..render.issued import IssuedCard
from .db import audit_log, issued_card, utcnow


@dataclass
class CallRecord:
    """What the audit row of the current call says; filled in as the call proceeds."""

    service: str
    started: float
    hook: str | None = None
    hook_instance: str | None = None
    patient_hash: str | None = None
    recommendation: str | None = None
    cards: list[IssuedCard] = field(default_factory=list)


@dataclass
class CallRows:
    row: dict[str, Any]
    cards: list[dict[str, Any]]


@dataclass(frozen=True)
class AuditKey:
    secret: bytes
    key_id: str  # a fingerprint to tell keys apart (rotation), useless to recover the key
    ephemeral: bool

    @classmethod
    def from_setting(cls, value: str) -> AuditKey:
        ephemeral = not value
        secret = (value or secrets.token_hex(32)).encode()
        key_id = hashlib.sha256(b"vcf-cds audit key id:" + secret).hexdigest()[:12]
        return cls(secret, key_id, ephemeral)

    def hash(self, patient_id: str) -> str:
        return hmac.new(self.secret, normalize_patient_id(patient_id).encode(), hashlib.sha256).hexdigest()


def normalize_patient_id(patient_id: str) -> str:
    # the same patient with or without the "Patient/" prefix must hash the same (see http/schemas.py)
    return patient_id.strip().removeprefix("Patient/")


def audit_rows(record: CallRecord, *, status: int, seconds: float, rules_version: str, key: AuditKey) -> CallRows:
    """The audit row of a call and the rows of the cards it issued (``audit_id`` filled in on insert)."""
    now = utcnow()
    answered = record.cards if status == 200 else []
    row = {
        "at": now,
        "service": record.service,
        "hook": record.hook,
        "hook_instance": record.hook_instance,
        "patient_hash": record.patient_hash,
        "key_id": key.key_id if record.patient_hash else None,
        "recommendation": record.recommendation if status == 200 else None,
        "rules_version": rules_version,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "cards": len(answered),
    }
    cards = [
        {
            "uuid": c.uuid,
            "service": record.service,
            "kind": c.kind,
            "recommendation": c.recommendation,
            "issued_at": now,
        }
        for c in answered
    ]
    return CallRows(row, cards)


def insert_calls(connection: Connection, calls: Sequence[CallRows]) -> list[int]:
    """Insert calls' audit rows and issued cards (in the caller's transaction); the rows' ids."""
    ids: list[int] = list(connection.execute(_INSERT_CALLS, [call.row for call in calls]).scalars())
    cards = [{**card, "audit_id": i} for call, i in zip(calls, ids, strict=True) for card in call.cards]
    if cards:
        connection.execute(_INSERT_CARD, cards)
    return ids


# built once (the statement cache does the rest); a batch is one multi-row INSERT, ids in row order
_INSERT_CALLS = insert(audit_log).returning(audit_log.c.id, sort_by_parameter_order=True)
_INSERT_CARD = insert(issued_card)


def call_was_about(engine: Engine, hook_instance: str, patient_id: str, key: AuditKey) -> bool | None:
    """Whether the latest audited call of ``hook_instance`` was about ``patient_id``; None when that
    cannot be told (no such row, or another audit key made its hash)."""
    with engine.connect() as c:
        row = c.execute(
            select(audit_log.c.patient_hash, audit_log.c.key_id)
            .where(audit_log.c.hook_instance == hook_instance)
            .order_by(audit_log.c.id.desc())
            .limit(1)
        ).first()
    if row is None or row.patient_hash is None or row.key_id != key.key_id:
        return None
    return hmac.compare_digest(row.patient_hash, key.hash(patient_id))
