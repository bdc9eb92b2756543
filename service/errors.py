"""One error hierarchy, rendered as one FHIR OperationOutcome shape for every non-2xx status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class ServiceError(Exception):
    """Base of every error the service answers with. ``diagnostics`` is shown to the caller."""

    status = 500
    issue_code = "exception"
    headers: ClassVar[Mapping[str, str]] = {}  # extra response headers (e.g. WWW-Authenticate on 401)

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
    """Any authentication failure; the caller is never told which check failed."""

    status, issue_code = 401, "login"
    headers = {"WWW-Authenticate": "Bearer"}


class NotFoundError(ServiceError):
    status, issue_code = 404, "not-found"


class RequestTimeoutError(ServiceError):
    """The client did not send the whole request body in time."""

    status, issue_code = 408, "timeout"


class PrefetchUnavailableError(ServiceError):
    """Required data was neither prefetched nor obtainable from the FHIR server."""

    status, issue_code = 412, "processing"


class UnsupportedMediaTypeError(ServiceError):
    status, issue_code = 415, "not-supported"


class ServiceUnavailableError(ServiceError):
    """Cannot answer now: the database (audit, feedback) cannot take the write the answer depends on,
    or a large body waited too long for its turn (http/body.py); retry later."""

    status, issue_code = 503, "transient"


def operation_outcome(code: str, diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
