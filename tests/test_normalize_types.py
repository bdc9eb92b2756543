"""Every field the normaliser reads, broken every way: facts or InvalidResourceError, nothing else.

A table, not a sample: each seed resource x each path it reads x each hostile value (and deletion).
"""

from __future__ import annotations

from typing import Any

import pytest

from service.decide import decide
from service.decide.facts import UNREADABLE, Ignored
from service.errors import InvalidResourceError
from service.normalize.record import normalize
from service.pipeline import Engine
from service.render.cards import CardContext, cards_for

from support.cds_rules import card_problems
from support.clock import NOW, counter_uuids
from support.records import CANARY, CONDITIONS, PATIENT, READ_PATHS, SEEDS, VCF, WRONG_VALUES, delete_at, replace_at

CASES = [(seed, path) for seed in [PATIENT, *SEEDS] for path in READ_PATHS[seed["resourceType"]]]


def _evaluate(engine: Engine, patient: dict[str, Any], resources: list[Any]) -> None:
    """normalize → decide → render; only InvalidResourceError may escape, and it names no value."""
    try:
        facts = normalize(patient, resources, terminology=engine.terminology, now=NOW)
    except InvalidResourceError as e:
        assert CANARY not in e.diagnostics
        return
    assert all(CANARY not in item.text for item in facts.ignored)
    for card in cards_for(decide(facts), CardContext("p1", "Practitioner/1", counter_uuids(), facts.ignored)):
        assert card_problems(card) == []


@pytest.mark.parametrize(
    ("seed", "path"), CASES, ids=[f"{s['resourceType']}/{s['id']}:{'.'.join(map(str, p))}" for s, p in CASES]
)
def test_a_broken_field_never_escapes_as_another_error(engine: Engine, seed: dict[str, Any], path: Any) -> None:
    variants = [replace_at(seed, path, value) for value in WRONG_VALUES] + [delete_at(seed, path)]
    if seed["resourceType"] == "Patient":
        for variant in variants:
            _evaluate(engine, variant, [VCF])
    elif seed["resourceType"] == "Condition":  # an invalid Condition stops the call: one at a time
        for variant in variants:
            _evaluate(engine, PATIENT, [VCF, variant])
    else:  # other resources are ignored when invalid: all variants in one record
        _evaluate(engine, PATIENT, [VCF, *variants])


@pytest.mark.parametrize("value", WRONG_VALUES + [[[[]]], "Observation"], ids=repr)
def test_an_entry_that_is_not_a_resource_is_skipped(engine: Engine, value: Any) -> None:
    facts = normalize(PATIENT, [VCF, value, {"resourceType": value}], terminology=engine.terminology, now=NOW)
    assert [f.ref for f in facts.fractures] == ["Condition/c-vcf"]


def nested_extension(depth: int) -> list[dict[str, Any]]:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": CANARY}
    for _ in range(depth):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return [extension]


@pytest.mark.parametrize("depth", [30, 31, 400])
def test_a_deeply_nested_condition_is_invalid_not_a_crash(engine: Engine, depth: int) -> None:
    deep = {**VCF, "extension": nested_extension(depth)}  # the innermost at JSON level 3 + 2 × depth
    try:
        facts = normalize(PATIENT, [deep], terminology=engine.terminology, now=NOW)
    except InvalidResourceError as e:
        assert depth > 30 and e.diagnostics == "Condition/c-vcf nests JSON deeper than 64 levels"
    else:
        assert depth == 30 and len(facts.fractures) == 1


def test_a_deeply_nested_patient_is_invalid_not_a_crash(engine: Engine) -> None:
    nested = {**PATIENT, "_birthDate": {"extension": nested_extension(400)}}  # birthDate is read
    with pytest.raises(InvalidResourceError, match="deeper than 64 levels"):
        normalize(nested, [VCF], terminology=engine.terminology, now=NOW)
    # the decision does not read the Patient's own extensions: not validated, not a crash either
    facts = normalize({**PATIENT, "extension": nested_extension(400)}, [VCF], terminology=engine.terminology, now=NOW)
    assert facts.birth_date is not None and len(facts.fractures) == 1


def test_a_deeply_nested_observation_is_ignored_and_said(engine: Engine) -> None:
    deep = {**SEEDS[len(CONDITIONS)], "extension": nested_extension(400)}
    facts = normalize(PATIENT, [VCF, deep], terminology=engine.terminology, now=NOW)
    assert "pain" not in facts.readings
    assert facts.ignored == (Ignored(UNREADABLE, "Observation/o-nrs nests JSON deeper than 64 levels"),)


@pytest.mark.parametrize(
    ("field", "shown"),
    [("valueBolean", "valueBolean"), (f"{CANARY} born 1950-03-02", "…"), ("a" * 65, "…"), ("x\r\n| y", "…")],
)
def test_an_unknown_field_is_named_only_when_it_looks_like_a_name(engine: Engine, field: str, shown: str) -> None:
    bad = {**SEEDS[len(CONDITIONS)], field: True}
    (item,) = normalize(PATIENT, [VCF, bad], terminology=engine.terminology, now=NOW).ignored
    assert item.text == f"Observation/o-nrs is not valid FHIR R4 Observation: {shown}: Extra inputs are not permitted"


def test_a_contained_resource_of_unknown_type_makes_its_container_invalid(engine: Engine) -> None:
    contained = [{"resourceType": "Nonexistent", "id": "x"}]
    with pytest.raises(InvalidResourceError, match=r"^Condition/c-vcf is not valid FHIR R4 Condition: the validator"):
        normalize(PATIENT, [{**VCF, "contained": contained}], terminology=engine.terminology, now=NOW)
    bad_pain = {**SEEDS[len(CONDITIONS)], "contained": contained}
    facts = normalize(PATIENT, [VCF, bad_pain], terminology=engine.terminology, now=NOW)
    assert "pain" not in facts.readings and facts.ignored[0].text.startswith("Observation/o-nrs is not valid")
