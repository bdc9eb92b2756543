"""Stage 1 and last: HTTP in and out (Flask blueprints, thin).

In: a request to ``/cds-services``, its feedback, ``/openapi.json`` or the operations endpoints
(``ops``). The modules here open and write the call's audit record (``audit``), answer CORS
(``cors``), verify the caller's JWT (``auth``, deciding with ``service.auth``), read and bound the
body (``body``), hand the hook call to ``service.pipeline.Engine`` (which checks the request envelope
against the marshmallow schemas of ``schemas``) and answer its cards as JSON. ``proxies`` reads
``X-Forwarded-*`` from trusted proxies; ``server`` runs all of it under gunicorn.

Out: a JSON response. Errors: every ``service.errors.ServiceError`` leaves as one OperationOutcome
shape (``errors``). Nothing here decides or fetches, and the rows it hands on (audit, feedback) are
written by ``service.store``.
"""
