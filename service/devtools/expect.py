"""Compare the cards of a hook call with a fixture's expected assessment (golden files).

Comparison rules (fixtures/patient-view/README.md): cards in order; ``kind``, ``indicator``,
``recommendation``, ``referral``, ``pathway``, ``procedure`` exact (a key left out is not checked);
``cautions`` as a set; ``criteria`` a subset of id → status; ``missing_includes`` all in the card's
``missing``; ``missing_excludes`` none in it; ``detail_includes`` / ``detail_excludes``: texts the
card's markdown detail must / must not contain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..render.cards import EXTENSION_KEY

_EXACT = ("kind", "indicator", "recommendation", "referral", "pathway", "procedure", "orderAppropriate")


@dataclass(frozen=True)
class Mismatch:
    """One field that differs: ``card`` is its index (``None`` for the response as a whole)."""

    card: int | None
    field: str
    expected: Any
    actual: Any

    def text(self) -> str:
        where = "" if self.card is None else f"card {self.card}: "
        return f"{where}{self.field} expected {self.expected!r}, got {self.actual!r}"


def mismatches(cards: list[dict[str, Any]], expected: dict[str, Any]) -> list[Mismatch]:
    """Every field where the cards do not meet the expectation; empty when they do."""
    want = expected.get("cards", [])
    found: list[Mismatch] = []
    if len(cards) != len(want):
        got = [c.get("extension", {}).get(EXTENSION_KEY, {}).get("kind") for c in cards]
        found.append(Mismatch(None, "cards", [w.get("kind") for w in want], got))
    for i, (card, exp) in enumerate(zip(cards, want, strict=False)):
        ext = card.get("extension", {}).get(EXTENSION_KEY, {})
        actual = {**ext, "indicator": card.get("indicator")}
        for key in _EXACT:
            if key in exp and exp[key] != actual.get(key):
                found.append(Mismatch(i, key, exp[key], actual.get(key)))
        cautions = sorted(ext.get("cautions", []))
        if "cautions" in exp and set(exp["cautions"]) != set(cautions):
            found.append(Mismatch(i, "cautions", sorted(exp["cautions"]), cautions))
        statuses = {c["id"]: c["status"] for c in ext.get("criteria", [])}
        for cid, status in exp.get("criteria", {}).items():
            if statuses.get(cid) != status:
                found.append(Mismatch(i, f"criterion {cid}", status, statuses.get(cid)))
        missing = set(ext.get("missing", []))
        if absent := set(exp.get("missing_includes", [])) - missing:
            found.append(Mismatch(i, "missing should include", sorted(absent), sorted(missing)))
        if extra := set(exp.get("missing_excludes", [])) & missing:
            found.append(Mismatch(i, "missing should not include", [], sorted(extra)))
        detail = str(card.get("detail", ""))
        for text in exp.get("detail_includes", []):
            if text not in detail:
                found.append(Mismatch(i, "detail should include", text, detail))
        for text in exp.get("detail_excludes", []):
            if text in detail:
                found.append(Mismatch(i, "detail should not include", text, detail))
    return found


def differences(cards: list[dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    """Human-readable differences; empty when the cards meet the expectation."""
    return [m.text() for m in mismatches(cards, expected)]
