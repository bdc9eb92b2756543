"""Part of the bad-input corpus over real HTTP, against gunicorn as ``vcf-cds serve`` runs it.

Raw bytes on a socket (every read bounded by a timeout, so no test can hang): the corpus cases
marked ``http``, a chunked body past the limit with no Content-Length, a body that stops
half-way, a malformed chunked encoding. After each, a valid request still gets its card from the
same worker process (gunicorn replaces a dead worker silently: its pid is the witness).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from support.corpus import HTTP_CASES, JSON, MIB, Case, check_answer, dumps, valid_request

BODY_TIMEOUT = 2  # VCF_CDS_BODY_TIMEOUT for the test server
HEAD = "POST /cds-services/{service} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> set[int] | None:
        """The worker pids (Linux /proc); None where the system does not tell."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(p) for p in children.read_text().split()} if children.exists() else None


@dataclass
class Answer:
    status: int
    content_type: str
    text: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("gunicorn")
    env = {
        **os.environ,
        "VCF_CDS_DATABASE_URL": f"sqlite:///{home / 'vcf-cds.sqlite3'}",
        "VCF_CDS_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "XDG_RUNTIME_DIR": str(home),  # gunicorn's control socket goes there, not into $HOME
    }
    port = free_port()
    log = home / "server.log"
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", "1", "--threads", "4"], cwd=home, env=env, stdout=out, stderr=out
        )
    running = Server(port, process, log)
    try:
        _wait_until_ready(running)
        yield running
    finally:
        _stop(running)
    text = log.read_text(errors="replace")
    assert "internal error" not in text and "Traceback" not in text, text[-3000:]


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited: {server.log.read_text(errors='replace')[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            connection.request("GET", "/cds-services")
            if connection.getresponse().status == 200 and server.workers() != set():
                return
        except OSError:
            time.sleep(0.2)
        finally:
            connection.close()
    pytest.fail("gunicorn did not answer within 30 s")


def _stop(server: Server) -> None:
    workers = server.workers() or set()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)
    for pid in workers:  # a worker outliving its master would be a leak
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def exchange(port: int, head: bytes, body: bytes = b"", timeout: float = 30, stop_after: int | None = None) -> Answer:
    """Send ``head`` then ``body`` (up to ``stop_after`` bytes of it) and read one response.

    Sending stops early when the server answers first (a 413 before the body is read).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        view = memoryview(body)[:stop_after]
        sent = 0
        while sent < len(view):
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sent += sock.send(view[sent : sent + 256 * 1024])
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        text = response.read().decode(errors="replace")
        return Answer(response.status, response.getheader("Content-Type") or "", text)


def head(service: str = "vcf-patient-view", **headers: str) -> bytes:
    lines = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return HEAD.format(service=service, headers=lines).encode()


def post(server: Server, body: bytes, content_type: str | None = JSON, service: str = "vcf-patient-view") -> Answer:
    headers = {"Content_Length": str(len(body))}
    if content_type:
        headers["Content_Type"] = content_type
    return exchange(server.port, head(service, **headers), body)


def chunked(body: bytes, size: int = 64 * 1024) -> bytes:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def assert_still_serving(server: Server, workers: set[int] | None) -> None:
    answer = post(server, dumps(valid_request()))
    assert answer.status == 200, answer.text[:300]
    kinds = [c["extension"]["org.vcfcds"]["kind"] for c in orjson.loads(answer.text)["cards"]]
    assert kinds[0] == "recommendation"
    if workers is not None:
        assert server.workers() == workers, "the worker died and was replaced"


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_a_corpus_request_over_http(server: Server, case: Case) -> None:
    workers = server.workers()
    answer = post(server, case.body(), case.content_type, case.service)
    check_answer(case, answer.status, answer.content_type, answer.text, orjson.loads(answer.text))
    assert_still_serving(server, workers)


def test_a_chunked_body_past_the_limit_without_content_length_is_413(server: Server) -> None:
    workers = server.workers()
    body = chunked(b"[" + b"0," * (6 * MIB) + b"0]")  # 12 MiB of JSON
    answer = exchange(server.port, head(Content_Type=JSON, Transfer_Encoding="chunked"), body)
    assert answer.status == 413 and "VCF_CDS_MAX_BODY" in answer.text
    assert_still_serving(server, workers)


def test_a_valid_chunked_request_gets_its_card(server: Server) -> None:
    body = chunked(dumps(valid_request()))
    answer = exchange(server.port, head(Content_Type=JSON, Transfer_Encoding="chunked"), body)
    assert answer.status == 200 and orjson.loads(answer.text)["cards"]


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_a_body_that_stops_half_way_gets_408_in_time(server: Server, encoding: str) -> None:
    workers = server.workers()
    body = dumps(valid_request())
    if encoding == "chunked":
        request_head, sent = head(Content_Type=JSON, Transfer_Encoding="chunked"), chunked(body)
    else:
        request_head, sent = head(Content_Type=JSON, Content_Length=str(len(body))), body
    start = time.monotonic()
    answer = exchange(server.port, request_head, sent, timeout=BODY_TIMEOUT + 10, stop_after=len(sent) // 2)
    assert answer.status == 408
    assert "VCF_CDS_BODY_TIMEOUT" in orjson.loads(answer.text)["issue"][0]["diagnostics"]
    assert time.monotonic() - start < BODY_TIMEOUT + 5
    assert_still_serving(server, workers)


def test_stalled_bodies_do_not_starve_other_requests(server: Server) -> None:
    # four threads; three clients stall mid-body: the fourth still gets answered, and so do they
    workers = server.workers()
    stalled = []
    body = dumps(valid_request())
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=BODY_TIMEOUT + 10)
        sock.sendall(head(Content_Type=JSON, Content_Length=str(len(body))) + body[:100])
        stalled.append(sock)
    try:
        assert_still_serving(server, workers)
        for sock in stalled:
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 408
    finally:
        for sock in stalled:
            sock.close()


def test_a_malformed_chunked_encoding_is_400(server: Server) -> None:
    workers = server.workers()
    answer = exchange(server.port, head(Content_Type=JSON, Transfer_Encoding="chunked"), b"zz\r\n{}\r\n0\r\n\r\n")
    assert answer.status == 400 and orjson.loads(answer.text)["resourceType"] == "OperationOutcome"
    assert_still_serving(server, workers)


def test_a_body_shorter_than_its_content_length_is_400(server: Server) -> None:
    workers = server.workers()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head(Content_Type=JSON, Content_Length="1000") + b"{}")
        sock.shutdown(socket.SHUT_WR)  # the client is done sending: 998 bytes short
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 400
        assert "closed before the whole request body" in response.read().decode()
    assert_still_serving(server, workers)


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"POST /cds-services/" + b"x" * 5000 + b"?name=SECRET HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"POST /cds-services/vcf-patient-view HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
        (b"GARBAGE SECRET\r\n\r\n", 400),
        (b"POST /cds-services/vcf-patient-view HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n", 400),
        (b"POST /cds-services/vcf-patient-view HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ],
    ids=["request line too long", "too many headers", "no request line", "two lengths", "unknown coding"],
)
def test_a_malformed_http_request_gets_an_outcome_too(server: Server, request_head: bytes, status: int) -> None:
    # gunicorn answers these itself, before the application: an HTML page quoting the request line
    workers = server.workers()
    answer = exchange(server.port, request_head)
    assert answer.status == status
    assert answer.content_type == "application/fhir+json"
    outcome = orjson.loads(answer.text)
    assert outcome["resourceType"] == "OperationOutcome" and len(outcome["issue"]) == 1
    assert outcome["issue"][0]["diagnostics"] and "SECRET" not in answer.text
    assert_still_serving(server, workers)
