"""Compare the cards of a hook call with a fixture's expected assessment (golden files)."""

from __future__ import annotations

from typing import Any

from .render import EXTENSION_KEY

_EXACT = ("kind", "indicator", "recommendation", "referral", "pathway", "procedure", "orderAppropriate")


def differences(cards: list[dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    """Human-readable differences; empty when the cards meet the expectation."""
    want = expected.get("cards", [])
    problems: list[str] = []
    if len(cards) != len(want):
        got = [c.get("extension", {}).get(EXTENSION_KEY, {}).get("kind") for c in cards]
        problems.append(f"expected {len(want)} card(s) {[w.get('kind') for w in want]}, got {len(cards)} {got}")
    for i, (card, exp) in enumerate(zip(cards, want, strict=False)):
        ext = card.get("extension", {}).get(EXTENSION_KEY, {})
        actual = {**ext, "indicator": card.get("indicator")}
        for key in _EXACT:
            if key in exp and exp[key] != actual.get(key):
                problems.append(f"card {i}: {key} expected {exp[key]!r}, got {actual.get(key)!r}")
        if "cautions" in exp and set(exp["cautions"]) != set(ext.get("cautions", [])):
            problems.append(
                f"card {i}: cautions expected {sorted(exp['cautions'])}, got {sorted(ext.get('cautions', []))}"
            )
        statuses = {c["id"]: c["status"] for c in ext.get("criteria", [])}
        for cid, status in exp.get("criteria", {}).items():
            if statuses.get(cid) != status:
                problems.append(f"card {i}: criterion {cid} expected {status!r}, got {statuses.get(cid)!r}")
        missing = set(ext.get("missing", []))
        if absent := set(exp.get("missing_includes", [])) - missing:
            problems.append(f"card {i}: missing should include {sorted(absent)}, got {sorted(missing)}")
        if extra := set(exp.get("missing_excludes", [])) & missing:
            problems.append(f"card {i}: missing should not include {sorted(extra)}")
    return problems
