"""OpenAPI 3.1 description of every endpoint, served at ``GET /openapi.json``.

Built from the engine so the service ids in it are the ones offered. Schemas are JSON Schema 2020-12
(OpenAPI 3.1), so tests validate real responses against them. The request bodies the service
validates (the hook request, feedback) are generated from their marshmallow schemas by apispec, so
their limits are stated once; written here by hand is only what no schema describes: the responses
(cards, assessments, outcomes), descriptions, the per-hook context, and the cross-field feedback rule.
Over 350 lines for that reason: the responses and the paths are the document's own text.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response

from .. import __version__
from ..pipeline import Engine
from ..state import app_state
from .body import json_response
from .feedback import FeedbackRequestSchema
from .schemas import HookRequestSchema, PatientViewContextSchema

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/"
FHIR_JSON = "application/fhir+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request or invalid FHIR the decision needs",
        401: "Authentication failed (CDS Hooks JWT); no detail is given",
        404: "No such service",
        412: "Required data neither prefetched nor obtainable from fhirServer",
        413: "Body larger than VCF_CDS_MAX_BODY",
        415: "Body is not JSON",
        503: "Cannot answer now (the database cannot take the write the answer depends on, or a large body "
        "waited too long for its turn); retry later",
    }
    return {
        str(s): {"description": texts[s], "content": {FHIR_JSON: {"schema": _ref("OperationOutcome")}}}
        for s in statuses
    }


def _from_marshmallow() -> dict[str, Any]:
    """Components generated from the schemas the service validates requests with (apispec)."""
    spec = APISpec("vcf-cds", __version__, "3.1.0", plugins=[MarshmallowPlugin()])
    spec.components.schema("HookRequest", schema=HookRequestSchema)
    spec.components.schema("PatientViewContext", schema=PatientViewContextSchema)
    spec.components.schema("FeedbackRequest", schema=FeedbackRequestSchema)
    generated: dict[str, Any] = spec.to_dict()["components"]["schemas"]

    hook_request = generated["HookRequest"]
    hook_request["description"] = (
        "CDS Hooks 2.0 request; context as the hook defines it (patient-view: patientId, userId)"
    )
    hook_request["properties"]["hook"]["description"] = "the service's hook (discovery), e.g. patient-view"
    hook_request["properties"]["fhirServer"]["format"] = "uri"  # apispec says "url", not a JSON Schema format
    # each hook's context has a schema of its own (schemas.CONTEXT_SCHEMAS); all share patient-view's
    hook_request["properties"]["context"] = {
        **generated.pop("PatientViewContext"),
        "description": (
            "as the hook defines it: order-select adds draftOrders (a Bundle) and selections, order-sign draftOrders"
        ),
    }
    # the schema takes any value per key; gather reads resources or Bundles, and null as no data
    hook_request["properties"]["prefetch"].update(
        description="FHIR resources or Bundles by the keys of discovery; null means no data",
        additionalProperties={"type": ["object", "null"]},
    )
    generated["FeedbackItem"]["properties"]["card"]["description"] = "the card's uuid"
    # FeedbackItemSchema's cross-field rule: only an overridden card has an override reason (an empty
    # one is no reason)
    generated["FeedbackItem"].update(
        {
            "if": {"properties": {"outcome": {"const": "accepted"}}},
            "then": {"properties": {"overrideReason": {"maxProperties": 0}}},
        }
    )
    return generated


def schemas() -> dict[str, Any]:
    string = {"type": "string"}
    return {
        **_from_marshmallow(),
        "OperationOutcome": {
            "type": "object",
            "description": "FHIR R4 OperationOutcome: the body of every non-2xx answer",
            "required": ["resourceType", "issue"],
            "properties": {
                "resourceType": {"const": "OperationOutcome"},
                "issue": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["severity", "code", "diagnostics"],
                        "properties": {
                            "severity": {"enum": ["fatal", "error", "warning", "information"]},
                            "code": string,
                            "diagnostics": string,
                            "expression": {"type": "array", "items": string},
                        },
                    },
                },
            },
        },
        "DiscoveryResponse": {
            "type": "object",
            "required": ["services"],
            "properties": {
                "services": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["hook", "id", "description"],
                        "properties": {
                            "hook": string,
                            "id": string,
                            "title": string,
                            "description": string,
                            "prefetch": {"type": "object", "additionalProperties": string},
                            "usageRequirements": string,
                        },
                    },
                }
            },
        },
        "CdsResponse": {
            "type": "object",
            "required": ["cards"],
            "properties": {"cards": {"type": "array", "items": _ref("Card")}},
        },
        "Card": {
            "type": "object",
            "required": ["uuid", "summary", "indicator", "source"],
            "properties": {
                "uuid": string,
                "summary": {"type": "string", "maxLength": 140},
                "detail": {"type": "string", "description": "GitHub-flavored Markdown, no raw HTML"},
                "indicator": {"enum": ["info", "warning", "critical"]},
                "source": {
                    "type": "object",
                    "required": ["label"],
                    "properties": {"label": string, "url": string, "icon": string, "topic": _ref("Coding")},
                },
                "suggestions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["label"],
                        "properties": {
                            "label": string,
                            "uuid": string,
                            "isRecommended": {"type": "boolean"},
                            "actions": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["type"],
                                    "properties": {
                                        "type": {"enum": ["create", "update", "delete"]},
                                        "description": string,
                                        "resource": {"type": "object"},
                                        "resourceId": string,
                                    },
                                },
                            },
                        },
                    },
                },
                "selectionBehavior": {"enum": ["at-most-one", "any"]},
                "overrideReasons": {"type": "array", "items": _ref("Coding")},
                "links": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["label", "url", "type"],
                        "properties": {
                            "label": string,
                            "url": string,
                            "type": {"enum": ["absolute", "smart"]},
                            "appContext": string,
                        },
                    },
                },
                "extension": {
                    "type": "object",
                    "properties": {"org.vcfcds": _ref("Assessment")},
                },
            },
        },
        "Assessment": {
            "type": "object",
            "description": "The machine-readable assessment a card carries",
            "required": ["kind", "recommendation", "criteria", "rulesVersion"],
            "properties": {
                "kind": {"enum": ["recommendation", "secondary-prevention", "order-check"]},
                "recommendation": {"enum": ["conservative", "augmentation", "referral"]},
                "referral": {"enum": ["spine-surgery", "oncology", "infection", None]},
                "pathway": {"enum": ["osteoporotic", "neoplastic", "traumatic", "unknown"]},
                "procedure": {"enum": ["kyphoplasty", "vertebroplasty", "either", None]},
                "orderAppropriate": {"type": "boolean"},
                "criteria": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "status"],
                        "properties": {
                            "id": string,
                            "status": {"enum": ["met", "not-met", "unknown"]},
                            "evidence": {"type": "array", "items": string},
                            "source": string,
                        },
                    },
                },
                "cautions": {"type": "array", "items": string},
                "missing": {"type": "array", "items": string},
                "rulesVersion": string,
            },
        },
        "FeedbackResponse": {
            "type": "object",
            "required": ["stored", "duplicates", "unknownCards"],
            "properties": {
                "stored": {"type": "integer", "description": "items stored now"},
                "duplicates": {"type": "integer", "description": "items already stored before (not stored twice)"},
                "unknownCards": {
                    "type": "array",
                    "items": string,
                    "description": "card uuids this service has no record of issuing (stored, flagged)",
                },
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"const": "ready"},
                "checks": {"type": "object", "additionalProperties": {"const": "ok"}},
                "rulesVersion": string,
                "services": {"type": "array", "items": string},
            },
        },
    }


# POST /viewer/prepare: what service/devtools/replay.py's classify() takes
PASTED = {
    "type": "object",
    "description": "a fixture ({request | bundle, expected, now}), a FHIR Bundle or a CDS Hooks request",
    "anyOf": [
        {"required": ["request"], "properties": {"request": {"type": "object"}}},
        {"required": ["bundle"], "properties": {"bundle": {"type": "object"}}},
        {"required": ["resourceType"], "properties": {"resourceType": {"const": "Bundle"}}},
        {"required": ["hook"]},
    ],
}
CHECKED = {
    "type": "object",
    "required": ["cards", "expected"],
    "properties": {
        "cards": {"type": "array", "items": {"type": "object"}, "description": "the cards a hook call answered"},
        "expected": {"type": "object", "description": "a fixture's expected result (fixtures/patient-view/README.md)"},
    },
}


def build_spec(the_engine: Engine) -> dict[str, Any]:
    ids = sorted(the_engine.catalog)
    service_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "a service id from discovery",
        "schema": {"type": "string", "enum": ids},
    }
    jwt: list[dict[str, list[str]]] = [{"cdsHooksJwt": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vcf-cds",
            "version": __version__,
            "summary": "CDS Hooks 2.0 service for vertebral compression fractures",
            "description": (
                "Conservative care, vertebral augmentation or referral for a painful vertebral compression "
                f"fracture. Rules version {the_engine.rules_version}. Every non-2xx answer is a FHIR "
                "OperationOutcome."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": {
            "/cds-services": {
                "get": {
                    "operationId": "discovery",
                    "summary": "CDS Hooks discovery: the services offered with their prefetch templates",
                    # everything under /cds-services needs the EHR's JWT once trusted issuers are configured
                    "security": jwt,
                    "responses": {"200": _json(_ref("DiscoveryResponse"), "The services"), **_errors(401)},
                }
            },
            "/cds-services/{id}": {
                "post": {
                    "operationId": "callService",
                    "summary": "Call a CDS service (a hook fired by the EHR)",
                    "parameters": [service_id],
                    "security": jwt,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("HookRequest")},
                            FHIR_JSON: {"schema": _ref("HookRequest")},
                        },
                    },
                    "responses": {
                        "200": _json(_ref("CdsResponse"), "Cards (possibly none)"),
                        **_errors(400, 401, 404, 412, 413, 415, 503),
                    },
                }
            },
            "/cds-services/{id}/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "Card feedback (accepted / overridden), stored durably; idempotent",
                    "parameters": [service_id],
                    "security": jwt,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("FeedbackRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("FeedbackResponse"), "Stored (or stored before)"),
                        **_errors(400, 401, 404, 413, 415, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers",
                    "responses": {"200": _json(_ref("Health"), "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: database reachable with a current schema, value sets loaded",
                    "responses": {
                        "200": _json(_ref("Ready"), "Ready to serve"),
                        "503": {
                            "description": "Not ready; diagnostics says why",
                            "content": {FHIR_JSON: {"schema": _ref("OperationOutcome")}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format 0.0.4)",
                    "responses": {
                        "200": {
                            "description": "Metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This description",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
                }
            },
            "/": {
                "get": {
                    "operationId": "viewer",
                    "summary": "Developer card viewer: pick a fixture or paste a Bundle, see the cards",
                    "responses": {
                        "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/viewer/static/{filename}": {
                "get": {
                    "operationId": "viewerAsset",
                    "summary": "The viewer page's scripts and styles",
                    "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "a static file"}, **_errors(404)},
                }
            },
            "/viewer/fixtures": {
                "get": {
                    "operationId": "viewerFixtures",
                    "summary": "The golden fixtures the viewer offers (read-only)",
                    "responses": {"200": _json({"type": "object"}, "{fixtures: [{name, description, service}]}")},
                }
            },
            "/viewer/fixtures/{name}": {
                "get": {
                    "operationId": "viewerFixture",
                    "summary": "One fixture, as the request to send and what to expect",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _json({"type": "object"}, "{name, request, expected, now}"),
                        **_errors(400, 404),
                    },
                }
            },
            "/viewer/prepare": {
                "post": {
                    "operationId": "viewerPrepare",
                    "summary": "A pasted Bundle, request or fixture, as the request to send",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": PASTED}}},
                    "responses": {
                        "200": _json({"type": "object"}, "{name, request, expected, now}"),
                        **_errors(400, 413, 415),
                    },
                }
            },
            "/viewer/check": {
                "post": {
                    "operationId": "viewerCheck",
                    "summary": "Compare cards with a fixture's expected result",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": CHECKED}}},
                    "responses": {"200": _json({"type": "object"}, "{problems: [text]}"), **_errors(400, 413, 415)},
                }
            },
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "cdsHooksJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "CDS Hooks 2.0 JWT signed by the EHR (ES384/RS384), aud = the URL called",
                }
            },
        },
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return json_response(build_spec(app_state().engine))
