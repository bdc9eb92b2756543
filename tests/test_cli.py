"""The vcf-cds command: replay (readable, --json, exit status) and check-mappings."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from service.cli import main
from service.devtools.console import wants_colour

from support.paths import FIXTURES, ROW14


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


def _wrong_fixture(tmp_path: Path) -> Path:
    doc = json.loads(ROW14.read_text())
    doc["expected"]["cards"][0]["recommendation"] = "referral"
    doc["expected"]["cards"][0]["criteria"]["pain_nrs_5"] = "not-met"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(doc))
    return wrong


def test_replay_shows_expected_against_actual_per_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(_wrong_fixture(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert "\033[" not in out  # not a terminal: plain text
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "MISMATCH" in line)
    table = [line.split() for line in lines[header + 1 : header + 4]]
    assert table[0] == ["card", "field", "expected", "actual"]
    assert ["0", "recommendation", "referral", "augmentation"] in table
    assert ["0", "criterion", "pain_nrs_5", "not-met", "met"] in table


def test_replay_panel_has_the_criteria_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(ROW14)]) == 0
    out = capsys.readouterr().out
    assert "┌ [WARNING] Persistent painful fracture" in out
    assert "recommendation: augmentation" in out and "procedure: either" in out
    row = next(line for line in out.splitlines() if "pain_nrs_5" in line).split()
    assert row[1:5] == ["pain_nrs_5", "+", "met", "LCD-L38201"]
    assert "▸ Refer for vertebral augmentation (recommended)" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "coloured"), [("", True), ("1", False)])
def test_replay_colours_a_terminal_unless_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color: str, coloured: bool
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setenv("TERM", "xterm")
    assert main(["replay", str(ROW14)]) == 0
    out = terminal.getvalue()
    assert ("\033[1;33m[WARNING]" in out) is coloured  # warning: yellow
    assert ("\033[" in out) is coloured
    assert "[WARNING]" in out


def test_wants_colour() -> None:
    assert wants_colour(_Terminal(), {"TERM": "xterm"})
    assert not wants_colour(_Terminal(), {"TERM": "dumb"})
    assert not wants_colour(_Terminal(), {"NO_COLOR": "x"})
    assert not wants_colour(io.StringIO(), {})


def test_replay_folder_shows_progress_and_timings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "fixtures"
    folder.mkdir()
    shutil.copy(ROW14, folder / "a.json")
    shutil.copy(next((FIXTURES / "patient-view").glob("01-*.json")), folder / "b.json")
    (folder / "c.json").write_text("[]")
    assert main(["replay", str(folder)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("[1/3] ") and lines[0].endswith("ms)")
    assert any(line.startswith("  [WARNING] Persistent painful fracture") for line in lines)  # a line per card
    assert "no cards" in captured.out and "pain_nrs_5" not in captured.out
    assert lines[-1].startswith("2 of 3 files ok · 2 checked against expected · 1 unreadable (")
    assert "ms a file, slowest" in lines[-1]
    assert "c.json: cannot replay" in captured.err


def test_replay_an_error_response_shows_its_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = json.loads(ROW14.read_text())["request"]
    del request["prefetch"]["conditions"]
    path = tmp_path / "no-conditions.json"
    path.write_text(json.dumps(request))
    assert main(["replay", str(path)]) == 0  # nothing expected, nothing to fail
    out = capsys.readouterr().out
    assert "HTTP 412" in out and "conditions" in out.splitlines()[1]


def test_replay_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["replay", str(ROW14), str(ROW14)]) == 0
    progress = terminal.getvalue()
    assert f"\r\033[K[2/2] {ROW14} …" in progress and progress.endswith("\r\033[K")  # cleared after each file
    assert "[2/2]" in capsys.readouterr().out
