"""Exam and imaging findings the app lets a clinician record: which are missing, and the Observation.

The Observation is coded in the service's finding CodeSystem (mappings/codesystem-finding.json), so
the next assessment reads it like any other: present/absent as ``valueBoolean``, height loss as a
percentage (UCUM ``%``), as that CodeSystem's definitions say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..decide import Assessment
from ..decide.facts import Facts
from ..normalize.terminology import shipped_mappings_dir

UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class FindingForm:
    code: str  # in the finding CodeSystem
    display: str
    quantity: bool  # a percentage instead of present/absent


FORMS = (
    FindingForm("point-tenderness", "Point tenderness at the fractured level", False),
    FindingForm("marrow-edema", "Bone-marrow edema at the fractured level (MRI STIR/T2)", False),
    FindingForm("height-loss", "Vertebral body height loss (% of expected height)", True),
    FindingForm("kyphotic-deformity", "Kyphotic deformity", False),
)
BY_CODE = {f.code: f for f in FORMS}


def finding_codesystem() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((shipped_mappings_dir() / "codesystem-finding.json").read_text())
    return doc


def missing_findings(assessment: Assessment, facts: Facts) -> list[FindingForm]:
    """The four findings, when the record does not document them (the decision's ``missing``, or no
    finding at all for height loss and kyphosis, which choose the procedure)."""
    out = []
    for form in FORMS:
        if form.code in ("point-tenderness", "marrow-edema"):
            if form.code.replace("-", "_") in assessment.missing:
                out.append(form)
        elif form.code == "kyphotic-deformity":
            if not facts.findings.get(form.code) and not facts.refs("kyphosis"):
                out.append(form)
        elif not facts.findings.get(form.code):
            out.append(form)
    return out


class FindingInputError(ValueError):
    """The form's values are not a finding; the message is for the clinician."""


def parse_value(form: FindingForm, fields: Mapping[str, str]) -> bool | float:
    if form.quantity:
        raw = fields.get("percent", "").strip().replace(",", ".")
        try:
            value = float(raw)
        except ValueError:
            raise FindingInputError("Enter the height loss as a number of percent (0 to 100).") from None
        if not 0 <= value <= 100:
            raise FindingInputError("Height loss is a percentage of the expected height: 0 to 100.")
        return value
    choice = fields.get("value", "")
    if choice not in ("present", "absent"):
        raise FindingInputError("Choose present or absent.")
    return choice == "present"


def observation(
    form: FindingForm,
    value: bool | float,
    *,
    patient_id: str,
    performer: str | None,
    when: datetime,
    body_site: Mapping[str, Any] | None,
) -> dict[str, Any]:
    system = finding_codesystem()
    display = next((c["display"] for c in system["concept"] if c["code"] == form.code), form.display)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system["url"], "code": form.code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when.isoformat(timespec="seconds"),
    }
    if performer:
        resource["performer"] = [{"reference": performer}]
    if body_site:
        resource["bodySite"] = dict(body_site)
    if isinstance(value, bool):
        resource["valueBoolean"] = value
    else:
        resource["valueQuantity"] = {"value": value, "unit": "%", "system": UCUM, "code": "%"}
    return resource


def fracture_body_site(record_resources: list[dict[str, Any]], fracture_ref: str | None) -> dict[str, Any] | None:
    """The bodySite (vertebral level) of the fracture Condition, when the record gives one."""
    if not fracture_ref:
        return None
    kind, _, rid = fracture_ref.partition("/")
    for r in record_resources:
        if r.get("resourceType") == kind and r.get("id") == rid:
            sites = r.get("bodySite")
            if isinstance(sites, list) and sites and isinstance(sites[0], dict):
                return dict(sites[0])
    return None
