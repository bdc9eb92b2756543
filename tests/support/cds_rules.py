"""The CDS Hooks 2.0 response rules, as checks (FHIR Tools IG invariants cds-resp-1..6 and more)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

INDICATORS = {"info", "warning", "critical"}
RAW_HTML = re.compile(r"(?<!\\)<[A-Za-z!/]")


def response_problems(body: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(body.get("cards"), list):
        return ["response has no cards array"]
    for i, card in enumerate(body["cards"]):
        problems += [f"card {i}: {p}" for p in card_problems(card)]
    return problems


def card_problems(card: dict[str, Any]) -> list[str]:
    p: list[str] = []
    uuid.UUID(card["uuid"])
    if not (0 < len(card.get("summary", "")) < 140):
        p.append("summary must be 1-139 characters")
    if card.get("indicator") not in INDICATORS:
        p.append(f"indicator {card.get('indicator')!r}")
    if not card.get("source", {}).get("label"):
        p.append("source.label required")
    if RAW_HTML.search(card.get("detail", "")):
        p.append("detail contains raw HTML")
    suggestions = card.get("suggestions") or []
    behavior = card.get("selectionBehavior")
    if suggestions and not behavior:
        p.append("cds-resp-6: suggestions need selectionBehavior")
    if behavior not in (None, "at-most-one", "any"):
        p.append(f"selectionBehavior {behavior!r}")
    if behavior == "at-most-one" and sum(bool(s.get("isRecommended")) for s in suggestions) > 1:
        p.append("cds-resp-1: at most one recommended suggestion")
    for s in suggestions:
        uuid.UUID(s["uuid"])
        if not s.get("label"):
            p.append("suggestion label required")
        for a in s.get("actions") or []:
            if not a.get("description"):
                p.append("cds-resp-5: action description required")
            if a.get("type") not in ("create", "update", "delete"):
                p.append(f"action type {a.get('type')!r}")
            if a.get("type") == "delete" and (not a.get("resourceId") or a.get("resource")):
                p.append("cds-resp-2: delete takes resourceId, not resource")
            if a.get("type") in ("create", "update"):
                resource = a.get("resource")
                if not isinstance(resource, dict):
                    p.append("create/update needs a resource")
                else:
                    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for reason in card.get("overrideReasons") or []:
        if not reason.get("display") or not reason.get("code"):
            p.append("cds-resp-4: override reasons need code and display")
    for link in card.get("links") or []:
        if link.get("type") not in ("absolute", "smart"):
            p.append(f"link type {link.get('type')!r}")
        if link.get("type") != "smart" and link.get("appContext"):
            p.append("cds-resp-3: appContext only for smart links")
        if not link.get("label") or not link.get("url", "").startswith("http"):
            p.append("link needs label and url")
    ext = card.get("extension", {}).get("org.vcfcds")
    if ext is None:
        p.append("org.vcfcds extension missing")
    else:
        for key in (
            "kind",
            "recommendation",
            "referral",
            "pathway",
            "procedure",
            "criteria",
            "cautions",
            "missing",
            "rulesVersion",
        ):
            if key not in ext:
                p.append(f"extension lacks {key}")
        if ext.get("kind") in ("recommendation", "order-check") and not card.get("overrideReasons"):
            p.append("actionable card without overrideReasons")
    return p
