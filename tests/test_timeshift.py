"""Moving a record's dates by whole calendar days (the viewer replays fixtures at today's clock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.devtools.timeshift import days_between, shift_dates


@pytest.mark.parametrize(
    ("value", "moved"),
    [
        ("2026-04-06", "2026-05-06"),
        ("2026-04-06T09:00:00-04:00", "2026-05-06T09:00:00-04:00"),
        ("2026-04-06T09:00Z", "2026-05-06T09:00Z"),
        ("2020-12-10T14:50:44.737+00:00", "2021-01-09T14:50:44.737+00:00"),
        ("2026-02-28T23:59:59", "2026-03-30T23:59:59"),
        ("2024", "2024"),  # partial dates stay (too coarse, and a bare year may be a postcode)
        ("2024-05", "2024-05"),
        ("2024-02-30", "2024-02-30"),  # not a date
        ("2024-01-01T25:00:00Z", "2024-01-01T25:00:00Z"),  # not a time
        ("2024-01-01 and more", "2024-01-01 and more"),
        ("9999-12-31", "9999-12-31"),  # would overflow: left as it is
        ("pain 7", "pain 7"),
    ],
)
def test_values_move_by_whole_days_keeping_time_and_offset(value: str, moved: str) -> None:
    assert shift_dates({"effectiveDateTime": value}, 30) == {"effectiveDateTime": moved}


def test_identifiers_and_codes_never_move() -> None:
    doc = {
        "id": "2026-01-01",
        "identifier": [{"value": "2026-01-01"}],
        "code": {"coding": [{"code": "2026-01-01", "display": "2026-01-01"}], "text": "2026-01-01"},
        "period": {"start": "2026-01-01", "end": "2026-01-02T10:00:00Z"},
        "component": [{"valueDateTime": "2026-01-03"}],
        "valueInteger": 2026,
    }
    moved = shift_dates(doc, -1)
    assert moved["id"] == moved["identifier"][0]["value"] == moved["code"]["text"] == "2026-01-01"
    assert moved["code"]["coding"][0] == {"code": "2026-01-01", "display": "2026-01-01"}
    assert moved["period"] == {"start": "2025-12-31", "end": "2026-01-01T10:00:00Z"}
    assert moved["component"] == [{"valueDateTime": "2026-01-02"}]
    assert moved["valueInteger"] == 2026
    assert doc["period"]["start"] == "2026-01-01"  # a copy: the input is unchanged
    assert shift_dates(doc, 0) is doc


def test_days_between_counts_utc_dates() -> None:
    # rules 2026.12: a date is the start of its day at UTC; then = 2026-06-15T14:00Z
    then = datetime(2026, 6, 15, 10, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert days_between(then, datetime(2026, 6, 16, 1, 0, tzinfo=timezone(timedelta(hours=9)))) == 0  # 16:00Z
    assert days_between(then, datetime(2026, 6, 15, 23, 0, tzinfo=timezone(timedelta(hours=-4)))) == 1  # 03:00Z


def test_an_exact_shift_moves_date_times_by_the_interval_in_their_own_offset() -> None:
    doc = {"a": "2026-04-06T09:00:00-04:00", "b": "2026-04-06T13:00:00Z", "c": "2026-04-06"}
    moved = shift_dates(doc, 2, timedelta(days=1, hours=20))
    assert moved == {"a": "2026-04-08T05:00:00-04:00", "b": "2026-04-08T09:00:00Z", "c": "2026-04-08"}
