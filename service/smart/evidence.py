"""Evidence references ("Observation/123") resolved to what a clinician reads: a date and a value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from ..normalize.fhirtime import parse_fhir_datetime
from .words import unit as display_unit

_DATE_FIELDS = ("effectiveDateTime", "onsetDateTime", "authoredOn", "recordedDate", "issued", "performedDateTime")
_PERIOD_FIELDS = ("effectivePeriod", "onsetPeriod", "performedPeriod", "period")


@dataclass(frozen=True)
class Evidence:
    ref: str
    when: str | None  # YYYY-MM-DD
    what: str  # the resource's name and value, or the reference when it is not in the record


def index(resources: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {
        f"{r['resourceType']}/{r['id']}": r
        for r in resources
        if isinstance(r.get("resourceType"), str) and isinstance(r.get("id"), str)
    }


def _text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return str(coding["display"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def when(resource: Mapping[str, Any]) -> str | None:
    candidates: list[Any] = [resource.get(f) for f in _DATE_FIELDS]
    candidates += [p.get("start") for f in _PERIOD_FIELDS if isinstance(p := resource.get(f), dict)]
    for candidate in candidates:
        parsed, _ = parse_fhir_datetime(candidate, UTC)
        if parsed is not None:
            return parsed.date().isoformat()
    return None


def value(resource: Mapping[str, Any]) -> str | None:
    q = resource.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        shown = display_unit(q.get("unit") or q.get("code"))
        return f"{q['value']:g} {shown}".strip()
    if isinstance(resource.get("valueBoolean"), bool):
        return "present" if resource["valueBoolean"] else "absent"
    for key in ("valueInteger", "valueString"):
        if isinstance(resource.get(key), int | str):
            return str(resource[key])
    return _text(resource.get("valueCodeableConcept"))


def describe(ref: str, resources: Mapping[str, Mapping[str, Any]]) -> Evidence:
    resource = resources.get(ref)
    if resource is None:
        return Evidence(ref, None, ref)
    name = _text(resource.get("code")) or _text(resource.get("medicationCodeableConcept")) or ref
    shown = value(resource)
    return Evidence(ref, when(resource), f"{name}: {shown}" if shown else name)
