"""The app's assessment: the hooks' own pipeline (``Engine.evaluate``), over the record read from the
EHR's FHIR server with the session's token, as a patient-view call without prefetch would be."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ..gather.fhirclient import FhirClient
from ..pipeline import Engine, HookResult
from .store import Session

SERVICE = "vcf-patient-view"


def assess(engine: Engine, fetch: FhirClient, session: Session, now: datetime) -> HookResult:
    """Raises the pipeline's ``ServiceError``s (412 when required data cannot be read, 400…)."""
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": session.iss,
        "fhirAuthorization": {
            "access_token": session.access_token,
            "token_type": "Bearer",
            "scope": session.scope,
            "subject": "vcf-cds-smart-app",
        },
        "context": {"patientId": session.patient_id, "userId": session.fhir_user},
    }
    return engine.evaluate(SERVICE, body, now=now, new_uuid=lambda: str(uuid.uuid4()), fetch=fetch)
