"""Properties of FHIR → facts → decision over hostile records (hypothesis; reproducible: see conftest).

Never anything but InvalidResourceError; no value quoted in a message; unknown stays unknown;
irrelevant data changes nothing; the same record gives the same decision, in any order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from service.decide import Assessment, decide
from service.decide.facts import Facts
from service.errors import InvalidResourceError, ServiceError
from service.normalize.fhirtime import parse_fhir_datetime
from service.normalize.record import normalize
from service.pipeline import Engine
from service.render.cards import CardContext, cards_for

from support.builders import ICD10CM, bundle, condition, finding, pain, request
from support.cds_rules import card_problems
from support.clock import NOW, counter_uuids
from support.examples import examples
from support.records import CANARY, SEEDS, VCF, VCF_PERIOD, replace_at
from support.strategies import ZONES, broken, irrelevant_resources, json_values, records

ENGINE = Engine.load()  # hypothesis runs many examples per test: no function-scoped fixtures
PAIN_CODES = {"72514-3", "38208-5", "38214-3"}
PATIENT_ADULT = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-03-02"}


def facts_of(patient: dict[str, Any], resources: list[Any]) -> Facts:
    return normalize(patient, resources, terminology=ENGINE.terminology, now=NOW)


def cards(facts: Facts) -> list[dict[str, Any]]:
    return cards_for(decide(facts), CardContext("p1", "Practitioner/1", counter_uuids(), facts.ignored))


def decision(a: Assessment | None) -> Any:
    """What the clinician is told, without the order of evidence lists."""
    if a is None:
        return None
    return (
        a.row,
        a.recommendation,
        a.referral,
        a.indicator,
        a.pathway,
        a.procedure,
        sorted((c.id, c.status) for c in a.criteria),
        sorted(c.id for c in a.cautions),
        sorted(a.missing),
        a.fracture_age_days,
        a.pain,
    )


@examples(150)
@given(records())
def test_normalize_raises_only_invalid_resource_error_and_quotes_no_value(record: Any) -> None:
    patient, resources = record
    try:
        facts = facts_of(patient, resources)
    except InvalidResourceError as e:
        assert CANARY not in e.diagnostics
        return
    assert not any(CANARY in item.text for item in facts.ignored)
    for card in cards(facts):
        assert card_problems(card) == []
        assert CANARY not in card["detail"]


def _is_pain(resource: Any) -> bool:
    text = repr(resource)
    return any(code in text for code in PAIN_CODES)


@examples(100)
@given(st.sampled_from([VCF, VCF_PERIOD]), st.lists(broken().filter(lambda r: not _is_pain(r)), max_size=6))
def test_no_pain_data_is_unknown_pain_never_augmentation(vcf: dict[str, Any], others: list[Any]) -> None:
    try:
        facts = facts_of(PATIENT_ADULT, [vcf, *others])
    except InvalidResourceError:
        assume(False)
        return
    assert not facts.readings.get("pain")
    a = decide(facts)
    assert a is not None and a.recommendation != "augmentation" and a.pain is None
    chronic = a.pathway != "neoplastic" and a.fracture_age_days is not None and a.fracture_age_days > 364
    assert chronic or "pain_score" in a.missing  # a healed fracture has no pain criterion at all
    assert all(c.status == "unknown" for c in a.criteria if c.id.startswith("pain_nrs"))


@examples(150)
@given(
    st.lists(st.sampled_from(SEEDS), max_size=6),
    st.lists(irrelevant_resources(), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=6),
)
def test_irrelevant_resources_change_nothing(relevant: list[Any], irrelevant: list[Any], at: int) -> None:
    base = facts_of(PATIENT_ADULT, [VCF, *relevant])
    mixed = facts_of(PATIENT_ADULT, [*irrelevant[:at], VCF, *relevant[:at], *irrelevant[at:], *relevant[at:]])
    assert decision(decide(mixed)) == decision(decide(base))
    assert mixed.ignored == base.ignored


@examples(100)
@given(records(max_resources=6), st.randoms(use_true_random=False))
def test_the_decision_is_deterministic_and_independent_of_order(record: Any, random: Any) -> None:
    patient, resources = record
    try:
        first = facts_of(patient, [VCF, *resources])
    except InvalidResourceError:
        assume(False)
        return
    assert facts_of(patient, [VCF, *resources]) == first
    assert cards(first) == cards(first)
    shuffled = [VCF, *resources]
    random.shuffle(shuffled)
    assert decision(decide(facts_of(patient, shuffled))) == decision(decide(first))


SAME_TIMES = st.sampled_from(["2026-06-12", "2026-06-12T00:00:00-04:00", "2026-06-14T09:00:00Z"])


@examples(100)
@given(
    st.lists(
        st.builds(
            lambda n, code, when, value: replace_at(
                replace_at(pain(f"o{n}", 0, when=when), ("code", "coding", 0, "code"), code),
                ("valueQuantity", "value"),
                value,
            ),
            st.integers(min_value=0, max_value=99),
            st.sampled_from(["72514-3", "38208-5", "6301-6", "777-3"]),
            SAME_TIMES,
            st.sampled_from([0.9, 1.6, 3, 4, 5, 8, 9, 45]),
        ),
        min_size=2,
        max_size=5,
        unique_by=lambda o: o["id"],
    ),
    st.lists(
        st.builds(
            lambda n, code, when, present: finding(f"f{n}", code, when=when, valueBoolean=present),
            st.integers(min_value=0, max_value=99),
            st.sampled_from(["point-tenderness", "marrow-edema", "neurologic-deficit"]),
            SAME_TIMES,
            st.booleans(),
        ),
        max_size=4,
        unique_by=lambda o: o["id"],
    ),
    st.randoms(use_true_random=False),
)
def test_readings_taken_at_the_same_moment_decide_the_same_in_any_order(
    readings: list[Any], findings: list[Any], random: Any
) -> None:
    onsets = [condition("c1", ICD10CM, "M80.08XA", onset="2026-04-01"), VCF_PERIOD]
    record = [*onsets, *readings, *findings]
    first = decision(decide(facts_of(PATIENT_ADULT, record)))
    random.shuffle(record)
    assert decision(decide(facts_of(PATIENT_ADULT, record))) == first


@examples(100)
@given(st.one_of(json_values(), st.text()), ZONES)
def test_fhir_dates_parse_or_are_unknown(value: Any, zone: Any) -> None:
    moment, partial = parse_fhir_datetime(value, zone)
    assert moment is None or moment.tzinfo is not None
    assert not partial or moment is not None


ENVELOPE = ["hook", "hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch"]
CONTEXT = ["patientId", "userId", "encounterId"]
PREFETCH = ["patient", "conditions", "observations", "medications", "encounters", "allergies", "extra"]


@examples(120)
@given(
    st.dictionaries(st.sampled_from(ENVELOPE), json_values(), max_size=2),
    st.dictionaries(st.sampled_from(CONTEXT), json_values(), max_size=2),
    st.dictionaries(st.sampled_from(PREFETCH), json_values(), max_size=2),
)
def test_a_broken_envelope_is_a_service_error_never_another(
    envelope: dict[str, Any], context: dict[str, Any], prefetch: dict[str, Any]
) -> None:
    body = request(VCF)
    body["prefetch"]["observations"] = bundle(*SEEDS[6:12])
    body.update(envelope)
    if isinstance(body.get("context"), dict):
        body["context"] = {**body["context"], **context}
    if isinstance(body.get("prefetch"), dict):
        body["prefetch"] = {**body["prefetch"], **prefetch}
    try:
        result = ENGINE.evaluate("vcf-patient-view", body, now=NOW, new_uuid=counter_uuids())
    except ServiceError as e:
        assert 400 <= e.status < 500 and e.diagnostics
        assert CANARY not in e.diagnostics or CANARY in repr(envelope)  # only the envelope's own fields
        return
    for card in result.cards:
        assert card_problems(card) == []
