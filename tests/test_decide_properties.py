"""Properties of the rules over any Facts (hypothesis): decide never raises, answers a row of the table,
never turns unknown into a reassuring answer, and its cards obey the CDS Hooks response rules.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given

from service.decide import decide
from service.decide.facts import Facts
from service.normalize.orders import DraftOrder
from service.render.cards import CardContext, cards_for
from service.render.order_check import order_check_card

from support.cds_rules import card_problems
from support.clock import counter_uuids
from support.examples import examples
from support.strategies import facts

RECOMMENDATIONS = {"conservative", "augmentation", "referral"}
PATHWAYS = {"osteoporotic", "neoplastic", "traumatic", "unknown"}
ORDER = DraftOrder("ServiceRequest/sr1", {"resourceType": "ServiceRequest", "code": {"coding": []}})


def context(f: Facts) -> CardContext:
    return CardContext("p1", "Practitioner/1", counter_uuids(), f.ignored)


@examples(120)
@given(facts())
def test_decide_answers_a_row_of_the_table(f: Facts) -> None:
    a = decide(f)
    if not f.fractures:
        assert a is None
        return
    assert a is not None
    assert 1 <= a.row <= 16
    assert a.recommendation in RECOMMENDATIONS and a.pathway in PATHWAYS
    assert a.indicator in {"info", "warning", "critical"}
    assert (a.referral is not None) == (a.recommendation == "referral")
    assert (a.procedure is not None) == (a.recommendation == "augmentation")
    assert a.fracture_age_days is None or a.fracture_age_days >= 0
    assert decide(f) == a  # deterministic
    event(f"row {a.row}")


@examples(120)
@given(facts())
def test_unknown_is_listed_and_never_reassuring(f: Facts) -> None:
    a = decide(f)
    if a is None:
        return
    assert {c.fact for c in a.criteria if c.status == "unknown"} <= set(a.missing)
    if a.recommendation == "augmentation":
        assert a.pain is not None and a.pain >= 5  # every augmentation row needs a known NRS ≥ 5
        assert "pain_score" not in a.missing
        assert a.indicator in {"warning", "critical"}
    if a.row in (10, 12, 14):
        assert a.fracture_age_days is not None  # a band needs a known fracture age


@examples(80)
@given(facts())
def test_every_card_obeys_the_response_rules(f: Facts) -> None:
    a = decide(f)
    rendered: list[dict[str, Any]] = cards_for(a, context(f)) + [order_check_card(a, [ORDER], context(f))]
    for card in rendered:
        assert card_problems(card) == []
        assert 0 < len(card["summary"]) < 140
