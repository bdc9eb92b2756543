"""What each ``missing`` id asks the clinician to document, in the words a card shows.

The ids are the ``fact`` of a criterion (rules.py), the pre-procedure labs and the prefetch keys that
could not be read; they stay ids in the card's machine-readable extension (PRODUCT.md), and a card's
text names them with these words. tests/test_card_text.py checks that every id ``decide`` can list
has its words here.
"""

from __future__ import annotations

WHAT_TO_DOCUMENT: dict[str, str] = {
    # criterion facts
    "vcf": "vertebral compression fracture diagnosis",
    "red_flags": "red flags (cord compression, cauda equina, instability, neurologic deficit)",
    "infection": "spinal infection or sepsis",
    "malignancy": "active cancer",
    "pregnancy": "pregnancy status",
    "pain_score": "pain score (NRS) in the last 30 days",
    "pain_trend": "pain scores 7 days apart (trend)",
    "sins": "SINS score",
    "fracture_onset": "fracture onset date",
    "hospitalisation": "inpatient or emergency encounter",
    "point_tenderness": "point tenderness at the fracture level",
    "marrow_edema": "MRI marrow edema",
    "dxa": "DXA T-score in the last 2 years",
    "osteoporosis_therapy": "osteoporosis therapy",
    # pre-procedure labs
    "inr": "INR",
    "platelets": "platelet count",
    # prefetch keys the EHR could not give (optional data: the criteria on it stay unknown)
    "observations": "observations (could not be read from the EHR)",
    "medications": "medications (could not be read from the EHR)",
    "allergies": "allergies (could not be read from the EHR)",
    "encounters": "encounters (could not be read from the EHR)",
}


def what_to_document(missing_id: str) -> str:
    """The clinical words for a ``missing`` id; an id without words is shown spaced, never dropped."""
    return WHAT_TO_DOCUMENT.get(missing_id, missing_id.replace("_", " "))
