"""Draft orders of order-select / order-sign: which of them are vertebral augmentation orders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError
from ..gather.prefetch import bundle_resources
from ..observe.redact import safe_ref
from .terminology import Terminology
from .validation import validate
from .whose import PatientReferences

AUGMENTATION = "vertebral-augmentation-procedure"
VERTEBROPLASTY = "vertebroplasty-procedure"  # no cavity creation (mappings/valueset-vertebroplasty-procedure.json)
ORDER_TYPES = ("ServiceRequest", "Procedure")


@dataclass(frozen=True)
class DraftOrder:
    ref: str  # "ServiceRequest/123", or "" when the draft has no id
    resource: dict[str, Any]
    is_vertebroplasty: bool = False


def augmentation_orders(
    context: Mapping[str, Any], hook: str, terminology: Terminology, whose: PatientReferences
) -> list[DraftOrder]:
    """The draft augmentation orders the hook is about.

    order-sign: every draft order. order-select: only the newly selected ones (``selections``).
    A draft whose subject does not reference the context patient is not this patient's order: it is
    not checked against this patient's record (no card, if it is the only one).
    Raises ``BadRequestError`` when draftOrders is not a Bundle or a matching order is invalid FHIR.
    """
    draft = context.get("draftOrders")
    if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
        raise BadRequestError("context.draftOrders must be a FHIR Bundle.", expression=["context.draftOrders"])
    selected = set(context.get("selections") or []) if hook == "order-select" else None
    found = []
    for resource in bundle_resources(draft):
        if resource.get("resourceType") not in ORDER_TYPES:
            continue
        rid = resource.get("id")
        ref = f"{resource['resourceType']}/{rid}" if isinstance(rid, str) else ""
        if (selected is not None and ref not in selected) or not whose.owns(resource):
            continue
        concepts = terminology.concepts_of(resource.get("code"))
        if AUGMENTATION in concepts:
            validate(resource, safe_ref(resource) if ref else "a draft order")
            found.append(DraftOrder(ref, resource, VERTEBROPLASTY in concepts))
    return found
