"""The bad-input corpus: raw requests a hostile or broken client sends, and the status each must get.

Each case is raw bytes (built lazily: some are 20 MB) with a content type and the expected status.
Non-2xx answers are one OperationOutcome; nothing is ever a 500. The in-process test runs every
case; the gunicorn test runs those marked ``http``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .builders import ICD10CM, LOINC, bundle, condition, observation, pain, request
from .cds_rules import response_problems
from .records import CANARY

JSON = "application/json"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], bytes]
    status: int
    content_type: str | None = JSON
    service: str = "vcf-patient-view"
    http: bool = False  # also sent over real HTTP to gunicorn
    says: str = ""  # text the diagnostics (non-2xx) or the first card's detail (200) must contain
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return self.make()


def valid_request() -> dict[str, Any]:
    """A complete patient-view request whose answer is a recommendation card."""
    body = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 7))
    body["fhirServer"] = "http://127.0.0.1:9/fhir"  # loopback discard port: a fallback fetch fails at once
    body["fhirAuthorization"] = {
        "access_token": "opaque-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
        "patient": "p1",
    }
    return body


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target[key]
    target[last] = value
    return out


def _with(path: str, value: Any) -> Callable[[], bytes]:
    return lambda: dumps(_set(valid_request(), path, value))


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """``depth`` levels of arrays (orjson.dumps itself stops at 255)."""
    return b"[" * depth + inner + b"]" * depth


def _in_envelope(depth: int) -> bytes:
    """The valid request with ``depth`` levels nested under an unknown top-level field."""
    return dumps(valid_request())[:-1] + b',"extension":' + nested(depth) + b"}"


def _deep_resource(resource_type: str, depth: int) -> bytes:
    """The valid request plus a resource whose extension nests ``depth`` levels (2 JSON levels each)."""
    ext = b'{"url":"http://example.org/x","valueString":"' + CANARY.encode() + b'"}'
    for _ in range(depth):
        ext = b'{"url":"http://example.org/x","extension":[' + ext + b"]}"
    body = valid_request()
    key = "conditions" if resource_type == "Condition" else "observations"
    deep = condition("c9", ICD10CM, "M80.08XA") if resource_type == "Condition" else pain("o9", 8)
    deep["extension"] = "@@EXT@@"
    body["prefetch"][key]["entry"].append({"resource": deep})
    return dumps(body).replace(b'"@@EXT@@"', b"[" + ext + b"]")


def _big_bundle(entries: int, entry: dict[str, Any]) -> bytes:
    body = valid_request()
    body["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset", "entry": [entry] * entries}
    return dumps(body)


def _duplicate_keys() -> bytes:
    # last one wins (orjson, like json): the request is read as a patient-view call
    raw = dumps(valid_request())
    return b'{"hook":"order-sign","hookInstance":"x",' + raw[1:]


def _string_value() -> bytes:
    bad = pain("o2", 9, when="2026-06-14")
    bad["valueQuantity"] = {"value": f"9 {CANARY}"}
    body = valid_request()
    body["prefetch"]["observations"] = bundle(bad)
    return dumps(body)


def _unknown_types() -> bytes:
    body = valid_request()
    body["prefetch"]["observations"]["entry"] += [
        {"resource": {"resourceType": "Nonexistent", "id": "x1", "note": CANARY}},
        {"resource": {"resourceType": ["Observation"], "status": {"a": 1}}},
        {"resource": {"resourceType": "Observation", "status": ["final"], "code": "72514-3"}},
        {"resource": None},
        "Observation",
        42,
    ]
    return dumps(body)


def _envelope_cases() -> list[Case]:
    """Every envelope field with values of the wrong type (and the right type, wrong content)."""
    wrong = {"int": 42, "float": 1.5, "bool": True, "list": [], "object": {}, "null": None, "empty": ""}
    ok_as_null = {"fhirServer", "fhirAuthorization", "context.userId", "context.encounterId"}
    string_fields = [
        "hook",
        "hookInstance",
        "fhirServer",
        "fhirAuthorization.access_token",
        "fhirAuthorization.token_type",
        "fhirAuthorization.scope",
        "fhirAuthorization.subject",
        "fhirAuthorization.patient",
        "context.patientId",
        "context.userId",
        "context.encounterId",
    ]
    cases = []
    for path in string_fields:
        for name, value in wrong.items():
            if name == "empty" and path in ("fhirAuthorization.scope", "fhirAuthorization.subject"):
                continue  # free text: empty is allowed
            if name == "empty" and path in ("fhirAuthorization.patient", "context.userId", "context.encounterId"):
                continue
            status = 200 if (value is None and path in ok_as_null) else 400
            cases.append(Case(f"{path}={name}", _with(path, value), status, says="" if status == 200 else path))
    for path in ("fhirAuthorization", "context", "prefetch"):
        for name in ("int", "bool", "list", "empty"):
            cases.append(Case(f"{path}={name}", _with(path, wrong[name]), 400, says=path))
    cases += [
        Case("fhirAuthorization.expires_in=string", _with("fhirAuthorization.expires_in", "300"), 400),
        Case("fhirAuthorization.expires_in=float", _with("fhirAuthorization.expires_in", 1.5), 400),
        Case("fhirAuthorization.token_type=MAC", _with("fhirAuthorization.token_type", "MAC"), 400),
        Case("fhirAuthorization={}", _with("fhirAuthorization", {}), 400, says="access_token"),
        Case("fhirServer=ftp", _with("fhirServer", "ftp://127.0.0.1/fhir"), 400, says="fhirServer"),
        Case("fhirServer=javascript", _with("fhirServer", "javascript:alert(1)"), 400, says="fhirServer"),
        Case("hook=unknown", _with("hook", "unknown-hook"), 400, says="patient-view"),
        Case("hook=other-service", _with("hook", "order-sign"), 400, says="patient-view"),
        Case("hook=huge", _with("hook", "x" * 100_000), 400, says="hook"),
        Case("context.patientId=injection", _with("context.patientId", "p1&_include=*"), 400, says="patientId"),
        Case("context.patientId=Patient/", _with("context.patientId", "Patient/"), 400, says="patientId"),
        Case("context=null", _with("context", None), 400, says="context"),
        Case("prefetch=null", _with("prefetch", None), 412, says="Required data is unavailable"),
        Case("prefetch.patient=null", _with("prefetch.patient", None), 400, says="prefetch.patient"),
        Case("prefetch.patient=OperationOutcome", _with("prefetch.patient", _outcome()), 412, says="patient"),
        Case("prefetch.conditions=null", _with("prefetch.conditions", None), 200),
        Case("prefetch.observations=null", _with("prefetch.observations", None), 200, says="pain score"),
        Case("prefetch.observations=OperationOutcome", _with("prefetch.observations", _outcome()), 200),
        Case("prefetch.unknown-key", _with("prefetch.nonsense", {"x": CANARY}), 200),
        Case("prefetch.entry=object", _with("prefetch.observations", {"resourceType": "Bundle", "entry": {}}), 400),
        Case("prefetch.resource-without-type", _with("prefetch.observations", {"entry": []}), 400),
    ]
    for key in ("patient", "conditions", "observations", "medications", "encounters", "allergies"):
        for name in ("int", "list", "empty", "object"):
            cases.append(Case(f"prefetch.{key}={name}", _with(f"prefetch.{key}", wrong[name]), 400, says=key))
    return cases


def _outcome() -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}


def _context_only_cases() -> list[Case]:
    return [
        Case("order-sign without draftOrders", lambda: dumps(_order(None)), 400, service="vcf-order-sign"),
        Case("order-sign draftOrders=list", lambda: dumps(_order([])), 400, service="vcf-order-sign"),
        Case("order-select selections=string", lambda: dumps(_order(_drafts(), "x")), 400, service="vcf-order-select"),
        Case("order-sign unknown order types", lambda: dumps(_order(_drafts())), 200, service="vcf-order-sign"),
    ]


def _order(draft_orders: Any, selections: Any = ...) -> dict[str, Any]:
    body = valid_request()
    body["hook"] = "order-select" if selections is not ... else "order-sign"
    if draft_orders is not None:
        body["context"]["draftOrders"] = draft_orders
    if selections is not ...:
        body["context"]["selections"] = selections
    return body


def _drafts() -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Nonexistent"}}, {"resource": 5}]}


CASES: list[Case] = [
    # the transport
    Case("malformed JSON", lambda: b"{not json", 400, http=True, says="not valid JSON"),
    Case("truncated JSON", lambda: dumps(valid_request())[:-7], 400, says="not valid JSON"),
    Case("trailing comma", lambda: b'{"hook": "patient-view",}', 400),
    Case("single quotes", lambda: b"{'hook': 'patient-view'}", 400),
    Case("NaN", lambda: b'{"hook": NaN}', 400),
    Case("number beyond double", lambda: b'{"hook": 1e400}', 400),
    Case("NUL byte", lambda: b"\x00", 400),
    Case("empty body", lambda: b"", 400, http=True, says="empty"),
    Case("whitespace body", lambda: b" \r\n\t ", 400, says="empty"),
    Case("JSON array", lambda: b"[]", 400, says="JSON object"),
    Case("JSON null", lambda: b"null", 400, says="JSON object"),
    Case("JSON number", lambda: b"42", 400, says="JSON object"),
    Case("JSON string", lambda: b'"patient-view"', 400, says="JSON object"),
    Case("text/plain", lambda: dumps(valid_request()), 415, "text/plain", http=True),
    Case("form encoded", lambda: b"hook=patient-view", 415, "application/x-www-form-urlencoded"),
    Case("multipart", lambda: b"--x\r\n\r\n--x--", 415, "multipart/form-data; boundary=x"),
    Case("xml", lambda: b"<Bundle/>", 415, "application/fhir+xml"),
    Case("no content type", lambda: dumps(valid_request()), 415, None, http=True),
    Case("json charset", lambda: dumps(valid_request()), 200, "application/json; charset=utf-8"),
    Case("fhir+json", lambda: dumps(valid_request()), 200, "application/fhir+json"),
    Case("invalid UTF-8", lambda: b'{"hook": "patient-\xff\xfeview"}', 400, http=True, says="UTF-8"),
    Case("overlong UTF-8", lambda: b'{"hook": "\xc0\xaf"}', 400, says="UTF-8"),
    Case("lone surrogate", lambda: b'{"hook": "\\ud800"}', 400),
    Case("UTF-16", lambda: dumps(valid_request()).decode().encode("utf-16"), 400, http=True),
    Case("UTF-8 BOM", lambda: b"\xef\xbb\xbf" + dumps(valid_request()), 400, says="BOM"),
    Case("duplicate keys", _duplicate_keys, 200),
    Case("20 MB body", lambda: b"[" + b"0," * (10 * MIB) + b"0]", 413, http=True, says="VCF_CDS_MAX_BODY"),
    # the parser stops at 1,024 levels; what the decision reads (and validation recurses into) is
    # bounded at 64 levels a resource (real FHIR nests about 10); what nothing reads is ignored
    Case("1,000-level nesting, ignored field", lambda: _in_envelope(1000), 200, http=True),
    Case("1,100-level nesting", lambda: _in_envelope(1100), 400, says="deeper than 1024"),
    Case("100,000-level nesting", lambda: nested(100_000), 400, http=True, says="deeper than 1024"),
    Case("deeply nested Condition", lambda: _deep_resource("Condition", 450), 400, http=True, says="deeper than 64"),
    Case(
        "deeply nested Observation",
        lambda: _deep_resource("Observation", 450),
        200,
        says="Observation/o9 nests JSON deeper than 64 levels",  # ignored, and the card says so
    ),
    Case(
        "100,000 minimal entries",
        lambda: _big_bundle(100_000, {"resource": {"resourceType": "Observation"}}),
        200,
        http=True,
        says="pain score",
    ),
    Case(
        "Bundle over the limit",
        lambda: _big_bundle(120_000, {"resource": {"resourceType": "Observation", "status": "final", "id": "o" * 64}}),
        413,
        says="VCF_CDS_MAX_BODY",
    ),
    Case("resources of unknown type", _unknown_types, 200),
    Case("Observation value as a string", _string_value, 200, http=True, says="Observation/o2 is not valid"),
    Case(
        "huge code",
        _with("prefetch.conditions", bundle(condition("c1", ICD10CM, "M80.08XA"), condition("c2", ICD10CM, "M" * MIB))),
        200,
        http=True,
        says="Met:** Active vertebral compression fracture documented",  # c1, the only fracture, is read
    ),
    Case(
        "future onset",
        _with("prefetch.conditions", bundle(condition("c1", ICD10CM, "M80.08XA", onset="2062-06-01"))),
        200,
        says="in the future",
    ),
    Case(
        "INR as text",
        _with("prefetch.observations", bundle(observation("o5", LOINC, "6301-6", "2026-06-10", valueString="2.5"))),
        200,
    ),
    # the endpoint
    Case("unknown service", lambda: dumps(valid_request()), 404, service="no-such-service", http=True),
    Case("service id with markup", lambda: b"{}", 404, service="%3Cscript%3E"),
    *_envelope_cases(),
    *_context_only_cases(),
]

HTTP_CASES = [c for c in CASES if c.http]


def check_answer(case: Case, status: int, content_type: str, text: str, body: Any) -> None:
    """The contract for one answer to a corpus request (shared with the HTTP test)."""
    assert status == case.status, text[:300]
    assert "Traceback" not in text and 'File "' not in text
    assert CANARY not in text
    if status >= 300:
        assert content_type.startswith("application/fhir+json")
        assert body["resourceType"] == "OperationOutcome" and len(body["issue"]) == 1, body
        issue = body["issue"][0]
        assert issue["severity"] == "error" and issue["code"] and isinstance(issue["diagnostics"], str)
        assert case.says in issue["diagnostics"]
        return
    assert response_problems(body) == []
    if case.says:
        assert case.says in body["cards"][0]["detail"]
