"""CDS Hooks endpoints: discovery and hook calls. Thin: parse, hand to the engine, answer."""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from . import audit
from .body import read_body
from .errors import BadRequestError, UnsupportedMediaTypeError
from .pipeline import Engine

bp = Blueprint("hooks", __name__)
JSON_TYPES = ("application/json", "application/fhir+json")
# Real EHR payloads nest ~15 levels (a request wrapping a Bundle of FHIR resources). orjson stops at
# 1024, but FHIR model validation recurses per level and overflows Python's stack far earlier (a body
# of nested extensions ~500 deep was a 500), so the bound is set well below that.
MAX_JSON_DEPTH = 64


def engine() -> Engine:
    return current_app.extensions["vcf_cds"]  # type: ignore[no-any-return]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


TOO_DEEP = f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels."


def read_json_body() -> Any:
    """The body as JSON: 415 if not JSON, 413 over the limit, 408 when it arrives too slowly, 400 when malformed."""
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaTypeError("Send the request as JSON (Content-Type: application/json).")
    raw = read_body(request, float(current_app.config["BODY_TIMEOUT"]))  # 413 over MAX_CONTENT_LENGTH
    if not raw.strip():
        raise BadRequestError("The request body is empty; a CDS Hooks request (JSON object) is expected.")
    try:
        body = orjson.loads(raw)  # rejects invalid UTF-8 and nesting deeper than 1024
    except orjson.JSONDecodeError as e:
        if "depth" in str(e):  # orjson's own bound: the same answer as ours below
            raise BadRequestError(TOO_DEEP) from None
        raise BadRequestError(f"The request body is not valid JSON: {str(e).split(':')[0]}.") from None
    if json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise BadRequestError(TOO_DEEP)
    return body


_ESCAPE = re.compile(rb"\\.", re.S)  # \" \\ \n…: once gone, every quote opens or closes a string
_BRACKETS_ONLY = bytes.maketrans(b"{[}]", b"(())")  # one kind of pair: one replace() peels one level
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'{}[]"'))
_STRING = re.compile(rb'"[^"]*"')


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the containers of ``raw`` (a JSON text orjson has accepted) nest deeper than ``limit``.

    Measured on the text, so that the work is done in C (~3 × faster than walking the parsed value):
    with escapes, strings and scalars gone only brackets are left, as ``()``; each ``replace`` then
    deletes the innermost pairs, one level. No recursion: a hostile body cannot exhaust the stack."""
    text = _ESCAPE.sub(b"", raw) if b"\\" in raw else raw
    # adjacent quotes are an empty string or two strings with nothing between: dropping them is safe
    brackets = text.translate(_BRACKETS_ONLY, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)  # strings holding brackets
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/cds-services")
def discovery() -> Response:
    return json_response(engine().discovery())


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    engine().service(service_id)  # 404 before reading the body
    body = read_json_body()
    audit.note_request(body)  # the audit row (written after the answer) and the logs' correlation id
    result = engine().evaluate(
        service_id,
        body,
        now=current_app.config["CLOCK"](),
        new_uuid=current_app.config["NEW_UUID"],
        fetch=current_app.extensions.get("vcf_cds_fetch"),
    )
    audit.note_result(result)
    return json_response({"cards": result.cards})
