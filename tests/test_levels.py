"""Vertebral levels in free text (CLINICAL.md rules 2026.12, "Distinct levels": every way of naming a
vertebra is reduced to one canonical level T1…L5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.decide.facts import VERTEBRAE
from service.decide.levels import spans_in_text

from support.examples import examples

ORDINAL = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]
ORDINAL += ["eleventh", "twelfth"]
REGION = {"T": "thoracic", "L": "lumbar"}


def numeral(n: int) -> str:
    """1st, 2nd, 3rd, 4th … 11th, 12th, 21st: English ordinal suffixes, written out independently."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def names(level: str) -> list[str]:
    """Ways clinicians and EHRs write one vertebra in a body-site text."""
    letter, n = level[0], int(level[1:])
    region = REGION[letter]
    out = [level, f"{letter}-{n}", f"{letter} {n}", f"{letter}.{n}", f"{level} vertebra"]
    out += [f"{numeral(n)} {region} vertebra", f"{numeral(n)} {region}", f"{ORDINAL[n - 1]} {region}"]
    out += [f"{region} vertebra {n}", f"{region} {n}", f"{region} vertebral body {n}", f"{region}-{n}"]
    return out + ([f"Th{n}"] if letter == "T" else [])


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("12th thoracic vertebra", "T12"),
        ("1st lumbar vertebra", "L1"),
        ("Thoracic vertebra 12", "T12"),
        ("Lumbar 1", "L1"),
        ("T-12", "T12"),
        ("L 1", "L1"),
        ("twelfth thoracic", "T12"),
        ("3rd Lumbar Vertebra", "L3"),
        ("Fracture of 2nd lumbar vertebra", "L2"),
    ],
)
def test_the_review_texts_name_one_vertebra(text: str, level: str) -> None:
    i = VERTEBRAE.index(level)
    assert spans_in_text(text) == [(i, i)]


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("11th thoracic to 1st lumbar", "T11", "L1"),
        ("lumbar 1-2", "L1", "L2"),
        ("Thoracic vertebrae 11–12", "T11", "T12"),
        ("T12-L1", "T12", "L1"),
    ],
)
def test_ranges_in_every_word_order(text: str, first: str, last: str) -> None:
    assert spans_in_text(text) == [(VERTEBRAE.index(first), VERTEBRAE.index(last))]


@pytest.mark.parametrize(
    "text",
    ["lumbar spine 2 views", "T13", "L6", "13th thoracic", "12th rib", "thoracic spine", "0th lumbar", "L12"],
)
def test_texts_that_name_no_vertebra(text: str) -> None:
    assert spans_in_text(text) == []


@examples(80)
@given(st.sampled_from(VERTEBRAE), st.data())
def test_every_naming_of_a_vertebra_reduces_to_it(level: str, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(names(level)), label="name")
    text = data.draw(st.sampled_from([text, text.upper(), text.lower(), text.title()]), label="case")
    i = VERTEBRAE.index(level)
    assert spans_in_text(text) == [(i, i)]


@examples(80)
@given(st.sampled_from(VERTEBRAE), st.sampled_from(VERTEBRAE), st.data())
def test_two_vertebrae_named_in_any_styles_are_two_levels(a: str, b: str, data: st.DataObject) -> None:
    first = data.draw(st.sampled_from(names(a)), label="first")
    second = data.draw(st.sampled_from(names(b)), label="second")
    assert spans_in_text(f"{first}, {second}") == [(VERTEBRAE.index(a),) * 2, (VERTEBRAE.index(b),) * 2]
