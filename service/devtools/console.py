"""``vcf-cds replay`` output for people: cards as panels, the criteria table, diffs, timings.

Colour (ANSI) only when the stream is a terminal and ``NO_COLOR`` is not set (https://no-color.org);
otherwise the same text, plain, so logs and pipes stay readable. Machines use ``--json`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ..render.cards import EXTENSION_KEY
from .expect import Mismatch
from .replay import Outcome

RESET = "\033[0m"
BOLD, DIM, RED, GREEN, YELLOW, BLUE = "1", "2", "31", "32", "33", "34"
INDICATOR_COLOUR = {"critical": RED, "warning": YELLOW, "info": BLUE}
STATUS_COLOUR = {"met": GREEN, "not-met": RED, "unknown": YELLOW}
STATUS_MARK = {"met": "+", "not-met": "-", "unknown": "?"}


def wants_colour(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and env.get("TERM") != "dumb"


@dataclass(frozen=True)
class Style:
    colour: bool

    def __call__(self, text: str, *codes: str) -> str:
        if not self.colour or not text or not any(codes):
            return text
        return f"\033[{';'.join(c for c in codes if c)}m{text}{RESET}"


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]], style: Style, codes: Any = None) -> list[str]:
    """A plain-text table: a dim header, then rows; ``codes(row, column)`` styles a cell."""
    everything = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[k]) for r in everything) for k in range(len(header))]
    lines = []
    for n, row in enumerate(everything):
        cells = []
        for k, cell in enumerate(row):
            padded = cell if k == len(row) - 1 else cell.ljust(widths[k])
            cell_codes = (DIM,) if n == 0 else (codes(row, k) if codes else ())
            cells.append(style(padded, *cell_codes))
        lines.append("  ".join(cells).rstrip())
    return lines


def criteria_lines(criteria: Iterable[dict[str, Any]], style: Style) -> list[str]:
    rows = [
        [
            str(c.get("id", "")),
            f"{STATUS_MARK.get(c.get('status', ''), ' ')} {c.get('status', '')}",
            str(c.get("source") or ""),
            ", ".join(c.get("evidence") or []) or "—",
        ]
        for c in criteria
    ]
    if not rows:
        return []

    def colour(row: list[str], k: int) -> tuple[str, ...]:
        if k == 1:
            return (STATUS_COLOUR.get(row[1].split(" ", 1)[-1].strip(), ""),)
        return (DIM,) if k == 3 else ()

    return table_lines(["criterion", "status", "source", "evidence"], rows, style, colour)


def card_panel(card: dict[str, Any], style: Style, *, criteria: bool = True) -> list[str]:
    """A card as a panel: a bar in the indicator's colour, the summary, the assessment, the criteria."""
    indicator = str(card.get("indicator", "info"))
    colour = INDICATOR_COLOUR.get(indicator, BLUE)
    bar = style("│", colour)
    ext = (card.get("extension") or {}).get(EXTENSION_KEY) or {}
    label = style(f"[{indicator.upper()}]", BOLD, colour)
    lines = [f"{style('┌', colour)} {label} {style(card.get('summary', ''), BOLD)}"]
    facts = [
        f"{key}: {ext[key]}"
        for key in ("kind", "recommendation", "referral", "pathway", "procedure", "orderAppropriate")
        if ext.get(key) is not None
    ]
    if facts:
        lines.append(f"{bar} {' · '.join(facts)}")
    if ext.get("cautions"):
        lines.append(f"{bar} {style('cautions:', BOLD, YELLOW)} {', '.join(ext['cautions'])}")
    if ext.get("missing"):
        lines.append(f"{bar} {style('missing:', BOLD)} {', '.join(ext['missing'])}")
    if criteria:
        lines += [f"{bar}   {line}" for line in criteria_lines(ext.get("criteria") or [], style)]
    for s in card.get("suggestions") or []:
        mark = " (recommended)" if s.get("isRecommended") else ""
        lines.append(f"{bar} {style('▸', colour)} {s.get('label', '')}{style(mark, DIM)}")
    for link in card.get("links") or []:
        lines.append(f"{bar} {style('↗', DIM)} {link.get('label', '')} {style(str(link.get('url', '')), DIM)}")
    lines.append(style("└", colour))
    return lines


def mismatch_lines(found: Sequence[Mismatch], style: Style) -> list[str]:
    """Expected against actual, one row per differing field."""
    if not found:
        return []
    rows = [["—" if m.card is None else str(m.card), m.field, _show(m.expected), _show(m.actual)] for m in found]

    def colour(row: list[str], k: int) -> tuple[str, ...]:
        return {2: (RED,), 3: (GREEN,)}.get(k, ())

    head = style("MISMATCH", BOLD, RED) + " expected vs actual:"
    return [head, *[f"  {line}" for line in table_lines(["card", "field", "expected", "actual"], rows, style, colour)]]


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def outcome_lines(outcome: Outcome, index: int, total: int, style: Style, *, detail: bool) -> list[str]:
    """A file's result: a header line, then its cards (panels when ``detail``), errors and diffs."""
    if not outcome.checked:
        verdict = ""
    elif outcome.mismatches:
        verdict = " " + style("FAIL", BOLD, RED)
    else:
        verdict = " " + style("ok", GREEN)
    took = style(f"({outcome.seconds * 1000:.0f} ms)", DIM)
    lines = [f"[{index}/{total}] {outcome.path}: HTTP {outcome.status}{verdict} {took}"]
    cards = outcome.body.get("cards")
    full = detail or bool(outcome.mismatches)
    for card in cards or []:
        lines += [f"  {line}" for line in card_panel(card, style, criteria=full)] if full else [_one_line(card, style)]
    if outcome.status == 200 and cards == []:
        lines.append("  " + style("no cards", DIM))
    if outcome.status != 200:
        issues = outcome.body.get("issue") or [{}]
        lines.append("  " + style(str(issues[0].get("diagnostics", "")), RED))
    lines += [f"  {line}" for line in mismatch_lines(outcome.mismatches, style)]
    return lines


def _one_line(card: dict[str, Any], style: Style) -> str:
    indicator = str(card.get("indicator", "info"))
    label = style(f"[{indicator.upper()}]", BOLD, INDICATOR_COLOUR.get(indicator, BLUE))
    return f"  {label} {card.get('summary', '')}"


def summary_line(outcomes: Sequence[Outcome], files: int, unreadable: int, seconds: float, style: Style) -> str:
    failed = sum(bool(o.mismatches) for o in outcomes)
    checked = sum(o.checked for o in outcomes)
    parts = [f"{files - failed - unreadable} of {files} files ok"]
    if checked:
        parts.append(f"{checked} checked against expected")
    if failed:
        parts.append(style(f"{failed} mismatched", BOLD, RED))
    if unreadable:
        parts.append(style(f"{unreadable} unreadable", BOLD, RED))
    timing = f"{seconds:.2f} s in all"
    if outcomes:
        slowest = max(outcomes, key=lambda o: o.seconds)
        mean = sum(o.seconds for o in outcomes) / len(outcomes)
        timing += f", {mean * 1000:.0f} ms a file, slowest {slowest.path.name} {slowest.seconds * 1000:.0f} ms"
    return " · ".join(parts) + style(f" ({timing})", DIM)
