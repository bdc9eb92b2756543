"""Gather the patient's record: prefetch first (CDS Hooks 2.0 semantics), then the FHIR server.

Per key: present → used; ``null`` → no data; missing or an ``OperationOutcome`` → fetched with the
same query from ``fhirServer`` when a fetcher is given (service/gather/fhirclient.py). A prefetched Bundle
with a ``next`` link (CDS Hooks 3.0 paginated prefetch) is completed through the fetcher too: a page
alone is partial data, and partial data would read as "not documented". Required data still
unavailable → 412; optional data unavailable → its criteria stay unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalog import ServiceDefinition
from ..errors import BadRequestError, PrefetchUnavailableError

# A fetcher gets the request and {key: relative FHIR query, or the absolute `next` URL of a prefetched
# page} and answers {key: resources, or a FetchFailure} for every key it was given
Fetcher = Callable[[Mapping[str, Any], Mapping[str, str]], Mapping[str, "list[dict[str, Any]] | FetchFailure"]]

_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class FetchFailure:
    reason: str  # safe to show: never contains a token or PHI


@dataclass
class Record:
    patient: dict[str, Any]
    resources: list[dict[str, Any]] = field(default_factory=list)
    unavailable: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)


def resolve_query(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill ``{{context.x}}`` tokens; None when a token has no string value in the context."""
    missing = False

    def fill(m: re.Match[str]) -> str:
        nonlocal missing
        value = context.get(m.group(1))
        if not isinstance(value, str):
            missing = True
            return ""
        return value

    query = _TOKEN.sub(fill, template)
    return None if missing else query


def bundle_resources(value: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The resources of a Bundle (or the resource itself)."""
    if value.get("resourceType") != "Bundle":
        yield dict(value)
        return
    entries = value.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise BadRequestError("A prefetched Bundle's entry must be a list.")
    for entry in entries or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            yield resource


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The URL of a Bundle's ``next`` link, if any."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def gather(request: Mapping[str, Any], service: ServiceDefinition, fetch: Fetcher | None = None) -> Record:
    prefetch = request.get("prefetch") or {}
    context = request["context"]
    found: dict[str, list[dict[str, Any]]] = {}
    to_fetch: dict[str, str] = {}
    first_pages: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, str] = {}
    for key, template in service.prefetch.items():
        value = prefetch.get(key, ...)
        if value is None:
            found[key] = []  # "null": the EHR says there is no such data
        elif value is ... or (isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"):
            query = resolve_query(template, context)
            if query is None:
                failures[key] = "its prefetch query needs a context value the request does not carry"
            else:
                to_fetch[key] = query
        elif isinstance(value, dict) and isinstance(value.get("resourceType"), str):
            resources = list(bundle_resources(value))
            more = next_link(value) if value["resourceType"] == "Bundle" else None
            if more:
                first_pages[key], to_fetch[key] = resources, more
            else:
                found[key] = resources
        else:
            raise BadRequestError(
                f"prefetch.{key} must be a FHIR resource, a Bundle or null.", expression=[f"prefetch.{key}"]
            )
    if to_fetch:
        if fetch is None:
            failures.update({k: "it was not prefetched and this service has no FHIR-server access" for k in to_fetch})
        else:
            results = fetch(request, to_fetch)
            for key in to_fetch:
                result = results.get(key, FetchFailure("the FHIR client gave no answer for it"))
                if isinstance(result, FetchFailure):
                    failures[key] = result.reason
                else:
                    found[key] = first_pages.get(key, []) + result
    required_failures = {k: v for k, v in failures.items() if k in service.required}
    if required_failures:
        raise PrefetchUnavailableError(
            "Required data is unavailable: "
            + "; ".join(
                f"'{k}' ({service.prefetch[k].split('?')[0].split('/')[0]}): {v}"
                for k, v in sorted(required_failures.items())
            ),
            expression=[f"prefetch.{k}" for k in sorted(required_failures)],
        )
    patients = [r for r in found.get("patient", []) if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise BadRequestError("prefetch.patient must be exactly one Patient resource.", expression=["prefetch.patient"])
    patient = patients[0]
    # Only resources that reference context.patientId are used (service/normalize/whose.py): a Patient that is
    # not that patient would put another patient's facts, or none, beside this patient's record
    if not isinstance(patient.get("id"), str) or not patient["id"]:
        raise BadRequestError(
            "The Patient of the record (prefetched or fetched) has no id; it must be context.patientId.",
            expression=["prefetch.patient"],
        )
    if patient["id"] != context["patientId"]:
        raise BadRequestError(
            "The Patient of the record (prefetched or fetched) is not the patient of context.patientId.",
            expression=["prefetch.patient"],
        )
    resources = [r for key, rs in found.items() if key != "patient" for r in rs]
    return Record(patient, resources, set(failures), sorted(to_fetch))
