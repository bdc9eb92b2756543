"""Marshmallow schemas of the CDS Hooks 2.0 request envelope and the hook contexts we serve."""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from ..errors import BadRequestError
from ..observe.redact import FHIR_ID

_NON_EMPTY = validate.Length(min=1, max=1024)


class _Lenient(Schema):
    class Meta:
        unknown = INCLUDE  # extensions and legacy fields (e.g. a top-level "user") are allowed


class FhirAuthorizationSchema(_Lenient):
    access_token = fields.String(required=True, validate=_NON_EMPTY)
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer", "bearer"]))
    expires_in = fields.Integer(strict=True)
    scope = fields.String()
    subject = fields.String()
    patient = fields.String()


class HookRequestSchema(_Lenient):
    hook = fields.String(required=True, validate=_NON_EMPTY)
    hookInstance = fields.String(required=True, validate=_NON_EMPTY)
    fhirServer = fields.Url(allow_none=True, require_tld=False, schemes={"http", "https"})
    fhirAuthorization = fields.Nested(FhirAuthorizationSchema, allow_none=True)
    context = fields.Dict(required=True, keys=fields.String())
    prefetch = fields.Dict(allow_none=True, keys=fields.String())


class PatientViewContextSchema(_Lenient):
    patientId = fields.String(required=True, validate=_NON_EMPTY)
    userId = fields.String(allow_none=True)
    encounterId = fields.String(allow_none=True)


class OrderSignContextSchema(PatientViewContextSchema):
    draftOrders = fields.Dict(required=True, keys=fields.String())


class OrderSelectContextSchema(OrderSignContextSchema):
    selections = fields.List(fields.String(), required=True)


# Built once: building a Schema costs more than loading a request with it, and loading does not
# change it (safe to share between threads)
HOOK_REQUEST = HookRequestSchema()
CONTEXT_SCHEMAS: dict[str, Schema] = {
    "patient-view": PatientViewContextSchema(),
    "order-select": OrderSelectContextSchema(),
    "order-sign": OrderSignContextSchema(),
}


def load_request(body: Any, hook: str) -> dict[str, Any]:
    """Validate a hook call for a service answering ``hook``; 400 with every problem named."""
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object (a CDS Hooks request).")
    try:
        request: dict[str, Any] = HOOK_REQUEST.load(body)
    except ValidationError as e:
        raise validation_error(e, "") from None
    if request["hook"] != hook:
        raise BadRequestError(
            f"This service answers the '{hook}' hook, not '{request['hook'][:60]}'.", expression=["hook"]
        )
    try:
        request["context"] = CONTEXT_SCHEMAS[hook].load(request["context"])
    except ValidationError as e:
        raise validation_error(e, "context") from None
    # Some EHRs send "Patient/123" where the spec has "123"
    patient_id = request["context"]["patientId"].removeprefix("Patient/")
    if not FHIR_ID.fullmatch(patient_id):  # it goes into FHIR queries and card references
        raise BadRequestError(
            "context.patientId must be a FHIR id (letters, digits, '-', '.'), optionally after 'Patient/'.",
            expression=["context.patientId"],
        )
    request["context"]["patientId"] = patient_id
    return request


def validation_error(error: ValidationError, prefix: str, what: str = "CDS Hooks request") -> BadRequestError:
    """A 400 naming every invalid field (dotted paths, also in ``expression``)."""
    return BadRequestError(
        f"Invalid {what}: " + _flatten(error.messages, prefix),
        expression=sorted(_paths(error.messages, prefix)),
    )


def _flatten(messages: Any, prefix: str) -> str:
    if isinstance(messages, dict):
        return "; ".join(_flatten(v, f"{prefix}.{k}" if prefix else str(k)) for k, v in messages.items())
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return f"{prefix}: {' '.join(messages)}"
    if isinstance(messages, list):
        return "; ".join(_flatten(m, prefix) for m in messages)
    return f"{prefix}: {messages}"


def _paths(messages: Any, prefix: str) -> set[str]:
    if isinstance(messages, dict):
        return {p for k, v in messages.items() for p in _paths(v, f"{prefix}.{k}" if prefix else str(k))}
    return {prefix} if prefix else set()
