"""The developer card viewer: ``GET /`` (a static page) and its small read-only JSON helpers.

The page calls the hook endpoints exactly as an EHR does (``GET /cds-services``,
``POST /cds-services/{id}``). What an EHR would not have, it gets from here:

- ``GET /viewer/fixtures``: the replayable files under the fixtures folder (``VCF_CDS_FIXTURES``, else
  ``fixtures/`` beside the package), with their description;
- ``GET /viewer/fixtures/<name>``: one of them as a ready CDS Hooks request (bundles wrapped by
  ``replay.classify``; dates moved to today unless ``?shift=0``, because the service evaluates at
  its own clock while a fixture is true at its ``now``), with its expected result;
- ``POST /viewer/prepare``: the same for pasted JSON (a Bundle, a request or a fixture);
- ``POST /viewer/check``: cards against an expected result (``expect.differences``), so the page
  shows whether a golden fixture still holds without a second copy of the comparison.

Nothing here touches the record beyond that transformation; nothing is stored.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from ..errors import BadRequestError, NotFoundError
from ..http.body import json_response, read_json_body
from ..normalize.fhirtime import parse_fhir_datetime
from .expect import differences
from .replay import HOOK_SERVICES, classify, expand
from .timeshift import days_between, shift_dates

STATIC = Path(__file__).resolve().parent / "static" / "viewer"
bp = Blueprint("viewer", __name__, static_folder=STATIC, static_url_path="/viewer/static")

# The page renders record text (names, notes, Markdown from cards): scripts only from this origin,
# no inline script or style, no plugins, no framing, and Trusted Types so that an HTML sink
# (innerHTML and friends) throws instead of parsing a string.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.after_request
def secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def fixtures_root() -> Path | None:
    """The fixtures folder: the setting, else ``fixtures/`` beside the package (a source checkout)."""
    configured = str(current_app.config.get("FIXTURES") or "")
    root = Path(configured) if configured else Path(__file__).resolve().parents[2] / "fixtures"
    return root.resolve() if root.is_dir() else None


def fixture_files(root: Path) -> dict[str, Path]:
    """Relative name → file, for the JSON files under ``root`` and only those.

    Requests name a fixture by a key of this mapping, so no path is ever built from the URL: ``..``,
    absolute paths and symbolic links leading out of the folder cannot be reached.
    """
    return {path.relative_to(root).as_posix(): path for path in expand([root]) if path.resolve().is_relative_to(root)}


def summarize(name: str, path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
        request_doc, expected, now = classify(doc)
    except (OSError, ValueError) as e:  # orjson.JSONDecodeError is a ValueError
        return {"name": name, "error": f"cannot read: {e}"}
    hook = str(request_doc.get("hook") or "")
    return {
        "name": name,
        "description": doc.get("description") or "",
        "hook": hook,
        "service": doc.get("service") or HOOK_SERVICES.get(hook),
        "now": now,
        "expected": expected,
    }


@bp.get("/")
def page() -> Response:
    return bp.send_static_file("index.html")


@bp.get("/viewer/fixtures")
def fixture_list() -> Response:
    root = fixtures_root()
    files = fixture_files(root) if root else {}
    return json_response({"fixtures": [summarize(name, path) for name, path in files.items()]})


@bp.get("/viewer/fixtures/<path:name>")
def fixture(name: str) -> Response:
    root = fixtures_root()
    path = fixture_files(root).get(name) if root else None
    if path is None:
        raise NotFoundError(f"No fixture '{name[:120]}'. The list is at GET /viewer/fixtures.")
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"The fixture '{name}' is not valid JSON: {e}") from None
    return json_response({"name": name, **prepare(doc)})


@bp.post("/viewer/prepare")
def prepare_pasted() -> Response:
    return json_response({"name": None, **prepare(read_json_body())})


@bp.post("/viewer/check")
def check() -> Response:
    body = read_json_body()
    well_formed = isinstance(body, dict) and isinstance(body.get("cards"), list)
    if not well_formed or not isinstance(body.get("expected"), dict):
        raise BadRequestError('Send {"cards": [...], "expected": {"cards": [...]}}.')
    try:
        problems = differences(body["cards"], body["expected"])
    # expect.py reads our own cards and fixtures; what the page posts can be any JSON at all
    except (AttributeError, TypeError, KeyError):
        raise BadRequestError(
            "The cards or the expected result are not shaped like a hook call's cards and a fixture's expected result."
        ) from None
    return json_response({"problems": problems})


def prepare(doc: Any) -> dict[str, Any]:
    """A file's content as the request to send, with what to expect and how its dates were moved.

    Raises ``BadRequestError`` for content that is neither a Bundle, a request nor a fixture.
    """
    try:
        hook_request, expected, now = classify(doc)
    except (ValueError, TypeError, AttributeError) as e:  # pasted text can be any JSON at all
        raise BadRequestError(f"Cannot use this JSON: {e}.") from None
    if not isinstance(hook_request, dict):
        raise BadRequestError("Cannot use this JSON: its 'request' is not a JSON object.")
    shifted = 0
    if now and request.args.get("shift", "1") != "0":
        clock: datetime = current_app.config["CLOCK"]()
        then, _ = parse_fhir_datetime(now, clock.tzinfo)  # type: ignore[arg-type]
        if then is None:
            raise BadRequestError(f"Cannot use this JSON: its 'now' ({str(now)[:40]!r}) is not a FHIR dateTime.")
        shifted = days_between(then, clock)
        hook_request = shift_dates(hook_request, shifted, clock - then)
    hook = str(hook_request.get("hook") or "")
    return {
        "description": doc.get("description") if isinstance(doc, dict) else None,
        "now": now,
        "shiftedDays": shifted,
        "service": (doc.get("service") if isinstance(doc, dict) else None) or HOOK_SERVICES.get(hook),
        "request": hook_request,
        "expected": expected,
    }
