"""The order-check card of order-select / order-sign: does the drafted augmentation meet the criteria?"""

from __future__ import annotations

from typing import Any

from ..decide import RULES_VERSION, Assessment
from ..normalize.orders import DraftOrder
from .cards import (
    EVIDENCE_CAVEAT,
    EXTENSION_KEY,
    CardContext,
    card_source,
    criteria_table,
    evidence_links,
    extension,
    md,
    not_documented,
    override_reasons,
    service_request,
    suggestions_for,
    summary,
)
from .codes import IMAGING

_SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def order_check_card(a: Assessment | None, orders: list[DraftOrder], ctx: CardContext) -> dict[str, Any]:
    if a is None:
        return _no_fracture_card(orders, ctx)
    appropriate = a.recommendation == "augmentation"
    refs = [o.ref for o in orders if o.ref]
    parts = []
    if appropriate:
        indicator = "warning" if a.cautions else "info"
        title = "Vertebral augmentation order meets the selection criteria"
        if a.cautions:
            title += "; cautions: " + ", ".join(c.text.split(":")[0] for c in a.cautions)
        parts.append(f"**{md(title)}.** Decision: {md(a.headline)}.")
        if a.procedure == "kyphoplasty" and any(o.is_vertebroplasty for o in orders):
            parts.append(
                "Height loss over 25 % or kyphotic deformity is documented: balloon kyphoplasty "
                "(CPT 22513/22514) restores more height than the vertebroplasty ordered (CLINIC-SEED)."
            )
        suggestions: list[dict[str, Any]] = []
    else:
        indicator = max(("warning", a.indicator), key=_SEVERITY.__getitem__)
        title = f"Augmentation order not supported: {a.headline}"
        parts.append(
            f"**The drafted vertebral augmentation does not meet the criteria.** Recommended instead: {md(a.headline)}."
        )
        suggestions = [_replacement(a, orders, ctx)]
    parts.append(criteria_table(a.criteria))
    if a.cautions:
        parts.append("**Cautions:**\n" + "\n".join(f"- {md(c.text)} ({c.source})" for c in a.cautions))
    if a.missing:
        parts.append(not_documented(a.missing))
    parts += [md(n) for n in a.notes]
    parts += [EVIDENCE_CAVEAT, "_Decision support for the clinician, not a decision._"]
    return _card(
        ctx,
        title,
        indicator,
        "\n\n".join(parts),
        suggestions,
        extension(a, "order-check", a.criteria, orderAppropriate=appropriate, orders=refs),
    )


def _replacement(a: Assessment, orders: list[DraftOrder], ctx: CardContext) -> dict[str, Any]:
    """One suggestion: delete the drafted augmentation and create the recommended alternative."""
    alternative = next(s for s in suggestions_for(ctx, a) if s["isRecommended"])
    create = alternative["actions"][0]
    actions = _delete_drafts(orders)
    actions.append({**create, "description": f"Create instead: {create['description']}"})
    return {
        "label": f"Replace the augmentation order: {alternative['label']}",
        "uuid": alternative["uuid"],
        "isRecommended": True,
        "actions": actions,
    }


def _delete_drafts(orders: list[DraftOrder]) -> list[dict[str, Any]]:
    """Delete actions for the drafts (a draft without an id cannot be deleted by reference)."""
    return [
        {"type": "delete", "description": f"Remove the draft augmentation order {o.ref}", "resourceId": o.ref}
        for o in orders
        if o.ref
    ]


def _no_fracture_card(orders: list[DraftOrder], ctx: CardContext) -> dict[str, Any]:
    text = "MRI thoracolumbar spine without contrast, with STIR: confirm a vertebral compression fracture"
    imaging = service_request(ctx, text, reasons=[], category=IMAGING)
    actions = _delete_drafts(orders)
    actions.append(
        {"type": "create", "description": "Order MRI spine (STIR) to confirm the fracture", "resource": imaging}
    )
    suggestion = {
        "label": "Replace the augmentation order with an MRI of the spine",
        "uuid": ctx.new_uuid(),
        "isRecommended": True,
        "actions": actions,
    }
    detail = (
        "**No active vertebral compression fracture is documented** (no VCF diagnosis on the problem list "
        "or encounter diagnoses). Vertebral augmentation needs an imaging-confirmed acute or subacute "
        "fracture (LCD-L38201, NICE-TA279). Document the fracture, or confirm it by MRI.\n\n"
        "_Decision support for the clinician, not a decision._"
    )
    body = {
        "kind": "order-check",
        "orderAppropriate": False,
        "recommendation": None,
        "referral": None,
        "pathway": "unknown",
        "procedure": None,
        "criteria": [{"id": "active_vcf", "status": "not-met", "evidence": [], "source": "LCD-L38201"}],
        "cautions": [],
        "missing": ["vcf"],
        "rulesVersion": RULES_VERSION,
        "orders": [o.ref for o in orders if o.ref],
    }
    return _card(
        ctx,
        "Vertebral augmentation ordered: no documented vertebral compression fracture",
        "warning",
        detail,
        [suggestion],
        {EXTENSION_KEY: body},
    )


def _card(
    ctx: CardContext, title: str, indicator: str, detail: str, suggestions: list[dict[str, Any]], ext: dict[str, Any]
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": ctx.new_uuid(),
        "summary": summary(title),
        "indicator": indicator,
        "detail": detail,
        "source": card_source("vcf-order-check", "Vertebral augmentation order check"),
        "overrideReasons": override_reasons(),
        "links": evidence_links(),
        "extension": ext,
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card
