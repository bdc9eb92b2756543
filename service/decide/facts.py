"""Clinical facts: the typed contract between ``normalize`` (FHIR in) and ``decide`` (rules).

Everything here is plain data. A ``None`` value always means *unknown*, never *absent*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

Refs = tuple[str, ...]


def in_future(when: datetime, now: datetime) -> bool:
    """Dated more than a day after ``now`` (a day of grace for clock skew): not yet current."""
    return (now - when).total_seconds() / 86400 < -1


@dataclass(frozen=True)
class Fracture:
    """One active vertebral compression fracture diagnosis."""

    ref: str
    kind: str  # osteoporotic | traumatic | unspecified | neoplastic (the value set that matched)
    onset: date | None
    onset_estimated: bool  # onset taken from recordedDate or a partial date
    level: str | None  # a vertebral level / bodySite key, None when the code has no level


@dataclass(frozen=True)
class Reading:
    """A numeric observation on a known scale (pain 0–10, INR, platelets 10^9/L, T-score…)."""

    ref: str
    when: datetime
    value: float


@dataclass(frozen=True)
class Finding:
    """An exam or imaging finding: present/absent, or a quantity (height loss %, SINS, RDQ)."""

    ref: str
    when: datetime | None
    present: bool | None = None
    value: float | None = None


@dataclass(frozen=True)
class Facts:
    now: datetime
    birth_date: date | None
    fractures: tuple[Fracture, ...] = ()
    # concept id (a value set of mappings/) -> references documenting it: active conditions,
    # active medication orders, allergies, positive pregnancy tests
    documented: Mapping[str, Refs] = field(default_factory=dict)
    # Readings and findings, oldest first, by kind. The decision reads only the newest one not
    # ``in_future`` and, for pain, the newest one a ``WORSENING_GAP`` before it; so only those
    # (and any newer) are validated and kept: older ones could never change the decision.
    readings: Mapping[str, tuple[Reading, ...]] = field(default_factory=dict)
    findings: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)
    hospital_encounters: Refs = ()
    # data kinds that could not be had (optional prefetch failed): their criteria stay unknown
    unavailable: frozenset[str] = frozenset()
    # resources the decision needed but had to ignore, with the reason (said on the card)
    ignored: tuple[str, ...] = ()

    def refs(self, *concepts: str) -> Refs:
        return tuple(r for c in concepts for r in self.documented.get(c, ()))
