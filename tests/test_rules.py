"""The decision rules over facts, as plain parametrized tables (no FHIR, no Flask)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from service.decide import decide
from service.decide.facts import Event, Facts, Finding, Fracture, Reading

from support.clock import NOW


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def facts(
    age_days: int | None = 70,
    *,
    kind: str = "osteoporotic",
    birth: date | None = date(1950, 1, 1),
    pain: list[tuple[float, float]] | None = None,
    tender: bool | None = None,
    edema: bool | None = None,
    documented: dict[str, tuple[str, ...]] | None = None,
    findings: dict[str, Any] | None = None,
    readings: dict[str, Any] | None = None,
    encounters: tuple[str, ...] = (),
    events: dict[str, tuple[Event, ...]] | None = None,
) -> Facts:
    onset = None if age_days is None else NOW - timedelta(days=age_days)
    f: dict[str, list[Finding]] = {
        k: [Finding(f"Observation/{k}", days_ago(5), present=v)]
        for k, v in (("point-tenderness", tender), ("marrow-edema", edema))
        if v is not None
    }
    for k, v in (findings or {}).items():
        f[k] = v
    r: dict[str, tuple[Reading, ...]] = {
        "pain": tuple(
            Reading(f"Observation/p{i}", days_ago(d), s) for i, (d, s) in enumerate(sorted(pain or [], reverse=True))
        )
    }
    r.update(readings or {})
    return Facts(
        now=NOW,
        birth_date=birth,
        fractures=(Fracture("Condition/c1", kind, onset, False),),
        documented=documented or {},
        readings=r,
        findings={k: tuple(v) for k, v in f.items()},
        hospital_encounters=encounters,
        events=events or {},
    )


# (facts, row, recommendation) — rows of CLINICAL.md, boundaries in days: 21 = 3 weeks, 43 = over 6, 364 = 52
ROWS = [
    (facts(70, documented={"red-flag": ("Condition/g95",)}), 1, "referral"),
    (facts(70, documented={"sepsis": ("Condition/a41",)}), 2, "referral"),
    (facts(70, documented={"cancer": ("Condition/c50",)}), 3, "referral"),
    (facts(70, kind="traumatic", birth=date(1990, 1, 1)), 4, "referral"),
    (facts(70, kind="unspecified", birth=date(1990, 1, 1), pain=[(2, 8)], tender=True), 14, "augmentation"),
    (facts(70, events={"pregnancy": (Event("Condition/z33", days_ago(100)),)}), 5, "conservative"),
    (
        facts(
            70,
            documented={"multiple-myeloma": ("Condition/c90",)},
            findings={"sins": [Finding("Observation/s", days_ago(3), value=13)]},
        ),
        6,
        "referral",
    ),
    (facts(400, documented={"bone-metastasis": ("Condition/c79",)}, pain=[(2, 6)]), 7, "augmentation"),
    (facts(70, kind="neoplastic", pain=[(2, 4)]), 8, "conservative"),
    (facts(365, pain=[(2, 9)], tender=True), 9, "conservative"),
    (facts(364, pain=[(2, 9)], tender=True), 14, "augmentation"),
    (facts(20, pain=[(1, 8)], encounters=("Encounter/e1",)), 10, "augmentation"),
    (facts(20, pain=[(1, 7)], encounters=("Encounter/e1",)), 11, "conservative"),
    (facts(21, pain=[(1, 7)]), 12, "augmentation"),
    (facts(30, pain=[(1, 6), (9, 5)]), 12, "augmentation"),  # worsening by 1 over 8 days
    (facts(30, pain=[(1, 6), (5, 5)]), 13, "conservative"),  # readings under 7 days apart: trend unknown
    (facts(41, pain=[(1, 6)]), 13, "conservative"),
    (facts(42, pain=[(1, 6)], edema=True), 13, "conservative"),  # 42 days is still 3–6 weeks (rules 2026.12)
    (facts(43, pain=[(1, 6)], edema=True), 14, "augmentation"),
    (facts(100, pain=[(1, 6)], tender=False, edema=False), 15, "conservative"),
    (facts(100, pain=[(1, 6)], tender=False), 16, "conservative"),
    (facts(100, pain=[(31, 9)], tender=True), 16, "conservative"),  # pain older than 30 days: unknown
    (facts(None, pain=[(1, 9)], tender=True), 16, "conservative"),  # onset unknown
]


@pytest.mark.parametrize(("f", "row", "recommendation"), ROWS)
def test_decision_rows(f: Facts, row: int, recommendation: str) -> None:
    a = decide(f)
    assert a is not None
    assert (a.row, a.recommendation) == (row, recommendation)


def test_no_fracture_no_assessment() -> None:
    assert decide(Facts(now=NOW, birth_date=None)) is None


def test_unknown_is_never_negative() -> None:
    a = decide(facts(100))
    assert a is not None and a.recommendation == "conservative"
    assert {"pain_score", "point_tenderness", "marrow_edema"} <= set(a.missing)


def test_cautions_never_change_the_row_and_are_named() -> None:
    labs = {
        "inr": (Reading("Observation/inr", days_ago(3), 2.1),),
        "platelets": (Reading("Observation/plt", days_ago(3), 40),),
    }
    a = decide(
        facts(70, pain=[(2, 7)], tender=True, readings=labs, documented={"anticoagulant": ("MedicationRequest/w",)})
    )
    assert a is not None and a.row == 14 and a.indicator == "warning"
    assert [c.id for c in a.cautions] == ["inr_above_1_5", "platelets_below_50", "anticoagulant_active"]
    assert "INR 2.1" in a.cautions[0].text


def test_stale_labs_are_unknown_not_reassuring() -> None:
    labs = {"inr": (Reading("Observation/inr", days_ago(45), 3.0),)}
    a = decide(facts(70, pain=[(2, 7)], tender=True, readings=labs))
    assert a is not None and "inr" in a.missing and not a.cautions


@pytest.mark.parametrize(
    ("height_loss", "kyphosis", "procedure"),
    [(30, None, "kyphoplasty"), (20, None, "either"), (None, True, "kyphoplasty"), (None, None, "either")],
)
def test_procedure_choice(height_loss: float | None, kyphosis: bool | None, procedure: str) -> None:
    found: dict[str, Any] = {}
    if height_loss is not None:
        found["height-loss"] = [Finding("Observation/h", days_ago(3), value=height_loss)]
    if kyphosis is not None:
        found["kyphotic-deformity"] = [Finding("Observation/k", days_ago(3), present=kyphosis)]
    a = decide(facts(70, pain=[(2, 7)], tender=True, findings=found))
    assert a is not None and a.procedure == procedure


@pytest.mark.parametrize(("days", "noted"), [(84, False), (85, True)])
def test_lcd_note_after_12_weeks(days: int, noted: bool) -> None:
    a = decide(facts(days, pain=[(2, 7)], tender=True))
    assert a is not None and any("12 weeks" in n for n in a.notes) is noted


@pytest.mark.parametrize(
    ("tests", "pregnant"),
    [
        ([(10, True)], True),
        ([(300, True)], False),  # older than a pregnancy
        ([(100, True), (10, False)], False),  # a later negative test wins
    ],
)
def test_pregnancy_by_hcg(tests: list[tuple[int, bool]], pregnant: bool) -> None:
    hcg = [Finding(f"Observation/h{d}", days_ago(d), present=p) for d, p in sorted(tests, reverse=True)]
    a = decide(facts(70, findings={"hcg": hcg}))
    assert a is not None and (a.row == 5) is pregnant


@pytest.mark.parametrize(
    ("conditions", "ends", "pregnant"),
    [
        ([100], [], True),
        ([280], [], True),  # "within 280 days": whole days <= 280
        ([281], [], False),
        ([None], [], False),  # no onset nor recordedDate: not "within 280 days", so no evidence
        ([None, 100], [], True),
        ([None], [20], False),
        ([100], [20], False),  # a delivery dated after the evidence ends it
        ([100], [None], True),  # an undated end cannot be "dated after the evidence"
    ],
)
def test_pregnancy_by_condition(conditions: list[int | None], ends: list[int | None], pregnant: bool) -> None:
    events = {
        "pregnancy": tuple(
            Event(f"Condition/z{i}", None if d is None else days_ago(d)) for i, d in enumerate(conditions)
        ),
        "pregnancy-end": tuple(
            Event(f"Condition/o{i}", None if d is None else days_ago(d)) for i, d in enumerate(ends)
        ),
    }
    a = decide(facts(70, events=events))
    assert a is not None and (a.row == 5) is pregnant


@pytest.mark.parametrize(
    ("documented", "readings", "expected"),
    [
        ({}, {}, "warning"),
        ({"osteoporosis-therapy": ("MedicationRequest/a",)}, {}, "info"),
        (
            {"osteoporosis-therapy": ("MedicationRequest/a",)},
            {"dxa-tscore": (Reading("Observation/d", days_ago(100), -2.7),)},
            None,
        ),
    ],
)
def test_secondary_prevention(documented: dict[str, Any], readings: dict[str, Any], expected: str | None) -> None:
    a = decide(facts(70, documented=documented, readings=readings))
    assert a is not None
    assert (a.secondary_prevention.indicator if a.secondary_prevention else None) == expected


def test_every_threshold_cites_a_clinical_source() -> None:
    from service.decide import thresholds

    sources = {
        "PARMAR-2019",
        "FAQ-SEED",
        "IOF-2011",
        "CLINIC-SEED",
        "LCD-L38201",
        "NICE-TA279",
        "ACR-AC",
        "SIR-2019",
        "NASS-AUC",
        "TRIALS",
    }
    values = [v for v in vars(thresholds).values() if isinstance(v, thresholds.Threshold)]
    assert len(values) >= 15 and all(v.source in sources for v in values)
