"""normalize validates only what the decision reads, and reads the same facts as validating everything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

import service.normalize.record as normalize_module
from service.decide import decide
from service.decide.facts import IN_FUTURE, Ignored
from service.normalize.record import normalize
from service.pipeline import Engine

from support.builders import ICD10CM, condition, finding, pain, patient, request, vcf_extension
from support.clock import NOW


def day(n: int) -> str:
    """The date ``n`` days before NOW (negative: after)."""
    return (NOW - timedelta(days=n)).date().isoformat()


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """References of the resources normalize validates, in order."""
    seen: list[str] = []
    real = normalize_module.validate

    def spy(resource: Any, what: str) -> None:
        seen.append(f"{resource.get('resourceType')}/{resource.get('id')}")
        real(resource, what)

    monkeypatch.setattr(normalize_module, "validate", spy)
    return seen


def facts_of(engine: Engine, *resources: dict[str, Any]) -> Any:
    return normalize(patient(), list(resources), terminology=engine.terminology, now=NOW)


def invalid(resource: dict[str, Any]) -> dict[str, Any]:
    resource["valueQuantity"]["value"] = "seven"
    return resource


def test_only_the_newest_reading_of_a_kind_is_validated(engine: Engine, validated: list[str]) -> None:
    old = [pain(f"old{n}", 4, when=f"2024-0{n}-01") for n in range(1, 10)]
    facts = facts_of(engine, *old, pain("new", 7, when=day(3)), pain("before", 5, when=day(12)))
    # the newest, and for pain the newest a week before it (worsening): nothing older
    assert validated == ["Patient/p1", "Observation/new", "Observation/before"]
    assert [r.ref for r in facts.readings["pain"]] == ["Observation/before", "Observation/new"]


def test_an_invalid_newest_reading_is_ignored_and_the_next_one_read(engine: Engine, validated: list[str]) -> None:
    facts = facts_of(engine, pain("older", 6, when=day(20)), invalid(pain("newest", 9, when=day(2))))
    assert validated == ["Patient/p1", "Observation/newest", "Observation/older"]
    assert [r.ref for r in facts.readings["pain"]] == ["Observation/older"]
    assert len(facts.ignored) == 1 and "Observation/newest" in facts.ignored[0].text


def test_invalid_readings_the_decision_never_reads_are_not_reported(engine: Engine) -> None:
    ancient = invalid(pain("ancient", 3, when="2020-01-01"))
    facts = facts_of(engine, ancient, pain("week-before", 5, when=day(20)), pain("new", 7, when=day(3)))
    assert facts.ignored == ()


def test_future_readings_do_not_stop_the_search_and_are_named(engine: Engine, validated: list[str]) -> None:
    future = finding("f2", "point-tenderness", when=day(-5), valueBoolean=False)
    facts = facts_of(engine, finding("f1", "point-tenderness", when=day(30), valueBoolean=True), future)
    # rules 2026.12: a time more than one day after now is not used, and named in the ignored note
    assert [f.ref for f in facts.findings["point-tenderness"]] == ["Observation/f1"]
    assert facts.ignored == (Ignored(IN_FUTURE, "Observation/f2 is dated in the future"),)


def test_readings_without_a_usable_value_do_not_count_as_the_newest(engine: Engine) -> None:
    unusable = pain("unusable", 42, when=day(1))  # off the 0-10 scale: not a reading
    facts = facts_of(engine, pain("usable", 6, when=day(5)), unusable)
    assert [r.ref for r in facts.readings["pain"]] == ["Observation/usable"]


def test_the_decision_is_the_one_of_validating_everything(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    record = [
        condition("c1", ICD10CM, "M80.08XA", onset="2026-04-01"),
        *(pain(f"p{n}", n % 10, when=day(n * 3)) for n in range(40)),
        invalid(pain("bad-new", 9, when=day(1))),
        finding("t1", "point-tenderness", when=day(40), valueBoolean=True),
        finding("t2", "point-tenderness", when=day(10), valueBoolean=False),
    ]
    lazy = decide(facts_of(engine, *record))

    def keep_all(self: Any) -> None:  # the former design: every valid reading and finding kept
        for kind, candidates in self.candidates.items():
            for c in sorted(candidates, key=lambda c: c.when):
                if self.valid(c.resource, c.position):
                    self._keep(kind, c)

    monkeypatch.setattr(normalize_module._Reader, "settle", keep_all)
    everything = decide(facts_of(engine, *record))
    assert lazy is not None and lazy == everything


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(resourceType=["Observation"]),
        lambda o: o.update(status=["final"]),
    ],
)
def test_unhashable_json_in_a_resource_is_no_500(client: FlaskClient, mutate: Any) -> None:
    body = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 7, when="2026-06-12"))
    mutate(body["prefetch"]["observations"]["entry"][0]["resource"])
    response = client.post("/cds-services/vcf-patient-view", json=body)
    assert response.status_code == 200
    assert "pain_score" in vcf_extension(response.get_json()["cards"][0])["missing"]
