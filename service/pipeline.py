"""The hook pipeline: request schema → gather → normalize → decide → render.

HTTP and ``vcf-cds replay`` both call ``Engine.evaluate``; only the edges (HTTP, the FHIR client)
do I/O. Time and ids are passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .catalog import ServiceDefinition, build_catalog
from .decide import RULES_VERSION, Assessment, decide
from .decide.facts import Facts
from .errors import NotFoundError
from .gather.prefetch import Fetcher, Record, gather
from .http.schemas import load_request
from .normalize.orders import DraftOrder, augmentation_orders
from .normalize.record import load_models, normalize
from .normalize.terminology import Terminology, load_terminology
from .normalize.whose import patient_references
from .render.cards import CardContext, cards_for
from .render.issued import IssuedCard, issued_cards
from .render.order_check import order_check_card


@dataclass
class HookResult:
    service: ServiceDefinition
    request: dict[str, Any]
    assessment: Assessment | None
    cards: list[dict[str, Any]]
    fetched: list[str]
    # what the assessment was made from, for the SMART app's timeline (service/smart)
    facts: Facts | None = None
    record: Record | None = None

    @property
    def issued(self) -> list[IssuedCard]:
        """The cards as the audit log and the metrics count them."""
        return issued_cards(self.cards)


class Engine:
    """Everything loaded once at start-up: value sets, the service catalog, the rules version."""

    def __init__(self, terminology: Terminology):
        self.terminology = terminology
        self.catalog = build_catalog(terminology)
        self.rules_version = f"{RULES_VERSION}+mappings.{terminology.digest}"
        load_models()

    @classmethod
    def load(cls, extra_mappings: str | Path | None = None) -> Engine:
        return cls(load_terminology(extra_mappings or None))

    def service(self, service_id: str) -> ServiceDefinition:
        service = self.catalog.get(service_id)
        if service is None:
            raise NotFoundError(f"No CDS service '{service_id[:80]}'. See GET /cds-services for the list.")
        return service

    def discovery(self) -> dict[str, Any]:
        return {"services": [s.discovery() for s in self.catalog.values()]}

    def evaluate(
        self,
        service_id: str,
        body: Any,
        *,
        now: datetime,
        new_uuid: Callable[[], str],
        fetch: Fetcher | None = None,
        smart_launch: str | None = None,
    ) -> HookResult:
        service = self.service(service_id)
        request = load_request(body, service.hook)
        context: Mapping[str, Any] = request["context"]
        whose = patient_references(request)
        orders: list[DraftOrder] = []
        if service.hook != "patient-view":
            orders = augmentation_orders(context, service.hook, self.terminology, whose)
            if not orders:  # an order for anything else: nothing to say, nothing to fetch
                return HookResult(service, request, None, [], [])
        record = gather(request, service, fetch)
        # The FHIR token served gather only; nothing downstream (results, audit, logs) may hold it
        request.pop("fhirAuthorization", None)
        facts = normalize(
            record.patient,
            record.resources,
            terminology=self.terminology,
            now=now,
            unavailable=record.unavailable,
            whose=whose,
        )
        assessment = decide(facts)
        if assessment is not None:
            assessment = dataclasses.replace(assessment, rules_version=self.rules_version)
        card_context = CardContext(
            context["patientId"],
            context.get("userId"),
            new_uuid,
            facts.ignored,
            smart_launch,
            request.get("hookInstance"),
        )
        if service.hook == "patient-view":
            cards = cards_for(assessment, card_context)
        else:
            cards = [order_check_card(assessment, orders, card_context)]
        return HookResult(service, request, assessment, cards, record.fetched, facts, record)
