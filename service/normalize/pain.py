"""A pain score on the 0–10 scale from any shape an EHR sends it in (rules 2026.12).

``valueQuantity``, ``valueInteger``, ``valueString`` ("8", "8/10", "8 - severe", "8 (severe)"), a coded answer of
LOINC list LL2335-9 (the ``pain-answer`` value set) or the same inside a ``component``. A value that
is not clearly a score is not a reading: the caller names it in the ignored note, never guesses.
"""

from __future__ import annotations

import re
from typing import Any

from .terminology import Terminology

# An integer, then nothing, "/10", or a space or hyphen and words (no digits: "6-8" is a range).
# A hyphen may be typed as an en or em dash ("8 – severe", "8–severe"), and the words after a space
# may open with a bracket ("8 (severe)"); "6–8" and "6 – 8" are still ranges, "8(severe)" (neither
# a space nor a hyphen) is no reading.
_SCORE_TEXT = re.compile(r"(?P<n>[0-9]{1,2})(?:\s*/\s*10)?(?:(?:\s*[-‐‑–—]\s*|\s+[(\[]?\s*)(?=[^\W\d_])[^0-9]*)?")
_MM = frozenset({"mm", "millimeter", "millimeters", "millimetre", "millimetres"})
_CM = frozenset({"cm", "centimeter", "centimeters", "centimetre", "centimetres"})

Score = tuple[float | None, str]  # (value on 0–10, or None and why it is not a reading)


def score_text(text: str) -> int | None:
    """The 0–10 score a string states, or None ("4/5", "6-8", "7.5", "severe" are not scores)."""
    m = _SCORE_TEXT.fullmatch(text.strip())
    if not m:
        return None
    value = int(m["n"])
    return value if 0 <= value <= 10 else None


def _vas_unit(quantity: dict[str, Any]) -> str | None:
    """'mm', 'cm', '' when no unit is given (or only an annotation such as {score}); None when another."""
    for key in ("code", "unit"):
        unit = quantity.get(key)
        if isinstance(unit, str) and unit.strip():
            word = unit.strip().lower()
            if word in _MM:
                return "mm"
            if word in _CM:
                return "cm"
            if not (word.startswith("{") and word.endswith("}")) and word not in ("1", "score"):
                return None
    return ""


def _number(holder: dict[str, Any]) -> tuple[float | None, dict[str, Any] | None]:
    integer = holder.get("valueInteger")
    if isinstance(integer, int) and not isinstance(integer, bool):
        return (float(integer) if abs(integer) < 1e9 else None), None
    quantity = holder.get("valueQuantity")
    if not isinstance(quantity, dict):
        return None, None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or quantity.get("comparator"):
        return None, quantity  # a comparator ("<5") is not a score we can compare
    # compare before converting: float() of a huge JSON integer overflows
    return (float(value) if abs(value) < 1e9 and value == value else None), quantity


def pain_score(concept: str, holder: dict[str, Any], terminology: Terminology) -> Score:
    """The reading of an Observation or component (``holder``) coded ``code`` as ``concept``.

    ``concept`` is ``pain-nrs`` (0–10) or ``pain-vas`` (rescaled by its unit: mm ÷ 10, cm as is;
    no unit: > 10 is mm, ≤ 10 is cm).
    """
    if isinstance(holder.get("valueString"), str):
        stated = score_text(holder["valueString"])
        return (None, "the pain text is not a 0–10 score") if stated is None else (float(stated), "")
    if "valueCodeableConcept" in holder:
        answer = terminology.score("pain-answer", holder["valueCodeableConcept"])
        if concept == "pain-nrs" and answer is not None:
            return answer, ""
        return None, "the coded pain value is not an answer of the 0–10 scale (LOINC LL2335-9)"
    value, quantity = _number(holder)
    if value is None:
        return None, "the pain value is not a number"
    if concept == "pain-vas":
        unit = _vas_unit(quantity) if quantity is not None else ""
        if unit is None:
            return None, "the visual analog score has a unit other than mm or cm"
        if unit == "mm" or (unit == "" and value > 10):
            value /= 10
    if not 0 <= value <= 10:
        return None, "the pain score is outside 0–10"
    return value, ""
