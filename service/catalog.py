"""The CDS services this server offers (discovery) and the data each one reads (prefetch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .normalize.record import OBSERVATION_CONCEPTS
from .normalize.terminology import Terminology

PATIENT = "{{context.patientId}}"


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    required: frozenset[str] = field(default=frozenset({"patient", "conditions"}))
    usage_requirements: str = ""

    def discovery(self) -> dict[str, Any]:
        entry = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


def prefetch_templates(terminology: Terminology) -> dict[str, str]:
    """Queries for what the decision reads; observations narrowed to the codes it knows."""
    codes = ",".join(f"{system}|{code}" for system, code in terminology.codings_for(sorted(OBSERVATION_CONCEPTS)))
    return {
        "patient": f"Patient/{PATIENT}",
        "conditions": f"Condition?patient={PATIENT}",
        "observations": f"Observation?patient={PATIENT}&code={codes}",
        "medications": f"MedicationRequest?patient={PATIENT}&status=active",
        "encounters": f"Encounter?patient={PATIENT}&status=in-progress",
        "allergies": f"AllergyIntolerance?patient={PATIENT}",
    }


def build_catalog(terminology: Terminology) -> dict[str, ServiceDefinition]:
    prefetch = prefetch_templates(terminology)
    usage = (
        "Reads the patient's conditions, pain scores, exam/imaging findings, labs, medications, "
        "encounters and allergies; fetches from fhirServer what is not prefetched."
    )
    services = [
        ServiceDefinition(
            "vcf-patient-view",
            "patient-view",
            "Vertebral compression fracture: management",
            "For a patient with an active vertebral compression fracture, recommends conservative care, "
            "vertebral augmentation or referral, with the criteria met, not met or unknown.",
            prefetch,
            usage_requirements=usage,
        ),
        *(
            ServiceDefinition(
                f"vcf-{hook}",
                hook,
                f"Vertebral augmentation order check ({hook})",
                "When a vertebroplasty or kyphoplasty is ordered (CPT 22510-22515, ICD-10-PCS 0PU43JZ/0QU03JZ), "
                "checks the order against the selection criteria and proposes the recommended alternative.",
                prefetch,
                usage_requirements=usage,
            )
            for hook in ("order-select", "order-sign")
        ),
    ]
    return {s.id: s for s in services}
