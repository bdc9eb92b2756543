"""What of a request may be repeated in an error message or on a card: ids and field names, never values.

Record values can be PHI and field names can be anything a sender chose, so messages only echo text
that has the shape of a FHIR id, a FHIR type or a JSON field name; anything else becomes ``…``.
"""

from __future__ import annotations

import re
from typing import Any

# FHIR R4 id (fhir.resources does not enforce the 64-character limit; neither do we)
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HIDDEN = "…"


def safe_id(value: Any) -> str:
    """A resource id as it may be shown (evidence, messages); ``?`` when it is not a FHIR id."""
    return value if isinstance(value, str) and len(value) <= 1024 and FHIR_ID.fullmatch(value) else "?"


def safe_name(value: Any) -> str:
    """A field name, resource type or list index from a location; other text is hidden."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and _NAME.fullmatch(value) else HIDDEN
