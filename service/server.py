"""``vcf-cds serve``: the production server (gunicorn) around ``create_app``."""

from __future__ import annotations

from typing import Any

import orjson
from gunicorn import util
from gunicorn.app.base import BaseApplication

from .errors import operation_outcome

_ISSUE_CODES = {400: "invalid", 403: "forbidden", 414: "too-costly", 431: "too-costly", 501: "not-supported"}


def write_outcome(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's own error answers (bad request line, headers, framing) as our OperationOutcome.

    Replaces ``gunicorn.util.write_error``, whose HTML page quotes the request line (it may carry a
    query string): ``message`` is not repeated.
    """
    outcome = operation_outcome(_ISSUE_CODES.get(status, "exception"), f"{reason}: the HTTP request is malformed.")
    body = orjson.dumps(outcome)
    head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
    util.write_nonblock(sock, f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from . import create_app

        util.write_error = write_outcome  # in the worker, which is where gunicorn writes them

        return create_app()


def run(host: str, port: int, workers: int, threads: int) -> int:
    Server(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "graceful_timeout": 20,
            "timeout": 30,
            "accesslog": "-",
            # no query strings, no bodies: request line without "?…" is %(U)s
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
        }
    ).run()
    return 0
