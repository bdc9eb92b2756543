"""Cards as clinicians see them in an EHR (issue 19): text every font can show, the decisive criteria
first, `missing` in clinical words, and suggested resources that are valid FHIR R4 JSON."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from hypothesis import given

from service.decide import Caution, Criterion, decide
from service.decide.documentation import WHAT_TO_DOCUMENT
from service.decide.facts import Facts
from service.devtools.replay import expand, replay_file
from service.normalize.orders import DraftOrder
from service.render.cards import CardContext, cards_for, caution_line, criteria_table
from service.render.order_check import order_check_card
from service.state import app_state

from support.apps import make_app
from support.clock import counter_uuids
from support.examples import examples
from support.paths import FIXTURES
from support.strategies import facts

ALL = list(expand([FIXTURES]))

# The characters a card's text may use. An EHR shows a card in its own font, often on a locked-down
# Windows or Citrix desktop with no emoji font: a character outside the font is an empty box.
# WGL4 (Windows Glyph List 4) is the repertoire the core fonts of every desktop system cover (Arial,
# Times New Roman, Segoe UI, Tahoma, DejaVu, Liberation, Helvetica). The rule is a simple subset of it:
# printable ASCII and Latin-1 (° ± × µ · ² …), plus the WGL4 punctuation and maths signs the cards use.
# Emoji (✅ ❌ ❔, all above U+2700 or in the Emoji_Presentation set) and most of U+2000–U+2FFF are out.
WGL4_EXTRA = frozenset("–—‘’“”•…≤≥≠≈→")
IGNORED_NOTE = "**Read but not used:**"


def unsafe_characters(text: str) -> list[str]:
    return sorted(
        {
            ch
            for ch in text
            if not (
                ch == "\n"
                or " " <= ch <= "~"
                or ("\u00a0" <= ch <= "\u00ff" and unicodedata.category(ch) != "Cc")
                or ch in WGL4_EXTRA
            )
        }
    )


def shown_text(card: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every string of a card an EHR may show that the service writes: all but the machine-readable
    extension, the ids, and the notes on ignored data (they quote the record, in whatever script)."""

    def walk(value: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, str):
            paragraphs = value.split("\n\n")
            yield where, "\n\n".join(p for p in paragraphs if not p.startswith(IGNORED_NOTE))
        elif isinstance(value, dict):
            for k, v in value.items():
                if k not in ("extension", "uuid", "url", "system"):
                    yield from walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, f"{where}[{i}]")

    yield from walk(card, "card")


