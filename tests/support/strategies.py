"""Hypothesis strategies: hostile FHIR records (seeds broken at the paths the normaliser reads) and Facts.

Values are what JSON can carry and more (NaN, inf, integers beyond 64 bits: a direct caller of
``normalize`` may pass them), partial and zoned dates, codes that do and do not map, unicode.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

from hypothesis import strategies as st

from service.decide.facts import UNREADABLE, VERTEBRAE, Event, Facts, Finding, Fracture, Ignored, Reading
from service.normalize.record import ALLERGY_CONCEPTS, CONDITION_CONCEPTS, VCF_KINDS

from .builders import FINDING, ICD10CM, LOINC, PATIENT_ID, SNOMED
from .records import CANARY, PATIENT, READ_PATHS, RXNORM, SEEDS, delete_at, replace_at

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # no lone surrogates: not JSON
FHIR_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "2024",
        "2026-05",
        "2026-06-01",
        "2026-06-14T10:00:00Z",
        "2026-06-14T10:00:00+14:00",
        "2026-06-14T10:00:00-12:00",
        "2026-06-15T23:59:59.999-04:00",
        "2036-01-01",
        "2024-02-30",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "final",
        "amended",
        "active",
        "resolved",
        "refuted",
        "in-progress",
        "IMP",
        "yes",
        "negative",
        "mm",
        "/uL",
        "Patient/p1",
        "Patient/other",
        "#med",
        CANARY,
        "<script>alert(1)</script>",
        "\u202e\u0000|",
        "🦴",
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 4, 5, 7, 8, 10, 13, 50, 1.5, 2.1, 1e9, 2**63, 10**400]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, FHIR_STRINGS)
KEYS = st.one_of(
    st.sampled_from(["coding", "code", "system", "display", "text", "value", "unit", "start", "end", "reference"]),
    TEXT,
)
CODINGS = st.sampled_from(
    [
        (ICD10CM, "M80.08XA"),
        (ICD10CM, "S22.050A"),
        (ICD10CM, "M84.58XA"),
        (ICD10CM, "C90.00"),
        (ICD10CM, "G95.20"),
        (ICD10CM, "M46.26"),
        (ICD10CM, "Z33.1"),
        (ICD10CM, "D68.51"),
        ("http://hl7.org/fhir/sid/icd-10", "M8008XA"),
        (SNOMED, "15724005"),
        (LOINC, "72514-3"),
        (LOINC, "38214-3"),
        (LOINC, "6301-6"),
        (FINDING, "point-tenderness"),
        (FINDING, "sins"),
        (RXNORM, "11289"),
        ("http://example.org/local", "X1"),
        ("", ""),
    ]
).map(lambda sc: {"system": sc[0], "code": sc[1]})


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(SCALARS, CODINGS),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
        max_leaves=6,
    )


@st.composite
def broken(draw: st.DrawFn, seed: dict[str, Any] | None = None, max_changes: int = 3) -> dict[str, Any]:
    """A seed resource with up to ``max_changes`` fields replaced by hostile values or deleted."""
    resource = seed if seed is not None else draw(st.sampled_from(SEEDS))
    paths = READ_PATHS[resource["resourceType"]]
    for _ in range(draw(st.integers(min_value=0, max_value=max_changes))):
        path = draw(st.sampled_from(paths))
        replace = draw(st.booleans())
        resource = replace_at(resource, path, draw(json_values())) if replace else delete_at(resource, path)
    return resource


def records(max_resources: int = 8) -> st.SearchStrategy[tuple[dict[str, Any], list[Any]]]:
    """(patient, resources): broken seeds, with now and then a broken Patient or a non-resource entry."""
    patients = st.one_of(st.just(PATIENT), broken(PATIENT, max_changes=1))
    entries = st.one_of(broken(), broken(), broken(), json_values())
    return st.tuples(patients, st.lists(entries, max_size=max_resources))


def irrelevant_resources() -> st.SearchStrategy[dict[str, Any]]:
    """Resources the decision must not read: other types, unmapped codes (other patients': ``foreign``)."""
    other_type = st.builds(
        lambda rt, body: {**body, "resourceType": rt},
        st.sampled_from(["Procedure", "DiagnosticReport", "Immunization", "Practitioner", "Nonexistent", ""]),
        st.dictionaries(KEYS, json_values(), max_size=4),
    )
    unmapped = st.builds(
        lambda seed, code: replace_at(seed, ("code",), {"coding": [{"system": "http://example.org/x", "code": code}]}),
        st.sampled_from([s for s in SEEDS if s["resourceType"] in ("Condition", "Observation")]),
        TEXT,
    )
    return st.one_of(other_type, unmapped)


# -- whose data (CLINICAL.md "Whose data") ----------------------------------------------------
# The request the references below are read against: context patient PATIENT_ID, this fhirServer,
# and prefetch.patient a Bundle holding the Patient under OWN_FULL_URL
OWN_SERVER = "https://fhir.example.org/R4/"
OWN_FULL_URL = "urn:uuid:0c6f1c57-3d2a-4b8e-a4f4-9e51d7c2a610"
OWN_REFERENCES = [
    f"Patient/{PATIENT_ID}",
    f"Patient/{PATIENT_ID}/_history/2",
    f"https://fhir.example.org/R4/Patient/{PATIENT_ID}",
    f"HTTPS://FHIR.Example.ORG/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org/R4/Patient/{PATIENT_ID}/_history/v-7.1",
    OWN_FULL_URL,
]
FOREIGN_REFERENCES = [
    # another patient, relative
    "Patient/x9",
    f"Patient/{PATIENT_ID}0",
    f"Patient/{PATIENT_ID.upper()}",
    f"patient/{PATIENT_ID}",
    f"Patient/{PATIENT_ID}/",
    f"Patient/{PATIENT_ID}/_history",
    f"Patient/{PATIENT_ID}/_history/",
    f"Patient/{PATIENT_ID}/_history/2/x",
    f"Patient/{PATIENT_ID}/_history/../../x9",
    f"Patient/{PATIENT_ID}?_format=json",
    f"Patient/{PATIENT_ID}#x",
    f" Patient/{PATIENT_ID}",
    f"/Patient/{PATIENT_ID}",
    f"Patient//{PATIENT_ID}",
    # not a patient, or not a reference
    f"Group/{PATIENT_ID}",
    "Group/ward-4b",
    f"Practitioner/{PATIENT_ID}",
    f"RelatedPerson/{PATIENT_ID}",
    PATIENT_ID,
    f"#{PATIENT_ID}",
    "",
    # absolute URLs that are not this patient on this fhirServer
    "https://fhir.example.org/R4/Patient/x9",
    f"https://other.example.net/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org/r4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org/Patient/{PATIENT_ID}",
    f"https://fhir.example.org/R4/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org/R4//Patient/{PATIENT_ID}",
    f"https://fhir.example.org/R4/x/../Patient/{PATIENT_ID}",
    f"http://fhir.example.org/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org:8443/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org.evil.example/R4/Patient/{PATIENT_ID}",
    f"https://user@fhir.example.org/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org\\@evil.example/R4/Patient/{PATIENT_ID}",
    f"https://evil.example/https://fhir.example.org/R4/Patient/{PATIENT_ID}",
    f"https://fhir.example.org/R4/Group/{PATIENT_ID}",
    f"https://fhir.example.org/R4/Patient/{PATIENT_ID}?x=1",
    # urn:uuid / full URLs other than the Patient's
    "urn:uuid:5b7a0a3e-9a55-4f1e-8d3c-2f0e6c1d9b42",
    OWN_FULL_URL + "0",
    OWN_FULL_URL.removeprefix("urn:uuid:"),
    "urn:uuid:",
    "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14",
]
_REFERENCE_FIELDS = {"AllergyIntolerance": "patient"}


def with_subject(resource: dict[str, Any], subject: Any) -> dict[str, Any]:
    """``resource`` with its patient field (``subject``; ``patient`` for AllergyIntolerance) set, or deleted."""
    field = _REFERENCE_FIELDS.get(resource["resourceType"], "subject")
    return replace_at(resource, (field,), subject) if subject is not None else delete_at(resource, (field,))


def foreign_subjects() -> st.SearchStrategy[Any]:
    """Patient fields that do not reference the context patient, in every shape (None: no field)."""
    own = st.sampled_from(OWN_REFERENCES)
    return st.one_of(
        st.sampled_from(FOREIGN_REFERENCES).map(lambda r: {"reference": r}),
        st.sampled_from(FOREIGN_REFERENCES).map(lambda r: {"reference": r, "display": PATIENT_ID, "type": "Patient"}),
        st.just({"identifier": {"system": "urn:oid:1.2.3", "value": PATIENT_ID}}),
        st.just({"display": f"Patient/{PATIENT_ID}"}),
        st.just({"type": "Patient"}),
        st.just({}),
        st.none(),
        own,  # a bare string is not a Reference
        own.map(lambda r: [{"reference": r}]),
        own.map(lambda r: {"reference": [r]}),
        st.just({"reference": None}),
        json_values().filter(lambda v: not (isinstance(v, dict) and v.get("reference") in OWN_REFERENCES)),
    )


def foreign_resources() -> st.SearchStrategy[dict[str, Any]]:
    """Seed resources (each would change the decision) made another patient's, or nobody's."""
    moved = st.builds(with_subject, st.sampled_from(SEEDS), foreign_subjects())
    # this patient named in the other type's field: Condition.patient, AllergyIntolerance.subject
    wrong_field = st.builds(
        lambda seed, ref: with_subject(
            {**seed, ("subject" if seed["resourceType"] == "AllergyIntolerance" else "patient"): {"reference": ref}},
            None,
        ),
        st.sampled_from(SEEDS),
        st.sampled_from(OWN_REFERENCES),
    )
    return st.one_of(moved, wrong_field)


def own_subjects() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(OWN_REFERENCES).map(lambda r: {"reference": r})


# -- Facts, for the rules alone ---------------------------------------------------------------
ZONES: st.SearchStrategy[tzinfo] = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
REFS = st.sampled_from(["Condition/c1", "Condition/c2", "Observation/o1", "Observation/o2", "Encounter/e1"])
CONCEPTS = st.sampled_from(sorted((CONDITION_CONCEPTS - set(VCF_KINDS)) | ALLERGY_CONCEPTS))
VALUES = st.one_of(
    st.sampled_from([0.0, 4.9, 5.0, 6.0, 7.0, 8.0, 9.0, 13.0, 30.0, 70.0]),  # around the thresholds
    st.floats(min_value=-5, max_value=110),
    st.floats(allow_nan=True, allow_infinity=True),
)


FINDINGS = ["point-tenderness", "marrow-edema", "height-loss", "kyphotic-deformity", "neurologic-deficit", "sins"]


def sometimes(strategy: st.SearchStrategy[Any], otherwise: Any, percent: int) -> st.SearchStrategy[Any]:
    """``strategy`` in about ``percent`` % of the examples, else ``otherwise``."""
    return st.integers(min_value=0, max_value=99).flatmap(lambda n: strategy if n < percent else st.just(otherwise))


def _oldest_first(items: list[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items, key=lambda x: x.when or datetime.min.replace(tzinfo=UTC)))


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    """Facts as normalize() makes them (aware times, oldest first), with any values at all."""
    now = draw(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=ZONES))
    recent = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))  # where the rules look
    moments = st.builds(
        lambda back, zone: (now - back).astimezone(zone),
        recent | st.timedeltas(min_value=timedelta(days=-5), max_value=timedelta(days=800)),
        ZONES,
    )
    ages = st.integers(min_value=0, max_value=400) | st.integers(min_value=-400, max_value=4000)
    days = st.none() | ages.map(lambda d: now - timedelta(days=d))
    vertebra = st.integers(min_value=0, max_value=len(VERTEBRAE) - 1)
    span = st.tuples(vertebra, st.integers(min_value=0, max_value=1)).map(
        lambda v: (v[0], min(v[0] + v[1], len(VERTEBRAE) - 1))
    )
    fracture = st.builds(
        Fracture,
        REFS,
        sometimes(st.sampled_from(["traumatic", "unspecified", "neoplastic"]), "osteoporotic", 25),
        days,
        st.booleans(),
        st.lists(span, max_size=2).map(lambda spans: tuple(sorted(set(spans)))),
        sometimes(st.just(True), False, 10),
    )
    event = st.builds(Event, REFS, st.none() | moments)
    reading = st.builds(Reading, REFS, moments, VALUES)
    finding = st.builds(Finding, REFS, st.none() | moments, st.none() | st.booleans(), st.none() | VALUES)
    readings = {
        name: draw(sometimes(st.lists(reading, min_size=1, max_size=3).map(_oldest_first), None, percent))
        for name, percent in (("pain", 70), ("inr", 40), ("platelets", 40), ("dxa-tscore", 30))
    }
    findings = {
        name: draw(sometimes(st.lists(finding, min_size=1, max_size=2).map(_oldest_first), None, percent))
        for name, percent in zip(FINDINGS, (50, 50, 25, 25, 10, 25), strict=True)
    }
    concepts = st.dictionaries(CONCEPTS, st.lists(REFS, min_size=1, max_size=2).map(tuple))
    return Facts(
        now=now,
        birth_date=draw(st.none() | st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1))),
        fractures=draw(sometimes(st.lists(fracture, min_size=1, max_size=4).map(tuple), (), 90)),
        prior_fractures=draw(sometimes(st.lists(fracture, min_size=1, max_size=2).map(tuple), (), 10)),
        events=draw(
            st.dictionaries(st.sampled_from(["pregnancy", "pregnancy-end"]), st.lists(event, max_size=2).map(tuple))
        ),
        documented=draw(sometimes(concepts, {}, 30)),
        readings={k: v for k, v in readings.items() if v is not None},
        findings={k: v for k, v in findings.items() if v is not None},
        hospital_encounters=tuple(draw(st.lists(REFS, max_size=2))),
        unavailable=draw(st.frozensets(st.sampled_from(["observations", "medications", "encounters", "allergies"]))),
        ignored=tuple(Ignored(UNREADABLE, text) for text in draw(st.lists(st.one_of(TEXT, FHIR_STRINGS), max_size=2))),
    )


__all__ = [
    "CANARY",
    "PATIENT_ID",
    "broken",
    "facts",
    "foreign_resources",
    "irrelevant_resources",
    "json_values",
    "own_subjects",
    "records",
    "with_subject",
]
