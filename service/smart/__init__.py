"""The SMART on FHIR app the recommendation card links to (``/app/…``), SMART App Launch 2.x.

Off unless ``VCF_CDS_SMART_CLIENTS`` names a clients file: then no route exists under ``/app`` and
cards carry no ``smart`` link. On, it needs ``VCF_CDS_PUBLIC_URL`` (its redirect URIs are
``{VCF_CDS_PUBLIC_URL}/app/callback/{slug}``, one per EHR, see clients.py), https unless on
loopback, where the session cookie can be ``Secure``.

In: the clients file (each EHR's ``iss``, ``client_id`` and redirect slug), a browser launched from
the EHR or from a card's link, the EHR's authorization answers and FHIR server. Out: HTML pages (the
assessment ``Engine.evaluate`` makes for a hook call, with its timeline) and the findings a clinician
records, created as Observations in the EHR; sessions are rows of the database (``store``). Errors:
``SmartConfigError`` at start for a clients file or ``VCF_CDS_PUBLIC_URL`` the app cannot run with; in
use, a refusal is an error page that names no token and no URL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from ..gather.fhirclient import FhirClient, Limits, https_or_loopback
from .clients import SmartConfigError, load_clients

log = logging.getLogger("vcf_cds.smart")

# A page is read by a clinician waiting for it, not by an EHR holding a hook call: a longer budget
# than VCF_CDS_FHIR_TIMEOUT's default for the searches behind it
MIN_PAGE_BUDGET = 10.0


def check_public_url(public_url: str) -> None:
    if not public_url:
        raise SmartConfigError(
            "VCF_CDS_SMART_CLIENTS is set but VCF_CDS_PUBLIC_URL is not: the app's redirect URI is "
            "{VCF_CDS_PUBLIC_URL}/app/callback, registered with each EHR."
        )
    if not https_or_loopback(public_url):
        raise SmartConfigError(
            "VCF_CDS_PUBLIC_URL must be https for the SMART app (its session cookie is Secure); http is "
            "accepted on loopback only."
        )


def startup_refusal(settings: Mapping[str, Any]) -> str | None:
    """Why ``vcf-cds serve`` must not start with these SMART settings (before any worker does), or None."""
    if not settings.get("SMART_CLIENTS"):
        return None
    try:
        load_clients(str(settings["SMART_CLIENTS"]))
        check_public_url(str(settings.get("PUBLIC_URL") or ""))
    except SmartConfigError as e:
        return str(e)
    return None


def init_app(app: Flask) -> None:
    path = str(app.config.get("SMART_CLIENTS") or "")
    if not path:
        return
    clients = load_clients(path)
    public_url = str(app.config.get("PUBLIC_URL") or "")
    check_public_url(public_url)

    from .discovery import Discovery
    from .views import SmartApp, init_blueprint

    budget = max(float(app.config["FHIR_TIMEOUT"]), MIN_PAGE_BUDGET)
    # the app reads only from the FHIR servers registered for it: they are its allowlist
    fetch = FhirClient([c.iss for c in clients.values()], Limits(budget=budget))
    init_blueprint(app, SmartApp(clients, public_url, Discovery(), fetch))
    for client in clients.values():
        suffix = f"/{client.slug}" if client.slug else ""
        log.info("SMART app on for %s: redirect URI %s/app/callback%s", client.iss, public_url, suffix)
