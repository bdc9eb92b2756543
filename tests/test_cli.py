"""The vcf-cds command: replay (readable, --json, exit status) and check-mappings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main

from test_fixtures import FIXTURES

ROW14 = next((FIXTURES / "patient-view").glob("27-*.json"))


def test_replay_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(ROW14)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "[WARNING]" in out and "pain_nrs_5" in out


def test_replay_json_is_exact(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--json", str(ROW14)]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["matched"] is True
    assert result["response"]["cards"][0]["extension"]["org.vcfcds"]["recommendation"] == "augmentation"


def test_replay_fails_on_a_wrong_expectation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(ROW14.read_text())
    doc["expected"]["cards"][0]["recommendation"] = "referral"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(doc))
    assert main(["replay", str(wrong)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_replay_bare_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = json.loads(ROW14.read_text())["request"]
    entries = [{"resource": request["prefetch"]["patient"]}]
    for key in ("conditions", "observations"):
        entries += (request["prefetch"][key] or {}).get("entry", [])
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    assert main(["replay", "--now", "2026-06-15T10:00:00-04:00", str(path)]) == 0
    assert "[WARNING]" in capsys.readouterr().out


def test_replay_unreadable_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]")
    assert main(["replay", str(tmp_path / "x.json")]) == 1


def test_check_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-mappings"]) == 0
    assert "0 invalid" in capsys.readouterr().out
