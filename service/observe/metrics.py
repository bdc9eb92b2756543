"""Named Prometheus metrics: other modules increment these, ``GET /metrics`` exposes them.

Labels are closed vocabularies (service ids from the catalog, HTTP statuses, card kinds, FHIR
resource types, failure reasons), never ids or values from a record.

Under gunicorn every worker is a process: ``vcf-cds serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh folder before any worker imports this module, each worker writes its samples there, and any
worker answers ``/metrics`` with the sum (prometheus-client's multiprocess mode). Without the
variable (tests, ``flask run``) the process-local registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.registry import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HOOK_REQUESTS = Counter(
    "vcf_cds_hook_requests",
    "CDS Hooks calls by service and HTTP status",
    ["service", "status"],
)
HOOK_LATENCY = Histogram(
    "vcf_cds_hook_duration_seconds",
    "Time to answer a CDS Hooks call, by service (all statuses)",
    ["service"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
CARDS = Counter(
    "vcf_cds_cards",
    "Cards returned, by service, kind (recommendation, secondary-prevention, order-check) and recommendation",
    ["service", "kind", "recommendation"],
)
HTTP_REQUESTS = Counter(
    "vcf_cds_http_requests",
    "Every HTTP request by endpoint (Flask rule, 'unmatched' for 404s), method and status",
    ["endpoint", "method", "status"],
)
FEEDBACK_ITEMS = Counter(
    "vcf_cds_feedback_items",
    "Card feedback items received, by service and outcome; result is stored, duplicate or unknown-card",
    ["service", "outcome", "result"],
)
AUDIT_FAILURES = Counter(
    "vcf_cds_audit_write_failures",
    "Audit rows that could not be written (the hook call was refused with 503)",
)
UNAUTHENTICATED = Counter(
    "vcf_cds_unauthenticated_calls",
    "Calls to /cds-services refused with 401 (no audit row is written for them), by reason class",
    ["reason"],
)
REPLAY_STORE_FAILURES = Counter(
    "vcf_cds_replay_store_failures",
    "JWT replay checks the database could not answer (the call was refused with 503)",
)
# For the FHIR client (service/gather/fhirclient.py): one call per search or page it fetches
FHIR_CALLS = Counter(
    "vcf_cds_fhir_fallback_calls",
    "Searches sent to the EHR's fhirServer for data not prefetched, by resource type",
    ["resource"],
)
FHIR_FAILURES = Counter(
    "vcf_cds_fhir_fallback_failures",
    "FHIR fallback searches that failed, by resource type and reason",
    ["resource", "reason"],
)
FHIR_FAILURE_REASONS = ("timeout", "http-error", "invalid-response", "redirect", "budget", "connection", "other")


def count_fhir_call(resource: str) -> None:
    """The FHIR client calls this once per request it sends (each page of a search counts)."""
    FHIR_CALLS.labels(resource=resource).inc()


def count_fhir_failure(resource: str, reason: str) -> None:
    """``reason`` is one of ``FHIR_FAILURE_REASONS`` (anything else is counted as ``other``)."""
    FHIR_FAILURES.labels(resource=resource, reason=reason if reason in FHIR_FAILURE_REASONS else "other").inc()


def exposition() -> bytes:
    """The Prometheus text format: summed over gunicorn workers in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