def empty_values(value: Any, where: str = "") -> list[str]:
    """Where FHIR JSON has an empty array, empty object, empty (or blank) string or null."""
    if value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip()):
        return [where or "(root)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in empty_values(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in empty_values(v, f"{where}[{i}]")]
    return []


def suggested_resources(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for s in card.get("suggestions") or []:
        for action in s.get("actions") or []:
            if action.get("type") in ("create", "update"):
                yield action["resource"]


@pytest.fixture(scope="module")
def fixture_cards(engine: Any, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """(fixture, card) for every card of every fixture, replayed once through the real app."""
    path = tmp_path_factory.mktemp("cards") / "db.sqlite3"
    path.write_bytes(sqlite_template.read_bytes())
    app: Flask = make_app(engine, f"sqlite:///{path}")
    out = []
    for fixture in ALL:
        outcome = replay_file(app, fixture, None, None)
        if outcome.status == 200:
            out += [(fixture.relative_to(FIXTURES).as_posix(), card) for card in outcome.body["cards"]]
    app_state(app).database.engine.dispose()
    assert len(out) > 50, "the fixtures should give many cards"
    return out


# -- text every font has ------------------------------------------------------------------------
def test_the_character_rule_refuses_emoji_and_keeps_clinical_signs() -> None:
    assert unsafe_characters("✅ met ❌ not met ❔ unknown") == sorted("✅❌❔")
    assert unsafe_characters("🦴 ▸ ✓ \u0007") == sorted("🦴▸✓\u0007")
    assert unsafe_characters("NRS ≥ 7, INR ≤ 1.5, 50 × 10^9/L, 3–6 weeks — µmol/L, 37 °C, it’s “ok”…") == []


def test_card_text_uses_only_characters_every_font_has(fixture_cards: list[Any]) -> None:
    found = [
        f"{name} {where}: {''.join(bad)!r}"
        for name, card in fixture_cards
        for where, text in shown_text(card)
        if (bad := unsafe_characters(text))
    ]
    assert found == []


# -- criteria: the decisive ones first ----------------------------------------------------------
def test_the_table_holds_the_open_criteria_first_and_the_met_ones_in_one_line() -> None:
    criteria = [
        Criterion("a", "Alpha documented", "met", "S1", "a"),
        Criterion("b", "Beta documented", "unknown", "S2", "b"),
        Criterion("c", "Gamma documented", "met", "S3", "c", note="NRS 8"),
        Criterion("d", "Delta documented", "not-met", "S4", "d"),
    ]
    text = criteria_table(criteria)
    table, met = text.split("\n\n")
    rows = table.splitlines()[2:]
    # not met, then unknown: a clinician reads why before what is still to document
    assert [r.split("|")[1].strip() for r in rows] == ["Delta documented", "Beta documented"]
    assert [r.split("|")[2].strip() for r in rows] == ["Not met", "Unknown"]
    assert met == "**Met:** Alpha documented; Gamma documented: NRS 8"


def test_a_caution_cites_its_source_and_its_evidence_only_when_there_is_some() -> None:
    with_evidence = Caution("inr", "INR above 1.5", "CLINICAL.md", ("Observation/o1", "Observation/o2"))
    assert caution_line(with_evidence) == "- INR above 1.5 (CLINICAL.md; Observation/o1, Observation/o2)"
    assert caution_line(Caution("inr", "INR above 1.5", "CLINICAL.md")) == "- INR above 1.5 (CLINICAL.md)"


def test_all_met_is_one_line_and_none_met_is_a_table_only() -> None:
    met = [Criterion("a", "Alpha", "met", "S", "a"), Criterion("b", "Beta", "met", "S", "b")]
    assert criteria_table(met) == "**Met:** Alpha; Beta"
    assert "**Met:**" not in criteria_table([Criterion("a", "Alpha", "unknown", "S", "a")])


def test_every_fixture_card_lists_each_criterion_once_open_ones_in_the_table(fixture_cards: list[Any]) -> None:
    for name, card in fixture_cards:
        ext = card["extension"]["org.vcfcds"]
        lines = card["detail"].splitlines()
        rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Criterion")]
        met_line = next((line for line in lines if line.startswith("**Met:**")), "")
        statuses = [c["status"] for c in ext["criteria"]]
        if ext.get("orderAppropriate") is False and ext["recommendation"] is None:
            continue  # no fracture: the card explains that instead of criteria
        assert len(rows) == statuses.count("not-met") + statuses.count("unknown"), name
        assert [r.split(" | ")[1] for r in rows] == sorted(
            (r.split(" | ")[1] for r in rows), key=["Not met", "Unknown"].index
        ), name
        assert bool(met_line) == ("met" in statuses), name
        assert met_line.count(";") == max(statuses.count("met") - 1, 0), name


# -- missing: ids in the extension, words in the text -------------------------------------------
def test_missing_reads_as_clinical_words(fixture_cards: list[Any]) -> None:
    seen = set()
    for name, card in fixture_cards:
        missing = card["extension"]["org.vcfcds"]["missing"]
        line = next((x for x in card["detail"].splitlines() if x.startswith("**Not documented**")), None)
        if card["extension"]["org.vcfcds"]["kind"] == "secondary-prevention" or "vcf" in missing:
            continue  # those cards say what is missing in their own sentence and table
        assert (line is not None) == bool(missing), name
        for m in missing:
            assert m in WHAT_TO_DOCUMENT, f"{name}: {m} has no words"
            assert WHAT_TO_DOCUMENT[m] in str(line), name
            seen.add(m)
        assert line is None or "_" not in line, f"{name}: an id in the text: {line}"
    # the examples of issue 19 are among them, in these words
    assert {"inr", "platelets", "marrow_edema", "point_tenderness"} <= seen
    assert WHAT_TO_DOCUMENT["inr"] == "INR" and WHAT_TO_DOCUMENT["platelets"] == "platelet count"
    assert WHAT_TO_DOCUMENT["marrow_edema"] == "MRI marrow edema"


@examples(150)
@given(facts())
def test_every_id_decide_can_list_as_missing_has_words(f: Facts) -> None:
    a = decide(f)
    if a is None:
        return
    ids = set(a.missing) | {c.fact for c in a.criteria}
    if a.secondary_prevention:
        ids |= {c.fact for c in a.secondary_prevention.criteria}
    assert ids <= WHAT_TO_DOCUMENT.keys()


# -- suggested resources: valid FHIR R4 JSON --------------------------------------------------
def test_the_emptiness_check_finds_every_kind_of_empty() -> None:
    resource = {"a": [], "b": {}, "c": "", "d": None, "e": [{"f": " "}], "g": [{"reference": "X/1"}], "h": 0}
    assert empty_values(resource) == [".a", ".b", ".c", ".d", ".e[0].f"]


def test_every_suggested_resource_is_valid_fhir_without_empty_values(fixture_cards: list[Any]) -> None:
    resources = [(name, r) for name, card in fixture_cards for r in suggested_resources(card)]
    assert len(resources) > 50
    for name, resource in resources:
        assert empty_values(resource) == [], f"{name}: {resource}"
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_the_no_fracture_order_card_suggests_an_mri_without_a_reason_array() -> None:
    order = DraftOrder("ServiceRequest/sr1", {"resourceType": "ServiceRequest", "code": {"text": "kyphoplasty"}})
    card = order_check_card(None, [order], CardContext("p1", "Practitioner/1", counter_uuids()))
    (mri,) = suggested_resources(card)
    assert "reasonReference" not in mri and empty_values(mri) == []
    get_fhir_model_class("ServiceRequest").model_validate(mri)


@examples(80)
@given(facts())
def test_cards_of_any_facts_have_safe_text_and_no_empty_values(f: Facts) -> None:
    a = decide(f)
    ctx = CardContext("p1", "Practitioner/1", counter_uuids(), f.ignored)
    order = DraftOrder("ServiceRequest/sr1", {"resourceType": "ServiceRequest", "code": {"text": "kyphoplasty"}})
    for card in [*cards_for(a, ctx), order_check_card(a, [order], ctx)]:
        for resource in suggested_resources(card):
            assert empty_values(resource) == []
        assert [w for w, text in shown_text(card) if unsafe_characters(text)] == []
        assert [w for w, text in shown_text(card) if "; )" in text] == []
