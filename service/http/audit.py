"""The audit log: one row per hook call to a known service, answered or refused, plus its cards.
Refusals for want of a valid token (401) are counted in the metrics and the log instead.

A row holds the time, service, hook, ``hookInstance``, recommendation, rules version, HTTP status,
duration and an HMAC-SHA256 of the patient id under the site's audit key: with the key an auditor
can find a patient's calls (``vcf-cds audit-hash``); without it the hash reveals nothing. No other
PHI, no tokens, no bodies.

The row is written after the answer is built and before it leaves (``after_request``), so refusals
that happen before the view (authentication, body limits) are audited too. If it cannot be
written, the call is answered 503: no advice leaves unaudited. The rows themselves are built and
inserted by service/store/audit.py; the metrics and log line by service/observe/calls.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ServiceUnavailableError
from ..observe import metrics
from ..observe.calls import observe_call
from ..pipeline import Engine, HookResult
from ..state import app_state
from ..store.audit import CallRecord, audit_rows
from .errors import outcome_response

log = logging.getLogger("vcf_cds.audit")

HOOK_RULE = "/cds-services/<service_id>"


def init_app(app: Flask) -> None:
    state = app_state(app)
    if state.audit_key.ephemeral and state.database.persistent:
        log.warning(
            "VCF_CDS_AUDIT_KEY is not set: patient ids in the audit log are hashed with a random key made "
            "at start (id %s) and lost at exit, so no one can look up a patient's calls later. Set "
            "VCF_CDS_AUDIT_KEY (openssl rand -hex 32) and keep it secret.",
            state.audit_key.key_id,
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
    service = _hook_service(app_state().engine)
    if service:
        g.audit = CallRecord(service, time.perf_counter())


def note_request(body: Any) -> None:
    """Record what the (not yet validated) body says about the call: hook, hookInstance, patient."""
    record: CallRecord | None = g.get("audit")
    if record is None or not isinstance(body, dict):
        return
    if isinstance(body.get("hook"), str):
        record.hook = _storable(body["hook"], 64)
    if isinstance(body.get("hookInstance"), str):
        record.hook_instance = _storable(body["hookInstance"], 128)
        g.hook_instance = record.hook_instance  # correlation id of every log line from here on
    context = body.get("context")
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    if isinstance(patient_id, str) and patient_id.strip():
        record.patient_hash = app_state().audit_key.hash(patient_id)


def _storable(value: str, length: int) -> str:
    # PostgreSQL text cannot hold NUL: a request that carries one (refused with 400) is still audited
    return value[:length].replace("\x00", "\ufffd")


def note_result(result: HookResult) -> None:
    record: CallRecord | None = g.get("audit")
    if record is None:
        return
    record.recommendation = result.assessment.recommendation if result.assessment else None
    record.cards.extend(result.issued)


def _finish(response: Response) -> Response:
    state = app_state()
    record: CallRecord | None = g.pop("audit", None)
    if record is None:
        # refused before our before_request ran (e.g. by an earlier one): audit it all the same
        service = _hook_service(state.engine)
        if service is None:
            return response
        record = CallRecord(service, time.perf_counter())
    seconds = time.perf_counter() - record.started
    status = response.status_code
    rows = audit_rows(
        record, status=status, seconds=seconds, rules_version=state.engine.rules_version, key=state.audit_key
    )
    try:
        # a 401 is counted (metrics, log), not stored: anyone can send them, and a durable row each
        # would let them fill the disk
        if status != 401:
            state.audit_writer.submit(rows)
    except SQLAlchemyError as e:
        metrics.AUDIT_FAILURES.inc()
        log.error("audit row not written (%s)", type(e).__name__, extra={"service": record.service})
        if status == 200:  # a refusal stays what it was; advice is withheld
            refusal = ServiceUnavailableError("The service cannot record this call right now; try again.")
            response, status = outcome_response(refusal.status, refusal.outcome()), refusal.status
    observe_call(
        service=record.service,
        hook=record.hook,
        hook_instance=record.hook_instance,
        status=status,
        seconds=seconds,
        recommendation=record.recommendation,
        answered=record.cards if status == 200 else [],
    )
    return response
