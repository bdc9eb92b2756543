"""FHIR R4 resources → clinical ``Facts``, through the value sets of ``mappings/``.

Only resources the decision reads are validated (``validation``, which costs far more than parsing
them, and records carry thousands the decision ignores): of the Patient what the decision reads, conditions,
medications, allergies and encounters whose codes matter, and of the readings and findings only
the newest of each kind (see ``Facts.readings``). The values are then read from the raw JSON,
which validation has vouched for.

One module, over 350 lines, on purpose: one reader per resource type, sharing what "belongs to the
patient", "valid" and "newest" mean; each reader is short, and apart they would each redefine those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from ..decide.facts import Facts, Finding, Fracture, Reading, in_future
from ..decide.thresholds import WORSENING_GAP
from ..errors import InvalidResourceError
from ..observe.redact import safe_ref
from .fhirtime import parse_fhir_datetime
from .terminology import Terminology
from .validation import load_models as _load_models
from .validation import validate

VCF_KINDS = {
    "vcf-osteoporotic": "osteoporotic",
    "vcf-traumatic": "traumatic",
    "vcf-unspecified": "unspecified",
    "vcf-neoplastic": "neoplastic",
}
CONDITION_CONCEPTS = frozenset(VCF_KINDS) | {
    "osteoporosis",
    "kyphosis",
    "multiple-myeloma",
    "bone-metastasis",
    "vertebral-malignancy",
    "neoplastic-fracture",
    "cancer",
    "red-flag",
    "spinal-infection",
    "sepsis",
    "pregnancy",
    "bleeding-disorder",
    "anticoagulant",
    "osteoporosis-therapy",
}
MEDICATION_CONCEPTS = frozenset({"anticoagulant", "osteoporosis-therapy"})
ALLERGY_CONCEPTS = frozenset({"cement-allergy", "contrast-allergy"})
READING_CONCEPTS = frozenset({"pain-nrs", "pain-vas", "inr", "platelets", "dxa-tscore"})
FINDING_CONCEPTS = {
    "finding-point-tenderness": "point-tenderness",
    "finding-marrow-edema": "marrow-edema",
    "finding-height-loss": "height-loss",
    "finding-kyphotic-deformity": "kyphotic-deformity",
    "finding-neurologic-deficit": "neurologic-deficit",
    "finding-sins": "sins",
    "finding-rdq": "rdq",
}
OBSERVATION_CONCEPTS = READING_CONCEPTS | frozenset(FINDING_CONCEPTS) | {"hcg"}
# ICD-10-CM fracture codes whose 5th character names the vertebral level
LEVEL_CODED = "vertebral-level-coded"

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
_RESULT_STATUSES = frozenset({"final", "amended", "corrected"})  # _one_of checks the type first
_PAIN_GAP = timedelta(days=WORSENING_GAP.value)
_YES = {"yes", "y", "true", "present", "positive", "pos", "detected"}
_NO = {"no", "n", "false", "absent", "negative", "neg", "not detected"}


def normalize(
    patient: Mapping[str, Any],
    resources: Iterable[Any],
    *,
    terminology: Terminology,
    now: datetime,
    unavailable: Iterable[str] = (),
) -> Facts:
    """Derive the facts of one patient.

    ``resources`` may hold anything (the parts of the record the EHR sent); entries that are not
    FHIR resources, or belong to another patient, are skipped. Raises ``InvalidResourceError`` when
    the Patient, or a Condition the decision reads, is not valid FHIR R4.
    """
    validate(patient, "the Patient (prefetched or fetched)")
    patient_id = patient.get("id")
    reader = _Reader(terminology, now, patient_id if isinstance(patient_id, str) else None)
    for position, resource in enumerate(resources):
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None  # JSON lists are unhashable
        if handler:  # each handler asks ``belongs`` once the resource matters: most do not
            reader.position = position
            handler(reader, resource)
    reader.settle()
    birth, _ = parse_fhir_datetime(patient.get("birthDate"), now.tzinfo or UTC)
    return Facts(
        now=now,
        birth_date=birth.date() if birth else None,
        fractures=tuple(reader.fractures),
        documented={k: tuple(v) for k, v in reader.documented.items()},
        readings={k: tuple(sorted(v, key=_reading_order)) for k, v in reader.readings.items()},
        findings={k: tuple(sorted(v, key=_finding_order)) for k, v in reader.findings.items()},
        hospital_encounters=tuple(reader.encounters),
        unavailable=frozenset(unavailable),
        ignored=tuple(message for _, message in sorted(reader.ignored)),  # in record order
    )


def _one_of(value: Any, allowed: frozenset[str] | set[str]) -> bool:
    return isinstance(value, str) and value in allowed


# Oldest first. Readings taken at the same moment are ordered by reference, then value, so the one
# read as "latest" does not depend on the order the EHR listed them in.
def _reading_order(r: Reading) -> tuple[datetime, str, float]:
    return r.when, r.ref, r.value


def _finding_order(f: Finding) -> tuple[datetime, str, int, float]:
    present = {None: 0, False: 1, True: 2}[f.present]
    return f.when or datetime.min.replace(tzinfo=UTC), f.ref, present, -1e308 if f.value is None else f.value


def _items(value: Any) -> list[Any]:
    """A JSON array field as a list; anything else (a wrongly typed value) as no items."""
    return value if isinstance(value, list) else []


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {c["code"] for c in _items(concept.get("coding")) if isinstance(c, dict) and isinstance(c.get("code"), str)}


def _texts(concept: Any) -> list[Any]:
    if not isinstance(concept, dict):
        return []
    displays = [c.get("display") for c in _items(concept.get("coding")) if isinstance(c, dict)]
    return [concept.get("text"), *displays]


class _Candidate(NamedTuple):
    """An Observation that may become a reading or finding, once validated."""

    when: datetime
    position: int
    resource: dict[str, Any]
    concept: str


class _Reader:
    """Accumulates facts resource by resource; ``settle`` then picks the readings and findings."""

    def __init__(self, terminology: Terminology, now: datetime, patient_id: str | None):
        self.t = terminology
        self.now = now
        self.tz = now.tzinfo or UTC
        self.patient_id = patient_id
        self.own_ref = f"Patient/{patient_id}" if patient_id else None
        self.position = 0  # of the resource being read, in the record
        self.fractures: list[Fracture] = []
        self.documented: dict[str, list[str]] = defaultdict(list)
        self.readings: dict[str, list[Reading]] = defaultdict(list)
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        self.candidates: dict[str, list[_Candidate]] = defaultdict(list)  # by reading/finding kind
        self.encounters: list[str] = []
        self.ignored: list[tuple[int, str]] = []
        self.validity: dict[int, bool] = {}  # id(resource) -> valid, each validated at most once

    def belongs(self, resource: dict[str, Any]) -> bool:
        """False for a resource that names another patient (wrong-patient data is dropped)."""
        subject = resource.get("subject") or resource.get("patient")
        ref = subject.get("reference") if isinstance(subject, dict) else None
        if ref == self.own_ref:  # the usual case, decided by one comparison
            return True
        if self.patient_id and isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.removeprefix("Patient/").split("/")[0] == self.patient_id
        return True

    def ref(self, resource: dict[str, Any]) -> str:
        return safe_ref(resource)

    def valid(self, resource: dict[str, Any], position: int | None = None) -> bool:
        """Validate a resource the decision uses; an invalid one is ignored and said on the card."""
        known = self.validity.get(id(resource))
        if known is not None:
            return known
        try:
            validate(resource, self.ref(resource))
            ok = True
        except InvalidResourceError as e:
            self.ignored.append((self.position if position is None else position, e.diagnostics))
            ok = False
        self.validity[id(resource)] = ok
        return ok

    def moment(self, value: Any) -> tuple[datetime | None, bool]:
        return parse_fhir_datetime(value, self.tz)

    # -- Condition ---------------------------------------------------------------------------
    def condition(self, c: dict[str, Any]) -> None:
        concepts = self.t.concepts_of(c.get("code")) & CONDITION_CONCEPTS
        if not concepts or not self.belongs(c):
            return
        validate(c, self.ref(c))  # conditions decide whether there is a card at all: no skipping
        if not self._active(c):
            return
        ref = self.ref(c)
        for concept in concepts:
            self.documented[concept].append(ref)
        for vs_id, kind in VCF_KINDS.items():
            if vs_id in concepts:
                onset, estimated = self._onset(c)
                self.fractures.append(Fracture(ref, kind, onset, estimated, self._level(c)))
                break

    def _active(self, c: dict[str, Any]) -> bool:
        if _codes(c.get("verificationStatus")) & _EXCLUDED_VERIFICATION:
            return False
        clinical = _codes(c.get("clinicalStatus"))
        if clinical:
            return bool(clinical & _ACTIVE_CLINICAL)
        abated, _ = self.moment(c.get("abatementDateTime"))
        return abated is None or abated > self.now

    def _onset(self, c: dict[str, Any]) -> tuple[date | None, bool]:
        period = c.get("onsetPeriod")
        for value in (c.get("onsetDateTime"), period.get("start") if isinstance(period, dict) else None):
            moment, partial = self.moment(value)
            if moment:
                return moment.date(), partial
        moment, _ = self.moment(c.get("recordedDate"))
        return (moment.date(), True) if moment else (None, False)

    def _level(self, c: dict[str, Any]) -> str | None:
        for site in _items(c.get("bodySite")):
            codes = sorted(_codes(site))
            if codes:
                return "site:" + codes[0]
            if isinstance(site, dict) and isinstance(site.get("text"), str):
                return "site:" + str(site["text"]).strip().lower()
        code = c.get("code")
        for coding in _items(code.get("coding") if isinstance(code, dict) else None):
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                continue
            if LEVEL_CODED not in self.t.concepts_of_coding(coding.get("system"), coding["code"]):
                continue
            dotless = str(coding["code"]).upper().replace(".", "")
            # in these categories the 5th character names the level (0 = unspecified)
            if len(dotless) >= 5 and dotless[4] != "0":
                return "icd:" + dotless[:5]
        return None

    # -- Observation -------------------------------------------------------------------------
    def observation(self, o: dict[str, Any]) -> None:
        concepts = self.t.concepts_of(o.get("code"))
        if concepts:  # most of a record's observations (vitals, panels) have none: no set to build
            concepts &= OBSERVATION_CONCEPTS
        if not concepts or not _one_of(o.get("status"), _RESULT_STATUSES) or not self.belongs(o):
            return
        when = self._effective(o)
        if when is None:
            self.valid(o)  # undatable: unusable, and if it is also invalid FHIR the card says so
            return
        if o.get("dataAbsentReason"):
            return
        for concept in concepts:
            # hCG is kept as a finding: only the newest recent test counts (decide/rules.py)
            kind = FINDING_CONCEPTS.get(concept) or ("pain" if concept.startswith("pain-") else concept)
            self.candidates[kind].append(_Candidate(when, self.position, o, concept))

    def settle(self) -> None:
        """Validate, newest first, the readings and findings the decision can read; keep those.

        Per kind that is the newest valid one not ``in_future`` (and any newer ones), and for pain
        also the newest valid one ``WORSENING_GAP`` before it (``Facts.readings``). Older ones are
        never read by the decision, so are not worth validating.
        """
        for kind, candidates in self.candidates.items():
            # same-moment readings in reference order, so record order never changes the decision
            candidates.sort(key=lambda c: (c.when, self.ref(c.resource)))
            latest: datetime | None = None
            for c in reversed(candidates):
                if not (self.valid(c.resource, c.position) and self._keep(kind, c)):
                    continue
                if latest is None:
                    latest = None if in_future(c.when, self.now) else c.when
                    if latest is not None and kind != "pain":
                        break
                elif latest - c.when >= _PAIN_GAP:
                    break

    def _keep(self, kind: str, c: _Candidate) -> bool:
        """Add the reading or finding of a validated candidate; False when it has no usable value."""
        o, ref = c.resource, self.ref(c.resource)
        if c.concept in FINDING_CONCEPTS or c.concept == "hcg":
            finding = Finding(ref, c.when, present=self._present(o), value=_number(o))
            if finding.present is None and finding.value is None:
                return False
            self.findings[kind].append(finding)
            return True
        value = _scaled(c.concept, o)
        if value is None:
            return False
        self.readings[kind].append(Reading(ref, c.when, value))
        return True

    def _effective(self, o: dict[str, Any]) -> datetime | None:
        period = o.get("effectivePeriod")
        for value in (
            o.get("effectiveDateTime"),
            o.get("effectiveInstant"),
            period.get("end") if isinstance(period, dict) else None,
            period.get("start") if isinstance(period, dict) else None,
            o.get("issued"),
        ):
            moment, _ = self.moment(value)
            if moment:
                return moment
        return None

    def _present(self, o: dict[str, Any]) -> bool | None:
        if isinstance(o.get("valueBoolean"), bool):
            return bool(o["valueBoolean"])
        candidates = [o.get("valueCodeableConcept"), *_items(o.get("interpretation"))]
        for concept in candidates:
            found = self.t.concepts_of(concept)
            if "value-present" in found:
                return True
            if "value-absent" in found:
                return False
        text = o.get("valueString")
        if isinstance(o.get("valueCodeableConcept"), dict):
            text = text or o["valueCodeableConcept"].get("text")
        if isinstance(text, str):
            word = text.strip().lower()
            return True if word in _YES else False if word in _NO else None
        return None

    # -- orders, allergies, encounters --------------------------------------------------------
    def medication(self, m: dict[str, Any]) -> None:
        if m.get("status") != "active" or not self.belongs(m):
            return
        concept = m.get("medicationCodeableConcept")
        texts = _texts(concept)
        reference = m.get("medicationReference")
        if isinstance(reference, dict):
            texts.append(reference.get("display"))
            contained = self._contained(m, reference.get("reference"))
            if contained:
                concept = concept or contained.get("code")
                texts += _texts(contained.get("code"))
        found = (self.t.concepts_of(concept) | self.t.concepts_in_text(*texts)) & MEDICATION_CONCEPTS
        if found and self.valid(m):
            for c in found:
                self.documented[c].append(self.ref(m))

    @staticmethod
    def _contained(resource: dict[str, Any], reference: Any) -> dict[str, Any] | None:
        if not isinstance(reference, str) or not reference.startswith("#"):
            return None
        for item in _items(resource.get("contained")):
            if isinstance(item, dict) and item.get("id") == reference[1:]:
                return item
        return None

    def allergy(self, a: dict[str, Any]) -> None:
        if not self.belongs(a) or _codes(a.get("verificationStatus")) & _EXCLUDED_VERIFICATION:
            return
        clinical = _codes(a.get("clinicalStatus"))
        if clinical and "active" not in clinical:
            return
        texts = _texts(a.get("code"))
        for reaction in _items(a.get("reaction")):
            if isinstance(reaction, dict):
                texts += _texts(reaction.get("substance"))
        found = (self.t.concepts_of(a.get("code")) | self.t.concepts_in_text(*texts)) & ALLERGY_CONCEPTS
        if found and self.valid(a):
            for c in found:
                self.documented[c].append(self.ref(a))

    def encounter(self, e: dict[str, Any]) -> None:
        if e.get("status") != "in-progress" or not self.belongs(e):
            return
        klass = e.get("class")
        klass = klass if isinstance(klass, dict) and "coding" in klass else {"coding": [klass]}
        if "inpatient-encounter-class" in self.t.concepts_of(klass) and self.valid(e):
            self.encounters.append(self.ref(e))


def _number(o: dict[str, Any]) -> float | None:
    if isinstance(o.get("valueInteger"), int) and not isinstance(o["valueInteger"], bool):
        return float(o["valueInteger"])
    quantity = o.get("valueQuantity")
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or quantity.get("comparator"):
        return None  # a comparator ("<0.5") is not a value we can compare safely
    # compare before converting: float() of a huge JSON integer overflows
    return float(value) if abs(value) < 1e9 else None


def _scaled(concept: str, o: dict[str, Any]) -> float | None:
    """A reading on the decision's scale: pain 0–10, platelets 10^9/L; None when implausible."""
    value = _number(o)
    if value is None:
        return None
    unit = ""
    if isinstance(o.get("valueQuantity"), dict):
        unit = str(o["valueQuantity"].get("code") or o["valueQuantity"].get("unit") or "").lower()
    if concept == "pain-vas" and (unit == "mm" or value > 10):
        value /= 10  # VAS is 0–100 mm; the criteria are on the 0–10 scale
    if concept.startswith("pain-"):
        return value if 0 <= value <= 10 else None
    if concept == "platelets" and unit in ("/ul", "/mm3", "{cells}/ul", "/µl") and value > 1000:
        value /= 1000  # per µL → 10^9/L
    if concept in ("inr", "platelets") and value < 0:
        return None
    return value


_HANDLERS = {
    "Condition": _Reader.condition,
    "Observation": _Reader.observation,
    "MedicationRequest": _Reader.medication,
    "MedicationStatement": _Reader.medication,
    "AllergyIntolerance": _Reader.allergy,
    "Encounter": _Reader.encounter,
}


def load_models() -> None:
    """The R4B models of what normalize validates, imported at start-up."""
    _load_models(("Patient", *_HANDLERS))
