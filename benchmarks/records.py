"""Benchmark request bodies: a VCF patient plus Synthea-shaped filler, with dates relative to ``now``.

Two sources of filler:
- ``realdata``: a Synthea patient of ``../shared/realdata`` (when that folder exists), its resources
  re-pointed at ``Patient/<id>`` the way an EHR's prefetch would be.
- ``generated``: Synthea v2.4-shaped wellness visits (Encounter, vital signs with a pain score,
  metabolic/CBC/lipid panels, the odd Condition and MedicationRequest), deterministic per seed.

Either way the filler is dated at least 400 days before ``now`` and the VCF core is recent, so
every request gets the same decision (augmentation) however much filler it carries: the service
does its real work, not a no-card shortcut.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
REALDATA = ROOT.parent / "shared" / "realdata"
# Twyla Moen: Synthea, osteoporosis (64859006) and a non-vertebral osteoporotic fracture, 304
# resources of the prefetched types: "a VCF patient plus ~300 unrelated resources"
REALISTIC_FILE = "smart-generated-sample-data/Twyla_Moen_a3f60302-e902-468f-a683-6373d24fc4fd.json"
REALISTIC_SIZE = 300

PREFETCH_KEYS = {
    "Condition": "conditions",
    "Observation": "observations",
    "MedicationRequest": "medications",
    "Encounter": "encounters",
    "AllergyIntolerance": "allergies",
}
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TAG = {"tag": [{"system": "https://smarthealthit.org/tags", "code": "synthea-5-2019"}]}

# (code, display, unit, typical value, spread) as Synthea writes them
VITALS = [
    ("8302-2", "Body Height", "cm", 164.0, 2.0),
    ("29463-7", "Body Weight", "kg", 71.0, 6.0),
    ("39156-5", "Body Mass Index", "kg/m2", 26.4, 2.0),
    ("8867-4", "Heart rate", "/min", 74.0, 9.0),
    ("9279-1", "Respiratory rate", "/min", 14.0, 2.0),
    ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}", 2.0, 1.5),
]
METABOLIC = [
    ("2339-0", "Glucose", "mg/dL", 92.0, 12.0),
    ("6299-2", "Urea Nitrogen", "mg/dL", 14.0, 4.0),
    ("38483-4", "Creatinine", "mg/dL", 1.0, 0.2),
    ("49765-1", "Calcium", "mg/dL", 9.6, 0.4),
    ("2947-0", "Sodium", "mmol/L", 140.0, 2.0),
    ("6298-4", "Potassium", "mmol/L", 4.3, 0.4),
    ("2069-3", "Chloride", "mmol/L", 104.0, 3.0),
    ("20565-8", "Carbon Dioxide", "mmol/L", 25.0, 2.0),
]
CBC = [
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7.0, 2.0),
    ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 4.7, 0.4),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.8, 1.0),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 41.0, 3.0),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 260.0, 50.0),
]
LIPIDS = [
    ("2093-3", "Total Cholesterol", "mg/dL", 190.0, 25.0),
    ("2571-8", "Triglycerides", "mg/dL", 130.0, 30.0),
    ("18262-6", "Low Density Lipoprotein Cholesterol", "mg/dL", 110.0, 20.0),
    ("2085-9", "High Density Lipoprotein Cholesterol", "mg/dL", 55.0, 10.0),
]
CONDITIONS = [
    ("38341003", "Hypertension"),
    ("15777000", "Prediabetes"),
    ("162864005", "Body mass index 30+ - obesity (finding)"),
    ("195662009", "Acute viral pharyngitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("444814009", "Viral sinusitis (disorder)"),
    ("55822004", "Hyperlipidemia"),
]
MEDICATIONS = [
    ("316049", "Hydrochlorothiazide 25 MG"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("849574", "Naproxen sodium 220 MG Oral Tablet"),
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
]


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class _Ids:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def __call__(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


def vcf_core(patient_id: str, now: datetime) -> list[dict[str, Any]]:
    """The decision-relevant part: osteoporotic VCF 70 days old, NRS 7 three days ago, point
    tenderness positive, recent normal labs → augmentation (CLINICAL.md row 14)."""
    subject = {"reference": f"Patient/{patient_id}"}

    def obs(oid: str, code: dict[str, Any], days_ago: int, category: str, **value: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": category,
                        }
                    ]
                }
            ],
            "code": code,
            "subject": subject,
            "effectiveDateTime": _stamp(now - timedelta(days=days_ago)),
            **value,
        }

    def loinc(code: str, display: str) -> dict[str, Any]:
        return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}

    pain = loinc("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")
    return [
        {
            "resourceType": "Condition",
            "id": "bench-vcf",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "verificationStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": "M80.08XA",
                        "display": "Age-related osteoporosis with current pathological fracture, vertebra(e)",
                    }
                ],
                "text": "Osteoporotic compression fracture of spine",
            },
            "subject": subject,
            "onsetDateTime": _stamp(now - timedelta(days=70)),
            "recordedDate": _stamp(now - timedelta(days=70)),
        },
        obs("bench-pain-1", pain, 20, "survey", valueQuantity={"value": 6, "unit": "{score}", "system": UCUM}),
        obs("bench-pain-2", pain, 3, "survey", valueQuantity={"value": 7, "unit": "{score}", "system": UCUM}),
        obs(
            "bench-tenderness",
            {"coding": [{"system": "http://vcf-cds.org/fhir/CodeSystem/finding", "code": "point-tenderness"}]},
            3,
            "exam",
            valueBoolean=True,
        ),
        obs(
            "bench-platelets",
            loinc("777-3", "Platelets [#/volume] in Blood by Automated count"),
            5,
            "laboratory",
            valueQuantity={"value": 240, "unit": "10*3/uL", "system": UCUM, "code": "10*3/uL"},
        ),
        obs(
            "bench-inr",
            loinc("6301-6", "INR in Platelet poor plasma by Coagulation assay"),
            5,
            "laboratory",
            valueQuantity={"value": 1.0, "unit": "{INR}", "system": UCUM, "code": "{INR}"},
        ),
    ]


def generated_patient(patient_id: str, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": TAG,
        "extension": [
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
        ],
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": patient_id}],
        "name": [{"use": "official", "family": "Moen", "given": ["Twyla"], "prefix": ["Mrs."]}],
        "telecom": [{"system": "phone", "value": "555-245-2285", "use": "home"}],
        "gender": "female",
        "birthDate": f"{now.year - 76}-03-02",
        "address": [{"line": ["770 Gleichner Way"], "city": "Mashpee", "state": "Massachusetts", "country": "US"}],
        "maritalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}],
            "text": "M",
        },
    }


def synthea_filler(patient_id: str, count: int, now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` Synthea-shaped resources, wellness visits going back from 400 days before ``now``."""
    rng = random.Random(seed)
    new_id = _Ids(rng)
    subject = {"reference": f"Patient/{patient_id}"}
    practitioner = {"reference": f"urn:uuid:{new_id()}"}
    organization = {"reference": f"urn:uuid:{new_id()}"}
    out: list[dict[str, Any]] = []
    visit = now - timedelta(days=400)
    while len(out) < count:
        visit -= timedelta(days=rng.randint(60, 200), minutes=rng.randint(0, 600))
        encounter_id = new_id()
        encounter_ref = {"reference": f"urn:uuid:{encounter_id}"}
        out.append(
            {
                "resourceType": "Encounter",
                "id": encounter_id,
                "meta": TAG,
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [
                    {
                        "coding": [
                            {"system": SNOMED, "code": "185349003", "display": "Encounter for check up (procedure)"}
                        ],
                        "text": "Encounter for check up (procedure)",
                    }
                ],
                "subject": subject,
                "participant": [{"individual": practitioner}],
                "period": {"start": _stamp(visit), "end": _stamp(visit + timedelta(minutes=15))},
                "serviceProvider": organization,
            }
        )
        panels = [VITALS, METABOLIC] + ([CBC] if rng.random() < 0.5 else []) + ([LIPIDS] if rng.random() < 0.3 else [])
        for panel in panels:
            category = "vital-signs" if panel is VITALS else "laboratory"
            for code, display, unit, typical, spread in panel:
                out.append(
                    {
                        "resourceType": "Observation",
                        "id": new_id(),
                        "meta": TAG,
                        "status": "final",
                        "category": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                        "code": category,
                                        "display": category,
                                    }
                                ]
                            }
                        ],
                        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
                        "subject": subject,
                        "encounter": encounter_ref,
                        "effectiveDateTime": _stamp(visit),
                        "issued": visit.isoformat(timespec="milliseconds"),
                        "valueQuantity": {
                            "value": max(0.0, rng.gauss(typical, spread)),
                            "unit": unit,
                            "system": UCUM,
                            "code": unit,
                        },
                    }
                )
        if rng.random() < 0.25:
            code, display = rng.choice(CONDITIONS)
            out.append(
                {
                    "resourceType": "Condition",
                    "id": new_id(),
                    "meta": TAG,
                    "clinicalStatus": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}
                        ]
                    },
                    "verificationStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                "code": "confirmed",
                            }
                        ]
                    },
                    "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
                    "subject": subject,
                    "encounter": encounter_ref,
                    "onsetDateTime": _stamp(visit),
                    "abatementDateTime": _stamp(visit + timedelta(days=14)),
                    "recordedDate": _stamp(visit),
                }
            )
        if rng.random() < 0.2:
            code, display = rng.choice(MEDICATIONS)
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": new_id(),
                    "meta": TAG,
                    "status": "stopped",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": code, "display": display}],
                        "text": display,
                    },
                    "subject": subject,
                    "encounter": encounter_ref,
                    "authoredOn": _stamp(visit),
                    "requester": practitioner,
                }
            )
    return out[:count]


