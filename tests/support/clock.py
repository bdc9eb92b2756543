"""The frozen clock and the fixed ids of the tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

# A non-UTC offset catches code that mixes naive and aware times or assumes UTC
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=timezone(timedelta(hours=-4)))


def counter_uuids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"
