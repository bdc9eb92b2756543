"""CORS: an origin allowlist on every endpoint, preflight answered without a token, Vary: Origin."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.http.cors import RefusedOrigins, parse_origins
from service.pipeline import Engine

SANDBOX = "https://sandbox.cds-hooks.org"
EVIL = "https://evil.example.com"


def make_client(engine: Engine, tmp_path: Path, origins: list[str], **extra: object) -> FlaskClient:
    app: Flask = create_app({"TESTING": True, "ENGINE": engine, "CORS_ORIGINS": origins, **extra})
    return app.test_client()


def preflight(client: FlaskClient, origin: str, path: str = "/cds-services/vcf-patient-view") -> object:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_preflight_is_answered_without_a_token(engine: Engine, tmp_path: Path) -> None:
    # even with trusted issuers configured, a preflight carries no credentials and needs none
    issuers = tmp_path / "issuers.json"
    issuers.write_text('{"issuers": [{"iss": "https://ehr.example.org", "jku": ["https://ehr.example.org/jwks"]}]}')
    client = make_client(
        engine, tmp_path, [SANDBOX], TRUSTED_ISSUERS=str(issuers), PUBLIC_URL="https://cds.example.org"
    )
    response = preflight(client, SANDBOX)
    assert response.status_code == 204  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Access-Control-Allow-Origin"] == SANDBOX
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert {"GET", "POST"} <= {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers
    # the actual call still needs the token, and its 401 is readable by the page
    denied = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert "WWW-Authenticate" in denied.headers["Access-Control-Expose-Headers"]


def test_origin_not_allowlisted_gets_no_cors_headers(engine: Engine, tmp_path: Path) -> None:
    client = make_client(engine, tmp_path, [SANDBOX])
    for response in (preflight(client, EVIL), client.get("/cds-services", headers={"Origin": EVIL})):
        assert "Access-Control-Allow-Origin" not in response.headers  # type: ignore[attr-defined]
        assert "Origin" in response.headers["Vary"]  # type: ignore[attr-defined]


def test_no_allowlist_no_cors(client: FlaskClient) -> None:
    response = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/cds-services", 200),
        ("post", "/cds-services/vcf-patient-view", 400),
        ("post", "/cds-services/no-such-service", 404),
        ("put", "/cds-services/vcf-patient-view", 405),
        ("get", "/nowhere", 404),
    ],
)
def test_every_endpoint_and_error_carries_cors(
    engine: Engine, tmp_path: Path, method: str, path: str, status: int
) -> None:
    client = make_client(engine, tmp_path, [SANDBOX])
    response = getattr(client, method)(path, headers={"Origin": SANDBOX}, data=b"{", content_type="application/json")
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX


def test_wildcard_allowlist(engine: Engine, tmp_path: Path) -> None:
    client = make_client(engine, tmp_path, ["*"])
    assert client.get("/cds-services", headers={"Origin": EVIL}).headers["Access-Control-Allow-Origin"] == "*"


def test_origins_are_normalised_and_checked() -> None:
    assert parse_origins([" https://Sandbox.CDS-hooks.org/ ", "http://localhost:3000"]) == {
        SANDBOX,
        "http://localhost:3000",
    }
    for bad in ("sandbox.cds-hooks.org", "https://sandbox.cds-hooks.org/path", "ftp://x"):
        with pytest.raises(ValueError, match="not an origin"):
            parse_origins([bad])


def cors_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vcf_cds.cors" and r.levelno == logging.WARNING]


def test_a_refused_preflight_is_logged_once_per_origin_with_the_origin_only(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # an integrator whose sandbox shows "no cards" must find why in the log
    client = make_client(engine, tmp_path, [SANDBOX])
    other = "http://localhost:8080"
    with caplog.at_level(logging.INFO, logger="vcf_cds"):
        for origin in (EVIL, EVIL, other, EVIL, SANDBOX):
            client.options(
                "/cds-services/vcf-patient-view",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, x-canary-7f3a",
                    "Referer": "https://evil.example.com/page?patient=canary-7f3a",
                },
            )
        client.get("/cds-services", headers={"Origin": "https://third.example.com"})  # no preflight: no refusal
    warnings = cors_warnings(caplog)
    assert len(warnings) == 2
    assert EVIL in warnings[0] and other in warnings[1]
    assert "VCF_CDS_CORS_ORIGINS" in warnings[0]
    assert "canary" not in caplog.text and "authorization" not in caplog.text.lower()


def test_the_once_per_origin_memory_is_capped() -> None:
    refused = RefusedOrigins(cap=3)
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(str(record.args))  # type: ignore[method-assign]
    logger = logging.getLogger("vcf_cds.cors")
    logger.addHandler(handler)
    try:
        for i in range(10):
            refused.report(f"https://o{i}.example.com")
            assert len(refused) <= 3
        refused.report("https://o9.example.com")  # remembered: not logged again
        refused.report("https://o0.example.com")  # forgotten (oldest): logged again
        refused.report("https://" + "x" * 5000 + ".example.com")  # a huge header: bounded in the log
    finally:
        logger.removeHandler(handler)
    assert len(logged) == 12 and "o0.example" in logged[10]
    assert len(logged[11]) < 300
