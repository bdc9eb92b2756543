"""What the page says in a clinician's words: the decision, units, and the patient banner.

The decision's row number is the rules' bookkeeping, shown only as small print; UCUM annotation
units (``{score}``) are codes, not units a reader needs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..decide import Assessment
from ..render.cards import PROCEDURE_NAME

RECOMMENDATION = {
    "conservative": "conservative care",
    "augmentation": "augmentation",
    "referral": "referral",
}
ANNOTATION = re.compile(r"\{[^{}]*\}")


def decision(a: Assessment) -> str:
    """``Decision: augmentation (vertebroplasty or kyphoplasty)``."""
    text = f"Decision: {RECOMMENDATION.get(a.recommendation, a.recommendation)}"
    if a.procedure:
        text += f" ({PROCEDURE_NAME.get(a.procedure, a.procedure)})"
    return text


def unit(value: object) -> str:
    """A UCUM unit as shown after a value: annotations dropped (``{score}`` → ``""``, ``mg{total}`` → ``mg``)."""
    return ANNOTATION.sub("", value).strip() if isinstance(value, str) else ""


@dataclass(frozen=True)
class Banner:
    name: str
    birth_date: str | None
    sex: str | None  # administrative gender
    identifier: str | None  # "MRN 12345": its type's text, then the value

    def __str__(self) -> str:
        parts = [self.name]
        parts += [f"born {self.birth_date}"] if self.birth_date else []
        parts += [self.sex] if self.sex else []
        parts += [self.identifier] if self.identifier else []
        return ", ".join(parts)


def _name(patient: Mapping[str, Any]) -> str:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")  # the official name first
    for name in names:
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        if given or family:
            return f"{given} {family}".strip()
    return "Name not recorded"


def _identifier(patient: Mapping[str, Any]) -> str | None:
    identifiers = [
        i for i in patient.get("identifier") or [] if isinstance(i, dict) and isinstance(i.get("value"), str)
    ]
    # the EHR's own: "usual" or "official" before others (a FHIR use, not a terminology code)
    identifiers.sort(key=lambda i: i.get("use") not in ("usual", "official"))
    for i in identifiers:
        kind: dict[str, Any] = i["type"] if isinstance(i.get("type"), dict) else {}
        label = kind.get("text") if isinstance(kind.get("text"), str) else None
        for coding in kind.get("coding") or []:
            if label is None and isinstance(coding, dict) and isinstance(coding.get("display"), str):
                label = coding["display"]
        return f"{label or 'ID'} {str(i['value'])[:64]}"
    return None


def banner(patient: Mapping[str, Any] | None) -> Banner:
    patient = patient or {}
    birth = patient.get("birthDate")
    sex = patient.get("gender")
    return Banner(
        _name(patient),
        birth if isinstance(birth, str) and birth else None,
        sex if sex in ("male", "female", "other", "unknown") else None,
        _identifier(patient),
    )
