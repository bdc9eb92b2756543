"""The codes the cards' suggestions carry, read from their value sets in ``mappings/`` (codes live only there).

These value sets are not matched against records: each lists, in order, the codings of one
CodeableConcept that a suggested ServiceRequest carries. Read once, at import.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..normalize.terminology import shipped_mappings_dir


def codings(valueset_id: str) -> list[dict[str, Any]]:
    """The enumerated codings of a shipped value set, in file order, as FHIR Codings."""
    doc = orjson.loads((shipped_mappings_dir() / f"valueset-{valueset_id}.json").read_bytes())
    return [
        {"system": include["system"], "code": concept["code"], "display": concept["display"]}
        for include in doc["compose"]["include"]
        for concept in include.get("concept", [])
    ]


IMAGING = {"coding": codings("suggestion-imaging-category")}
DXA = {"coding": codings("suggestion-dxa"), "text": "DXA bone density scan"}
