"""Small builders for FHIR R4 test data (tests state only what matters to them)."""

from __future__ import annotations

from typing import Any

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
FINDING = "http://vcf-cds.org/fhir/CodeSystem/finding"
PATIENT_ID = "p1"


def patient(birth: str = "1950-03-02", pid: str = PATIENT_ID) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": birth}


def condition(cid: str, system: str, code: str, onset: str | None = "2026-04-01", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if onset:
        c["onsetDateTime"] = onset
    c.update(extra)
    return c


def observation(oid: str, system: str, code: str, when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": value.pop("status", "final"),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": when,
        **value,
    }


def pain(oid: str, score: float, when: str = "2026-06-12") -> dict[str, Any]:
    return observation(oid, LOINC, "72514-3", when, valueQuantity={"value": score, "unit": "{score}"})


def finding(oid: str, code: str, when: str = "2026-06-10", **value: Any) -> dict[str, Any]:
    return observation(oid, FINDING, code, when, **value)


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request(
    *resources: dict[str, Any], hook: str = "patient-view", pat: dict[str, Any] | None = None, **context: Any
) -> dict[str, Any]:
    by_key: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("conditions", "observations", "medications", "encounters", "allergies")
    }
    keys = {
        "Condition": "conditions",
        "Observation": "observations",
        "MedicationRequest": "medications",
        "Encounter": "encounters",
        "AllergyIntolerance": "allergies",
    }
    for r in resources:
        by_key[keys[r["resourceType"]]].append(r)
    return {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": PATIENT_ID, "userId": "Practitioner/example", **context},
        "prefetch": {"patient": pat or patient(), **{k: bundle(*v) for k, v in by_key.items()}},
    }


def vcf_extension(card: dict[str, Any]) -> dict[str, Any]:
    return card["extension"]["org.vcfcds"]  # type: ignore[no-any-return]
