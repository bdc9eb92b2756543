"""Whose data a resource is (CLINICAL.md, "Whose data"): only what references the context patient is used.

A resource is the patient's only when its ``subject`` (``patient`` for AllergyIntolerance) references
the patient as ``Patient/{id}`` (optionally ``/_history/{v}``), the same behind the request's
``fhirServer`` base (scheme and host compared case-insensitively, the scheme's default port written
or not, a trailing slash ignored), or the ``urn:uuid:`` / full URL under which the Patient appears in
the request (its Bundle entry's ``fullUrl``, which must be a ``urn:uuid:`` / ``urn:oid:`` or end in
``Patient/{its id}``: one naming another resource makes the Bundle inconsistent and the request a
400). Anything else — another patient, a Group, an identifier or display only, no reference
at all, another server's URL — is not. Using another patient's data is the worst error this service
can make, so this is an allowlist of forms, never a test for "looks like another patient".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError
from ..observe.redact import FHIR_ID

_HISTORY = "/_history/"
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
                full_url = entry.get("fullUrl")
                if full_url is not None and not _is_where_patient_appears(full_url, patient_id):
                    # FHIR (Bundle.entry.fullUrl) says a RESTful fullUrl agrees with the resource's id:
                    # this Bundle contradicts itself, and trusting either half could hand this patient
                    # another patient's data
                    raise BadRequestError(
                        "prefetch.patient: the Bundle entry holding the Patient of context.patientId has a "
                        "fullUrl that is neither a urn:uuid: / urn:oid: nor ends in Patient/{its id}: "
                        "the Bundle is inconsistent.",
                        expression=["prefetch.patient.entry.fullUrl"],
                    )
                full_urls.append(full_url)
    return PatientReferences.of(patient_id, request.get("fhirServer"), tuple(full_urls))


def _is_where_patient_appears(full_url: Any, patient_id: str) -> bool:
    """Whether ``full_url`` can be the fullUrl of Patient ``patient_id``: a ``urn:uuid:`` / ``urn:oid:``,
    or a URL ending in ``Patient/{patient_id}`` (optionally ``/_history/{v}``)."""
    if not isinstance(full_url, str):
        return False
    if full_url.startswith(("urn:uuid:", "urn:oid:")):
        return True
    head, history, version = full_url.rpartition(_HISTORY)
    if history and FHIR_ID.fullmatch(version):
        full_url = head
    return "://" in full_url and full_url.endswith(f"/Patient/{patient_id}")


def _canonical(url: str) -> str:
    """``url`` with its scheme and authority in lower case (they are case-insensitive; the path is not)
    and without the scheme's default port (``https://h:443/`` is ``https://h/``, RFC 3986 6.2.3)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url  # urn:uuid: and the like: compared as written
    scheme = scheme.lower()
    authority, slash, path = rest.partition("/")
    authority = authority.lower()
    host, colon, port = authority.rpartition(":")
    if (
        colon
        and host
        and (port == "" or (port.isascii() and port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme)))
    ):
        authority = host
    return f"{scheme}://{authority}{slash}{path}"
