"""Validation: of the Patient only what the decision reads; every result remembered by content."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.errors import InvalidResourceError
from service.normalize import validation
from service.normalize.validation import ValidationMemo, validate

from support.builders import ICD10CM, condition, patient


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Resource types ``problem_of`` really validated (memo misses), in order."""
    calls: list[str] = []
    real = validation.problem_of

    def counting(resource: Any) -> validation.Problem:
        calls.append(str(resource.get("resourceType")))
        return real(resource)

    monkeypatch.setattr(validation, "problem_of", counting)
    return calls


def test_the_patient_is_validated_on_what_the_decision_reads() -> None:
    unread_broken = {**patient(), "name": "not a list of HumanName", "telecom": [{"system": "pager!"}], "x": 1}
    validate(unread_broken, "the Patient")  # PRODUCT.md: 400 only for invalid FHIR the decision needs
    with pytest.raises(InvalidResourceError, match=r"^the Patient is not valid FHIR R4 Patient: birthDate"):
        validate({**patient(), "birthDate": "1950-13-45"}, "the Patient")
    with pytest.raises(InvalidResourceError, match="Patient: birthDate"):
        validate({**patient(), "birthDate": 1950}, "the Patient")
    with pytest.raises(InvalidResourceError, match="id"):
        validate({**patient(), "id": "has spaces"}, "the Patient")


def test_other_resources_are_validated_whole() -> None:
    broken = {**condition("c1", ICD10CM, "M80.08XA"), "note": "not a list of Annotation"}
    with pytest.raises(InvalidResourceError, match=r"^Condition/c1 is not valid FHIR R4 Condition: note"):
        validate(broken, "Condition/c1")


def test_a_resource_seen_before_is_not_validated_again(model_calls: list[str]) -> None:
    memo = ValidationMemo()
    vcf = condition("memo-1", ICD10CM, "M80.08XA")
    assert memo.problem(vcf) is None
    assert memo.problem(copy.deepcopy(vcf)) is None  # equal content, another object: remembered
    assert model_calls == ["Condition"]
    memo.problem({**vcf, "id": "memo-2"})  # other content: validated
    assert model_calls == ["Condition", "Condition"] and len(memo) == 2


def test_an_invalid_resource_is_remembered_as_invalid_with_the_same_message(model_calls: list[str]) -> None:
    memo = ValidationMemo()
    broken = {**condition("memo-3", ICD10CM, "M80.08XA"), "onsetDateTime": "yesterday"}
    first, again = memo.problem(broken), memo.problem(copy.deepcopy(broken))
    assert first is not None and first.startswith("is not valid FHIR R4 Condition: onsetDateTime")
    assert again == first and model_calls == ["Condition"]


def test_the_memo_forgets_the_least_recently_used(model_calls: list[str]) -> None:
    memo = ValidationMemo(capacity=2)
    a, b, c = (condition(f"lru-{n}", ICD10CM, "M80.08XA") for n in "abc")
    memo.problem(a), memo.problem(b), memo.problem(a), memo.problem(c)  # b is the least recent
    assert len(memo) == 2
    model_calls.clear()
    memo.problem(a), memo.problem(c)
    assert model_calls == []
    memo.problem(b)
    assert model_calls == ["Condition"]


def test_what_is_not_json_is_validated_without_a_key(model_calls: list[str]) -> None:
    memo = ValidationMemo()
    huge = {**condition("big", ICD10CM, "M80.08XA"), "extension": [{"url": "u", "valueInteger": 2**70}]}
    assert memo.problem(huge) is not None and memo.problem(huge) is not None  # orjson cannot serialise it
    assert model_calls == ["Condition", "Condition"] and len(memo) == 0
