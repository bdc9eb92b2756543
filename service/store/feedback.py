"""Card feedback (CDS Hooks 2.0 §Feedback): durable idempotent storage, and the acceptance report.

Items (validated by service/http/feedback.py, whole, before any is written) are committed in one
transaction. An item seen before (same service, card, outcome and outcomeTimestamp) is a duplicate:
counted, not stored twice. Feedback on a card uuid this service never issued is stored and flagged
(``card_known`` false). The report counts cards, each by its latest outcome, not feedback items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Insert, Subquery, Table, and_, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..observe import metrics
from .db import Database, issued_card
from .db import feedback as feedback_table


@dataclass
class Stored:
    stored: int = 0
    duplicates: int = 0
    unknown_cards: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "unknownCards": self.unknown_cards}


def _insert_ignoring_duplicates(db: Database, table: Table) -> Insert:
    dialect = db.engine.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing().returning(table.c.id)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing().returning(table.c.id)
    raise NotImplementedError(f"database {dialect!r} is not supported (SQLite or PostgreSQL)")


def store_feedback(
    db: Database, service: str, items: list[dict[str, Any]], *, received_at: datetime, keep_comments: bool
) -> Stored:
    """Store every item in one committed transaction; duplicates are skipped, unknown cards flagged."""
    result = Stored()
    uuids = sorted({item["card"] for item in items})
    statement = _insert_ignoring_duplicates(db, feedback_table)
    verdicts: list[tuple[str, str]] = []
    with db.engine.begin() as connection:
        known = set(
            connection.execute(
                select(issued_card.c.uuid).where(issued_card.c.uuid.in_(uuids), issued_card.c.service == service)
            ).scalars()
        )
        for item in items:
            override = item.get("overrideReason") or {}
            reason = override.get("reason") or {}
            comment = override.get("userComment")
            row = {
                "service": service,
                "card_uuid": item["card"],
                "outcome": item["outcome"],
                "outcome_at": item["outcomeTimestamp"],
                "received_at": received_at,
                "accepted_suggestions": orjson.dumps([s["id"] for s in item.get("acceptedSuggestions") or []]).decode(),
                "override_system": reason.get("system"),
                "override_code": reason.get("code"),
                "override_display": reason.get("display"),
                "has_comment": bool(comment),
                "user_comment": comment if keep_comments else None,
                "card_known": item["card"] in known,
            }
            # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING
            inserted = len(connection.execute(statement, row).all())
            result.stored += inserted
            result.duplicates += 1 - inserted
            if item["card"] not in known and item["card"] not in result.unknown_cards:
                result.unknown_cards.append(item["card"])
            verdict = "duplicate" if not inserted else "stored" if item["card"] in known else "unknown-card"
            verdicts.append((item["outcome"], verdict))
    for outcome, verdict in verdicts:  # counted once committed
        metrics.FEEDBACK_ITEMS.labels(service=service, outcome=outcome, result=verdict).inc()
    return result


# -- the report ------------------------------------------------------------------------------------
@dataclass
class RecommendationRow:
    service: str
    kind: str
    recommendation: str | None
    issued: int = 0
    accepted: int = 0
    overridden: int = 0

    @property
    def answered(self) -> int:
        return self.accepted + self.overridden

    def rate(self, count: int) -> float | None:
        return round(count / self.answered, 4) if self.answered else None

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind,
            "recommendation": self.recommendation,
            "issued": self.issued,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "acceptanceRate": self.rate(self.accepted),
            "overrideRate": self.rate(self.overridden),
        }


@dataclass(frozen=True)
class OverrideReasonRow:
    service: str
    kind: str
    recommendation: str | None
    system: str | None
    code: str | None
    display: str | None
    count: int


COUNTED_PER = "issued card, by its latest outcome (not per feedback item)"


@dataclass
class Report:
    recommendations: list[RecommendationRow]
    override_reasons: list[OverrideReasonRow]
    unknown_cards: dict[str, int]  # latest outcome → cards never issued here that got feedback

    def as_json(self) -> dict[str, Any]:
        return {
            "countedPer": COUNTED_PER,
            "recommendations": [r.as_json() for r in self.recommendations],
            "overrideReasons": [
                {
                    "service": r.service,
                    "kind": r.kind,
                    "recommendation": r.recommendation,
                    "reason": {"system": r.system, "code": r.code, "display": r.display} if r.code else None,
                    "count": r.count,
                }
                for r in self.override_reasons
            ],
            "unknownCards": self.unknown_cards,
        }


def latest_outcomes() -> Subquery:
    """Each card's latest feedback item: one row per card.

    Ranked by outcomeTimestamp, but never later than the item's arrival: a clinician cannot act after
    the feedback saying so arrived, and an EHR with a wrong clock (or 2926 typed for 2026) would
    otherwise pin the card's outcome forever. Ties: the later arrival."""
    fb = feedback_table.c
    acted = case((fb.outcome_at < fb.received_at, fb.outcome_at), else_=fb.received_at)
    ranked = select(
        fb.service,
        fb.card_uuid,
        fb.outcome,
        fb.override_system,
        fb.override_code,
        fb.override_display,
        func.row_number()
        .over(partition_by=(fb.service, fb.card_uuid), order_by=(acted.desc(), fb.id.desc()))
        .label("rank"),
    ).subquery()
    return select(ranked).where(ranked.c.rank == 1).subquery("latest")


