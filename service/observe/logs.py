"""JSON log lines, one object per line, with the call's ``hookInstance`` as correlation id.

No PHI: messages name types, statuses and ids the service made or the EHR's random ``hookInstance``;
never a patient id, a body, a query string or a token. Only the keys in ``FIELDS`` leave a record.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import g, has_request_context

# Extra fields a log call may attach (``log.info("…", extra={...})``); anything else is dropped
FIELDS = (
    "hookInstance",
    "service",
    "hook",
    "status",
    "durationMs",
    "recommendation",
    "cards",
    "method",
    "path",
    "remote",
    "bytes",
    "items",
    "duplicates",
    "unknownCards",
    "pid",
)


class CorrelationFilter(logging.Filter):
    """Stamps the current hook call's ``hookInstance`` on every record logged while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "hookInstance") and has_request_context():
            hook_instance = g.get("hook_instance")
            if hook_instance:
                record.hookInstance = hook_instance
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # the type only: exception messages can carry record data
            entry["exception"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    return handler


def configure(level: str) -> None:
    """JSON lines on stderr for the service's loggers (``vcf_cds.*``, Alembic); called by ``vcf-cds serve``."""
    for name in ("vcf_cds", "alembic"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
            logger.removeHandler(old)
        logger.addHandler(json_handler())
        logger.setLevel(level.upper() if name == "vcf_cds" else "WARNING")
        logger.propagate = False