def _repoint(value: Any, old: str, new: str) -> Any:
    """Replace the patient's ``urn:uuid:`` references by ``Patient/<id>`` (an EHR's prefetch shape)."""
    if isinstance(value, dict):
        if value.get("reference") == old:
            return {**value, "reference": new}
        return {k: _repoint(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_repoint(v, old, new) for v in value]
    return value


def realdata_record() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(Patient, prefetchable resources) of the realistic Synthea patient, or None without ../shared."""
    path = REALDATA / REALISTIC_FILE
    if not path.is_file():
        return None
    bundle = orjson.loads(path.read_bytes())
    resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    old, new = f"urn:uuid:{patient['id']}", f"Patient/{patient['id']}"
    filler = [_repoint(r, old, new) for r in resources if r["resourceType"] in PREFETCH_KEYS]
    return patient, filler


def request_body(patient: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A patient-view request with every prefetch key, resources sorted into their searchset Bundles."""
    bundles: dict[str, list[dict[str, Any]]] = {key: [] for key in PREFETCH_KEYS.values()}
    for r in resources:
        bundles[PREFETCH_KEYS[r["resourceType"]]].append(r)
    prefetch: dict[str, Any] = {"patient": patient}
    for key, items in bundles.items():
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(items),
            "entry": [
                {"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in items
            ],
        }
    return {
        "hook": "patient-view",
        "hookInstance": "5b4f2c1e-9d0a-4c6e-8f3b-2a7d9e1c0b55",
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"patientId": patient["id"], "userId": "Practitioner/bench"},
        "prefetch": prefetch,
    }


def realistic(now: datetime, use_realdata: bool = True) -> tuple[str, bytes, int]:
    """(source, body, resource count) of the realistic request: a VCF patient plus ~300 others."""
    real = realdata_record() if use_realdata else None
    if real:
        patient, filler = real
        source = f"realdata: {REALISTIC_FILE.split('/')[-1].split('_a3f')[0]} (Synthea)"
    else:
        patient = generated_patient("bench-patient", now)
        filler = synthea_filler(patient["id"], REALISTIC_SIZE, now)
        source = "generated (Synthea-shaped)"
    resources = vcf_core(patient["id"], now) + filler
    return source, orjson.dumps(request_body(patient, resources)), len(resources)


def synthetic(size: int, now: datetime) -> bytes:
    """A record of exactly ``size`` resources besides the Patient (the VCF core included)."""
    patient = generated_patient("bench-patient", now)
    core = vcf_core(patient["id"], now)
    resources = core + synthea_filler(patient["id"], max(0, size - len(core)), now)
    return orjson.dumps(request_body(patient, resources[:size]))
