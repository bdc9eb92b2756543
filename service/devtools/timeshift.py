"""Move every FHIR date in a record by the same amount (the idea of the SMART team's ``timeshift``).

A golden fixture is true at its own ``now``. The card viewer calls the hook endpoint exactly as an
EHR does, so the service evaluates at its own clock; moving the record forward keeps the intervals the
rules look at (fracture age, pain recency, DXA age, patient age) as they were at ``now``.

The rules count elapsed whole days (floor) from each moment to ``now``, a date being the start of its
day at UTC (rules 2026.12). So a dateTime or instant moves by exactly ``clock - now`` (written in its
own UTC offset), and a date by the number of UTC calendar days between the two: both keep every
interval, to the floor of a day, as it was at ``now`` (the 21/42/364/365-day boundary fixtures).

Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

# A full FHIR date, or a dateTime/instant (time of day, optional fraction and offset). Partial dates
# ("1950", "2024-05") stay as written: too coarse for whole-day intervals, and a bare year is easily
# something else (a postcode, a street number)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"T(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?:Z|[+-]\d{2}:\d{2})?")
# Strings under these keys are identifiers or codes, never dates, even when they look like one
_NOT_DATES = frozenset({"id", "code", "system", "version", "value", "reference", "url", "display", "text", "div"})


def shift_dates(doc: Any, days: int, exact: timedelta | None = None) -> Any:
    """A copy of ``doc`` (any JSON value) with every full FHIR date moved ``days`` and every dateTime and
    instant moved ``exact`` (``days`` whole days when not given).

    Values that are not dates, partial dates, impossible dates (``2024-02-30``) and strings under
    identifier-like keys (``id``, ``code``, ``value``…) are left as they are.
    """
    by = timedelta(days=days) if exact is None else exact
    return _walk(doc, days, by, key="") if days or by else doc


def days_between(then: datetime, now: datetime) -> int:
    """UTC calendar days from ``then`` to ``now``: what a date (the start of its day at UTC) moves by."""
    return (now.astimezone(UTC).date() - then.astimezone(UTC).date()).days


def _walk(value: Any, days: int, by: timedelta, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, days, by, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, days, by, key) for v in value]
    if isinstance(value, str) and key not in _NOT_DATES:
        return _shift_text(value, days, by)
    return value


def _shift_text(text: str, days: int, by: timedelta) -> str:
    day = _DATE.match(text)
    rest = text[10:]
    if day is None or (rest and not _valid_time(rest)):
        return text
    try:
        if not rest or by == timedelta(days=days):  # whole days: the time of day stays as written
            return (date(int(day[1]), int(day[2]), int(day[3])) + timedelta(days=days)).isoformat() + rest
        moved = datetime.fromisoformat(text) + by
    except (ValueError, OverflowError):
        return text
    return _written_like(moved, text)


def _written_like(moment: datetime, original: str) -> str:
    """``moment`` with the precision and offset notation of ``original`` (its own UTC offset kept)."""
    clock = _TIME.fullmatch(original[10:])
    written = clock[1] if clock else ""
    digits = len(written.partition(".")[2])
    text = moment.strftime("%Y-%m-%dT%H:%M" + (":%S" if written.count(":") == 2 else ""))
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits].ljust(digits, "0")
    zone = original[10 + 1 + len(written) :]
    return text + ("Z" if zone == "Z" else moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:] if zone else "")


def _valid_time(rest: str) -> bool:
    m = _TIME.fullmatch(rest)
    if m is None:
        return False
    try:
        time.fromisoformat(m[1])
    except ValueError:  # 25:00 is not a time, so the string is not a dateTime
        return False
    return True
