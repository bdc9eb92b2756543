"""Assessments → CDS Hooks 2.0 cards (GitHub-flavoured Markdown detail, FHIR R4 suggestions).

Pure: ids come from ``new_uuid``; nothing here reads a clock or the network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..decide import Assessment, Caution, Criterion
from ..decide.documentation import what_to_document
from ..decide.facts import Ignored
from .codes import DXA, IMAGING
from .ignored import ignored_note

EXTENSION_KEY = "org.vcfcds"
TOPIC_SYSTEM = "http://vcf-cds.org/fhir/CodeSystem/card-topic"
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
LCD_URL = "https://www.cms.gov/medicare-coverage-database/view/lcd.aspx?lcdid=38201"
NICE_URL = "https://www.nice.org.uk/guidance/ta279"
SUMMARY_LIMIT = 139

# CDS Hooks 3.0 non-adherence reasons (spec-3.0.0-ballot/vocabulary), shown when overriding
OVERRIDE_REASONS = (
    ("cds-not-applicable", "CDS does not apply to patient"),
    ("recipient-disagrees-evidence", "Recipient disagrees with recommendation because of issues with the evidence"),
    ("recipient-concerns-outcomes", "Recipient has concerns regarding potential health outcomes"),
    ("does-not-align-preferences", "Recommendation does not align with patient preferences or values"),
    ("not-convenient-feasible", "Recommendation is not convenient or feasible"),
)
EVIDENCE_CAVEAT = (
    "**Evidence:** sham-controlled trials (INVEST, Buchbinder 2009) showed no benefit of vertebroplasty "
    "over placebo; open RCTs (VERTOS II, FREE; CAFE in cancer) and VAPOUR (fracture under 6 weeks, NRS ≥ 7) "
    "showed benefit. Risks: infection, bleeding, nerve injury, cement leakage or embolism."
)
PROCEDURE_NAME = {"kyphoplasty": "balloon kyphoplasty", "either": "vertebroplasty or kyphoplasty"}
PROCEDURE_TEXT = {
    "kyphoplasty": "balloon kyphoplasty (height loss > 25 % or kyphotic deformity: regain height)",
    "either": "vertebroplasty or kyphoplasty (vertebroplasty suits small fractures not needing height)",
}
REFERRAL_TEXT = {
    "spine-surgery": "Referral to spine surgery",
    "oncology": "Referral to oncology for work-up and biopsy",
    "infection": "Referral to infectious diseases / spine surgery for spinal infection",
}
# Words, not emoji: an EHR's machine may have no emoji font (a status would show as an empty box);
# the developer viewer may decorate these words, the card itself stays plain text (tests/test_card_text.py)
STATUS_TEXT = {"met": "Met", "not-met": "Not met", "unknown": "Unknown"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#!~])")


@dataclass(frozen=True)
class CardContext:
    patient_id: str
    user_id: str | None
    new_uuid: Callable[[], str]
    ignored: tuple[Ignored, ...] = ()
    smart_launch: str | None = None  # the SMART app's launch URL, when the app is configured
    hook_instance: str | None = None


def md(text: Any) -> str:
    """Escape text from the record for GFM: no raw HTML, no table breaks, no links."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def summary(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def criteria_table(criteria: Iterable[Criterion]) -> str:
    """What decides the card first: a table of the criteria not met, then the unknown ones; the met
    criteria follow in one line, so a card with many met criteria still shows its reasons unscrolled."""
    criteria = tuple(criteria)
    open_ = [c for status in ("not-met", "unknown") for c in criteria if c.status == status]
    met = [c for c in criteria if c.status == "met"]
    parts = []
    if open_:
        rows = ["| Criterion | Status | Evidence | Source |", "|---|---|---|---|"]
        for c in open_:
            evidence = ", ".join(md(r) for r in c.evidence)
            if c.note:
                evidence = md(c.note) + (f" ({evidence})" if evidence else "")
            rows.append(f"| {md(c.label)} | {STATUS_TEXT[c.status]} | {evidence or '—'} | {c.source} |")
        parts.append("\n".join(rows))
    if met:
        parts.append(
            f"**{STATUS_TEXT['met']}:** " + "; ".join(md(c.label) + (f": {md(c.note)}" if c.note else "") for c in met)
        )
    return "\n\n".join(parts)


def not_documented(missing: Iterable[str]) -> str:
    """The ``missing`` ids in clinical words (the extension keeps the ids)."""
    return "**Not documented** (unknown, not negative): " + ", ".join(what_to_document(m) for m in missing)


