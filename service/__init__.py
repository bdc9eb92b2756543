"""vcf-cds: a CDS Hooks service for vertebral compression fractures."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask

from .config import load_settings
from .pipeline import Engine
from .state import EXTENSION, AppState

__version__ = "0.1.0"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Defaults, then ``VCF_CDS_*`` from the environment, then ``test_config`` (Flask tutorial style)."""
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(load_settings())
    app.config.update(
        CLOCK=lambda: datetime.now(UTC).astimezone(),
        NEW_UUID=lambda: str(uuid.uuid4()),
    )
    if test_config:
        app.config.update(test_config)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_BODY"])
    logging.getLogger("vcf_cds").setLevel(str(app.config["LOG_LEVEL"]).upper())

    engine = app.config.get("ENGINE") or Engine.load(app.config["EXTRA_MAPPINGS"])

    # imported here, not at the top: ``vcf-cds serve`` must set PROMETHEUS_MULTIPROC_DIR before any
    # module imports prometheus_client (service.observe.metrics), and the CLI should stay quick to start
    from .auth import verifier
    from .devtools import viewer
    from .gather import fhirclient
    from .http import api, audit, auth, body, cors, feedback, openapi, ops, proxies
    from .http import errors as http_errors
    from .store import db
    from .store.audit import AuditKey, insert_calls
    from .store.groupcommit import GroupCommit
    from .store.heartbeat import WriteProbe

    # off: a one-off `vcf-cds migrate` owns the schema, and /readyz says not ready until it is current
    database = db.open_database(str(app.config["DATABASE_URL"]), migrate_schema=app.config.get("MIGRATE", "on") == "on")
    authenticator = verifier.authenticator(app.config, database.engine)
    app.extensions[EXTENSION] = AppState(
        engine=engine,
        database=database,
        audit_key=AuditKey.from_setting(str(app.config["AUDIT_KEY"])),
        # the rows of calls answered at the same moment share a transaction (store/groupcommit.py)
        audit_writer=GroupCommit(database.engine.begin, insert_calls),
        auth=authenticator,
        fetch=fhirclient.client(app.config, authenticator, auth.caller_fhir_servers),
        write_probe=WriteProbe(database.engine),
    )

    # each part attaches itself (Flask's init_app pattern); order matters for request hooks:
    # audit's before_request first of the hooks (so refusals are audited); CORS answers preflights
    # before auth; auth before the handlers and before large bodies queue for their turn (body);
    # proxies wraps the WSGI app, below every hook
    for part in (proxies, http_errors, audit, ops, cors, auth, body, fhirclient, api, feedback, openapi, viewer):
        part.init_app(app)
    from . import smart  # the SMART app: registers /app/… only when VCF_CDS_SMART_CLIENTS is set

    smart.init_app(app)
    return app
