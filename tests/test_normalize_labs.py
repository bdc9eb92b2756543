"""Platelet counts in every unit labs send (CLINICAL.md: "platelets < 50 × 10⁹/L (777-3, 26515-7)"):
each expected value is the count converted by hand (1 µL = 1 mm³ = 10⁻⁶ L; 10⁹/L = 10³/µL)."""

from __future__ import annotations

from typing import Any

import pytest

from service.decide.facts import UNREADABLE, Facts
from service.normalize.record import normalize
from service.normalize.units import per_litre_power
from service.pipeline import Engine

from support.builders import LOINC, observation, patient
from support.clock import NOW


def platelets(engine: Engine, value: dict[str, Any], code: str = "777-3") -> Facts:
    o = observation("plt", LOINC, code, "2026-06-13", **value)
    return normalize(patient(), [o], terminology=engine.terminology, now=NOW)


def quantity(value: float, unit: str | None = None, ucum: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q["unit"] = unit
    if ucum is not None:
        q |= {"system": "http://unitsofmeasure.org", "code": ucum}
    return {"valueQuantity": q}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # per microlitre, however spelled: ÷ 1000
        (quantity(40000, "/mcL"), 40),
        (quantity(40000, "/uL"), 40),
        (quantity(40000, "/µL"), 40),  # micro sign U+00B5
        (quantity(40000, "/μL"), 40),  # Greek mu U+03BC
        (quantity(40000, "/mm3"), 40),
        (quantity(40000, "/mm³"), 40),
        (quantity(40000, "/cumm"), 40),
        (quantity(40000, "cells/uL"), 40),
        (quantity(40000, None, "{cells}/uL"), 40),
        (quantity(40000, "platelets", "/uL"), 40),  # the UCUM code is read when the printed unit is not
        # thousands per microlitre = 10⁹/L: as is
        (quantity(40, None, "10*3/uL"), 40),
        (quantity(40, "K/uL"), 40),
        (quantity(40, "x10E3/uL"), 40),
        (quantity(40, "x 10^3/µL"), 40),
        (quantity(40, "10³/µL"), 40),
        (quantity(40, "thou/mm3"), 40),
        (quantity(40, "K/mm3"), 40),
        (quantity(40, "10(3)/uL"), 40),
        # per litre with a power of ten
        (quantity(40, None, "10*9/L"), 40),
        (quantity(40, "10^9/L"), 40),
        (quantity(40, "x10⁹/L"), 40),
        (quantity(40, "G/L"), 40),  # giga per litre
        (quantity(40, "Gpt/L"), 40),
        (quantity(40, "/nL"), 40),  # 1/nL = 10⁹/L
        (quantity(4e8, "/dL"), 4),  # 4 × 10⁸ per 100 mL = 4 × 10⁹/L
        (quantity(0.4, "lakh/cumm"), 40),  # 0.4 × 10⁵ per mm³ = 40 000/µL
        # no unit at all: over 1000 is a per-µL count, else 10⁹/L
        (quantity(40000), 40),
        ({"valueInteger": 40000}, 40),
        (quantity(1001), 1.001),
        (quantity(1000), 1000),
        ({"valueInteger": 250}, 250),
    ],
)
def test_a_platelet_count_is_read_in_giga_per_litre(engine: Engine, value: dict[str, Any], expected: float) -> None:
    for code in ("777-3", "26515-7"):
        facts = platelets(engine, value, code)
        assert [r.value for r in facts.readings["platelets"]] == [pytest.approx(expected)]
        assert facts.ignored == ()


@pytest.mark.parametrize(
    "value",
    [
        quantity(40, "g/L"),  # grams per litre: not a count
        quantity(40, "%"),
        quantity(40, "mg/dL"),
        quantity(40, "103/uL"),  # "10³" with its superscript lost is no power
        quantity(40, "fL"),
        quantity(40, "platelets"),
        quantity(40, "/uL" * 30),  # too long to be a unit
        quantity(-40, "10*9/L"),
    ],
)
def test_an_unreadable_platelet_unit_is_named_not_guessed(engine: Engine, value: dict[str, Any]) -> None:
    facts = platelets(engine, value)
    assert "platelets" not in facts.readings
    assert [(i.reason, i.text.split(":")[0]) for i in facts.ignored] == [(UNREADABLE, "Observation/plt")]


def test_the_ignored_note_names_the_unit() -> None:
    facts = platelets(Engine.load(), quantity(40, "mg/dL"))
    assert "'mg/dL' is not a platelet-count unit" in facts.ignored[0].text


@pytest.mark.parametrize(
    ("unit", "power"), [("/uL", 6), ("10*3/uL", 9), ("10*9/L", 9), ("/L", 0), ("/dL", 1), ("/mL", 3), ("10*6/uL", 12)]
)
def test_units_as_powers_of_ten_per_litre(unit: str, power: int) -> None:
    assert per_litre_power(unit) == power
