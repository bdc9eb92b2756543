"""Issue 16 part 4: a JWT's audience is ``VCF_CDS_PUBLIC_URL`` + the path called, whatever ``Host``
and ``X-Forwarded-*`` say, and forwarded headers count only from ``VCF_CDS_TRUSTED_PROXIES``.

In process (the Flask test client calls from 127.0.0.1) and against ``vcf-cds serve``, whose
gunicorn would by default believe ``X-Forwarded-Proto`` from loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service.auth.issuers import parse_issuers
from service.http.proxies import TrustedProxies
from service.pipeline import Engine

from support.apps import TEST_AUDIT_KEY, make_app
from support.builders import ICD10CM, condition, request
from support.clock import NOW
from support.served import Served, http, serving
from support.tokens import EHR, PUBLIC_URL, SERVICE_URL, Signer, claims, ec_signer, issuer_file

OTHER_SERVICE = "https://other-cds.example.org"
HOOK = "/cds-services/vcf-patient-view"
DISCOVERY = "/cds-services"
# what a caller may claim about the URL it called: the issue's case first
SPOOFED: dict[str, dict[str, str]] = {
    "Host + X-Forwarded-Proto": {"Host": "other-cds.example.org", "X-Forwarded-Proto": "https"},
    "X-Forwarded-Host": {"X-Forwarded-Host": "other-cds.example.org", "X-Forwarded-Proto": "https"},
    "Forwarded": {"Forwarded": "host=other-cds.example.org;proto=https"},
    "X-Forwarded-Prefix": {"X-Forwarded-Prefix": "/x", "X-Forwarded-Port": "443"},
}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return ec_signer("k1")


def issuers_doc(signer: Signer) -> dict[str, Any]:
    return issuer_file({"iss": EHR, "jwks": {"keys": [signer.public_jwk()]}})


def secured(engine: Engine, tmp_path: Path, signer: Signer, proxies: list[str]) -> Flask:
    return make_app(
        engine,
        f"sqlite:///{tmp_path / 'test.sqlite3'}",
        ISSUERS=parse_issuers(issuers_doc(signer)),
        PUBLIC_URL=PUBLIC_URL,
        TRUSTED_PROXIES=proxies,
    )


# --- in process ------------------------------------------------------------------------------


@pytest.mark.parametrize("proxies", [[], ["127.0.0.1"]], ids=["untrusted peer", "trusted proxy"])
@pytest.mark.parametrize("case", sorted(SPOOFED))
def test_a_token_for_another_service_is_refused_whatever_the_request_claims(
    engine: Engine, tmp_path: Path, signer: Signer, proxies: list[str], case: str
) -> None:
    client = secured(engine, tmp_path, signer, proxies).test_client()
    headers = SPOOFED[case]
    body = request(condition("c1", ICD10CM, "M80.08XA"))

    def call(aud: str) -> int:
        token = signer.sign(claims(NOW, aud=aud))
        auth = {"Authorization": f"Bearer {token}"}
        return client.post(HOOK, json=body, headers={**headers, **auth}).status_code

    assert call(OTHER_SERVICE + HOOK) == 401
    assert call("http://other-cds.example.org" + HOOK) == 401
    assert call(SERVICE_URL) == 200  # the configured public URL, though the request named another host


def echo_environ(proxies: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The environ an application behind ``TrustedProxies`` receives."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return []

    middleware = TrustedProxies(app, proxies)

    def run(environ: dict[str, Any]) -> dict[str, Any]:
        seen.clear()
        middleware({"wsgi.url_scheme": "http", **environ}, lambda *a: None)
        return seen

    return run


FORWARDED = {
    "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_HOST": "other-cds.example.org",
    "HTTP_FORWARDED": "for=203.0.113.7;proto=https",
}


def test_forwarded_headers_from_an_untrusted_peer_never_reach_the_application() -> None:
    for proxies in ([], ["10.0.0.0/24"]):
        seen = echo_environ(proxies)({"REMOTE_ADDR": "198.51.100.4", "HTTP_HOST": "cds.example.org", **FORWARDED})
        assert seen["REMOTE_ADDR"] == "198.51.100.4" and seen["wsgi.url_scheme"] == "http"
        assert not [k for k in seen if "FORWARDED" in k]
        assert seen["HTTP_HOST"] == "cds.example.org"  # other headers untouched


def test_a_trusted_proxy_gives_the_client_address_and_scheme() -> None:
    run = echo_environ(["10.0.0.0/24", "::1"])
    peer = {"REMOTE_ADDR": "10.0.0.5"}
    seen = run({**peer, **FORWARDED})
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    # each proxy appends the address it was called from: the client is the first one not ours, from
    # the right; whatever the client wrote further left is its own claim
    assert run({**peer, "HTTP_X_FORWARDED_FOR": "127.0.0.1, 203.0.113.7, 10.0.0.9"})["REMOTE_ADDR"] == "203.0.113.7"
    assert run({**peer, "HTTP_X_FORWARDED_FOR": "10.0.0.8, 10.0.0.9"})["REMOTE_ADDR"] == "10.0.0.8"
    assert run({**peer, "HTTP_X_FORWARDED_FOR": "not-an-address"})["REMOTE_ADDR"] == "unknown"
    assert run({**peer, "HTTP_X_FORWARDED_FOR": "[2001:db8::1]"})["REMOTE_ADDR"] == "2001:db8::1"
    assert run({**peer, "HTTP_X_FORWARDED_PROTO": "gopher"})["wsgi.url_scheme"] == "http"
    assert run(peer)["REMOTE_ADDR"] == "10.0.0.5"  # no X-Forwarded-For: the proxy itself
    assert run({"REMOTE_ADDR": "::1", "HTTP_X_FORWARDED_FOR": "203.0.113.8"})["REMOTE_ADDR"] == "203.0.113.8"
    # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    assert (
        run({"REMOTE_ADDR": "::ffff:10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.9"})["REMOTE_ADDR"] == "203.0.113.9"
    )


def test_the_loopback_development_mode_follows_the_trusted_proxy(engine: Engine, tmp_path: Path) -> None:
    # no issuers: only loopback callers are served; the test client calls from 127.0.0.1
    remote = {"X-Forwarded-For": "10.1.2.3"}
    untrusted = make_app(engine, f"sqlite:///{tmp_path / 'a.sqlite3'}").test_client()
    assert untrusted.get(DISCOVERY, headers=remote).status_code == 200  # a claim anyone can make
    proxied = make_app(engine, f"sqlite:///{tmp_path / 'b.sqlite3'}", TRUSTED_PROXIES=["127.0.0.1"]).test_client()
    assert proxied.get(DISCOVERY, headers=remote).status_code == 401  # our proxy says the caller is remote
    assert proxied.get(DISCOVERY).status_code == 200


# --- vcf-cds serve ---------------------------------------------------------------------------


def remote_addresses(served: Served, count: int) -> list[str]:
    """The ``remote`` of the access log's first ``count`` discovery lines (written just after each answer)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in served.stdout.read_text().splitlines() if line.startswith("{")]
        lines = [line for line in lines if line.get("path") == DISCOVERY]  # not the start-up /healthz polls
        if len(lines) >= count or time.monotonic() > deadline:
            return [line.get("remote") for line in lines[:count]]
        time.sleep(0.05)


