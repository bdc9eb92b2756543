"""FHIR fallback concurrency: three searches, each delayed 100 ms by the server, against their sum.

Runs a small FHIR stand-in on 127.0.0.1 (a thread in this process) that sleeps before every answer,
then times, over several rounds:
- the FhirClient alone (three searches: Patient read, Condition and Observation searches),
- the same three through a one-thread FhirClient (the searches one after another),
- a whole hook call through the app with those three keys left out of prefetch.
Reports ratios to the sum of the delays (0.30 s), and writes them into benchmarks/RESULTS.md under
"FHIR fallback concurrency". Not a test: no assertion on time anywhere.

    .venv/bin/python benchmarks/fhir_fallback.py [--rounds 15] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.report import machine, write_section  # noqa: E402
from service import create_app  # noqa: E402
from service.gather.fhirclient import FhirClient  # noqa: E402

from support.builders import ICD10CM, condition, pain, patient, request  # noqa: E402

DELAY = 0.100
SEARCHES = 3
HEADING = "## FHIR fallback concurrency"


class SlowFhir(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        time.sleep(DELAY)
        path = self.path.split("?")[0]
        if path.endswith("/Patient/p1"):
            doc: dict[str, Any] = patient()
        else:
            kind = path.rsplit("/", 1)[-1]
            found = {"Condition": condition("c1", ICD10CM, "M80.08XA"), "Observation": pain("o1", 7)}.get(kind)
            doc = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": found}] if found else []}
        body = orjson.dumps(doc)
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


def timed(run: Callable[[], Any], rounds: int) -> float:
    run()  # warm-up: connections, imports
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowFhir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    body = request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 7))
    for key in ("patient", "conditions", "observations"):
        del body["prefetch"][key]
    body.update(fhirServer=base, fhirAuthorization={"access_token": "bench", "token_type": "Bearer"})
    queries = {"patient": "Patient/p1", "conditions": "Condition?patient=p1", "observations": "Observation?patient=p1"}

    concurrent, one_by_one = FhirClient(loopback_dev=True), FhirClient(workers=1, loopback_dev=True)
    app = create_app({"DATABASE_URL": "sqlite://", "FHIR_TIMEOUT": 5.0})
    client = app.test_client()

    def hook_call() -> None:
        response = client.post("/cds-services/vcf-patient-view", json=body)
        assert response.status_code == 200 and response.get_json()["cards"], response.get_data(as_text=True)

    try:
        t_concurrent = timed(lambda: concurrent(body, queries), args.rounds)
        t_sequential = timed(lambda: one_by_one(body, queries), args.rounds)
        t_hook = timed(hook_call, args.rounds)
    finally:
        concurrent.close()
        one_by_one.close()
        server.shutdown()
    total = SEARCHES * DELAY
    rows = [
        ("FhirClient, 3 searches concurrently", t_concurrent),
        ("FhirClient, 1 worker (one after another)", t_sequential),
        ("whole hook call, 3 keys fetched", t_hook),
    ]
    lines = [
        HEADING,
        "",
        f"`python benchmarks/fhir_fallback.py --rounds {args.rounds}` — three searches (Patient read, Condition and",
        "Observation searches), each answered after 100 ms by a local FHIR stand-in on 127.0.0.1; median of",
        f"{args.rounds} rounds after a warm-up. Sum of the three delays: {total:.2f} s.",
        "",
        f"Machine: {machine()}.",
        "",
        "| what | median | ratio to the sum of delays |",
        "|---|---|---|",
        *[f"| {name} | {t * 1000:.0f} ms | {t / total:.2f} |" for name, t in rows],
        "",
        f"Concurrent over one-after-another: {t_concurrent / t_sequential:.2f}. The searches overlap: a hook",
        "call that fetches costs about one round-trip to the FHIR server, not one per prefetch key.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(ROOT / "benchmarks" / "RESULTS.md", HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
