"""benchmarks/ keeps working: its requests decide what it claims, and the script runs (tiny mode).

No timing is asserted here: the numbers live in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from flask import Flask

from benchmarks import records
from benchmarks.bench import BEGIN, END, PATH, Served, check_cards, one_sided, parse_wrk
from service.http.server import gunicorn_options

from support.clock import NOW
from support.paths import ROOT

FHIR_SECTION = "## FHIR fallback concurrency\n\nwritten by another script, kept as is\n"


def answer(app: Flask, body: bytes) -> tuple[int, object]:
    response = app.test_client().post(PATH, data=body, content_type="application/json")
    return response.status_code, orjson.loads(response.get_data())


@pytest.mark.parametrize("size", [10, 1_000])
def test_synthetic_records_have_their_size_and_decide_augmentation(app: Flask, size: int) -> None:
    body = records.synthetic(size, NOW)
    prefetch = orjson.loads(body)["prefetch"]
    assert sum(len(prefetch[k]["entry"]) for k in prefetch if k != "patient") == size
    assert check_cards("vcf-cds", *answer(app, body)) is None


def test_realistic_request_without_shared_data_decides_augmentation(app: Flask) -> None:
    source, body, count = records.realistic(NOW, use_realdata=False)
    assert source.startswith("generated") and count >= 300
    assert check_cards("vcf-cds", *answer(app, body)) is None


@pytest.mark.skipif(not records.REALDATA.is_dir(), reason="../shared/realdata is not on this machine")
def test_realistic_request_from_shared_data_decides_augmentation(app: Flask) -> None:
    source, body, count = records.realistic(NOW)
    assert source.startswith("realdata") and 300 <= count <= 330
    assert check_cards("vcf-cds", *answer(app, body)) is None


def test_records_are_dated_relative_to_now() -> None:
    later = datetime(2031, 1, 1, tzinfo=NOW.tzinfo)
    assert records.synthetic(10, NOW) != records.synthetic(10, later)
    assert records.synthetic(10, NOW) == records.synthetic(10, NOW)  # deterministic


def test_the_baselines_run_under_the_settings_of_vcf_cds_serve() -> None:
    options = gunicorn_options("127.0.0.1", 8080)
    assert options["worker_class"] == "gthread" and options["workers"] >= 1 and options["threads"] >= 1
    assert callable(options["post_worker_init"])


def test_wrk_output_is_read() -> None:
    out = """Running 3s test @ http://127.0.0.1:1/cds-services/vcf-patient-view
  2 threads and 8 connections
  Latency Distribution
     50%  276.00us
     75%  358.00us
     90%    1.17ms
     99%    1.20s
  1670 requests in 3.00s, 25.99MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    556.66
"""
    parsed = parse_wrk(out)
    assert parsed["requests"] == 1670 and parsed["seconds"] == 3.0 and parsed["errors"] == 3
    assert parsed["p50"] == pytest.approx(0.276) and parsed["p99"] == pytest.approx(1200)


def test_the_script_runs_and_keeps_what_others_wrote(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text(f"# Benchmark results\n\nmethod notes\n\n{BEGIN}\nold numbers\n{END}\n\n{FHIR_SECTION}")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--tiny", "--out", str(out), "--profiles", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("# Benchmark results\n\nmethod notes\n\n") and text.endswith(FHIR_SECTION)
    assert "old numbers" not in text and text.count(BEGIN) == 1 and text.count(END) == 1
    assert "| 10 | 10 |" in text  # the in-process row of the 10-resource record


def test_a_round_in_which_one_worker_idled_is_told_apart() -> None:
    before = {1: 10.0, 2: 12.0}
    assert one_sided(before, {1: 13.0, 2: 12.1})  # worker 2 had no connection
    assert not one_sided(before, {1: 13.0, 2: 14.0})  # both served, unevenly
    assert not one_sided({1: 10.0}, {1: 13.0})  # one worker only: nothing to compare


@pytest.mark.parametrize(("app", "rows"), [("vcf-cds", 1), ("vcf-cds-unaudited", 0)])
def test_the_ablation_differs_from_vcf_cds_only_in_the_audit_rows(tmp_path: Path, app: str, rows: int) -> None:
    """The audit ablation answers as vcf-cds does, under the same gunicorn server, and writes no audit row."""
    database = tmp_path / "audit.sqlite3"
    env = {**os.environ, "VCF_CDS_DATABASE_URL": f"sqlite:///{database}", "VCF_CDS_LOG_LEVEL": "WARNING"}
    body = records.synthetic(10, datetime.now(UTC))  # dated for the server's own clock
    served = Served(app, env, tmp_path / "server.log")
    try:
        status, answered = served.ready(body)
    finally:
        served.stop()
    assert check_cards(app, status, answered) is None
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM audit_log").fetchone() == (rows,)
