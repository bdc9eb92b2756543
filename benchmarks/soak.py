"""Soak: `vcf-cds serve` under a steady mixed load with wrk on loopback, at about 80 % of its peak.

1. Starts the production server (gunicorn, `--workers 2 --threads 4`, SQLite in a temporary folder
   unless `--database` names another, no JWT: open on loopback) and notes its workers' RSS.
2. Peak: after a 3 s warm-up, wrk closed-loop with 16 connections — requests per second when the
   server is saturated. Each run here is made again (up to twice) when one worker held every
   keep-alive connection and the other idled (``bench.one_sided``), which halves any server's rate.
3. Pacing: Debian's wrk (4.1) has no wrk2 `-R` rate. Instead each of 16 connections waits a fixed
   `delay()` between getting an answer and sending the next request; two short probes calibrate
   that delay so that the rate is ~80 % of the peak (rate ≈ connections / (latency + delay)).
4. Soak: the paced load for `--seconds` (60; `--quick`: 10), then the workers' RSS again.

Every connection rotates six requests (a Lua script, `soak.lua`): a patient-view call with a real
Synthea-shaped record (fixtures/realdata, dates moved to today: a recommendation card), an
order-sign call with a draft kyphoplasty order, malformed JSON (400), a patient-view body sent to
the order-sign service (400), a call whose required data is neither prefetched nor obtainable
(412), and feedback on a card id of its own (200). Checks, each run: no 5xx; every feedback answer
`"stored": 1` has its row in the database afterwards (counted, and equal); RSS reported.

Writes the "Soak" section of benchmarks/RESULTS.md (other sections are left as they are).

    .venv/bin/python benchmarks/soak.py [--quick] [--seconds 60] [--database URL] [--no-write]

Exit status 0 when the checks hold. Traffic goes to 127.0.0.1 only; every run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path[:0] = [str(REPO)]

from sqlalchemy import select  # noqa: E402

from benchmarks.bench import cpu_seconds, one_sided  # noqa: E402
from benchmarks.report import machine, write_section  # noqa: E402
from service.devtools.replay import classify  # noqa: E402
from service.devtools.timeshift import days_between, shift_dates  # noqa: E402
from service.normalize.fhirtime import parse_fhir_datetime  # noqa: E402
from service.store.db import create_db_engine  # noqa: E402
from service.store.db import feedback as feedback_table  # noqa: E402

HEADING = "## Soak"
CONNECTIONS = 16
WRK_THREADS = 2
WORKERS, THREADS = 2, 4
TARGET = 0.8  # of peak
ATTEMPTS = 3  # a run in which one worker held every keep-alive connection is made again
KINDS = ("patient-view", "order-sign", "malformed", "wrong-hook", "required-missing", "feedback")
RECORD = REPO / "fixtures" / "realdata" / "lonnie-von-derived-vcf-row14.json"
ORDER = REPO / "fixtures" / "order-hooks" / "01-sign-kyphoplasty-appropriate.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moved_to_today(doc: dict[str, Any]) -> dict[str, Any]:
    """The fixture's request with its dates moved as far as today is from its `now` (as the viewer does)."""
    request, _, now = classify(doc)
    today = datetime.now().astimezone()
    then, _ = parse_fhir_datetime(str(now), today.tzinfo)  # type: ignore[arg-type]
    assert then is not None
    return shift_dates(request, days_between(then, today))  # type: ignore[no-any-return]


