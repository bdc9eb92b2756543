"""Stage 1 and last: HTTP in and out (Flask blueprints, thin).

In: a request to ``/cds-services``, its feedback, the viewer, ``/openapi.json`` or the operations
endpoints. The modules here read and bound the body (``body``), answer CORS (``cors``), check the
request envelope against the marshmallow schemas (``schemas``), hand the hook call to
``service.pipeline.Engine`` and answer its cards as JSON. ``server`` runs all of it under gunicorn.

Out: a JSON response. Errors: every ``service.errors.ServiceError`` leaves as one OperationOutcome
shape (``errors``); nothing else here decides, fetches or stores.
"""
