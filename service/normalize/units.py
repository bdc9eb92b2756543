"""Cell-count units as labs send them, read onto the decision's scale (platelets in 10⁹/L).

A platelet count comes per litre with a power of ten (UCUM ``10*9/L``, "10^9/L", "G/L", "Gpt/L"),
per microlitre with a multiplier (``10*3/uL``, "K/uL", "x10E3/uL", "thou/mm3", "lakh/cumm") or as
a bare per-microlitre count (``/uL``, "/µL", "/mcL", "/mm3", ``{cells}/uL``). 1 mm³ is 1 µL, and
10⁹/L is 10³/µL, so the reading is (count per litre) ÷ 10⁹ whatever the spelling.
"""

from __future__ import annotations

import re

# powers of ten: the volume in a unit's denominator in litres, and multipliers written as words
_LITRES = {"l": 0, "dl": -1, "ml": -3, "ul": -6, "nl": -9}
_WORDS = {"": 0, "k": 3, "thou": 3, "thousand": 3, "lakh": 5, "lakhs": 5, "giga": 9, "gpt": 9}
_SUPERSCRIPTS = {ord(c): str(digit) for digit, c in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")}
# "10*3", "10^9", "x10E3", "×10^3", "10**9", "10(3)", "10³" (read as "10^3")
_POWER = re.compile(r"[x×*]?10(?:\*\*|[*^e]|(?=\())\(?(?P<exp>\d{1,2})\)?")
_UNIT = re.compile(r"(?P<multiplier>.*?)/(?P<volume>ul|nl|ml|dl|l)")
_MAX_UNIT = 40  # a unit is short; a longer string is no unit


def per_litre_power(unit: str) -> int | None:
    """n such that a value of 1 in ``unit`` is 10ⁿ per litre; None when the unit is not a count per volume."""
    unit = unit.strip()
    if not unit or len(unit) > _MAX_UNIT:
        return None
    if unit.startswith("G/"):  # giga per litre (European labs); a lower-case g would be grams
        unit = "10^9" + unit[1:]
    unit = re.sub(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)", lambda p: "10^" + p[1], unit).translate(_SUPERSCRIPTS).lower()
    unit = re.sub(r"\{[^}]*\}|\bcells?\b|\s+", "", unit)  # UCUM annotations ({cells}) carry no quantity
    unit = unit.replace("µ", "u").replace("μ", "u").replace("mcl", "ul")
    unit = re.sub(r"(cu\.?mm|cmm|mm\^?3)$", "ul", unit)  # cubic millimetre = microlitre
    m = _UNIT.fullmatch(unit)
    if m is None:
        return None
    multiplier = m["multiplier"]
    power = _POWER.fullmatch(multiplier)
    if power:
        exponent = int(power["exp"])
    elif multiplier in _WORDS:
        exponent = _WORDS[multiplier]
    else:
        return None
    return exponent - _LITRES[m["volume"]]


def platelets_in_giga_per_litre(value: float, units: list[str]) -> float | None:
    """A platelet count in 10⁹/L from the first readable of ``units`` (the UCUM code, then the unit
    as printed); None when a unit is given and none is readable.

    Without any unit, a value over 1000 is read as a count per µL (÷ 1000). Per-µL counts run from
    thousands to hundreds of thousands, while in 10⁹/L even marked thrombocytosis rarely passes 1000.
    Between 1000 and a few thousand the two readings disagree most (1500 is either 1.5 or 1500 × 10⁹/L):
    there the per-µL reading is kept, as it errs towards the bleeding caution, not away from it.
    A value up to 1000 is read as 10⁹/L, the unit the decision uses.
    """
    given = [u for u in units if u.strip()]
    if not given:
        return value / 1000 if value > 1000 else value
    for unit in given:
        power = per_litre_power(unit)
        if power is not None:
            return value * 10.0 ** (power - 9)
    return None