def write_bodies(folder: Path) -> None:
    record = moved_to_today(json.loads(RECORD.read_text()))
    order = moved_to_today(json.loads(ORDER.read_text()))
    required_missing = json.loads(json.dumps(record))
    del required_missing["prefetch"]["conditions"]  # and no fhirServer to ask: 412
    required_missing.pop("fhirServer", None)
    bodies = {
        "patient-view": json.dumps(record),
        "order-sign": json.dumps(order),
        "malformed": '{"hook": "patient-view", "hookInstance": ',
        "wrong-hook": json.dumps(record),  # sent to vcf-order-sign
        "required-missing": json.dumps(required_missing),
        "feedback": "",  # made per request, with a card id of its own
    }
    for kind, body in bodies.items():
        (folder / f"{kind}.json").write_text(body)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def workers(self) -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return sorted(found)

    def rss_mib(self) -> dict[int, float]:
        sizes = {}
        for pid in self.workers():
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"VmRSS:\s*(\d+) kB", status)
            sizes[pid] = int(match.group(1)) / 1024 if match else float("nan")
        return sizes

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def start_server(folder: Path, database: str) -> Server:
    executable = shutil.which("vcf-cds", path=str(Path(sys.executable).parent)) or "vcf-cds"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "VCF_CDS_HOST": "127.0.0.1",
            "VCF_CDS_PORT": str(port),
            "VCF_CDS_DATABASE_URL": database,
            "VCF_CDS_WORKERS": str(WORKERS),
            "VCF_CDS_THREADS": str(THREADS),
            "VCF_CDS_AUDIT_KEY": "soak-audit-key-0123456789abcdef0123456789abcdef",
            "VCF_CDS_FHIR_ALLOWLIST": "http://127.0.0.1:9/fhir",  # nothing is fetched from anywhere
            "VCF_CDS_LOG_LEVEL": "WARNING",  # a line per call would measure the disk, not the service
            "TMPDIR": str(folder),
        }
    )
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([executable, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=out, cwd=folder)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"vcf-cds serve exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.base + "/readyz", timeout=2) as response:
                if response.status == 200 and len(server.workers()) == WORKERS:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise SystemExit("vcf-cds serve did not get ready within 60 s")


def wrk(server: Server, folder: Path, seconds: float, tag: str, delay_ms: float) -> dict[str, Any]:
    """One wrk run; the JSON summary soak.lua prints (statuses, acknowledged feedback, latency)."""
    command = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(ROOT / "soak.lua"),
        server.base,
        "--",
        tag,
        str(folder),
        f"{delay_ms:.3f}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SOAK ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][5:])
    result["acknowledged_ids"] = {line[4:] for line in done.stdout.splitlines() if line.startswith("ACK ")}
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    result["tag"] = tag
    return result


def fivexx(result: dict[str, Any]) -> int:
    return sum(n for status, n in result["statuses"].items() if status.startswith("5"))


def stored_feedback(database: str, tag: str) -> set[str]:
    """The card ids of the feedback rows a run stored."""
    engine = create_db_engine(database)
    try:
        with engine.connect() as connection:
            ours = feedback_table.c.card_uuid.startswith(f"soak-{tag}-")
            return set(connection.execute(select(feedback_table.c.card_uuid).where(ours)).scalars())
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--quick", action="store_true", help="10 s soak, shorter peak and probes")
    parser.add_argument("--smoke", action="store_true", help="a few seconds in all, nothing written (tests)")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temporary folder)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("soak: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    soak_seconds = 2.0 if args.smoke else 10.0 if args.quick else args.seconds
    warm_seconds, peak_seconds, probe_seconds = (1, 1, 1) if args.smoke else (3, 3, 3) if args.quick else (3, 10, 5)
    load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="vcf-cds-soak-") as tmp:
        folder = Path(tmp)
        write_bodies(folder)
        database = args.database or f"sqlite:///{folder / 'soak.sqlite3'}"
        server = start_server(folder, database)
        runs: list[dict[str, Any]] = []
        try:
            rss_cold = server.rss_mib()
            runs.append(wrk(server, folder, warm_seconds, "warm-up", 0))  # first calls, caches: not the peak

            def balanced(seconds: float, tag: str, delay_ms: float) -> dict[str, Any]:
                """A wrk run, again (up to ATTEMPTS) while one worker held every connection (bench.one_sided)."""
                for attempt in range(ATTEMPTS):
                    before = cpu_seconds(server.workers())
                    name = tag if attempt == 0 else f"{tag}r{attempt}"  # no tag may prefix another (feedback ids)
                    runs.append(wrk(server, folder, seconds, name, delay_ms))
                    if not one_sided(before, cpu_seconds(server.workers())):
                        break
                    runs[-1]["one_sided"] = True
                return runs[-1]

            peak = balanced(peak_seconds, "peak", 0)["rate"]
            target = TARGET * peak
            # rate = connections / (latency + delay): start from the peak's latency, then correct twice
            delay = max(0.0, (CONNECTIONS / target - runs[-1]["latency_ms"]["mean"] / 1000 / 2) * 1000)
            for n in (1,) if args.smoke else (1, 2):
                probe = balanced(probe_seconds, f"probe{n}", delay)
                delay = max(0.0, delay + CONNECTIONS * (1 / target - 1 / probe["rate"]) * 1000)
            rss_start = server.rss_mib()
            balanced(soak_seconds, "soak", delay)
            rss_end = server.rss_mib()
        finally:
            exit_code = server.stop()
        errors = [line for line in server.log.read_text().split("\n") if '"level":"ERROR"' in line]
        stored = {r["tag"]: stored_feedback(database, r["tag"]) for r in runs}

    problems = []
    for r in runs:
        if fivexx(r):
            problems.append(f"{r['tag']}: {fivexx(r)} answers 5xx")
        lost = r["acknowledged_ids"] - stored[r["tag"]]
        if lost or len(r["acknowledged_ids"]) != r["acknowledged"]:
            problems.append(f"{r['tag']}: {len(lost)} of {r['acknowledged']} acknowledged feedback items not stored")
        # rows beyond the acknowledged ones: requests wrk had sent when it stopped, at most one per connection
        if len(stored[r["tag"]] - r["acknowledged_ids"]) > CONNECTIONS:
            problems.append(f"{r['tag']}: {len(stored[r['tag']] - r['acknowledged_ids'])} rows nobody was told about")
    if errors:
        problems.append(f"{len(errors)} ERROR lines in the server log, e.g. {errors[0][:300]}")
    if exit_code != 0:
        problems.append(f"the server exited with {exit_code} on SIGTERM")

    text = report(args, runs, peak, target, delay, rss_cold, rss_start, rss_end, stored, problems, load)
    print(text)
    if not (args.no_write or args.smoke):
        write_section(ROOT / "RESULTS.md", HEADING, text)
    return 1 if problems else 0