def extension(a: Assessment, kind: str, criteria: Iterable[Criterion], **extra: Any) -> dict[str, Any]:
    body = {
        "kind": kind,
        "recommendation": a.recommendation,
        "referral": a.referral,
        "pathway": a.pathway,
        "procedure": a.procedure,
        "criteria": [
            {"id": c.id, "status": c.status, "evidence": list(c.evidence), "source": c.source} for c in criteria
        ],
        "cautions": [c.id for c in a.cautions],
        "missing": list(a.missing),
        "rulesVersion": a.rules_version,
        **extra,
    }
    return {EXTENSION_KEY: body}


def override_reasons() -> list[dict[str, str]]:
    return [{"system": NON_ADHERENCE, "code": code, "display": display} for code, display in OVERRIDE_REASONS]


def service_request(
    ctx: CardContext,
    text: str,
    *,
    reasons: Iterable[str],
    priority: str = "routine",
    code: dict[str, Any] | None = None,
    category: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A draft order the clinician can accept in one click."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": priority,
        "code": code or {"text": text},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
    }
    reasons = list(reasons)
    if reasons:  # FHIR JSON has no empty arrays: no reason, no element
        resource["reasonReference"] = [{"reference": r} for r in reasons]
    if category:
        resource["category"] = [category]
    if ctx.user_id and "/" in ctx.user_id:
        resource["requester"] = {"reference": ctx.user_id}
    return resource


def suggestion(ctx: CardContext, label: str, resource: dict[str, Any], recommended: bool) -> dict[str, Any]:
    return {
        "label": label,
        "uuid": ctx.new_uuid(),
        "isRecommended": recommended,
        "actions": [{"type": "create", "description": label, "resource": resource}],
    }


def mri_suggestion(ctx: CardContext, a: Assessment) -> dict[str, Any]:
    text = "MRI thoracolumbar spine without contrast, with STIR, at the fracture level"
    return suggestion(
        ctx,
        "Order MRI spine (STIR) to look for marrow edema",
        service_request(ctx, text, reasons=a.fracture_refs, category=IMAGING),
        False,
    )


def suggestions_for(ctx: CardContext, a: Assessment) -> list[dict[str, Any]]:
    reasons = a.fracture_refs
    if a.recommendation == "referral" and a.referral:
        priority = "urgent" if a.indicator == "critical" else "routine"
        text = REFERRAL_TEXT[a.referral]
        return [suggestion(ctx, text, service_request(ctx, text, reasons=reasons, priority=priority), True)]
    out: list[dict[str, Any]] = []
    if a.recommendation == "augmentation":
        text = f"Referral for vertebral augmentation: {PROCEDURE_NAME[a.procedure or 'either']}"
        if a.pathway == "neoplastic":
            text += ", coordinated with oncology/radiation oncology"
        out.append(
            suggestion(ctx, "Refer for vertebral augmentation", service_request(ctx, text, reasons=reasons), True)
        )
    elif a.row == 9:
        text = "Referral to pain service for chronic vertebral fracture pain"
        out.append(suggestion(ctx, text, service_request(ctx, text, reasons=reasons), True))
    else:
        text = "Physiotherapy for vertebral compression fracture (conservative care)"
        out.append(suggestion(ctx, "Refer to physiotherapy", service_request(ctx, text, reasons=reasons), True))
    if "marrow_edema" in a.missing:
        out.append(mri_suggestion(ctx, a))
    return out


def caution_line(c: Caution) -> str:
    """``- text (SOURCE; evidence, …)``; without evidence ``- text (SOURCE)``."""
    cited = "; ".join([c.source, ", ".join(md(r) for r in c.evidence)] if c.evidence else [c.source])
    return f"- {md(c.text)} ({cited})"


def _detail(a: Assessment, ctx: CardContext) -> str:
    weeks = f"{a.fracture_age_days / 7:.0f} weeks" if a.fracture_age_days is not None else "unknown age"
    parts = [
        f"**{md(a.headline)}.** Pathway: {a.pathway}; newest fracture: {weeks}.",
    ]
    if a.procedure:
        parts.append(f"Procedure: {md(PROCEDURE_TEXT[a.procedure])}.")
    parts.append(criteria_table(a.criteria))
    if a.cautions:
        lines = "\n".join(caution_line(c) for c in a.cautions)
        parts.append("**Cautions** (relative contraindications; they do not change the recommendation):\n" + lines)
    if a.missing:
        parts.append(not_documented(a.missing))
    parts += [md(n) for n in a.notes]
    if a.recommendation == "augmentation":
        parts.append(EVIDENCE_CAVEAT)
    if ctx.ignored:
        parts.append(ignored_note(ctx.ignored, md))
    parts.append("_Decision support for the clinician, not a decision. Rules " + md(a.rules_version) + "._")
    return "\n\n".join(parts)


