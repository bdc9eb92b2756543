"""One error hierarchy, rendered as one FHIR OperationOutcome shape for every non-2xx status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error the service answers with. ``diagnostics`` is shown to the caller."""

    status = 500
    issue_code = "exception"

    def __init__(self, diagnostics: str, *, expression: list[str] | None = None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression or []

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issue_code, self.diagnostics, self.expression)


class BadRequestError(ServiceError):
    status, issue_code = 400, "invalid"


class InvalidResourceError(BadRequestError):
    """A FHIR resource the decision needs is not valid R4."""


class AuthenticationError(ServiceError):
    status, issue_code = 401, "login"


class NotFoundError(ServiceError):
    status, issue_code = 404, "not-found"


class MethodNotAllowedError(ServiceError):
    status, issue_code = 405, "not-supported"


class RequestTimeoutError(ServiceError):
    """The client did not send the whole request body in time."""

    status, issue_code = 408, "timeout"


class PrefetchUnavailableError(ServiceError):
    """Required data was neither prefetched nor obtainable from the FHIR server."""

    status, issue_code = 412, "processing"


class PayloadTooLargeError(ServiceError):
    status, issue_code = 413, "too-costly"


class UnsupportedMediaTypeError(ServiceError):
    status, issue_code = 415, "not-supported"


def operation_outcome(code: str, diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
