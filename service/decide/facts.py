"""Clinical facts: the typed contract between ``normalize`` (FHIR in) and ``decide`` (rules).

Everything here is plain data. A ``None`` value always means *unknown*, never *absent*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

Refs = tuple[str, ...]
# A vertebral level, or a range of levels, as (first, last) indices of VERTEBRAE, inclusive
Span = tuple[int, int]
VERTEBRAE = tuple([f"T{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 6)])

# Why a resource the decision read was not used (the card's ignored note counts them by reason)
UNREADABLE = "unreadable"
IN_FUTURE = "in the future"
ENTERED_IN_ERROR = "entered in error"
NOT_THIS_PATIENT = "not this patient's"  # counted only: their contents are another person's


def in_future(when: datetime, now: datetime) -> bool:
    """Dated more than a day after ``now`` (a day of grace for clock skew): not yet current."""
    return (now - when).total_seconds() / 86400 < -1


def whole_days(since: datetime, now: datetime) -> int:
    """Elapsed whole days (floor) from ``since`` to ``now``: every window and band counts these."""
    return int((now - since).total_seconds() // 86400)


@dataclass(frozen=True)
class Ignored:
    """A resource the decision read but did not use, and why (one of the reasons above)."""

    reason: str
    text: str  # names the resource (safe_ref), never a value from it


@dataclass(frozen=True)
class Event:
    """A dated Condition (pregnancy evidence, the end of a pregnancy); ``when`` None if undated."""

    ref: str
    when: datetime | None


@dataclass(frozen=True)
class Fracture:
    """One vertebral compression fracture diagnosis (active, or healed when in ``prior_fractures``)."""

    ref: str
    kind: str  # osteoporotic | traumatic | unspecified | neoplastic (the value set that matched)
    onset: datetime | None
    onset_estimated: bool  # onset taken from recordedDate or a partial date
    levels: tuple[Span, ...] = ()  # the vertebrae it names; () when the codes name none
    non_healing: bool = False  # ICD-10-CM 7th character G (delayed healing) or K (nonunion)


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
    # healed fractures and late effects (7th character P, S): never a card, but count for the pathway
    prior_fractures: tuple[Fracture, ...] = ()
    # concept id (a value set of mappings/) -> references documenting it: active conditions,
    # active medication orders, allergies, positive pregnancy tests
    documented: Mapping[str, Refs] = field(default_factory=dict)
    # Readings and findings, oldest first, by kind. The decision reads only the newest one not
    # ``in_future`` and, for pain, the newest one a ``WORSENING_GAP`` before it; so only those
    # (and any newer) are validated and kept: older ones could never change the decision.
    readings: Mapping[str, tuple[Reading, ...]] = field(default_factory=dict)
    findings: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)
    # dated conditions by concept ("pregnancy", "pregnancy-end"), where the date decides
    events: Mapping[str, tuple[Event, ...]] = field(default_factory=dict)
    hospital_encounters: Refs = ()
    # data kinds that could not be had (optional prefetch failed): their criteria stay unknown
    unavailable: frozenset[str] = frozenset()
    # resources the decision read but did not use, with the reason (said on the card), in record order
    ignored: tuple[Ignored, ...] = ()

    def refs(self, *concepts: str) -> Refs:
        return tuple(r for c in concepts for r in self.documented.get(c, ()))
