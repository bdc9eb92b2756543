"""CDS Hooks endpoints: discovery and hook calls. Thin: parse, hand to the engine, answer."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from ..errors import BadRequestError, UnsupportedMediaTypeError
from ..normalize.jsondepth import MAX_JSON_DEPTH, json_depth_exceeds
from ..state import app_state
from . import audit
from .body import read_body

bp = Blueprint("hooks", __name__)
JSON_TYPES = ("application/json", "application/fhir+json")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


ORJSON_MAX_DEPTH = 1024  # orjson's own, fixed


def too_deep(levels: int) -> BadRequestError:
    return BadRequestError(f"The request body nests JSON deeper than {levels} levels.")


def read_json_body(bound_nesting: bool = True) -> Any:
    """The body as JSON: 415 if not JSON, 413 over the limit, 408 when it arrives too slowly, 400 when
    malformed or, with ``bound_nesting``, nested deeper than ``MAX_JSON_DEPTH``.

    Hook calls bound nesting where they recurse, in each resource they validate (validation.py):
    bounding the whole body cost ~10 % of a call, for parts never read."""
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaTypeError("Send the request as JSON (Content-Type: application/json).")
    raw = read_body(request, float(current_app.config["BODY_TIMEOUT"]))  # 413 over MAX_CONTENT_LENGTH
    if not raw.strip():
        raise BadRequestError("The request body is empty; a CDS Hooks request (JSON object) is expected.")
    try:
        body = orjson.loads(raw)  # rejects invalid UTF-8 and nesting deeper than ORJSON_MAX_DEPTH
    except orjson.JSONDecodeError as e:
        if "depth" in str(e):
            raise too_deep(MAX_JSON_DEPTH if bound_nesting else ORJSON_MAX_DEPTH) from None
        raise BadRequestError(f"The request body is not valid JSON: {str(e).split(':')[0]}.") from None
    if bound_nesting and json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise too_deep(MAX_JSON_DEPTH)
    return body


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/cds-services")
def discovery() -> Response:
    return json_response(app_state().engine.discovery())


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    state = app_state()
    state.engine.service(service_id)  # 404 before reading the body
    body = read_json_body(bound_nesting=False)
    audit.note_request(body)  # the audit row (written after the answer) and the logs' correlation id
    result = state.engine.evaluate(
        service_id,
        body,
        now=current_app.config["CLOCK"](),
        new_uuid=current_app.config["NEW_UUID"],
        fetch=state.fetch,
    )
    audit.note_result(result)
    return json_response({"cards": result.cards})
