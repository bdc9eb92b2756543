"""The app as the tests make it: frozen clock, counted ids, a known audit key."""

from __future__ import annotations

from typing import Any

from flask import Flask

from service import create_app
from service.pipeline import Engine

from .clock import NOW, counter_uuids

TEST_AUDIT_KEY = "test-audit-key-0123456789abcdef0123456789abcdef"


def make_app(engine: Engine, database_url: str, **overrides: Any) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "ENGINE": engine,
            "CLOCK": lambda: NOW,
            "NEW_UUID": counter_uuids(),
            "DATABASE_URL": database_url,
            "AUDIT_KEY": TEST_AUDIT_KEY,
            **overrides,
        }
    )
