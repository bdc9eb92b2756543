"""Properties of the general rules-2026.12 definitions: distinct levels and pain shapes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.decide.facts import UNREADABLE, VERTEBRAE
from service.decide.levels import count_levels
from service.normalize.record import normalize
from service.pipeline import Engine

from support.builders import ICD10CM, LOINC, condition, observation, patient
from support.clock import NOW
from support.examples import examples

ENGINE = Engine.load()
# the vertebra value set's own SNOMED codes (the codes live in mappings/), by level name
SNOMED_OF = {
    display.split()[0]: pair for pair, display in ENGINE.terminology.valuesets["vertebra"].include.displays.items()
}
# ICD-10-CM codes naming exactly one vertebra: S22.01–.04 (T1–T4), S32.01–.05 (L1–L5)
ICD_OF = {f"T{n}": f"S22.0{n}0A" for n in range(1, 5)} | {f"L{n}": f"S32.0{n}0A" for n in range(1, 6)}
ORDINAL = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]
ORDINAL += ["eleventh", "twelfth"]


def namings(level: str) -> list[dict[str, Any]]:
    """Every way a Condition may name one vertebra (as keyword arguments of ``condition``)."""
    region, number = level[0], int(level[1:])
    system, code = SNOMED_OF[level]
    words = f"{ORDINAL[number - 1]} {'thoracic' if region == 'T' else 'lumbar'} vertebra"
    texts = [level, f"{level} vertebra", f"{region}-{number}", f"{region} {number}", words]
    region_word = "thoracic" if region == "T" else "lumbar"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number, "th")  # 11th and 12th too
    texts += [f"{region_word.title()} vertebra {number}", f"{number}{suffix} {region_word}"]
    if region == "T":
        texts.append(f"Th{number}")
    out: list[dict[str, Any]] = [{"code": "M80.08XA", "bodySite": [{"coding": [{"system": system, "code": code}]}]}]
    out += [{"code": "M80.08XA", "bodySite": [{"text": t}]} for t in texts]
    if level in ICD_OF:
        out.append({"code": ICD_OF[level]})
    return out


@examples(60)
@given(st.data(), st.sets(st.sampled_from(VERTEBRAE), min_size=1, max_size=6))
def test_levels_count_each_vertebra_once_however_it_is_named(data: Any, levels: set[str]) -> None:
    record = []
    for level in sorted(levels):
        for naming in data.draw(st.lists(st.sampled_from(namings(level)), min_size=1, max_size=3), label=level):
            extra = {k: v for k, v in naming.items() if k != "code"}
            record.append(condition(f"c{len(record)}", ICD10CM, naming["code"], **extra))
    order = data.draw(st.permutations(record), label="order")
    facts = normalize(patient(), order, terminology=ENGINE.terminology, now=NOW)
    assert count_levels(facts.fractures) == len(levels)


SHAPES = [
    lambda n: {"valueString": str(n)},
    lambda n: {"valueString": f"{n}/10"},
    lambda n: {"valueString": f"{n} - severe"},
    lambda n: {"valueString": f"{n}-moderate pain"},
    lambda n: {"valueString": f"{n} – severe"},
    lambda n: {"valueString": f"{n} (moderate)"},
    lambda n: {"valueInteger": n},
    lambda n: {"valueQuantity": {"value": n, "unit": "{score}"}},
]


@examples(60)
@given(st.integers(min_value=0, max_value=10), st.sampled_from(SHAPES), st.booleans(), st.booleans())
def test_a_score_reads_the_same_in_every_shape(score: int, shape: Any, in_component: bool, https: bool) -> None:
    system = "https://loinc.org" if https else LOINC
    value = shape(score)
    if in_component:
        component = {"code": {"coding": [{"system": system, "code": "72514-3"}]}, **value}
        o = observation("o1", "urn:example:flowsheet", "row", "2026-06-13", component=[component])
    else:
        o = observation("o1", system, "72514-3", "2026-06-13", **value)
    facts = normalize(patient(), [o], terminology=ENGINE.terminology, now=NOW)
    assert [r.value for r in facts.readings["pain"]] == [score]


NOT_A_SCORE = st.one_of(
    st.builds("{}/{}".format, st.integers(0, 10), st.integers(0, 100).filter(lambda d: d != 10)),  # other denominator
    st.builds("{}-{}".format, st.integers(0, 10), st.integers(0, 10)),  # a range
    st.builds("{} - {}".format, st.integers(0, 10), st.integers(0, 10)),
    st.builds("{}.{}".format, st.integers(0, 9), st.integers(1, 9)),  # not an integer
    st.integers(11, 1000).map(str),  # off the scale
    st.sampled_from(["", "severe", "n/a", "-3", "ten", "8 of 10/10"]),
)


@examples(60)
@given(NOT_A_SCORE)
def test_a_string_that_is_not_a_score_is_named_never_guessed(text: str) -> None:
    o = observation("o1", LOINC, "72514-3", "2026-06-13", valueString=text)
    facts = normalize(patient(), [o], terminology=ENGINE.terminology, now=NOW)
    assert "pain" not in facts.readings
    assert [i.reason for i in facts.ignored] in ([UNREADABLE],)
