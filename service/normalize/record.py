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
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ..decide.facts import (
    ENTERED_IN_ERROR,
    IN_FUTURE,
    NOT_THIS_PATIENT,
    UNREADABLE,
    Event,
    Facts,
    Finding,
    Fracture,
    Ignored,
    Reading,
    Span,
    in_future,
)
from ..decide.levels import icd_span, refine, spans_in_text
from ..decide.thresholds import WORSENING_GAP
from ..errors import InvalidResourceError
from ..observe.redact import safe_ref
from .fhirtime import parse_fhir_datetime
from .pain import pain_score
from .terminology import ICD10_CM, Terminology
from .units import platelets_in_giga_per_litre
from .validation import load_models as _load_models
from .validation import validate
from .whose import PatientReferences

VCF_KINDS = {
    "vcf-osteoporotic": "osteoporotic",
    "vcf-traumatic": "traumatic",
    "vcf-unspecified": "unspecified",
    "vcf-neoplastic": "neoplastic",
}
# neoplastic-pathway diagnoses: they count whatever their clinicalStatus (remission included)
NEOPLASTIC_CONCEPTS = frozenset(
    {"neoplastic-fracture", "multiple-myeloma", "plasmacytoma", "bone-metastasis", "vertebral-malignancy"}
)
CONDITION_CONCEPTS = (
    frozenset(VCF_KINDS)
    | NEOPLASTIC_CONCEPTS
    | {
        "osteoporosis",
        "kyphosis",
        "cancer",
        "cancer-not-counted",
        "cancer-history",
        "pregnancy-end",
        "red-flag",
        "spinal-infection",
        "sepsis",
        "pregnancy",
        "bleeding-disorder",
        "anticoagulant",
        "osteoporosis-therapy",
    }
)
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
# ICD-10-CM categories whose 5th character names the vertebral level, by region
LEVEL_CODED = {"vertebral-level-coded-thoracic": "thoracic", "vertebral-level-coded-lumbar": "lumbar"}

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
# ICD-10-CM 7th characters: P malunion, S sequela = a healed fracture; G delayed healing, K nonunion
_HEALED = frozenset("PS")
_NON_HEALING = frozenset("GK")
_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
_RESULT_STATUSES = frozenset({"final", "amended", "corrected"})  # _one_of checks the type first
_PAIN_GAP = timedelta(days=WORSENING_GAP.value)
_PAIN_CONCEPTS = frozenset({"pain-nrs", "pain-vas"})
_YES = {"yes", "y", "true", "present", "positive", "pos", "detected"}
_NO = {"no", "n", "false", "absent", "negative", "neg", "not detected"}


def normalize(
    patient: Mapping[str, Any],
    resources: Iterable[Any],
    *,
    terminology: Terminology,
    now: datetime,
    unavailable: Iterable[str] = (),
    whose: PatientReferences | None = None,
) -> Facts:
    """Derive the facts of one patient.

    ``resources`` may hold anything (the parts of the record the EHR sent); entries that are not
    FHIR resources are skipped, and those that are not the patient's (``whose``: by default only
    ``Patient/{the Patient's id}`` names the patient) are skipped and counted in ``Facts.ignored``.
    Raises ``InvalidResourceError`` when the Patient, or a Condition the decision reads, is not valid
    FHIR R4.
    """
    validate(patient, "the Patient (prefetched or fetched)")
    whose = whose or PatientReferences.of(patient.get("id"))
    reader = _Reader(terminology, now)
    for position, resource in enumerate(resources):
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None  # JSON lists are unhashable
        if handler:
            if not whose.owns(resource):  # before anything else reads it: no field of it may count
                reader.ignore(NOT_THIS_PATIENT, "", position)  # counted, never named: it is someone else's
                continue
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
        prior_fractures=tuple(reader.prior_fractures),
        events={k: tuple(v) for k, v in reader.events.items()},
        unavailable=frozenset(unavailable),
        # record order; a resource named twice for the same reason is one item, two resources are two
        ignored=tuple(item for _, item in dict.fromkeys(sorted(reader.ignored, key=lambda x: x[0]))),
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
    holder: dict[str, Any]  # where the value is: the Observation, or its pain component


