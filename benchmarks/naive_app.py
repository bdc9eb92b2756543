"""The naive design: validate every prefetched resource with ``fhir.resources`` (R4B), then decide.

Each prefetch value (the Patient, each searchset Bundle with all its entries) goes through its
R4B model before the same engine as vcf-cds runs, so the cards are the same and the difference is
the cost of validating what the decision ignores.
"""

from __future__ import annotations

from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask, Response, request

from service import create_app as create_service_app
from service.state import app_state


def validate_all(body: Any) -> int:
    """Validate every prefetched resource; returns how many prefetch values were validated."""
    count = 0
    for value in ((body.get("prefetch") if isinstance(body, dict) else None) or {}).values():
        if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
            get_fhir_model_class(value["resourceType"]).model_validate(value)
            count += 1
    return count


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    service = create_service_app(test_config)  # settings, clock and engine exactly as vcf-cds
    engine = app_state(service).engine
    app = Flask(__name__, static_folder=None)

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        body = orjson.loads(request.get_data(cache=False))
        validate_all(body)
        result = engine.evaluate(
            service_id,
            body,
            now=service.config["CLOCK"](),
            new_uuid=service.config["NEW_UUID"],
        )
        return Response(orjson.dumps({"cards": result.cards}), mimetype="application/json")

    return app
