"""The floor: a bare Flask endpoint that only parses the body with orjson and answers no cards.

Nothing can answer a hook call faster over the same server and the same body; vcf-cds is measured
as a ratio to this.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

EMPTY = orjson.dumps({"cards": []})


def create_app() -> Flask:
    app = Flask(__name__, static_folder=None)

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        orjson.loads(request.get_data(cache=False))
        return Response(EMPTY, mimetype="application/json")

    return app