def report(
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
    peak: float,
    target: float,
    delay: float,
    rss_cold: dict[int, float],
    rss_start: dict[int, float],
    rss_end: dict[int, float],
    stored: dict[str, set[str]],
    problems: list[str],
    load: float,
) -> str:
    soak = runs[-1]
    command = "python benchmarks/soak.py" + (
        " --smoke" if args.smoke else " --quick" if args.quick else f" --seconds {args.seconds:g}"
    )
    database = "PostgreSQL (`--database`)" if args.database else "SQLite (WAL, fsynced after each COMMIT)"

    def rss(sizes: dict[int, float]) -> str:
        return ", ".join(f"{v:.0f}" for _, v in sorted(sizes.items())) + " MiB"

    rows = []
    for r in runs:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(r["statuses"].items()))
        socket_errors = sum(r["errors"][k] for k in ("connect", "read", "write", "timeout"))
        rows.append(
            f"| {r['tag']}{' *' if r.get('one_sided') else ''} "
            f"| {r['duration_us'] / 1e6:.0f} s | {r['requests']} | {r['rate']:.0f} | "
            f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.1f} | {statuses} | {socket_errors} | "
            f"{r['acknowledged']} / {len(r['acknowledged_ids'] & stored[r['tag']])} / {len(stored[r['tag']])} |"
        )
    same_workers = sorted(rss_start) == sorted(rss_end)
    growth = [rss_end[p] - rss_start[p] for p in rss_start if p in rss_end]
    lines = [
        HEADING,
        "",
        f"`{command}`: `vcf-cds serve` (gunicorn, {WORKERS} workers × {THREADS} threads; {database};",
        f"no JWT, open on loopback) under wrk on 127.0.0.1 ({WRK_THREADS} threads, {CONNECTIONS} connections). Each",
        "connection rotates six requests: patient-view with a Synthea-shaped record (174 KB, a card),",
        "order-sign with a draft kyphoplasty order, malformed JSON (400), a wrong hook (400), required",
        "data missing (412), and feedback on a card id of its own (200).",
        "",
        f"Machine: {machine()}. wrk runs on the same cores as the server, and other work",
        f"shared the machine (load average {load:.1f} at the start): the rates move with it, so quote ratios.",
        "",
        f"Pacing: Debian's wrk 4.1 has no `-R` (wrk2). The peak is wrk closed-loop ({peak:.0f} req/s)"
        + (
            "; a run in which one worker held every connection (the other idle) was made again (marked *)"
            if any(r.get("one_sided") for r in runs)
            else ""
        )
        + "; the",
        f"soak keeps the {CONNECTIONS} connections but each waits a fixed delay after every answer",
        f"({delay:.1f} ms, calibrated by two probes) for a target of {TARGET:.0%} of the peak = {target:.0f} req/s;",
        f"it ran at {soak['rate']:.0f} req/s ({soak['rate'] / peak:.0%} of the peak).",
        "",
        "| run | time | requests | req/s | latency p50 / p99 ms | statuses | socket errors"
        " | feedback 200 / found / rows |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Feedback: each item answered 200 (`stored: 1`) is looked up by its card id afterwards (*found*).",
        "*Rows* beyond those are requests wrk had sent when its time was up (it stops without reading their",
        "answers); they are stored, and an EHR would send them again (a duplicate, answered 200).",
        "",
        f"Worker RSS: {rss(rss_cold)} after start, {rss(rss_start)} before the soak, {rss(rss_end)} after it"
        + (
            f" (change {', '.join(f'{g:+.1f}' for g in growth)} MiB)."
            if same_workers
            else " (a worker was replaced meanwhile)."
        ),
        "",
        "Result: "
        + (
            "no 5xx; every acknowledged feedback item is in the database; the server stopped cleanly on SIGTERM."
            if not problems
            else "PROBLEMS: " + "; ".join(problems)
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
