"""The recommendation card's note on what was read but not used, counted by reason (rules 2026.12)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..decide.facts import ENTERED_IN_ERROR, IN_FUTURE, NOT_THIS_PATIENT, UNREADABLE, Ignored

# the order reasons are listed in; a reason not listed here follows them
REASONS = (UNREADABLE, IN_FUTURE, ENTERED_IN_ERROR, NOT_THIS_PATIENT)


def ignored_note(items: Iterable[Ignored], escape: Callable[[str], str]) -> str:
    """ "**Read but not used:** 2 unreadable (…; …); 1 in the future (…)", or "" when nothing was."""
    by_reason: dict[str, list[str]] = {}
    for item in items:
        by_reason.setdefault(item.reason, []).append(item.text)
    order = [r for r in REASONS if r in by_reason] + [r for r in by_reason if r not in REASONS]
    if not order:
        return ""
    parts = [f"{len(by_reason[r])} {r}{_named(by_reason[r], escape)}" for r in order]
    return "**Read but not used:** " + "; ".join(parts) + "."


def _named(texts: list[str], escape: Callable[[str], str]) -> str:
    named = [escape(t) for t in texts if t]  # another patient's resources carry no text: counted only
    return f" ({'; '.join(named)})" if named else ""
