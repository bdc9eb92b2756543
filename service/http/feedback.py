"""``POST /cds-services/{id}/feedback`` (CDS Hooks 2.0 §Feedback): the request schema and the endpoint.

The body is ``{"feedback": [{card, outcome, acceptedSuggestions, overrideReason, outcomeTimestamp}]}``.
Every item is committed before the 200 (service/store/feedback.py); a duplicate is counted, not
stored twice, and still answered 200. A body is validated whole before any of it is written,
including what the database could never store (NUL characters, years outside 1900–2999): that is a
400, not a 503 that every retry meets again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.exc import SQLAlchemyError

from ..errors import BadRequestError, ServiceUnavailableError
from ..state import app_state
from ..store.db import utcnow
from ..store.feedback import store_feedback
from .body import json_response, read_json_body
from .schemas import validation_error

log = logging.getLogger("vcf_cds.feedback")
bp = Blueprint("feedback", __name__)

MAX_ITEMS = 100  # an EHR batches feedback per card; a hundred is far beyond any real batch
_ID = validate.Length(min=1, max=128)
# outcomeTimestamp: a clinician's action, so near now. Its year as written must be 1900–2999: that
# keeps it (and its UTC form, a day either side at most) well inside what Python, SQLite and
# PostgreSQL all store and read back in any session time zone, and it is what the OpenAPI document
# can say (YEAR_PATTERN), so the document and this check agree. A time later than its arrival is
# accepted (no clock test the document could state) and ranked at its arrival by the report
# (service/store/feedback.py), so it cannot stay a card's latest outcome.
FIRST_YEAR, LAST_YEAR = 1900, 2999
YEAR_PATTERN = "^(19|2[0-9])[0-9][0-9]"  # every form the ISO parser reads starts with the year


class _Text(fields.String):
    """A string the database can store: PostgreSQL text holds no NUL character."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain the NUL character (\\u0000).")
        return text


def _storable_moment(value: datetime) -> None:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValidationError(f"Must be a time in the years {FIRST_YEAR} to {LAST_YEAR}.")


class _Lenient(Schema):
    class Meta:
        unknown = INCLUDE  # extensions are allowed anywhere


class CodingSchema(_Lenient):
    system = _Text(validate=validate.Length(max=255))
    code = _Text(required=True, validate=_ID)
    display = _Text(validate=validate.Length(max=255))


class OverrideReasonSchema(_Lenient):
    reason = fields.Nested(CodingSchema)
    userComment = _Text(validate=validate.Length(max=4000))


class AcceptedSuggestionSchema(_Lenient):
    id = _Text(required=True, validate=_ID)


class FeedbackItemSchema(_Lenient):
    card = _Text(required=True, validate=_ID)
    outcome = fields.String(required=True, validate=validate.OneOf(["accepted", "overridden"]))
    acceptedSuggestions = fields.List(fields.Nested(AcceptedSuggestionSchema), validate=validate.Length(max=50))
    overrideReason = fields.Nested(OverrideReasonSchema)
    # the spec asks for UTC; an offset is honoured, a bare time is read as UTC
    outcomeTimestamp = fields.AwareDateTime(
        required=True,
        format="iso",
        default_timezone=UTC,
        validate=_storable_moment,
        metadata={
            "pattern": YEAR_PATTERN,
            "description": (
                f"when the clinician acted; a year from {FIRST_YEAR} to {LAST_YEAR}. For a card's latest "
                "outcome a time after the feedback's arrival counts as its arrival"
            ),
        },
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("overrideReason") and data.get("outcome") == "accepted":
            raise ValidationError("only an overridden card has an override reason", "overrideReason")


class FeedbackRequestSchema(_Lenient):
    feedback = fields.List(
        fields.Nested(FeedbackItemSchema), required=True, validate=validate.Length(min=1, max=MAX_ITEMS)
    )


def load_feedback(body: Any) -> list[dict[str, Any]]:
    """The validated feedback items; 400 naming every invalid field."""
    if not isinstance(body, dict):
        raise BadRequestError('The feedback body must be a JSON object: {"feedback": [...]}.')
    try:
        items: list[dict[str, Any]] = FeedbackRequestSchema().load(body)["feedback"]
    except ValidationError as e:
        raise validation_error(e, "", "feedback") from None
    return items


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str) -> Response:
    app_state().engine.service(service_id)  # 404 before reading the body
    items = load_feedback(read_json_body())
    try:
        result = store_feedback(
            app_state().database,
            service_id,
            items,
            received_at=utcnow(),
            keep_comments=bool(current_app.config["FEEDBACK_COMMENTS"]),
        )
    except SQLAlchemyError as e:
        log.error("feedback not stored (%s)", type(e).__name__, extra={"service": service_id})
        raise ServiceUnavailableError("The feedback could not be stored right now; send it again.") from None
    extra = {"service": service_id, "items": len(items), "duplicates": result.duplicates}
    if result.unknown_cards:
        log.warning(
            "feedback on cards this service has no record of", extra={**extra, "unknownCards": result.unknown_cards}
        )
    else:
        log.info("feedback stored", extra=extra)
    return json_response(result.body())