def card_source(topic_code: str, topic_display: str) -> dict[str, Any]:
    return {
        "label": "vcf-cds: CMS LCD L38201, NICE TA279, ACR, SIR, IOF",
        "url": LCD_URL,
        "topic": {"system": TOPIC_SYSTEM, "code": topic_code, "display": topic_display},
    }


def evidence_links() -> list[dict[str, str]]:
    return [
        {"label": "CMS LCD L38201: Percutaneous Vertebral Augmentation", "url": LCD_URL, "type": "absolute"},
        {
            "label": "NICE TA279: Percutaneous vertebroplasty and balloon kyphoplasty",
            "url": NICE_URL,
            "type": "absolute",
        },
    ]


def smart_link(ctx: CardContext) -> list[dict[str, str]]:
    """The link to the SMART app. Its appContext is the hookInstance: opaque, no PHI; the app finds
    the card's audit row by it and checks that the EHR's token is for the same patient."""
    if not ctx.smart_launch:
        return []
    link = {"label": "Open the VCF timeline and record findings", "url": ctx.smart_launch, "type": "smart"}
    if ctx.hook_instance:
        link["appContext"] = ctx.hook_instance
    return [link]


def recommendation_card(a: Assessment, ctx: CardContext, kind: str = "recommendation", **extra: Any) -> dict[str, Any]:
    card = {
        "uuid": ctx.new_uuid(),
        "summary": summary(a.headline),
        "indicator": a.indicator,
        "detail": _detail(a, ctx),
        "source": card_source("vcf-recommendation", "Vertebral compression fracture management"),
        "suggestions": suggestions_for(ctx, a),
        "overrideReasons": override_reasons(),
        "links": evidence_links() + (smart_link(ctx) if kind == "recommendation" else []),
        "extension": extension(a, kind, a.criteria, **extra),
    }
    card["selectionBehavior"] = "at-most-one" if len(card["suggestions"]) == 1 else "any"
    return card


def secondary_prevention_card(a: Assessment, ctx: CardContext) -> dict[str, Any] | None:
    sp = a.secondary_prevention
    if sp is None:
        return None
    no_dxa = any(c.id == "dxa_within_2_years" and c.status != "met" for c in sp.criteria)
    no_therapy = any(c.id == "osteoporosis_therapy" and c.status != "met" for c in sp.criteria)
    suggestions = []
    if no_dxa:
        suggestions.append(
            suggestion(
                ctx,
                "Order DXA bone density scan",
                service_request(ctx, "DXA bone density scan", reasons=a.fracture_refs, code=DXA, category=IMAGING),
                True,
            )
        )
    if no_therapy:
        text = "Osteoporosis treatment evaluation (fracture liaison / bone health service)"
        suggestions.append(
            suggestion(
                ctx, "Refer for osteoporosis treatment", service_request(ctx, text, reasons=a.fracture_refs), not no_dxa
            )
        )
    what = " and ".join(
        x for x, missing in (("no DXA in 2 years", no_dxa), ("no osteoporosis therapy", no_therapy)) if missing
    )
    detail = "\n\n".join(
        [
            "**Fragility vertebral fracture: evaluate and treat osteoporosis** (IOF-2011: augmentation is no "
            "substitute for it; Medicare LCDs require BMD referral and osteoporosis education).",
            criteria_table(sp.criteria),
            "_Decision support for the clinician, not a decision._",
        ]
    )
    missing = tuple(c.fact for c in sp.criteria if c.status != "met")
    return {
        "uuid": ctx.new_uuid(),
        "summary": summary(f"Osteoporotic vertebral fracture with {what}: evaluate and treat osteoporosis"),
        "indicator": sp.indicator,
        "detail": detail,
        "source": card_source("vcf-secondary-prevention", "Osteoporosis secondary prevention"),
        "suggestions": suggestions,
        "selectionBehavior": "any",
        "overrideReasons": override_reasons(),
        "links": evidence_links()[:1],
        "extension": {
            EXTENSION_KEY: {
                **extension(a, "secondary-prevention", sp.criteria)[EXTENSION_KEY],
                "cautions": [],
                "missing": list(missing),
            }
        },
    }


def cards_for(a: Assessment | None, ctx: CardContext) -> list[dict[str, Any]]:
    """The patient-view cards: one recommendation card, then the secondary-prevention card if due."""
    if a is None:
        return []
    cards = [recommendation_card(a, ctx)]
    sp = secondary_prevention_card(a, ctx)
    if sp:
        cards.append(sp)
    return cards


__all__ = ["CardContext", "Caution", "cards_for", "recommendation_card", "md", "criteria_table"]
