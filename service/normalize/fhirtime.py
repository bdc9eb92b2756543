"""FHIR date/dateTime/instant strings to aware datetimes, tolerating partial dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

_FHIR_DATETIME = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def parse_fhir_datetime(value: Any, default_tz: tzinfo) -> tuple[datetime | None, bool]:
    """(moment, partial). A date or partial date (``2024``, ``2024-05``, ``2024-05-03``) is the start
    of that year, month or day at UTC (CLINICAL.md rules 2026.12); ``partial`` is true for the first two.

    A time without a zone (not valid FHIR, but sent) is read in ``default_tz`` (the caller's "now"
    zone). Anything that is not a FHIR date gives ``(None, False)``: unknown, never an exception.
    """
    if not isinstance(value, str):
        return None, False
    m = _FHIR_DATETIME.fullmatch(value.strip())
    if not m:
        return None, False
    tz = default_tz if m["H"] else UTC
    if m["tz"] == "Z":
        tz = UTC
    elif m["tz"]:
        sign = 1 if m["tz"][0] == "+" else -1
        hours, minutes = int(m["tz"][1:3]), int(m["tz"][4:6])
        if hours > 23 or minutes > 59:
            return None, False
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime(
            int(m["y"]),
            int(m["m"] or 1),
            int(m["d"] or 1),
            int(m["H"] or 0),
            int(m["M"] or 0),
            min(int(m["S"] or 0), 59),
            tzinfo=tz,
        )
    except ValueError:  # 2024-02-30, hour 25…
        return None, False
    return moment, m["d"] is None
