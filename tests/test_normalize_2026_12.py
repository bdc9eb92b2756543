"""normalize under the rules-2026.12 definitions (CLINICAL.md "Precise definitions"): each expected
value below is read off the definition, not off the code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.decide.facts import ENTERED_IN_ERROR, IN_FUTURE, UNREADABLE, Facts
from service.decide.levels import count_levels
from service.normalize.record import normalize
from service.pipeline import Engine

from support.builders import ICD10CM, LOINC, SNOMED, condition, observation, patient
from support.clock import NOW

HTTPS_LOINC = "https://loinc.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def facts_of(engine: Engine, *resources: dict[str, Any]) -> Facts:
    return normalize(patient(), list(resources), terminology=engine.terminology, now=NOW)


def status(code: str) -> dict[str, Any]:
    return {"coding": [{"system": CLINICAL, "code": code}]}


def answer(code: str, system: str = LOINC) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


# -- pain in other shapes ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "value", "score"),
    [
        ("72514-3", {"valueString": "8"}, 8),
        ("72514-3", {"valueString": "8/10"}, 8),
        ("72514-3", {"valueString": "8 - severe"}, 8),
        ("38208-5", {"valueString": " 0 "}, 0),
        ("38208-5", {"valueString": "10/10"}, 10),
        ("72514-3", {"valueString": "4/5"}, None),  # another denominator
        ("72514-3", {"valueString": "6-8"}, None),  # a range
        ("72514-3", {"valueString": "8 – severe"}, 8),  # an en dash is a hyphen
        ("72514-3", {"valueString": "8—severe"}, 8),  # so is an em dash
        ("72514-3", {"valueString": "8 (severe)"}, 8),  # a space and words, the words in brackets
        ("72514-3", {"valueString": "8/10 (severe)"}, 8),
        ("72514-3", {"valueString": "6–8"}, None),  # a range, with an en dash
        ("72514-3", {"valueString": "6 – 8"}, None),
        ("72514-3", {"valueString": "8(severe)"}, None),  # neither a space nor a hyphen before the words
        ("72514-3", {"valueString": "7.5"}, None),  # not an integer
        ("72514-3", {"valueString": "severe"}, None),
        ("72514-3", {"valueString": "11"}, None),  # off the scale
        ("72514-3", {"valueInteger": 6}, 6),
        ("72514-3", {"valueQuantity": {"value": 6, "unit": "{score}"}}, 6),
        ("72514-3", answer("LA6111-4"), 0),  # LL2335-9: LA6111-4 = 0
        ("72514-3", answer("LA10140-4"), 8),  # LA10140-4 = 8
        ("72514-3", answer("LA13942-0", HTTPS_LOINC), 10),  # the LOINC system with https
        ("38208-5", answer("LA10137-0"), 5),
        ("72514-3", answer("LA6576-8"), None),  # a LOINC answer of another list: not a reading
        ("38214-3", answer("LA10140-4"), None),  # VAS is not a 0-10 pain code: its answer is not read
        ("38214-3", {"valueQuantity": {"value": 72, "unit": "mm", "code": "mm"}}, 7.2),  # mm / 10
        ("38214-3", {"valueQuantity": {"value": 7, "unit": "cm"}}, 7),  # cm as is
        ("38214-3", {"valueQuantity": {"value": 65}}, 6.5),  # no unit, > 10: mm
        ("38214-3", {"valueInteger": 6}, 6),  # no unit, <= 10: cm
        ("38214-3", {"valueQuantity": {"value": 10}}, 10),
        ("38214-3", {"valueQuantity": {"value": 50, "unit": "%"}}, None),  # a unit that is neither
        ("38214-3", {"valueQuantity": {"value": 130, "unit": "mm"}}, None),  # off the 0-100 mm scale
    ],
)
def test_pain_is_read_from_every_shape_or_named(engine: Engine, code: str, value: dict[str, Any], score: Any) -> None:
    facts = facts_of(engine, observation("o1", LOINC, code, "2026-06-13", **value))
    if score is None:
        assert "pain" not in facts.readings
        assert [(i.reason, i.text.split(":")[0]) for i in facts.ignored] == [(UNREADABLE, "Observation/o1")]
    else:
        assert [r.value for r in facts.readings["pain"]] == [score]
        assert facts.ignored == ()


def test_pain_in_a_component_is_read_and_the_code_may_use_https(engine: Engine) -> None:
    flowsheet = observation(
        "o1",
        "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679",
        "PAIN",
        "2026-06-13",
        component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 140}},
            {"code": {"coding": [{"system": HTTPS_LOINC, "code": "72514-3"}]}, "valueString": "7/10"},
        ],
    )
    facts = facts_of(engine, flowsheet)
    assert [(r.ref, r.value) for r in facts.readings["pain"]] == [("Observation/o1", 7)]


# -- time ----------------------------------------------------------------------------------
def test_a_partial_onset_is_the_start_of_the_month_at_utc_and_estimated(engine: Engine) -> None:
    (fracture,) = facts_of(engine, condition("c1", ICD10CM, "M80.08XA", onset="2026-03")).fractures
    assert fracture.onset == datetime(2026, 3, 1, tzinfo=UTC) and fracture.onset_estimated


def test_a_date_only_onset_is_the_start_of_the_day_at_utc_and_exact(engine: Engine) -> None:
    (fracture,) = facts_of(engine, condition("c1", ICD10CM, "M80.08XA", onset="2026-05-04")).fractures
    assert fracture.onset == datetime(2026, 5, 4, tzinfo=UTC) and not fracture.onset_estimated


def test_a_future_onset_is_named_and_the_recorded_date_used(engine: Engine) -> None:
    vcf = condition("c1", ICD10CM, "M80.08XA", onset="2026-06-20", recordedDate="2026-06-01")
    facts = facts_of(engine, vcf)
    (fracture,) = facts.fractures
    assert fracture.onset == datetime(2026, 6, 1, tzinfo=UTC) and fracture.onset_estimated
    assert [i.reason for i in facts.ignored] == [IN_FUTURE]


def test_a_time_up_to_one_day_after_now_is_still_used(engine: Engine) -> None:
    # now is 2026-06-15T14:00Z; 2026-06-16T13:00Z is less than a day after it
    facts = facts_of(engine, observation("o1", LOINC, "72514-3", "2026-06-16T13:00:00Z", valueInteger=6))
    assert [r.value for r in facts.readings["pain"]] == [6] and facts.ignored == ()


# -- fractures -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "active", "prior", "non_healing"),
    [
        ("M80.08XA", 1, 0, False),
        ("S32.010B", 1, 0, False),  # open, initial
        ("M80.08XD", 1, 0, False),
        ("M80.08XG", 1, 0, True),  # delayed healing
        ("S22.080K", 1, 0, True),  # nonunion
        ("M80.08XP", 0, 1, False),  # malunion: healed
        ("M8008XS", 0, 1, False),  # sequela, without the dot
        ("M48.56", 1, 0, False),  # no 7th character: current
    ],
)
def test_the_seventh_character_decides_whether_a_fracture_is_current(
    engine: Engine, code: str, active: int, prior: int, non_healing: bool
) -> None:
    facts = facts_of(engine, condition("c1", ICD10CM, code))
    assert (len(facts.fractures), len(facts.prior_fractures)) == (active, prior)
    assert any(f.non_healing for f in facts.fractures) is non_healing


def site(text: str | None = None, code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if code:
        out["coding"] = [{"system": SNOMED, "code": code}]
    if text:
        out["text"] = text
    return out


@pytest.mark.parametrize(
    ("conditions", "levels"),
    [
        # the case: L1 written as S32.010A and as M80.08XA + SNOMED "L1 vertebra", then L2, L3
        (
            [
                ("S32.010A", None),
                ("M80.08XA", site(code="66794005")),
                ("S32.020A", None),
                ("S32.030A", None),
            ],
            3,
        ),
        ([("S22.080A", site("T12")), ("M80.08XA", site("T12 vertebra"))], 1),  # a range refined by its site
        ([("S22.080A", None), ("M80.08XA", site("T11"))], 1),  # T11 lies in T11-T12: possibly the same
        ([("S22.050A", None), ("S22.060A", None)], 2),  # two ranges: two levels
        ([("M48.56XA", None), ("M80.08XA", None)], 1),  # no level at all: once between them
        ([("M48.56XA", None), ("S32.010A", None)], 1),  # region-only not counted beside a level
        ([("M80.08XA", site("L1")), ("M80.08XA", site("first lumbar vertebra")), ("M80.08XA", site("L 1"))], 1),
        ([("M80.08XA", site("T12")), ("M80.08XA", site("L1")), ("M80.08XA", site("L2")), ("S32.040A", None)], 4),
    ],
)
def test_distinct_levels_reduce_every_name_to_one_vertebra(
    engine: Engine, conditions: list[tuple[str, dict[str, Any] | None]], levels: int
) -> None:
    record = [
        condition(f"c{n}", ICD10CM, code, **({"bodySite": [body]} if body else {}))
        for n, (code, body) in enumerate(conditions)
    ]
    assert count_levels(facts_of(engine, *record).fractures) == levels


# -- cancer and pregnancy ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "clinical", "documented"),
    [
        ("C90.01", "remission", {"multiple-myeloma"}),  # pathway code whatever its status
        ("C90.30", "active", {"plasmacytoma"}),
        ("C90.20", "resolved", {"plasmacytoma"}),
        ("C79.51", "inactive", {"bone-metastasis"}),
        ("C50.911", "active", {"cancer"}),  # suspected malignancy (row 3)
        ("C50.911", "remission", {"cancer-history"}),
        ("C50.911", "resolved", {"cancer-history"}),
        ("C44.311", "active", set()),  # non-melanoma skin cancer: never counted
        ("C44.311", "resolved", set()),
        ("D05.11", "active", set()),  # in situ
        ("Z85.3", "active", {"cancer-history"}),
        ("Z85.820", "active", {"cancer-history"}),  # melanoma history counts
        ("Z85.828", "active", set()),  # other skin cancer history does not
    ],
)
def test_cancer_codes_by_status(engine: Engine, code: str, clinical: str, documented: set[str]) -> None:
    facts = facts_of(engine, condition("c1", ICD10CM, code, clinicalStatus=status(clinical)))
    cancer = {"cancer", "cancer-history", "multiple-myeloma", "plasmacytoma", "bone-metastasis"}
    assert set(facts.documented) & cancer == documented


def test_a_skin_cancer_in_snomed_is_not_a_suspected_malignancy(engine: Engine) -> None:
    facts = facts_of(engine, condition("c1", SNOMED, "254701007", clinicalStatus=status("active")))
    assert not facts.refs("cancer", "cancer-history")


@pytest.mark.parametrize(
    ("code", "evidence", "end"),
    [
        ("Z33.1", True, False),
        ("Z34.82", True, False),
        ("Z3A.32", True, False),
        ("O26.891", True, False),
        ("O80", False, True),  # delivery
        ("O03.9", False, True),  # abortive outcome
        ("O90.89", False, True),  # puerperium
        ("O94", False, True),
        ("Z37.0", False, True),  # outcome of delivery
        ("Z39.2", False, True),  # postpartum follow-up
    ],
)
def test_pregnancy_codes_are_evidence_or_an_end(engine: Engine, code: str, evidence: bool, end: bool) -> None:
    facts = facts_of(engine, condition("c1", ICD10CM, code, onset="2026-05-01"))
    assert bool(facts.events.get("pregnancy")) is evidence
    assert bool(facts.events.get("pregnancy-end")) is end


def test_an_entered_in_error_condition_is_counted_in_the_ignored_note(engine: Engine) -> None:
    wrong = condition(
        "c1", ICD10CM, "M80.08XA", verificationStatus={"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}
    )
    facts = facts_of(engine, wrong, observation("o1", LOINC, "72514-3", "2026-06-13", status="entered-in-error"))
    assert not facts.fractures
    assert [i.reason for i in facts.ignored] == [ENTERED_IN_ERROR, ENTERED_IN_ERROR]
