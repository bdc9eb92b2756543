"""The audit log: one row per hook call to a known service, answered or refused, plus its cards.

A row holds the time, service, hook, ``hookInstance``, recommendation, rules version, HTTP status,
duration and an HMAC-SHA256 of the patient id under the site's audit key: with the key an auditor
can find a patient's calls (``vcf-cds audit-hash``); without it the hash reveals nothing. No other
PHI, no tokens, no bodies.

The row is written after the answer is built and before it leaves (``after_request``), so refusals
that happen before the view (authentication, body limits) are audited too. If it cannot be
written, the call is answered 503: no advice leaves unaudited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, request
from sqlalchemy import Connection, insert
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ServiceUnavailableError
from ..observe import metrics
from ..pipeline import Engine, HookResult
from ..render.cards import EXTENSION_KEY
from ..store.db import Database, audit_log, issued_card, utcnow
from ..store.groupcommit import GroupCommit
from .errors import outcome_response

log = logging.getLogger("vcf_cds.audit")

HOOK_RULE = "/cds-services/<service_id>"


@dataclass
class IssuedCard:
    uuid: str
    kind: str
    recommendation: str | None


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
    # the same patient with or without the "Patient/" prefix must hash the same (see schemas.py)
    return patient_id.strip().removeprefix("Patient/")


def init_app(app: Flask) -> None:
    key = AuditKey.from_setting(str(app.config["AUDIT_KEY"]))
    app.extensions["vcf_cds_audit_key"] = key
    database: Database = app.extensions["vcf_cds_db"]
    # the rows of calls answered at the same moment share a transaction (groupcommit.py)
    app.extensions["vcf_cds_audit_writer"] = GroupCommit(database.engine.begin, insert_calls)
    if key.ephemeral and database.persistent:
        log.warning(
            "VCF_CDS_AUDIT_KEY is not set: patient ids in the audit log are hashed with a random key made "
            "at start (id %s) and lost at exit, so no one can look up a patient's calls later. Set "
            "VCF_CDS_AUDIT_KEY (openssl rand -hex 32) and keep it secret.",
            key.key_id,
        )
    app.before_request(_start)
    app.after_request(_finish)


def _hook_service(engine: Engine) -> str | None:
    """The service id when this request is a hook call to a service we offer, else None."""
    if request.method != "POST" or request.url_rule is None or request.url_rule.rule != HOOK_RULE:
        return None
    service_id = (request.view_args or {}).get("service_id")
    return service_id if isinstance(service_id, str) and service_id in engine.catalog else None


def _start() -> None:
    service = _hook_service(current_app.extensions["vcf_cds"])
    if service:
        g.audit = CallRecord(service, time.perf_counter())


def note_request(body: Any) -> None:
    """Record what the (not yet validated) body says about the call: hook, hookInstance, patient."""
    record: CallRecord | None = g.get("audit")
    if record is None or not isinstance(body, dict):
        return
    if isinstance(body.get("hook"), str):
        record.hook = body["hook"][:64]
    if isinstance(body.get("hookInstance"), str):
        record.hook_instance = body["hookInstance"][:128]
        g.hook_instance = record.hook_instance  # correlation id of every log line from here on
    context = body.get("context")
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    if isinstance(patient_id, str) and patient_id.strip():
        record.patient_hash = current_app.extensions["vcf_cds_audit_key"].hash(patient_id)


def note_result(result: HookResult) -> None:
    record: CallRecord | None = g.get("audit")
    if record is None:
        return
    record.recommendation = result.assessment.recommendation if result.assessment else None
    for card in result.cards:
        ext = (card.get("extension") or {}).get(EXTENSION_KEY) or {}
        record.cards.append(IssuedCard(card["uuid"], str(ext.get("kind", "other")), ext.get("recommendation")))


def _finish(response: Response) -> Response:
    record: CallRecord | None = g.pop("audit", None)
    if record is None:
        # refused before our before_request ran (e.g. by an earlier one): audit it all the same
        service = _hook_service(current_app.extensions["vcf_cds"])
        if service is None:
            return response
        record = CallRecord(service, time.perf_counter())
    seconds = time.perf_counter() - record.started
    status = response.status_code
    engine: Engine = current_app.extensions["vcf_cds"]
    key: AuditKey = current_app.extensions["vcf_cds_audit_key"]
    rows = audit_rows(record, status=status, seconds=seconds, rules_version=engine.rules_version, key=key)
    try:
        current_app.extensions["vcf_cds_audit_writer"].submit(rows)
    except SQLAlchemyError as e:
        metrics.AUDIT_FAILURES.inc()
        log.error("audit row not written (%s)", type(e).__name__, extra={"service": record.service})
        if status == 200:  # a refusal stays what it was; advice is withheld
            refusal = ServiceUnavailableError("The service cannot record this call right now; try again.")
            response, status = outcome_response(refusal.status, refusal.outcome()), refusal.status
    answered = record.cards if status == 200 else []
    metrics.HOOK_REQUESTS.labels(service=record.service, status=str(status)).inc()
    metrics.HOOK_LATENCY.labels(service=record.service).observe(seconds)
    for card in answered:
        metrics.CARDS.labels(service=record.service, kind=card.kind, recommendation=card.recommendation or "none").inc()
    log.info(
        "hook call",
        extra={
            "hookInstance": record.hook_instance,
            "service": record.service,
            "hook": record.hook,
            "status": status,
            "durationMs": round(seconds * 1000, 1),
            "recommendation": record.recommendation if answered else None,
            "cards": len(answered),
        },
    )
    return response


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
