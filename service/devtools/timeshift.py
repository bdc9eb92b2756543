"""Move every FHIR date in a record by the same amount (the idea of the SMART team's ``timeshift``).

A golden fixture is true at its own ``now``. The card viewer calls the hook endpoint exactly as an
EHR does, so the service evaluates at its own clock; moving the record forward keeps the intervals the
rules look at (fracture age, pain recency, DXA age, patient age) as they were at ``now``.

Every value moves by the same whole number of calendar days (the distance between the two dates) and
keeps its time of day and written UTC offset. Whole days, not the exact ``clock - now``: fracture age
is counted in calendar dates (each date as written), and an exact shift moves a written date by one
day more or less depending on the hour, which flips the 21/364/365-day boundary fixtures. The price:
an interval measured in hours (pain "within 30 days") is off by the difference in time of day, so a
reading less than a day from such a limit may land on the other side.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

# A full FHIR date, or a dateTime/instant (time of day, optional fraction and offset). Partial dates
# ("1950", "2024-05") stay as written: too coarse for whole-day intervals, and a bare year is easily
# something else (a postcode, a street number)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"T(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?:Z|[+-]\d{2}:\d{2})?")
# Strings under these keys are identifiers or codes, never dates, even when they look like one
_NOT_DATES = frozenset({"id", "code", "system", "version", "value", "reference", "url", "display", "text", "div"})


def shift_dates(doc: Any, days: int) -> Any:
    """A copy of ``doc`` (any JSON value) with every full FHIR date, dateTime and instant moved ``days``.

    Values that are not dates, partial dates, impossible dates (``2024-02-30``) and strings under
    identifier-like keys (``id``, ``code``, ``value``…) are left as they are.
    """
    return _walk(doc, days, key="") if days else doc


def days_between(then: datetime, now: datetime) -> int:
    """Calendar days from ``then``'s date to ``now``'s date, each in its own zone (the rules' reading)."""
    return (now.date() - then.date()).days


def _walk(value: Any, days: int, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, days, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, days, key) for v in value]
    if isinstance(value, str) and key not in _NOT_DATES:
        return _shift_text(value, days)
    return value


def _shift_text(text: str, days: int) -> str:
    day = _DATE.match(text)
    rest = text[10:]
    if day is None or (rest and not _valid_time(rest)):
        return text
    try:
        moved = date(int(day[1]), int(day[2]), int(day[3])) + timedelta(days=days)
    except (ValueError, OverflowError):
        return text
    return moved.isoformat() + rest  # time of day, precision and offset exactly as written


def _valid_time(rest: str) -> bool:
    m = _TIME.fullmatch(rest)
    if m is None:
        return False
    try:
        time.fromisoformat(m[1])
    except ValueError:  # 25:00 is not a time, so the string is not a dateTime
        return False
    return True
