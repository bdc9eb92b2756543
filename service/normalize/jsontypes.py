"""The JSON types FHIR requires of the fields the normaliser takes values from.

fhir.resources validates leniently: it accepts ``"7"`` for a decimal or an integer, ``"true"`` or ``1``
for a boolean, and ``2024`` for a dateTime. The normaliser reads values from the raw JSON, so such a
field would silently read as unknown. FHIR JSON allows none of them (R4 §2.6.2): here they are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Check = tuple[str, ...]

_STRING = "a string"
_NUMBER = "a number"
_INTEGER = "an integer"
_BOOLEAN = "true or false"

FIELDS: dict[str, tuple[tuple[Check, str], ...]] = {
    "Patient": ((("birthDate",), _STRING),),
    "Condition": (
        (("onsetDateTime",), _STRING),
        (("onsetPeriod", "start"), _STRING),
        (("abatementDateTime",), _STRING),
        (("recordedDate",), _STRING),
    ),
    "Observation": (
        (("effectiveDateTime",), _STRING),
        (("effectiveInstant",), _STRING),
        (("effectivePeriod", "start"), _STRING),
        (("effectivePeriod", "end"), _STRING),
        (("issued",), _STRING),
        (("valueQuantity", "value"), _NUMBER),
        (("valueInteger",), _INTEGER),
        (("valueBoolean",), _BOOLEAN),
    ),
}


def _has_type(value: Any, expected: str) -> bool:
    if expected == _STRING:
        return isinstance(value, str)
    if expected == _BOOLEAN:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if expected == _INTEGER else isinstance(value, (int, float))


def wrong_json_types(resource: Mapping[str, Any]) -> list[str]:
    """``"path: must be <type> in FHIR JSON"`` for each read field holding another JSON type."""
    problems = []
    for path, expected in FIELDS.get(str(resource.get("resourceType")), ()):
        value: Any = resource
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None and not _has_type(value, expected):
            problems.append(f"{'.'.join(path)}: must be {expected} in FHIR JSON")
    return problems
