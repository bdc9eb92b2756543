"""Golden fixtures replayed through the real app: expected results come from CLINICAL.md."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from flask import Flask

from service.replay import expand, replay_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FILES = [p for p in expand([FIXTURES]) if "expected" in orjson.loads(p.read_bytes())]
KNOWN_DEFECT = pytest.mark.xfail(
    strict=True, reason="a defect found in review: move the file out of failing/ once fixed"
)


def golden(paths: list[Path]) -> list[object]:
    """The fixtures as test parameters; those in a ``failing/`` folder (defects found in review,
    not yet fixed) must fail until the code is fixed, then strict xfail says to move them out."""
    return [pytest.param(p, id=p.stem, marks=[KNOWN_DEFECT] if "failing" in p.parts else []) for p in paths]


def test_there_is_a_fixture_for_every_decision_row() -> None:
    rows = {
        int(m.group(1))
        for path in FILES
        if (m := re.match(r"Row (\d+)", orjson.loads(path.read_bytes()).get("description", "")))
    }
    assert set(range(17)) <= rows, f"rows without a fixture: {sorted(set(range(17)) - rows)}"


@pytest.mark.parametrize("path", golden(FILES))
def test_fixture_matches_expected(app: Flask, path: Path) -> None:
    outcome = replay_file(app, path, None, None)
    assert outcome.checked
    assert outcome.problems == [], "\n".join(outcome.problems)
