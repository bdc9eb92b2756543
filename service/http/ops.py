"""Operations endpoints: liveness, readiness, Prometheus metrics; and the per-request counter.

``/healthz`` says the process answers (no dependencies: a database outage must not get every
container restarted); ``/readyz`` says it can serve (database reachable with a current schema and
taking writes, value sets and services loaded), so a load balancer stops routing to it otherwise.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import ServiceUnavailableError
from ..observe import metrics
from ..state import app_state
from .body import json_response

bp = Blueprint("ops", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.after_request(_count)


def _count(response: Response) -> Response:
    # the rule, not the path: bounded label values whatever clients send
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.HTTP_REQUESTS.labels(endpoint=endpoint, method=request.method, status=str(response.status_code)).inc()
    return response


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    engine = app_state().engine
    problems = []
    database = app_state().database.check() or app_state().write_probe.check()
    if database:
        problems.append(database)
    if not engine.terminology.valuesets or not engine.catalog:
        problems.append("value sets or services not loaded")
    if problems:
        raise ServiceUnavailableError("Not ready: " + "; ".join(problems) + ".")
    return json_response(
        {
            "status": "ready",
            "checks": {"database": "ok", "mappings": "ok"},
            "rulesVersion": engine.rules_version,
            "services": sorted(engine.catalog),
        }
    )


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