def feedback_report(db: Database) -> Report:
    """Cards issued and their latest outcomes by (service, kind, recommendation); override reasons;
    cards never issued here. Every count is of cards, not feedback items."""
    latest = latest_outcomes()
    card, fb = issued_card.c, latest.c
    rows: dict[tuple[str, str, str | None], RecommendationRow] = {}

    def row(service: str, kind: str, recommendation: str | None) -> RecommendationRow:
        return rows.setdefault((service, kind, recommendation), RecommendationRow(service, kind, recommendation))

    same_card = and_(card.uuid == fb.card_uuid, card.service == fb.service)
    joined = latest.join(issued_card, same_card)
    with db.engine.connect() as connection:
        issued = select(card.service, card.kind, card.recommendation, func.count()).group_by(
            card.service, card.kind, card.recommendation
        )
        for service, kind, recommendation, count in connection.execute(issued):
            row(service, kind, recommendation).issued = count
        outcomes = (
            select(card.service, card.kind, card.recommendation, fb.outcome, func.count())
            .select_from(joined)
            .group_by(card.service, card.kind, card.recommendation, fb.outcome)
        )
        for service, kind, recommendation, outcome, count in connection.execute(outcomes):
            setattr(row(service, kind, recommendation), outcome, count)
        reasons = (
            select(
                card.service,
                card.kind,
                card.recommendation,
                fb.override_system,
                fb.override_code,
                func.max(fb.override_display),
                func.count(),
            )
            .select_from(joined)
            .where(fb.outcome == "overridden")
            .group_by(card.service, card.kind, card.recommendation, fb.override_system, fb.override_code)
        )
        override_reasons = [OverrideReasonRow(*r) for r in connection.execute(reasons)]
        unknown = (
            select(fb.outcome, func.count())
            .select_from(latest.outerjoin(issued_card, same_card))
            .where(card.uuid.is_(None))
            .group_by(fb.outcome)
        )
        unknown_cards = {outcome: count for outcome, count in connection.execute(unknown)}
    order = sorted(rows.values(), key=lambda r: (r.service, r.kind, r.recommendation or ""))
    override_reasons.sort(key=lambda r: (r.service, r.kind, r.recommendation or "", -r.count, r.code or ""))
    return Report(order, override_reasons, unknown_cards)


def format_report(report: Report) -> str:
    """The report as terminal tables."""
    lines = [f"Counted per {COUNTED_PER}.", ""]
    header = ("service", "kind", "recommendation", "issued", "accepted", "overridden", "acceptance", "override")
    table: list[tuple[str, ...]] = [header]
    for r in report.recommendations:
        table.append(
            (
                r.service,
                r.kind,
                r.recommendation or "-",
                str(r.issued),
                str(r.accepted),
                str(r.overridden),
                _percent(r.rate(r.accepted)),
                _percent(r.rate(r.overridden)),
            )
        )
    lines += _columns(table, right_from=3)
    if len(table) == 1:
        lines.append("(no cards issued yet)")
    lines.append("")
    reasons: list[tuple[str, ...]] = [("service", "kind", "recommendation", "override reason", "count")]
    for o in report.override_reasons:
        reason = f"{o.code} ({o.display})" if o.code and o.display else o.code or "(none given)"
        reasons.append((o.service, o.kind, o.recommendation or "-", reason, str(o.count)))
    lines += _columns(reasons, right_from=4)
    if len(reasons) == 1:
        lines.append("(no overrides yet)")
    if report.unknown_cards:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.unknown_cards.items()))
        lines += ["", f"cards with feedback that this service has no record of: {counts}"]
    return "\n".join(lines)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _columns(rows: list[tuple[str, ...]], right_from: int) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i >= right_from else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
