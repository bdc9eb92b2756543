"""The metrics and the log line of one hook call, once its status is final."""

from __future__ import annotations

import logging

from ..render.issued import IssuedCard
from . import metrics

log = logging.getLogger("vcf_cds.audit")


def observe_call(
    *,
    service: str,
    hook: str | None,
    hook_instance: str | None,
    status: int,
    seconds: float,
    recommendation: str | None,
    answered: list[IssuedCard],
) -> None:
    """Count the call, its latency and the cards answered; one ``hook call`` log line (no PHI)."""
    metrics.HOOK_REQUESTS.labels(service=service, status=str(status)).inc()
    metrics.HOOK_LATENCY.labels(service=service).observe(seconds)
    for card in answered:
        metrics.CARDS.labels(service=service, kind=card.kind, recommendation=card.recommendation or "none").inc()
    log.info(
        "hook call",
        extra={
            "hookInstance": hook_instance,
            "service": service,
            "hook": hook,
            "status": status,
            "durationMs": round(seconds * 1000, 1),
            "recommendation": recommendation if answered else None,
            "cards": len(answered),
        },
    )
