"""``vcf-cds serve``: open (no trusted issuers) only on loopback, loudly; otherwise it refuses to start."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.http import server
from service.observe import logs


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """Stands in for gunicorn: records the options it would have run with."""
    monkeypatch.setenv("VCF_CDS_AUDIT_KEY", "k" * 32)  # off loopback the audit key is required too
    monkeypatch.setenv("VCF_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'serve.sqlite3'}")
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(server.Server, "run", lambda self: runs.append(self.options))
    # the JSON log set-up is serve's, not what these tests check: left in, it stops the service's
    # loggers propagating, and the warnings would not reach caplog
    monkeypatch.setattr(logs, "configure", lambda level: None)
    return runs


def issuer_file(tmp_path: Path) -> str:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": "https://ehr.example.org", "jku": ["https://ehr.example.org/k"]}]}))
    return str(path)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "cds.example.org"])
def test_refuses_to_serve_unauthenticated_off_loopback(
    host: str, started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", host]) != 0
    assert started == []
    err = capsys.readouterr().err
    assert "refusing to serve" in err and "VCF_CDS_TRUSTED_ISSUERS" in err and "VCF_CDS_AUTH=off" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_serves_open_with_a_loud_warning(
    host: str, started: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vcf_cds"):
        assert main(["serve", "--host", host, "--port", "8081"]) == 0
    assert started[0]["bind"] in (f"{host}:8081", f"[{host}]:8081")
    assert "NO AUTHENTICATION" in caplog.text


def test_auth_off_serves_anywhere_with_a_loud_warning(
    monkeypatch: pytest.MonkeyPatch, started: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VCF_CDS_AUTH", "off")
    with caplog.at_level(logging.WARNING, logger="vcf_cds"):
        assert main(["serve", "--host", "0.0.0.0"]) == 0
    assert started and "AUTHENTICATION IS OFF" in caplog.text


def test_trusted_issuers_serve_anywhere_with_a_public_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VCF_CDS_TRUSTED_ISSUERS", issuer_file(tmp_path))
    monkeypatch.setenv("VCF_CDS_PUBLIC_URL", "https://cds.example.org")
    with caplog.at_level(logging.WARNING, logger="vcf_cds"):
        assert main(["serve", "--host", "0.0.0.0"]) == 0
    assert started and caplog.text == ""


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_trusted_issuers_without_a_public_url_do_not_serve(
    host: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the audience would otherwise be read from the Host header: on loopback too
    monkeypatch.setenv("VCF_CDS_TRUSTED_ISSUERS", issuer_file(tmp_path))
    assert main(["serve", "--host", host]) == 2
    assert started == []
    err = capsys.readouterr().err
    assert "VCF_CDS_PUBLIC_URL" in err and "required" in err and "Traceback" not in err


def test_gunicorn_believes_forwarded_headers_only_from_the_trusted_proxies(
    monkeypatch: pytest.MonkeyPatch, started: list[dict[str, Any]]
) -> None:
    # gunicorn's own default trusts 127.0.0.1 and ::1 (or $FORWARDED_ALLOW_IPS): ours is none
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    assert main(["serve"]) == 0
    monkeypatch.setenv("VCF_CDS_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16")
    assert main(["serve"]) == 0
    assert [run["forwarded_allow_ips"] for run in started] == ["", "10.0.0.5,10.1.0.0/16"]
    assert all(run["forwarder_headers"] == "" for run in started)  # nor may a proxy rewrite the path


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VCF_CDS_TRUSTED_ISSUERS", "/nonexistent/issuers.json", "cannot read"),
        ("VCF_CDS_AUTH", "of", "VCF_CDS_AUTH"),
        ("VCF_CDS_PUBLIC_URL", "cds.example.org", "VCF_CDS_PUBLIC_URL"),
        ("VCF_CDS_PUBLIC_URL", "https://user:pw@cds.example.org", "VCF_CDS_PUBLIC_URL"),
        ("VCF_CDS_PUBLIC_URL", "https://cds.example.org/?x=1", "VCF_CDS_PUBLIC_URL"),
        ("VCF_CDS_PUBLIC_URL", "https://cds.example.org/#top", "VCF_CDS_PUBLIC_URL"),
        ("VCF_CDS_PUBLIC_URL", "ftp://cds.example.org", "VCF_CDS_PUBLIC_URL"),
        ("VCF_CDS_TRUSTED_PROXIES", "proxy.example.org", "VCF_CDS_TRUSTED_PROXIES"),
        ("VCF_CDS_TRUSTED_PROXIES", "10.0.0.1/8", "VCF_CDS_TRUSTED_PROXIES"),
        ("VCF_CDS_CORS_ORIGINS", "sandbox.cds-hooks.org", "VCF_CDS_CORS_ORIGINS"),
    ],
)
def test_bad_configuration_stops_before_serving(
    monkeypatch: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve"]) != 0
    assert started == [] and message in capsys.readouterr().err


def test_replay_ignores_the_servers_authentication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # replay runs in-process for the local user: trusted issuers configured for serving do not apply
    from support.paths import ROW14

    monkeypatch.setenv("VCF_CDS_TRUSTED_ISSUERS", issuer_file(tmp_path))
    assert main(["replay", str(ROW14)]) == 0
