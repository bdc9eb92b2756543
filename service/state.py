"""The application's state: what ``create_app`` builds once and request handlers use, typed.

Attached once, at ``app.extensions["vcf_cds"]``; ``app_state()`` returns it (inside a request, or for
a given app). Only process-local things live here: state that must hold across processes is in the
database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from flask import Flask, current_app

# types only: create_app imports the modules behind them late (prometheus_client must wait for
# ``vcf-cds serve`` to set its multiprocess directory)
if TYPE_CHECKING:
    from .auth.verifier import Authenticator
    from .gather.fhirclient import FhirClient
    from .pipeline import Engine
    from .smart.views import SmartApp
    from .store.audit import AuditKey, CallRows
    from .store.db import Database
    from .store.heartbeat import WriteProbe

EXTENSION = "vcf_cds"


class AuditWriter(Protocol):
    def submit(self, item: CallRows) -> object: ...


@dataclass
class AppState:
    engine: Engine
    database: Database
    audit_key: AuditKey
    audit_writer: AuditWriter
    auth: Authenticator
    fetch: FhirClient
    write_probe: WriteProbe
    smart: SmartApp | None = None  # the SMART app (service/smart), when VCF_CDS_SMART_CLIENTS is set

    @property
    def smart_launch(self) -> str | None:
        """The SMART app's launch URL that recommendation cards link to, when the app is on."""
        return f"{self.smart.public_url}/app/launch" if self.smart else None


def app_state(app: Flask | None = None) -> AppState:
    return cast(AppState, (app or current_app).extensions[EXTENSION])
