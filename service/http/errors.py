"""Every error leaves as one OperationOutcome shape; never a traceback, never HTML."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from ..errors import ServiceError, operation_outcome

log = logging.getLogger("vcf_cds.http")

_HTTP_ISSUES = {
    400: ("invalid", "The request could not be read."),
    404: ("not-found", "No such endpoint. The CDS services are listed at GET /cds-services."),
    405: ("not-supported", "Method not allowed on this endpoint."),
    413: ("too-costly", "The request body is larger than this service accepts (VCF_CDS_MAX_BODY)."),
    415: ("not-supported", "Send the request as JSON (Content-Type: application/json)."),
}


def outcome_response(status: int, outcome: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(outcome), status=status, mimetype="application/fhir+json", headers=headers)


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(e: ServiceError) -> Response:
        log.info("request refused: %s %s", e.status, type(e).__name__)
        return outcome_response(e.status, e.outcome(), dict(e.headers) or None)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        status = e.code or 500
        code, text = _HTTP_ISSUES.get(status, ("exception", e.name))
        allowed = getattr(e, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return outcome_response(status, operation_outcome(code, text), headers)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        # A bug. The message may carry record data: log the type and place only.
        tb = e.__traceback__
        while tb and tb.tb_next:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error("internal error %s at %s", type(e).__name__, where)
        return outcome_response(500, operation_outcome("exception", "Internal error; it has been logged."))
