"""Replay files (CDS Hooks requests, bare FHIR Bundles, golden fixtures) through the real app."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from flask import Flask

from ..normalize.fhirtime import parse_fhir_datetime
from .expect import Mismatch, mismatches

HOOK_SERVICES = {"patient-view": "vcf-patient-view", "order-select": "vcf-order-select", "order-sign": "vcf-order-sign"}
PREFETCH_KEYS = {
    "Condition": "conditions",
    "Observation": "observations",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
    "Encounter": "encounters",
    "AllergyIntolerance": "allergies",
}


@dataclass
class Outcome:
    path: Path
    status: int
    body: dict[str, Any]
    mismatches: list[Mismatch] = field(default_factory=list)
    checked: bool = False
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        return [m.text() for m in self.mismatches]


def expand(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*.json") if x.is_file())
        else:
            yield p


def wrap_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A bare Bundle (an EHR export) as a patient-view request with the record prefetched."""
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    resources = [e["resource"] for e in entries]
    patients = [e for e in entries if e["resource"].get("resourceType") == "Patient"]
    if not patients:
        raise ValueError("the Bundle holds no Patient")
    patient = patients[0]["resource"]
    # the Patient's entry keeps its fullUrl: the record's references to "urn:uuid:…" resolve against it
    prefetch: dict[str, Any] = {
        "patient": {"resourceType": "Bundle", "type": "collection", "entry": [_entry(patients[0])]}
    }
    for key in dict.fromkeys(PREFETCH_KEYS.values()):
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    for r in resources:
        target = PREFETCH_KEYS.get(r.get("resourceType", ""))
        if target:
            prefetch[target]["entry"].append({"resource": r})
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"vcf-cds:{patient.get('id')}")),
        "context": {"patientId": patient.get("id") or "unknown", "userId": "Practitioner/replay"},
        "prefetch": prefetch,
    }


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("fullUrl", "resource") if k in entry}


def classify(doc: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """(request, expected, now) of a file's content."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if "request" in doc or "bundle" in doc:
        request = doc["request"] if "request" in doc else wrap_bundle(doc["bundle"])
        return request, doc.get("expected"), doc.get("now")
    if doc.get("resourceType") == "Bundle":
        return wrap_bundle(doc), None, None
    if "hook" in doc:
        return doc, None, None
    raise ValueError("neither a CDS Hooks request, a FHIR Bundle nor a fixture")


def replay_file(app: Flask, path: Path, service: str | None, now: str | None) -> Outcome:
    import time

    doc = orjson.loads(path.read_bytes())
    request, expected, fixture_now = classify(doc)
    when = now or fixture_now
    if when:
        moment, _ = parse_fhir_datetime(when, datetime.now().astimezone().tzinfo)  # type: ignore[arg-type]
        if moment is None:
            raise ValueError(f"bad 'now' value {when!r}")
        app.config["CLOCK"] = lambda: moment
    else:
        app.config["CLOCK"] = lambda: datetime.now().astimezone()
    service_id: str = service or doc.get("service") or HOOK_SERVICES.get(str(request.get("hook")), "vcf-patient-view")
    started = time.perf_counter()
    response = app.test_client().post(f"/cds-services/{service_id}", json=request)
    outcome = Outcome(
        path, response.status_code, response.get_json(silent=True) or {}, seconds=time.perf_counter() - started
    )
    if expected is not None:
        outcome.checked = True
        want_status = expected.get("status", 200)
        if response.status_code != want_status:
            outcome.mismatches.append(Mismatch(None, "HTTP status", want_status, response.status_code))
        elif response.status_code == 200:
            outcome.mismatches = mismatches(outcome.body.get("cards", []), expected)
    return outcome