class _Reader:
    """Accumulates facts resource by resource; ``settle`` then picks the readings and findings."""

    def __init__(self, terminology: Terminology, now: datetime):
        self.t = terminology
        self.now = now
        self.tz = now.tzinfo or UTC
        self.position = 0  # of the resource being read, in the record
        self.fractures: list[Fracture] = []
        self.prior_fractures: list[Fracture] = []
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.documented: dict[str, list[str]] = defaultdict(list)
        self.readings: dict[str, list[Reading]] = defaultdict(list)
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        self.candidates: dict[str, list[_Candidate]] = defaultdict(list)  # by reading/finding kind
        self.encounters: list[str] = []
        self.ignored: list[tuple[int, Ignored]] = []
        self.validity: dict[int, bool] = {}  # id(resource) -> valid, each validated at most once

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
            self.ignore(UNREADABLE, e.diagnostics, position)
            ok = False
        self.validity[id(resource)] = ok
        return ok

    def ignore(self, reason: str, text: str, position: int | None = None) -> None:
        """Say on the card that a resource the decision read was not used, and why."""
        self.ignored.append((self.position if position is None else position, Ignored(reason, text)))

    def moment(self, value: Any) -> tuple[datetime | None, bool]:
        return parse_fhir_datetime(value, self.tz)

    def dated(self, resource: dict[str, Any], *values: Any) -> tuple[datetime | None, bool]:
        """The first of ``values`` that is a date not in the future; a future one is named, not used."""
        for value in values:
            moment, partial = self.moment(value)
            if moment is None:
                continue
            if in_future(moment, self.now):
                self.ignore(IN_FUTURE, f"{self.ref(resource)} is dated in the future")
                continue
            return moment, partial
        return None, False

    # -- Condition ---------------------------------------------------------------------------
    def condition(self, c: dict[str, Any]) -> None:
        concepts = self.t.concepts_of(c.get("code")) & CONDITION_CONCEPTS
        if not concepts:
            return
        ref = self.ref(c)
        validate(c, ref)  # conditions decide whether there is a card at all: no skipping
        verification = _codes(c.get("verificationStatus"))
        if "entered-in-error" in verification:
            self.ignore(ENTERED_IN_ERROR, f"{ref} was entered in error")
            return
        if verification & _EXCLUDED_VERIFICATION:
            return
        if concepts & NEOPLASTIC_CONCEPTS or "cancer-not-counted" in concepts:
            concepts -= {"cancer"}  # myeloma, metastasis…: the pathway; skin / in-situ: never counted
        for concept in concepts & (NEOPLASTIC_CONCEPTS | {"cancer-history"}):
            self.documented[concept].append(ref)  # whatever the clinicalStatus
        if "pregnancy-end" in concepts:  # delivered, miscarried, postpartum: whatever the status
            self.events["pregnancy-end"].append(Event(ref, self._onset(c)[0]))
        if not self._active(c):
            if "cancer" in concepts:  # inactive, resolved or in remission: a history of cancer
                self.documented["cancer-history"].append(ref)
            return
        for concept in concepts - NEOPLASTIC_CONCEPTS - {"cancer-history", "pregnancy-end", "pregnancy"}:
            self.documented[concept].append(ref)
        if "pregnancy" in concepts:
            self.events["pregnancy"].append(Event(ref, self._onset(c)[0]))
        for vs_id, kind in VCF_KINDS.items():
            if vs_id in concepts:
                self._fracture(c, ref, kind)
                break

    def _fracture(self, c: dict[str, Any], ref: str, kind: str) -> None:
        icd = self._icd_codes(c)
        seventh = {code[6] for code in icd if len(code) >= 7}
        onset, estimated = self._onset(c)
        fracture = Fracture(ref, kind, onset, estimated, self._levels(c, icd), bool(seventh & _NON_HEALING))
        # a healed fracture or its late effect is never an active VCF, but still a prior fracture
        (self.prior_fractures if seventh & _HEALED else self.fractures).append(fracture)

    def _icd_codes(self, c: dict[str, Any]) -> list[str]:
        """The dotless, upper-case ICD-10-CM codes of a Condition's code."""
        code = c.get("code")
        out = []
        for coding in _items(code.get("coding") if isinstance(code, dict) else None):
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                continue
            if self.t.canonical_system(str(coding.get("system", ""))) == ICD10_CM:
                out.append(str(coding["code"]).upper().replace(".", "").strip()[:16])
        return out

    def _active(self, c: dict[str, Any]) -> bool:
        if _codes(c.get("verificationStatus")) & _EXCLUDED_VERIFICATION:
            return False
        clinical = _codes(c.get("clinicalStatus"))
        if clinical:
            return bool(clinical & _ACTIVE_CLINICAL)
        abated, _ = self.moment(c.get("abatementDateTime"))
        return abated is None or abated > self.now

    def _onset(self, c: dict[str, Any]) -> tuple[datetime | None, bool]:
        """Onset from onsetDateTime, onsetPeriod.start, else recordedDate (then estimated)."""
        period = c.get("onsetPeriod")
        start = period.get("start") if isinstance(period, dict) else None
        moment, partial = self.dated(c, c.get("onsetDateTime"), start)
        if moment:
            return moment, partial
        moment, _ = self.dated(c, c.get("recordedDate"))
        return (moment, True) if moment else (None, False)

    def _levels(self, c: dict[str, Any], icd: list[str]) -> tuple[Span, ...]:
        """The vertebrae the fracture names: its code's level character, bodySite codes and text."""
        spans = [
            span
            for code in icd
            for vs_id in self.t.concepts_of_coding(ICD10_CM, code) & LEVEL_CODED.keys()
            if (span := icd_span(LEVEL_CODED[vs_id], code))
        ]
        for site in _items(c.get("bodySite")):
            if not isinstance(site, dict):
                continue
            texts = self.t.displays("vertebra", site) + [t for t in _texts(site) if isinstance(t, str)]
            spans += [span for text in texts for span in spans_in_text(text)]
        return refine(spans)

    # -- Observation -------------------------------------------------------------------------
    def observation(self, o: dict[str, Any]) -> None:
        concepts = self.t.concepts_of(o.get("code"))
        if concepts:  # most of a record's observations (vitals, panels) have none: no set to build
            concepts &= OBSERVATION_CONCEPTS
        components = self._pain_components(o)
        if not (concepts or components):
            return
        status = o.get("status")
        if status == "entered-in-error":
            self.ignore(ENTERED_IN_ERROR, f"{self.ref(o)} was entered in error")
            return
        if not _one_of(status, _RESULT_STATUSES):
            return
        when = self._effective(o)
        if when is None:
            if self.valid(o):  # undatable: unusable; if it is also invalid FHIR the card says that instead
                self.ignore(UNREADABLE, f"{self.ref(o)} has no date")
            return
        if o.get("dataAbsentReason"):
            return
        for concept in concepts:
            # hCG is kept as a finding: only the newest recent test counts (decide/rules.py)
            kind = FINDING_CONCEPTS.get(concept) or ("pain" if concept.startswith("pain-") else concept)
            self.candidates[kind].append(_Candidate(when, self.position, o, concept, o))
        for concept, component in components:
            self.candidates["pain"].append(_Candidate(when, self.position, o, concept, component))

    def _pain_components(self, o: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Components coded as a pain score (flowsheet rows sent inside another Observation)."""
        out = []
        for component in _items(o.get("component")):
            if not isinstance(component, dict) or component.get("dataAbsentReason"):
                continue
            for concept in sorted(self.t.concepts_of(component.get("code")) & _PAIN_CONCEPTS):
                out.append((concept, component))
                break
        return out

    def settle(self) -> None:
        """Validate, newest first, the readings and findings the decision can read; keep those.

        Per kind that is the newest valid one not ``in_future`` (and any newer ones), and for pain
        also the newest valid one ``WORSENING_GAP`` before it (``Facts.readings``). Older ones are
        never read by the decision, so are not worth validating. Newer ones that could not be
        used (in the future, invalid, no readable value) are named in the ignored note.
        """
        for kind, candidates in self.candidates.items():
            # same-moment readings in reference order, so record order never changes the decision
            candidates.sort(key=lambda c: (c.when, self.ref(c.resource)))
            latest: datetime | None = None
            for c in reversed(candidates):
                if in_future(c.when, self.now):
                    self.ignore(IN_FUTURE, f"{self.ref(c.resource)} is dated in the future", c.position)
                    continue
                if not self.valid(c.resource, c.position):
                    continue
                why = self._keep(kind, c)
                if why:
                    self.ignore(UNREADABLE, f"{self.ref(c.resource)}: {why}", c.position)
                    continue
                if latest is None:
                    latest = c.when
                    if kind != "pain":
                        break
                elif latest - c.when >= _PAIN_GAP:
                    break

    def _keep(self, kind: str, c: _Candidate) -> str:
        """Add the reading or finding of a validated candidate; else say why it has no usable value."""
        o, ref = c.resource, self.ref(c.resource)
        if c.concept in FINDING_CONCEPTS or c.concept == "hcg":
            finding = Finding(ref, c.when, present=self._present(o), value=_number(o))
            if finding.present is None and finding.value is None:
                return "the value is neither present/absent nor a number"
            self.findings[kind].append(finding)
            return ""
        if c.concept in _PAIN_CONCEPTS:
            value, why = pain_score(c.concept, c.holder, self.t)
        else:
            value, why = _scaled(c.concept, o)
        if value is None:
            return why
        self.readings[kind].append(Reading(ref, c.when, value))
        return ""

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
        status = m.get("status")
        if status not in ("active", "entered-in-error"):
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
        if found and status == "entered-in-error":
            self.ignore(ENTERED_IN_ERROR, f"{self.ref(m)} was entered in error")
        elif found and self.valid(m):
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
        verification = _codes(a.get("verificationStatus"))
        if "refuted" in verification:
            return
        clinical = _codes(a.get("clinicalStatus"))
        if clinical and "active" not in clinical and "entered-in-error" not in verification:
            return
        texts = _texts(a.get("code"))
        for reaction in _items(a.get("reaction")):
            if isinstance(reaction, dict):
                texts += _texts(reaction.get("substance"))
        found = (self.t.concepts_of(a.get("code")) | self.t.concepts_in_text(*texts)) & ALLERGY_CONCEPTS
        if found and "entered-in-error" in verification:
            self.ignore(ENTERED_IN_ERROR, f"{self.ref(a)} was entered in error")
        elif found and self.valid(a):
            for c in found:
                self.documented[c].append(self.ref(a))

    def encounter(self, e: dict[str, Any]) -> None:
        if e.get("status") != "in-progress":
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


def _scaled(concept: str, o: dict[str, Any]) -> tuple[float | None, str]:
    """A lab reading on the decision's scale (platelets 10^9/L), or None and why it is not one
    (pain: normalize/pain.py)."""
    value = _number(o)
    if value is None:
        return None, "the value is not a plausible number"
    if concept == "platelets":
        quantity = o.get("valueQuantity")
        given = [quantity.get("code"), quantity.get("unit")] if isinstance(quantity, dict) else []
        units = [u for u in given if isinstance(u, str) and u.strip()]
        scaled = platelets_in_giga_per_litre(value, units)
        if scaled is None:
            return None, f"the unit {units[0][:40]!r} is not a platelet-count unit"
        value = scaled
    if concept in ("inr", "platelets") and value < 0:
        return None, "the value is not a plausible number"
    return value, ""


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