def test_served_audience_is_the_public_url_whatever_the_request_claims(tmp_path: Path, signer: Signer) -> None:
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps(issuers_doc(signer)))
    env = {"VCF_CDS_TRUSTED_ISSUERS": str(issuers), "VCF_CDS_PUBLIC_URL": PUBLIC_URL}
    with serving(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", env=env) as served:

        def call(aud: str, headers: dict[str, str]) -> int:
            token = signer.sign(claims(datetime.now(UTC), aud=aud))
            return http("GET", served.base + DISCOVERY, **headers, Authorization=f"Bearer {token}")[0]

        for case, headers in SPOOFED.items():
            assert call(OTHER_SERVICE + DISCOVERY, headers) == 401, case
            assert call(PUBLIC_URL + DISCOVERY, headers) == 200, case
        assert call(PUBLIC_URL + DISCOVERY, {"X-Forwarded-For": "203.0.113.7"}) == 200
        logged = remote_addresses(served, 2 * len(SPOOFED) + 1)
    assert logged == ["127.0.0.1"] * (2 * len(SPOOFED) + 1)  # no trusted proxy: the peer, never the claim


def test_served_forwarded_for_counts_from_a_trusted_proxy(tmp_path: Path) -> None:
    # no issuers: open on loopback only; the proxy on 127.0.0.1 says its caller was 10.1.2.3
    env = {"VCF_CDS_TRUSTED_PROXIES": "127.0.0.1"}
    with serving(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", env=env) as served:
        status, body = http("GET", served.base + DISCOVERY, **{"X-Forwarded-For": "10.1.2.3"})
        assert status == 401 and json.loads(body)["resourceType"] == "OperationOutcome"
        assert http("GET", served.base + DISCOVERY)[0] == 200
        # two workers write the access log: its lines need not come in the order of the calls
        assert sorted(remote_addresses(served, 2)) == ["10.1.2.3", "127.0.0.1"]


def test_serve_refuses_issuers_without_a_public_url(tmp_path: Path, signer: Signer) -> None:
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps(issuers_doc(signer)))
    executable = shutil.which("vcf-cds", path=str(Path(sys.executable).parent))
    assert executable, "the vcf-cds command is not installed beside this Python (bash scripts/setup)"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_")}
    environment.update(
        VCF_CDS_TRUSTED_ISSUERS=str(issuers),
        VCF_CDS_AUDIT_KEY=TEST_AUDIT_KEY,
        VCF_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VCF_CDS_PORT="9",  # never bound: it must stop before
    )
    result = subprocess.run([executable, "serve"], env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "VCF_CDS_PUBLIC_URL is required" in result.stderr and "Traceback" not in result.stderr
