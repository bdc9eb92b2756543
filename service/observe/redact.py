"""What of a request may be repeated in an error message or on a card: ids and field names, never values.

Record values can be PHI and field names can be anything a sender chose, so messages only echo text
that has the shape of a FHIR id, a FHIR type or a JSON field name; anything else becomes ``…``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

# FHIR R4 id (fhir.resources does not enforce the 64-character limit; neither do we)
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HIDDEN = "…"


def safe_id(value: Any) -> str:
    """A resource id as it may be shown (evidence, messages); ``?`` when it is not a FHIR id."""
    return value if isinstance(value, str) and len(value) <= 1024 and FHIR_ID.fullmatch(value) else "?"


def safe_ref(resource: Mapping[str, Any]) -> str:
    """``Type/id`` of a resource as it may be shown, the id through ``safe_id``."""
    return f"{resource['resourceType']}/{safe_id(resource.get('id'))}"


def safe_name(value: Any) -> str:
    """A field name, resource type or list index from a location; other text is hidden."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and _NAME.fullmatch(value) else HIDDEN


# pydantic messages of these kinds quote the schema (types, patterns, limits), never the input
_QUIET_ERRORS = frozenset(
    {
        "missing",
        "extra_forbidden",
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "decimal_type",
        "int_parsing",
        "float_parsing",
        "bool_parsing",
        "decimal_parsing",
        "int_from_float",
        "finite_number",
        "literal_error",
        "enum",
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
        "less_than",
        "less_than_equal",
        "greater_than",
        "greater_than_equal",
        "value_error",
        "json_invalid",
        "json_type",
    }
)


def describe(error: Exception) -> str:
    """Why a resource failed validation: field locations and schema-side messages only."""
    if not isinstance(error, ValidationError):
        return f"the validator failed ({type(error).__name__})"  # its text may quote the input
    parts = []
    for err in error.errors()[:3]:
        where = ".".join(safe_name(p) for p in err["loc"])
        what = err["msg"] if err["type"] in _QUIET_ERRORS else err["type"]
        data = err.get("input")
        if isinstance(data, str) and len(data) > 3 and data in what:  # a validator quoted the value after all
            what = err["type"]
        parts.append(f"{where}: {what}")
    return "; ".join(parts)
