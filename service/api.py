"""CDS Hooks endpoints: discovery and hook calls. Thin: parse, hand to the engine, answer."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from .body import read_body
from .errors import BadRequestError, UnsupportedMediaTypeError
from .pipeline import Engine

bp = Blueprint("hooks", __name__)
JSON_TYPES = ("application/json", "application/fhir+json")


def engine() -> Engine:
    return current_app.extensions["vcf_cds"]  # type: ignore[no-any-return]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def read_json_body() -> Any:
    """The body as JSON: 415 if not JSON, 413 over the limit, 408 when it arrives too slowly, 400 when malformed."""
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaTypeError("Send the request as JSON (Content-Type: application/json).")
    raw = read_body(request, float(current_app.config["BODY_TIMEOUT"]))  # 413 over MAX_CONTENT_LENGTH
    if not raw.strip():
        raise BadRequestError("The request body is empty; a CDS Hooks request (JSON object) is expected.")
    try:
        return orjson.loads(raw)  # orjson bounds nesting depth (1024) and rejects invalid UTF-8
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"The request body is not valid JSON: {str(e).split(':')[0]}.") from None


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/cds-services")
def discovery() -> Response:
    return json_response(engine().discovery())


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    engine().service(service_id)  # 404 before reading the body
    body = read_json_body()
    result = engine().evaluate(
        service_id,
        body,
        now=current_app.config["CLOCK"](),
        new_uuid=current_app.config["NEW_UUID"],
        fetch=current_app.extensions.get("vcf_cds_fetch"),
    )
    return json_response({"cards": result.cards})
