"""Every card the fixtures produce obeys the CDS Hooks response rules and PRODUCT.md's contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from service.devtools.replay import expand, replay_file

from support.cds_rules import card_problems, response_problems
from support.paths import FIXTURES

ALL = list(expand([FIXTURES]))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_fixture_cards_follow_the_response_rules(app: Flask, path: Path) -> None:
    outcome = replay_file(app, path, None, None)
    if outcome.status != 200:
        pytest.skip("not a card-producing fixture")
    assert response_problems(outcome.body) == []


def test_the_checker_catches_broken_cards() -> None:
    good = {
        "uuid": "00000000-0000-4000-8000-000000000001",
        "summary": "s",
        "indicator": "info",
        "source": {"label": "x"},
        "extension": {"org.vcfcds": {}},
    }
    broken = {
        **good,
        "summary": "x" * 140,
        "indicator": "hard-stop",
        "detail": "<script>alert(1)</script>",
        "suggestions": [
            {
                "uuid": good["uuid"],
                "label": "l",
                "isRecommended": True,
                "actions": [{"type": "delete", "resource": {"resourceType": "Patient"}}],
            }
        ],
        "overrideReasons": [{"code": "x"}],
    }
    found = "\n".join(card_problems(broken))
    for rule in ("summary", "indicator", "raw HTML", "cds-resp-6", "cds-resp-5", "cds-resp-2", "cds-resp-4"):
        assert rule in found
