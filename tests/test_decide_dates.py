"""Dates the rules must not misread: an onset in the future is a wrong date, not an early fracture."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from service.decide import decide
from service.decide.facts import Facts, Fracture, Reading

from support.clock import NOW

TODAY = NOW  # onsets are moments; whole days are counted from them


def facts(*onsets: datetime | None, pain: float = 9, hospitalised: bool = True) -> Facts:
    return Facts(
        now=NOW,
        birth_date=date(1950, 3, 2),
        fractures=tuple(Fracture(f"Condition/c{i}", "osteoporotic", o, False) for i, o in enumerate(onsets)),
        readings={"pain": (Reading("Observation/o1", NOW - timedelta(days=1), pain),)},
        hospital_encounters=("Encounter/e1",) if hospitalised else (),
    )


@pytest.mark.parametrize("days_ahead", [2, 30, 3650])
def test_an_onset_in_the_future_is_unknown_not_an_early_fracture(days_ahead: int) -> None:
    a = decide(facts(TODAY + timedelta(days=days_ahead)))
    assert a is not None
    # before: a "-498 weeks" old fracture, hospitalised with NRS 9 → early augmentation (row 10)
    assert (a.row, a.recommendation, a.fracture_age_days) == (16, "conservative", None)
    assert "fracture_onset" in a.missing
    assert any("in the future" in n for n in a.notes)


def test_a_future_onset_does_not_hide_a_real_one() -> None:
    a = decide(facts(TODAY + timedelta(days=400), TODAY - timedelta(days=10)))
    assert a is not None and (a.row, a.fracture_age_days) == (10, 10)


@pytest.mark.parametrize(("days_ahead", "age"), [(0, 0), (1, 0)])
def test_today_and_tomorrow_are_within_the_time_zone_grace(days_ahead: int, age: int) -> None:
    a = decide(facts(TODAY + timedelta(days=days_ahead)))
    assert a is not None and (a.row, a.fracture_age_days) == (10, age)
    assert not any("in the future" in n for n in a.notes)


def test_fractures_of_the_same_date_give_the_same_answer_in_any_order() -> None:
    exact = Fracture("Condition/c1", "osteoporotic", TODAY - timedelta(days=30), False)
    estimated = Fracture("Condition/c2", "osteoporotic", TODAY - timedelta(days=30), True)
    answers = [
        decide(Facts(now=NOW, birth_date=date(1950, 3, 2), fractures=order))
        for order in [(exact, estimated), (estimated, exact)]
    ]
    assert answers[0] is not None and answers[1] is not None
    assert answers[0].notes == answers[1].notes == ()  # the exact onset wins: not "estimated"
