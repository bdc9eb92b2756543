"""The golden fixtures as test parameters, with the review's known defects marked."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from service.devtools.replay import expand

from support.paths import FIXTURES

KNOWN_DEFECT = pytest.mark.xfail(
    strict=True, reason="a defect found in review: move the file out of failing/ once fixed"
)


def golden_files() -> list[Path]:
    """Every fixture that states an expected result."""
    return [p for p in expand([FIXTURES]) if "expected" in orjson.loads(p.read_bytes())]


def golden(paths: list[Path]) -> list[object]:
    """The fixtures as test parameters; those in a ``failing/`` folder (defects found in review,
    not yet fixed) must fail until the code is fixed, then strict xfail says to move them out."""
    return [pytest.param(p, id=p.stem, marks=[KNOWN_DEFECT] if "failing" in p.parts else []) for p in paths]
