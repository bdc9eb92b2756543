"""The real-shaped fixtures hold what their README says: the original bundles, or a stated derivation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.paths import FIXTURES, SHARED

REALDATA = SHARED / "realdata"
FILES = sorted((FIXTURES / "realdata").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return dict(orjson.loads(path.read_bytes()))


def test_there_are_real_shaped_fixtures_with_expectations() -> None:
    docs = [_load(p) for p in FILES]
    assert len(docs) >= 4
    assert all(d["expected"] is not None and d["source"]["sha256"] for d in docs)
    assert any(d["expected"]["cards"] for d in docs), "one derived record must have a VCF"
    assert all("DERIVED" in d["description"] for d in docs if "derived" in d["source"])


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is not present on this machine")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_bundle_is_the_original_or_a_stated_derivation(path: Path) -> None:
    doc = _load(path)
    original = (REALDATA / doc["source"]["realdata"]).read_bytes()
    assert hashlib.sha256(original).hexdigest() == doc["source"]["sha256"]
    bundle = orjson.loads(original)
    if "derived" not in doc["source"]:
        assert doc["bundle"] == bundle
        return
    kept = [e for e in bundle["entry"] if e["resource"]["resourceType"] not in ("Claim", "ExplanationOfBenefit")]
    assert doc["bundle"]["entry"][: len(kept)] == kept  # every original clinical entry, unchanged
    added = {e["resource"]["resourceType"] for e in doc["bundle"]["entry"][len(kept) :]}
    assert added == {"Encounter", "Condition", "Observation"}
