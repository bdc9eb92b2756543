"""``/app/…``: launch, callback, the page, recording a finding. HTML for a browser, no-store.

Nothing here puts a token in a page, a URL, a log line or an error: the session cookie names a row
of the database, which holds the token (store.py).

Over 350 lines on purpose: launch, callback, page and finding form share the cookie, session and
error-page handling that makes that hold; apart, each would have to redo it.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import plotly
from flask import Blueprint, Flask, Response, current_app, render_template, request, send_file

from ..errors import ServiceError
from ..gather.fhirclient import FhirClient
from ..pipeline import Engine, HookResult
from ..render.cards import STATUS_TEXT
from ..state import app_state
from ..store.audit import call_was_about
from . import findings as F
from .assess import assess
from .clients import SmartClient, normal_iss
from .discovery import Discovery, DiscoveryError, SmartConfiguration, signing_keys
from .evidence import describe, index
from .http import CallError, call
from .oauth import TokenError, authorization_url, exchange_code, may_create_observations, new_code_verifier
from .store import (
    Launch,
    Session,
    TooManyLaunchesError,
    end_session,
    load_session,
    new_secret,
    save_launch,
    save_session,
    take_launch,
)
from .timeline import figure, figure_json
from .tokens import session_from_token
from .words import banner, decision

log = logging.getLogger("vcf_cds.smart")

HERE = Path(__file__).resolve().parent
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
bp = Blueprint("smart", __name__, url_prefix="/app", template_folder="templates", static_folder="static")

# Off loopback the cookies are ``__Host-`` cookies (Secure, Path=/, no Domain): a sibling subdomain or
# a plain-http page of the same host cannot plant one, so nobody can bind their sign-in to a victim
SESSION_COOKIE = "vcf_cds_smart"
LAUNCH_COOKIE = "vcf_cds_smart_launch"
MAX_PARAM = 2048

# As strict as the card viewer's, with what plotly.js needs and nothing that runs: it creates an
# empty <style> and fills it through the CSSOM (the hash is that of the empty string), MapLibre's
# stylesheet of the plotly.js bundle the `plotly` package ships (its hash: a new plotly.js release
# shows up as a CSP violation in tests/test_smart_app.py), and a data: image it probes WebP with.
STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
    "'sha256-V2sIX92Uh6ZaGSFTKMHghsB85b9toJtmazgG09AI2uk='",
)
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' " + " ".join(STYLE_HASHES),
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class SmartApp:
    clients: dict[str, SmartClient]
    public_url: str
    discovery: Discovery
    fetch: FhirClient

    def redirect_uri(self, client: SmartClient) -> str:
        return f"{self.public_url}/app/callback" + (f"/{client.slug}" if client.slug else "")

    def by_slug(self, slug: str | None) -> SmartClient | None:
        return next((c for c in self.clients.values() if c.slug == slug), None)

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"

    def cookie_name(self, name: str) -> str:
        return f"__Host-{name}" if self.secure_cookies else name

    @property
    def cookie_path(self) -> str:
        return "/" if self.secure_cookies else "/app/"


def smart() -> SmartApp:
    app = app_state().smart
    assert app is not None  # the blueprint is registered only with the app on
    return app


def now() -> datetime:
    return current_app.config["CLOCK"]()  # type: ignore[no-any-return]


def engine() -> Engine:
    return app_state().engine


def message(status: int, title: str, text: str, *, relaunch: bool = True) -> Response:
    body = render_template("message.html", title=title, text=text, relaunch=relaunch)
    return Response(body, status=status, mimetype="text/html")


def expired() -> Response:
    return message(
        401,
        "Not signed in",
        "There is no session for this browser, or it has expired with the EHR's access token.",
    )


@bp.after_request
def secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    if not request.path.startswith("/app/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str, status: int) -> Response:
    return Response("", status=status, headers={"Location": location})


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    app = smart()
    response.set_cookie(
        app.cookie_name(name),
        value,
        max_age=max_age,
        path=app.cookie_path,
        httponly=True,
        samesite="Lax",
        secure=app.secure_cookies,
    )


def _read_cookie(name: str) -> str | None:
    return request.cookies.get(smart().cookie_name(name))


def _forget_cookie(response: Response, name: str) -> None:
    app = smart()
    response.delete_cookie(app.cookie_name(name), path=app.cookie_path, secure=app.secure_cookies, httponly=True)


@bp.get("/launch")
def launch() -> Response:
    iss_param = request.args.get("iss", "")
    launch_param = request.args.get("launch")
    if not iss_param or len(iss_param) > MAX_PARAM or (launch_param is not None and len(launch_param) > MAX_PARAM):
        return message(400, "Cannot launch", "The launch needs the EHR's FHIR base URL as `iss`.", relaunch=False)
    client = smart().clients.get(normal_iss(iss_param))
    if client is None:  # refused before any request to it
        log.info("SMART launch refused: iss not registered")
        return message(
            400,
            "EHR not registered",
            "This EHR (iss) is not registered with this service (VCF_CDS_SMART_CLIENTS), so the app was not "
            "launched and nothing was requested from it.",
            relaunch=False,
        )
    try:
        configuration = smart().discovery(client.iss)
    except DiscoveryError as e:
        log.warning("SMART discovery failed: %s", e)
        return message(502, "Cannot launch", f"The EHR's SMART configuration cannot be used: {e}.")
    # the browser's binding is always a new value of ours: one planted in the browser is never taken
    state, verifier, browser = new_secret(), new_code_verifier(), new_secret()
    try:
        save_launch(app_state().database.engine, state, browser, Launch(client.iss, verifier), now())
    except TooManyLaunchesError:
        log.warning("SMART launch refused: too many launches waiting for their callback")
        return message(503, "Too many sign-ins", "Too many sign-ins are in progress right now. Try again in a minute.")
    url = authorization_url(
        client,
        configuration.authorization_endpoint,
        redirect_uri=smart().redirect_uri(client),
        state=state,
        code_verifier=verifier,
        launch=launch_param,
    )
    response = redirect(url, 302)
    _cookie(response, LAUNCH_COOKIE, browser, 600)
    log.info(
        "SMART launch: redirected to the EHR's authorization endpoint (%s)", "ehr" if launch_param else "standalone"
    )
    return response


def _card_patient_matches(app_context: str | None, patient_id: str) -> bool | None:
    """Whether the card that launched the app (its hookInstance, from the audit log) was about this
    patient; None when that cannot be told."""
    if not app_context:
        return None
    return call_was_about(app_state().database.engine, app_context, patient_id, app_state().audit_key)


def _issuer(client: SmartClient, configuration: SmartConfiguration) -> str:
    return configuration.issuer or client.iss


def _iss_parameter_refusal(client: SmartClient, configuration: SmartConfiguration) -> str | None:
    """RFC 9207: the authorization server names itself in its answer; checked when present, required
    when its discovery says it sends it."""
    iss = request.args.get("iss")
    if iss is None:
        return "it does not name its issuer (iss)" if configuration.iss_parameter_required else None
    if normal_iss(iss) != normal_iss(_issuer(client, configuration)):
        return "it names another issuer (iss) than the EHR this sign-in was started with"
    return None


@bp.get("/callback", defaults={"slug": None})
@bp.get("/callback/<slug>")
def callback(slug: str | None) -> Response:
    here = smart().by_slug(slug)  # the EHR whose redirect URI this is
    if here is None:
        return message(404, "Sign-in not valid", "This address is no EHR's redirect URI. Nothing was stored.")
    state = request.args.get("state", "")
    taken = take_launch(app_state().database.engine, state, _read_cookie(LAUNCH_COOKIE), now()) if state else None
    if taken is None:
        log.info("SMART callback refused: state unknown, used, expired or from another browser")
        return message(
            400,
            "Sign-in not valid",
            "This sign-in answer does not belong to a launch of this browser: its state is unknown, expired or "
            "already used. Nothing was stored.",
        )
    if taken.iss != here.iss:
        log.warning("SMART callback refused: an answer for one EHR's launch came to another EHR's redirect URI")
        return message(
            400, "Sign-in not valid", "This sign-in answer came back for another EHR than the one it was started with."
        )
    client = smart().clients.get(taken.iss)
    if "error" in request.args or client is None:
        error = request.args.get("error", "unregistered EHR")
        shown = error if error.replace("_", "").isalnum() and len(error) < 64 else "error"
        return message(403, "Not authorized", f"The EHR did not authorize the app ({shown}). Nothing was stored.")
    code = request.args.get("code", "")
    if not code or len(code) > MAX_PARAM:
        return message(400, "Sign-in not valid", "The EHR's answer carries no authorization code.")
    try:
        configuration = smart().discovery(client.iss)
        refusal = _iss_parameter_refusal(client, configuration)
        if refusal:
            log.warning("SMART callback refused: %s", refusal)
            return message(
                400, "Sign-in not valid", f"The sign-in answer cannot be used: {refusal}. Nothing was stored."
            )
        token = exchange_code(
            client,
            configuration.token_endpoint,
            redirect_uri=smart().redirect_uri(client),
            code=code,
            code_verifier=taken.code_verifier,
        )
        keys = signing_keys(configuration)
        session = session_from_token(token, client, now(), issuer=_issuer(client, configuration), keys=keys)
    except (DiscoveryError, TokenError) as e:
        log.warning("SMART token exchange failed: %s", e)
        return message(400, "Sign-in failed", f"Sign-in failed: {e}. Nothing was stored.")
    if _card_patient_matches(session.app_context, session.patient_id) is False:
        log.warning("SMART callback refused: the token's patient is not the card's patient")
        return message(
            403,
            "Another patient",
            "The EHR's access token is for another patient than the card the app was opened from. Nothing was "
            "shown or stored.",
        )
    cookie = save_session(app_state().database.engine, session, now())
    response = redirect("/app/", 303)
    _cookie(response, SESSION_COOKIE, cookie, int((session.expires_at - now()).total_seconds()))
    _forget_cookie(response, LAUNCH_COOKIE)
    log.info("SMART session started (%d s)", int((session.expires_at - now()).total_seconds()))
    return response


def _session() -> Session | None:
    return load_session(app_state().database.engine, _read_cookie(SESSION_COOKIE), now())


def _assess(session: Session) -> HookResult | Response:
    try:
        return assess(engine(), smart().fetch, session, now())
    except ServiceError as e:
        return message(e.status if e.status < 500 else 502, "Cannot assess", e.diagnostics)


def _csrf_ok(session: Session) -> bool:
    # as bytes: compare_digest refuses str with non-ASCII characters (a tampered form is a 403, not a 500)
    return hmac.compare_digest(request.form.get("csrf", "").encode(), session.csrf_token.encode())


@bp.get("/")
def page() -> Response:
    session = _session()
    if session is None:
        return expired()
    result = _assess(session)
    if isinstance(result, Response):
        return result
    recorded = request.args.get("recorded")
    notice = None
    if recorded in F.BY_CODE:
        notice = f"Recorded on the EHR: {F.BY_CODE[recorded].display}. The recommendation below includes it."
    return Response(render_template("app.html", **_page_context(session, result), notice=notice), mimetype="text/html")


def _page_context(session: Session, result: HookResult) -> dict[str, Any]:
    a, facts = result.assessment, result.facts
    resources = index(result.record.resources if result.record else [])
    context: dict[str, Any] = {
        "banner": banner(result.record.patient if result.record else None),
        "assessment": a,
        "decision": decision(a) if a is not None else None,
        "csrf": session.csrf_token,
        "can_write": may_create_observations(session.scope),
        "from_card": bool(session.app_context),
    }
    if a is None or facts is None:
        return context
    context.update(
        figure=figure_json(figure(facts, a, resources)),
        criteria=[
            {
                "label": c.label,
                "status": STATUS_TEXT[c.status],
                "status_id": c.status,
                "note": c.note,
                "source": c.source,
                "evidence": [describe(r, resources) for r in c.evidence],
            }
            for c in a.criteria
        ],
        cautions=[{"text": c.text, "evidence": [describe(r, resources) for r in c.evidence]} for c in a.cautions],
        forms=F.missing_findings(a, facts),
    )
    return context


@bp.post("/findings")
def record_finding() -> Response:
    session = _session()
    if session is None:
        return expired()
    if not _csrf_ok(session):
        return message(403, "Form expired", "This form does not belong to your session (CSRF check). Reload the page.")
    form = F.BY_CODE.get(request.form.get("finding", ""))
    if form is None:
        return message(400, "Unknown finding", "The form names no finding this app records.", relaunch=False)
    if not may_create_observations(session.scope):
        return message(
            403,
            "Not permitted",
            "The EHR did not grant this app permission to create Observations (scope patient/Observation.c), "
            "so the finding was not recorded.",
            relaunch=False,
        )
    try:
        value = F.parse_value(form, request.form)
    except F.FindingInputError as e:
        return message(400, "Check the finding", str(e), relaunch=False)
    result = _assess(session)
    if isinstance(result, Response):
        return result
    facts = result.facts
    newest = max((f for f in facts.fractures if f.onset), key=lambda f: f.onset or 0, default=None) if facts else None
    site = F.fracture_body_site(result.record.resources if result.record else [], newest.ref if newest else None)
    observation = F.observation(
        form, value, patient_id=session.patient_id, performer=session.fhir_user, when=now(), body_site=site
    )
    try:
        answer = call(
            "POST",
            f"{session.iss}/Observation",
            what="Observation create",
            token=session.access_token,
            body=observation,
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        )
    except CallError as e:
        return message(502, "Not recorded", f"The finding was not recorded: {e}.", relaunch=False)
    if answer.status not in (200, 201):
        why = ""
        if answer.body and answer.body.get("resourceType") == "OperationOutcome":
            issues = answer.body.get("issue") or [{}]
            text = issues[0].get("diagnostics") if isinstance(issues[0], dict) else None
            why = f": {str(text)[:300]}" if text else ""
        log.warning("SMART finding not recorded: the FHIR server answered HTTP %d", answer.status)
        return message(
            502,
            "Not recorded",
            f"The EHR's FHIR server refused the Observation (HTTP {answer.status}{why}). Nothing was recorded.",
            relaunch=False,
        )
    log.info("SMART finding recorded (%s)", form.code)
    return redirect(f"/app/?recorded={form.code}", 303)


@bp.post("/logout")
def logout() -> Response:
    session = _session()
    if session is None:
        return expired()
    if not _csrf_ok(session):
        return message(403, "Form expired", "This form does not belong to your session (CSRF check). Reload the page.")
    end_session(app_state().database.engine, str(_read_cookie(SESSION_COOKIE)))
    response = message(200, "Signed out", "The session has ended: the app no longer holds the EHR's access token.")
    _forget_cookie(response, SESSION_COOKIE)
    log.info("SMART session ended by the user")
    return response


@bp.get("/static/plotly.min.js")
def plotly_js() -> Response:
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=86400)


def init_blueprint(app: Flask, state: SmartApp) -> None:
    app_state(app).smart = state
    app.register_blueprint(bp)
