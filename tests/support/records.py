"""Valid seed resources that reach every branch of the normaliser, and the paths it reads.

Hostile-input tests start from these and break one field at a time (tables) or several at random
(hypothesis): a wrong type, a partial date, a huge number, unicode, a missing code.
"""

from __future__ import annotations

import copy
from typing import Any

from .builders import FINDING, ICD10CM, LOINC, PATIENT_ID, SNOMED, condition, finding, observation, pain, patient

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SUBJECT = {"reference": f"Patient/{PATIENT_ID}"}
# a record value that must never appear in an error message (stands for PHI)
CANARY = "SECRET-PHI-7f3a"

Path = tuple[str | int, ...]


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


VCF = condition(
    "c-vcf",
    ICD10CM,
    "S22.050A",
    clinicalStatus=_status(CLINICAL, "active"),
    verificationStatus=_status(VERIFICATION, "confirmed"),
    bodySite=[{"coding": [{"system": SNOMED, "code": "122496007"}], "text": "T7"}],
    recordedDate="2026-04-02",
)
VCF_PERIOD = condition(
    "c-vcf2",
    ICD10CM,
    "M80.08XA",
    onset=None,
    onsetPeriod={"start": "2026-05", "end": "2026-06-01"},
    abatementDateTime="2027-01-01T00:00:00+14:00",
)
CONDITIONS = [
    VCF,
    VCF_PERIOD,
    condition("c-op", ICD10CM, "M81.0"),
    condition("c-ca", ICD10CM, "C50.911"),
    condition("c-rf", ICD10CM, "G95.20"),
    condition("c-preg", ICD10CM, "Z33.1"),
]
OBSERVATIONS = [
    pain("o-nrs", 7, when="2026-06-12T08:30:00-04:00"),
    pain("o-nrs-old", 5, when="2026-06-01"),
    observation("o-vas", LOINC, "38214-3", "2026-06-13", valueQuantity={"value": 65, "unit": "mm", "code": "mm"}),
    observation("o-int", LOINC, "38208-5", "2026-06", valueInteger=6),
    finding("o-tender", "point-tenderness", valueBoolean=True),
    finding("o-edema", "marrow-edema", valueCodeableConcept={"coding": [{"system": SNOMED, "code": "52101004"}]}),
    finding("o-height", "height-loss", valueQuantity={"value": 30, "unit": "%"}),
    finding("o-kyph", "kyphotic-deformity", valueString="yes"),
    finding(
        "o-deficit",
        "neurologic-deficit",
        valueString="absent",
        interpretation=[{"coding": [{"system": INTERPRETATION, "code": "NEG"}]}],
    ),
    finding("o-sins", "sins", valueInteger=9),
    observation("o-inr", LOINC, "6301-6", "2026-06-10T07:00:00Z", valueQuantity={"value": 2.1}),
    observation("o-plt", LOINC, "777-3", "2026-06-10", valueQuantity={"value": 40000, "unit": "/uL"}),
    observation("o-dxa", LOINC, "38267-1", "2025-01-05", valueQuantity={"value": -2.7}),
    observation("o-hcg", LOINC, "2106-3", "2026-06-01", valueCodeableConcept={"text": "positive"}),
    {
        "resourceType": "Observation",
        "id": "o-period",
        "status": "amended",
        "subject": SUBJECT,
        "code": {"coding": [{"system": FINDING, "code": "point-tenderness"}]},
        "effectivePeriod": {"start": "2026-06-01T10:00:00+05:30", "end": "2026-06-02"},
        "issued": "2026-06-02T11:00:00.123Z",
        "valueBoolean": False,
    },
]
MEDICATIONS = [
    {
        "resourceType": "MedicationRequest",
        "id": "m-warfarin",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "11289", "display": "warfarin"}]},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m-contained",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "contained": [{"resourceType": "Medication", "id": "med", "code": {"text": "alendronate 70 mg"}}],
        "medicationReference": {"reference": "#med", "display": "alendronate"},
    },
    {
        "resourceType": "MedicationStatement",
        "id": "m-statement",
        "status": "active",
        "subject": SUBJECT,
        "medicationCodeableConcept": {"text": "apixaban 5 mg"},
    },
]
ALLERGIES = [
    {
        "resourceType": "AllergyIntolerance",
        "id": "a-contrast",
        "patient": SUBJECT,
        "clinicalStatus": _status("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
        "code": {"text": "iodinated contrast"},
        "reaction": [{"substance": {"text": "PMMA bone cement"}, "manifestation": [{"text": "rash"}]}],
    }
]
ENCOUNTERS = [
    {
        "resourceType": "Encounter",
        "id": "e-imp",
        "status": "in-progress",
        "subject": SUBJECT,
        "class": {"system": ACT_CODE, "code": "IMP"},
    }
]
SEEDS: list[dict[str, Any]] = CONDITIONS + OBSERVATIONS + MEDICATIONS + ALLERGIES + ENCOUNTERS
PATIENT = patient()

# Every field the normaliser reads, per resource type (choice types and nested paths included)
_CODE: list[Path] = [("code",), ("code", "coding"), ("code", "coding", 0), ("code", "coding", 0, "code")]
_CODE += [("code", "coding", 0, "system"), ("code", "coding", 0, "display"), ("code", "text")]
_COMMON: list[Path] = [("resourceType",), ("id",), ("subject",), ("subject", "reference"), ("patient",)]
READ_PATHS: dict[str, list[Path]] = {
    "Patient": [("resourceType",), ("id",), ("birthDate",)],
    "Condition": _COMMON
    + _CODE
    + [
        ("contained",),
        ("clinicalStatus",),
        ("clinicalStatus", "coding"),
        ("clinicalStatus", "coding", 0, "code"),
        ("verificationStatus",),
        ("verificationStatus", "coding"),
        ("abatementDateTime",),
        ("onsetDateTime",),
        ("onsetPeriod",),
        ("onsetPeriod", "start"),
        ("recordedDate",),
        ("bodySite",),
        ("bodySite", 0),
        ("bodySite", 0, "coding"),
        ("bodySite", 0, "text"),
    ],
    "Observation": _COMMON
    + _CODE
    + [
        ("status",),
        ("effectiveDateTime",),
        ("effectiveInstant",),
        ("effectivePeriod",),
        ("effectivePeriod", "start"),
        ("effectivePeriod", "end"),
        ("issued",),
        ("dataAbsentReason",),
        ("valueBoolean",),
        ("valueCodeableConcept",),
        ("valueCodeableConcept", "coding"),
        ("valueCodeableConcept", "text"),
        ("interpretation",),
        ("interpretation", 0),
        ("valueString",),
        ("valueInteger",),
        ("valueQuantity",),
        ("valueQuantity", "value"),
        ("valueQuantity", "comparator"),
        ("valueQuantity", "unit"),
        ("valueQuantity", "code"),
    ],
    "MedicationRequest": _COMMON
    + [
        ("status",),
        ("medicationCodeableConcept",),
        ("medicationCodeableConcept", "coding"),
        ("medicationCodeableConcept", "coding", 0, "code"),
        ("medicationCodeableConcept", "text"),
        ("medicationReference",),
        ("medicationReference", "reference"),
        ("medicationReference", "display"),
        ("contained",),
        ("contained", 0),
        ("contained", 0, "id"),
        ("contained", 0, "code"),
        ("contained", 0, "resourceType"),
    ],
    "AllergyIntolerance": _COMMON
    + _CODE
    + [
        ("clinicalStatus",),
        ("clinicalStatus", "coding"),
        ("verificationStatus",),
        ("verificationStatus", "coding"),
        ("reaction",),
        ("reaction", 0),
        ("reaction", 0, "substance"),
        ("reaction", 0, "substance", "coding"),
    ],
    "Encounter": _COMMON + [("status",), ("class",), ("class", "code"), ("class", "system"), ("class", "coding")],
}
READ_PATHS["MedicationStatement"] = READ_PATHS["MedicationRequest"]

# Values of the wrong JSON type, or of the right type with hostile content
WRONG_VALUES: list[Any] = [
    None,
    True,
    0,
    10**400,
    1.5,
    -1e308,
    "",
    "2024-05",
    "2024-02-30",
    "2024-05-01T10:00:00+14:00",
    "\u202e\u0000<script>",
    CANARY,
    [],
    [None, CANARY],
    {},
    {"coding": {"code": CANARY}},
    {"resourceType": CANARY},
    [{"resourceType": "Nonexistent", "id": "x"}],
]


def replace_at(resource: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy with ``value`` at ``path``; a missing or wrongly typed parent takes the value instead."""
    out = copy.deepcopy(resource)
    parent: Any = out
    for key in path[:-1]:
        into_dict = isinstance(parent, dict) and isinstance(key, str) and isinstance(parent.get(key), (dict, list))
        into_list = isinstance(parent, list) and isinstance(key, int) and key < len(parent)
        if not (into_dict or into_list):
            break
        parent = parent[key]
    else:
        key = path[-1]
    if isinstance(parent, dict):
        parent[str(key)] = value
    elif isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        parent[key] = value
    elif isinstance(parent, list):
        parent.append(value)
    return out


def delete_at(resource: dict[str, Any], path: Path) -> dict[str, Any]:
    """A copy without the field at ``path`` (unchanged when there is none)."""
    out = copy.deepcopy(resource)
    parent: Any = out
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return out
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
        del parent[path[-1]]
    return out
