"""Golden fixtures replayed through the real app: expected results come from CLINICAL.md."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from flask import Flask

from service.devtools.replay import replay_file

from support.golden import golden, golden_files

FILES = golden_files()


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
