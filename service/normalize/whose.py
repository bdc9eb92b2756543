"""Whose data a resource is (CLINICAL.md, "Whose data"): only what references the context patient is used.

A resource is the patient's only when its ``subject`` (``patient`` for AllergyIntolerance) references
the patient as ``Patient/{id}`` (optionally ``/_history/{v}``), the same behind the request's
``fhirServer`` base (scheme and host compared case-insensitively, a trailing slash ignored), or the
``urn:uuid:`` / full URL under which the Patient appears in the request (its Bundle entry's
``fullUrl``). Anything else — another patient, a Group, an identifier or display only, no reference
at all, another server's URL — is not. Using another patient's data is the worst error this service
can make, so this is an allowlist of forms, never a test for "looks like another patient".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..observe.redact import FHIR_ID

_HISTORY = "/_history/"


@dataclass(frozen=True)
class PatientReferences:
    """The references by which one request names its patient."""

    relative: str | None  # "Patient/{id}"; None when there is no patient id: nothing is the patient's
    bases: tuple[str, ...] = ()  # the fhirServer base, canonical, without a trailing slash
    full_urls: frozenset[str] = frozenset()  # canonical

    @classmethod
    def of(cls, patient_id: Any, fhir_server: Any = None, full_urls: tuple[Any, ...] = ()) -> PatientReferences:
        if not isinstance(patient_id, str) or not patient_id:
            return cls(None)
        bases = (_canonical(fhir_server).rstrip("/"),) if isinstance(fhir_server, str) and "://" in fhir_server else ()
        urls = frozenset(_canonical(u) for u in full_urls if isinstance(u, str) and u)
        return cls(f"Patient/{patient_id}", bases, urls)

    def name(self, reference: Any) -> bool:
        """Whether ``reference`` (a Reference's ``reference`` string) is this patient."""
        if self.relative is None or not isinstance(reference, str):
            return False
        if reference == self.relative:  # the usual case, decided by one comparison
            return True
        if "://" in reference or reference.startswith("urn:"):
            absolute = _canonical(reference)
            if absolute in self.full_urls:
                return True
            for base in self.bases:
                if absolute.startswith(base + "/"):
                    return self._relative(absolute[len(base) + 1 :])
            return False
        return self._relative(reference)

    def _relative(self, reference: str) -> bool:
        if reference == self.relative:
            return True
        prefix = f"{self.relative}{_HISTORY}"
        return reference.startswith(prefix) and FHIR_ID.fullmatch(reference[len(prefix) :]) is not None

    def owns(self, resource: Mapping[str, Any]) -> bool:
        """Whether a resource is this patient's: its patient field references the patient."""
        # once per resource read: the usual case costs two lookups and one comparison
        holder = resource.get("patient" if resource.get("resourceType") == "AllergyIntolerance" else "subject")
        if not isinstance(holder, dict):
            return False
        reference = holder.get("reference")
        return (reference == self.relative and reference is not None) or self.name(reference)


def patient_references(request: Mapping[str, Any]) -> PatientReferences:
    """The references that name the patient of a (schema-checked) hook request.

    The full URLs are those of the Bundle entries that hold the context Patient in ``prefetch.patient``
    (a Patient read has none; its URL on ``fhirServer`` is covered by the base form).
    """
    patient_id = request["context"]["patientId"]
    prefetched = (request.get("prefetch") or {}).get("patient")
    full_urls: list[Any] = []
    if isinstance(prefetched, dict) and prefetched.get("resourceType") == "Bundle":
        entries = prefetched.get("entry")
        for entry in entries if isinstance(entries, list) else []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") == "Patient"
                and resource.get("id") == patient_id
            ):
                full_urls.append(entry.get("fullUrl"))
    return PatientReferences.of(patient_id, request.get("fhirServer"), tuple(full_urls))


def _canonical(url: str) -> str:
    """``url`` with its scheme and authority in lower case (they are case-insensitive; the path is not)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url  # urn:uuid: and the like: compared as written
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{authority.lower()}{slash}{path}"
