"""``vcf-cds prune-audit``: delete audit rows past the hospital's retention (keep-forever by default).

An audit row goes with what hangs on it: the cards it issued (``issued_card`` refers to it) and the
feedback on those cards, which without them would read as feedback on cards never issued. Feedback
on cards that were never issued here (no audit row to follow) goes by when it was received. Deleted
in batches, each its own short transaction, so a first prune of years of rows does not hold
SQLite's one write lock (or PostgreSQL row locks) against the running service for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, select, tuple_

from .db import audit_log, feedback, issued_card

BATCH = 2000  # audit rows per transaction


@dataclass
class Pruned:
    audit_rows: int = 0
    issued_cards: int = 0
    feedback_items: int = 0


def prune_audit(engine: Engine, before: datetime, *, batch: int = BATCH) -> Pruned:
    """Delete audit rows older than ``before``, their issued cards and the feedback on those cards,
    and feedback on unknown cards received before ``before``."""
    pruned = Pruned()
    while True:
        with engine.begin() as connection:
            ids = list(
                connection.execute(
                    select(audit_log.c.id).where(audit_log.c.at < before).order_by(audit_log.c.id).limit(batch)
                ).scalars()
            )
            if not ids:
                break
            _delete_batch(connection, ids, pruned)
    with engine.begin() as connection:
        unknown = delete(feedback).where(feedback.c.card_known.is_(False), feedback.c.received_at < before)
        pruned.feedback_items += connection.execute(unknown).rowcount or 0
    return pruned


def _delete_batch(connection: Connection, ids: list[int], pruned: Pruned) -> None:
    cards = select(issued_card.c.service, issued_card.c.uuid).where(issued_card.c.audit_id.in_(ids))
    on_cards = delete(feedback).where(tuple_(feedback.c.service, feedback.c.card_uuid).in_(cards))
    pruned.feedback_items += connection.execute(on_cards).rowcount or 0
    pruned.issued_cards += connection.execute(delete(issued_card).where(issued_card.c.audit_id.in_(ids))).rowcount or 0
    pruned.audit_rows += connection.execute(delete(audit_log).where(audit_log.c.id.in_(ids))).rowcount or 0
