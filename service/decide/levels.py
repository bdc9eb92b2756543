"""Vertebral levels: every way a record names a vertebra, reduced to canonical T1…L5 (rules 2026.12).

A fracture's levels come from its ICD-10-CM code (in the ``vertebral-level-coded-thoracic`` and
``-lumbar`` categories the 5th character names a level or a pair), its ``bodySite`` codings (the
``vertebra`` value set's displays) and ``bodySite`` text. Pure, so that decide can count levels;
normalize reads them. A level is a
``Span`` of ``VERTEBRAE`` indices: one vertebra, or a range such as T5–T6 when that is all a code says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .facts import VERTEBRAE, Fracture, Span

_INDEX = {name: i for i, name in enumerate(VERTEBRAE)}
# thoracic: the 5th character names T1–T4 singly and the lower thoracic spine in pairs
_THORACIC = {"1": (0, 0), "2": (1, 1), "3": (2, 2), "4": (3, 3), "5": (4, 5), "6": (6, 7), "7": (8, 9), "8": (10, 11)}
_LUMBAR = {str(n): (11 + n, 11 + n) for n in range(1, 6)}  # L1–L5
_BY_FIFTH = {"thoracic": _THORACIC, "lumbar": _LUMBAR}

_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth"]
_ORDINALS += ["seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth"]
# One vertebra, named in any of three word orders:
#   letter and number        "T12", "Th12", "T-12", "T.12", "L 1"
#   ordinal and region       "12th thoracic", "1st lumbar", "twelfth thoracic" (digits or words)
#   region and number        "Thoracic vertebra 12", "lumbar 1", "thoracic vertebral body 12"
# ("spine" is not allowed between region and number: "lumbar spine 2 views" names no vertebra).
_NAME = (
    r"(?:(?P<r{n}>th|t|l)[\s.-]?(?P<n{n}>\d{{1,2}})"
    r"|(?:(?P<d{n}>\d{{1,2}})(?:st|nd|rd|th)|(?P<o{n}>{ordinals}))\s+(?P<w{n}>thoracic|lumbar)"
    r"|(?P<x{n}>thoracic|lumbar)(?:\s+(?:vertebral\s+body|vertebra|vertebrae|level))?[\s.-]{{0,3}}(?P<m{n}>\d{{1,2}}))"
)
_ONE = _NAME.format(n=1, ordinals="|".join(_ORDINALS))
_TWO = _NAME.format(n=2, ordinals="|".join(_ORDINALS))
# a range "T5-T6", "T11–12", "T12 to L1", "lumbar 1-2"
_PATTERN = re.compile(
    rf"(?<![a-z0-9]){_ONE}(?:\s*(?:-|–|—|\bto\b)\s*(?:{_TWO}|(?P<bare>\d{{1,2}})))?(?![a-z0-9])", re.IGNORECASE
)


def _named(m: re.Match[str], n: int) -> tuple[str, str] | None:
    """(region letter, number) of the ``n``th name of a match, whichever word order it used."""
    if m[f"r{n}"]:
        return m[f"r{n}"][0], m[f"n{n}"]
    if m[f"d{n}"]:
        return m[f"w{n}"][0], m[f"d{n}"]
    if m[f"o{n}"]:
        return m[f"w{n}"][0], str(_ORDINALS.index(m[f"o{n}"].lower()) + 1)
    if m[f"x{n}"]:
        return m[f"x{n}"][0], m[f"m{n}"]
    return None


def _vertebra(named: tuple[str, str] | None) -> int | None:
    if named is None:
        return None
    region, number = named
    return _INDEX.get(("T" if region.lower() == "t" else "L") + str(int(number)))


def spans_in_text(text: str) -> list[Span]:
    """The vertebrae and ranges a free text names ("T12", "L1 vertebra", "12th thoracic vertebra",
    "Lumbar 1", "T5-T6"); [] if none."""
    found: list[Span] = []
    for m in _PATTERN.finditer(text[:500]):  # a body-site text is short; never scan a huge one
        named = _named(m, 1)
        first = _vertebra(named)
        if first is None or named is None:
            continue
        second = (named[0], m["bare"]) if m["bare"] else _named(m, 2)
        last = _vertebra(second) if second else first
        if last is None:
            found.append((first, first))
        else:
            found.append((min(first, last), max(first, last)))
    return found


def icd_span(region: str, dotless: str) -> Span | None:
    """The level a code of a level-coded category of ``region`` ("thoracic", "lumbar") names by its
    5th character; None when that character names none (0: unspecified level)."""
    table = _BY_FIFTH.get(region)
    return table.get(dotless[4]) if table and len(dotless) >= 5 else None


def refine(spans: Iterable[Span]) -> tuple[Span, ...]:
    """One fracture's names as its levels: a vertebra inside a range the same fracture names
    refines it (S22.08 + bodySite T12 = T12); the same vertebra named twice is one level."""
    unique = set(spans)
    singles = {a for a, b in unique if a == b}
    kept = {s for s in unique if s[0] == s[1] or not any(s[0] <= v <= s[1] for v in singles)}
    return tuple(sorted(kept))


def count_levels(fractures: Iterable[Fracture]) -> int:
    """Distinct fractured levels. A range counts as one level unless a vertebra named elsewhere lies
    in it; fractures without a level (region-only codes) count once between them, and not at all
    when any fracture has a level."""
    fractures = list(fractures)
    spans = {s for f in fractures for s in f.levels}
    if not spans:
        return 1 if fractures else 0
    singles = {a for a, b in spans if a == b}
    ranges = sorted(
        (s for s in spans if s[0] != s[1] and not any(s[0] <= v <= s[1] for v in singles)), key=lambda s: s[1]
    )
    count, stabbed = len(singles), -1
    for first, last in ranges:  # fewest vertebrae that lie in every remaining range (ranges may overlap)
        if first > stabbed:
            count, stabbed = count + 1, last
    return count
