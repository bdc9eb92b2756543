"""CDS Hooks endpoints: discovery and hook calls. Thin: parse, hand to the engine, answer."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app

from ..state import app_state
from . import audit
from .body import json_response, read_json_body

bp = Blueprint("hooks", __name__)


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
        smart_launch=state.smart_launch,
    )
    audit.note_result(result)
    return json_response({"cards": result.cards})
