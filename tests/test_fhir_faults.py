"""The FHIR-server fallback against a real misbehaving server on loopback (raw sockets, no mocks).

A small threaded TCP server answers each fault as a broken or hostile FHIR server would: too slow,
connection reset, 500, an HTML error page, truncated JSON, a ``next`` link loop, a redirect to
another host, a body that never ends (fast or a byte at a time), headers that never end. With a
1 s budget (``VCF_CDS_FHIR_TIMEOUT``):
- required data (``conditions``) that fails → 412 naming it;
- optional data (``observations``) that fails → 200, its criteria ``unknown`` and listed as missing;
- either way the answer comes within the budget plus a generous margin (a hang guard, not a
  performance assertion), and the pool thread that ran the search is free again afterwards.
"""

from __future__ import annotations

import gzip
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import responses
from flask.testing import FlaskClient

from service import create_app
from service.gather.fhirclient import FhirClient, Limits
from service.gather.prefetch import FetchFailure
from service.state import app_state

from support.builders import ICD10CM, PATIENT_ID, bundle, condition, pain, patient, request, vcf_extension
from support.clock import NOW

BUDGET = 1.0
MARGIN = 2.0  # generous: this guards against hangs, it does not measure speed
SLOW = 6.0  # how long the "slow" fault waits before answering: well past the budget
# "Never-ending" answers do end after this long, so that a client that keeps reading them makes a
# test fail (its pool thread is still busy) instead of hanging the suite
ENDLESS = 15.0
VCF = condition("c1", ICD10CM, "M80.08XA")
CLOSE = "Connection: close\r\n"  # each handler answers one request, and says so


def json_answer(doc: Any, status: str = "200 OK") -> bytes:
    body = orjson.dumps(doc)
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n{CLOSE}\r\n"
    return head.encode() + body


def resource_type(target: str) -> str:
    """``/{fault}/{resource}/fhir/Condition?patient=p1`` → ``Condition``; ``…/fhir/Patient/p1`` → ``Patient``."""
    return target.split("?", 1)[0].split("/fhir/", 1)[1].split("/", 1)[0]


def good_answer(target: str) -> bytes:
    """What a healthy server answers."""
    kind = resource_type(target)
    if kind == "Patient":
        return json_answer(patient())
    found = {"Condition": [VCF], "Observation": [pain("o1", 7)]}.get(kind, [])
    return json_answer(bundle(*found))


@dataclass
class FaultyFhir:
    """The server: ``base(fault, resource)`` is a fhirServer URL whose ``resource`` searches fail that way."""

    port: int
    stop: threading.Event
    other_host_hits: list[str] = field(default_factory=list)
    other_port: int = 0

    def base(self, fault: str, resource: str) -> str:
        return f"http://127.0.0.1:{self.port}/{fault}/{resource}/fhir"


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        try:
            head = self.read_head(sock)
            if head is None:
                return
            target = head.split(b" ", 2)[1].decode()
            _, fault, resource, _ = target.split("/", 3)
            if resource_type(target) == resource:
                FAULTS[fault](sock, self.server, target)
            else:
                sock.sendall(good_answer(target))
        except (OSError, ValueError):
            pass  # the client hung up: that is what it should do with most of these

    @staticmethod
    def read_head(sock: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    stop: threading.Event


def keep_sending(sock: socket.socket, server: Server, piece: bytes, pause: float) -> None:
    """Send ``piece`` until the client hangs up (or, should it never, for ENDLESS seconds)."""
    give_up = time.monotonic() + ENDLESS
    while not server.stop.is_set() and time.monotonic() < give_up:
        sock.sendall(piece)
        if pause:
            server.stop.wait(pause)


def slow(sock: socket.socket, server: Server, target: str) -> None:
    if not server.stop.wait(SLOW):
        sock.sendall(good_answer(target))


def reset(sock: socket.socket, server: Server, target: str) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close → RST


def hang_up(sock: socket.socket, server: Server, target: str) -> None:
    sock.shutdown(socket.SHUT_RDWR)  # no answer at all


def error_500(sock: socket.socket, server: Server, target: str) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "exception"}]}
    sock.sendall(json_answer(outcome, "500 Internal Server Error"))


def html_page(status: str) -> Callable[[socket.socket, Server, str], None]:
    def answer(sock: socket.socket, server: Server, target: str) -> None:
        page = b"<html><head><title>Error</title></head><body><h1>Bad Gateway</h1></body></html>"
        head = f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(page)}\r\n{CLOSE}\r\n"
        sock.sendall(head.encode() + page)

    return answer


def truncated_body(sock: socket.socket, server: Server, target: str) -> None:
    whole = good_answer(target)
    sock.sendall(whole[: len(whole) - 40])  # Content-Length promises more; the connection closes


def truncated_json(sock: socket.socket, server: Server, target: str) -> None:
    cut = orjson.dumps(bundle(VCF))[:-25]
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(cut)}\r\n{CLOSE}\r\n"
    sock.sendall(head.encode() + cut)


def next_loop(sock: socket.socket, server: Server, target: str) -> None:
    page = bundle()
    page["link"] = [{"relation": "next", "url": f"http://127.0.0.1:{server.server_address[1]}{target}"}]
    sock.sendall(json_answer(page))


def redirect_elsewhere(sock: socket.socket, server: Server, target: str) -> None:
    # 127.0.0.2 is this machine too, but another host to the client: it must never be asked
    location = f"http://127.0.0.2:{server.other_port}{target}"
    sock.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n{CLOSE}\r\n".encode())


def endless_fast(sock: socket.socket, server: Server, target: str) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n\r\n")
    sock.sendall(b'{"resourceType": "Bundle", "type": "searchset", "entry": [')
    keep_sending(sock, server, b'{"resource": {"resourceType": "Basic"}},' * 1000, 0)


def endless_trickle(sock: socket.socket, server: Server, target: str) -> None:
    # a byte every 50 ms: each read gets something long before its timeout
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n\r\n{")
    keep_sending(sock, server, b" ", 0.05)


def endless_chunks(sock: socket.socket, server: Server, target: str) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n")
    keep_sending(sock, server, b"1\r\n \r\n", 0.05)


def endless_headers(sock: socket.socket, server: Server, target: str) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    keep_sending(sock, server, b"x", 0.05)


def gzip_bomb(sock: socket.socket, server: Server, target: str) -> None:
    body = gzip.compress(b" " * (30 * 1024 * 1024), compresslevel=9)  # 30 MiB of spaces in ~30 KiB
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(body)}\r\n{CLOSE}\r\n"
    )
    sock.sendall(head.encode() + body)


FAULTS: dict[str, Callable[[socket.socket, Server, str], None]] = {
    "slow": slow,
    "reset": reset,
    "hang-up": hang_up,
    "500": error_500,
    "html": html_page("200 OK"),
    "html-502": html_page("502 Bad Gateway"),
    "truncated-body": truncated_body,
    "truncated-json": truncated_json,
    "next-loop": next_loop,
    "redirect-elsewhere": redirect_elsewhere,
    "endless-fast": endless_fast,
    "endless-trickle": endless_trickle,
    "endless-chunks": endless_chunks,
    "endless-headers": endless_headers,
    "gzip-bomb": gzip_bomb,
}
# what the 412 says for required data, in the words of service/gather/fhirclient.py: one text for every
# server that gave no answer (a port scanner learns nothing), what was wrong for those that did
UNREACHABLE = "Condition search: the FHIR server could not be reached"
ANSWERED = "Condition search: the FHIR server answered with an error: "
LATE = ANSWERED + "it was not complete within the time budget"
SAYS = {
    "slow": UNREACHABLE,
    "reset": UNREACHABLE,
    "hang-up": UNREACHABLE,
    "500": ANSWERED + "HTTP 500",
    "html": ANSWERED + "the answer is not JSON",
    "html-502": ANSWERED + "HTTP 502",
    "truncated-body": ANSWERED + "the answer was cut off",
    "truncated-json": ANSWERED + "the answer is not JSON",
    "next-loop": ANSWERED + "it has more than 20 pages",
    "redirect-elsewhere": ANSWERED + "HTTP 302 redirect to another origin",
    "endless-fast": ANSWERED,  # larger than the cap, or the budget spent first: either is right
    "endless-trickle": LATE,
    "endless-chunks": LATE,
    "endless-headers": UNREACHABLE,
    "gzip-bomb": ANSWERED + "the answer is larger than",
}


class OtherHost(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.hits.append("asked")  # type: ignore[attr-defined]
        self.request.sendall(json_answer(bundle(VCF)))


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyFhir]:
    stop = threading.Event()
    other = socketserver.ThreadingTCPServer(("127.0.0.2", 0), OtherHost)
    other.daemon_threads = True
    other.hits = []  # type: ignore[attr-defined]
    server = Server(("127.0.0.1", 0), Handler)
    server.stop = stop
    server.other_port = other.server_address[1]  # type: ignore[attr-defined]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}) for s in (server, other)]
    for t in threads:
        t.start()
    try:
        yield FaultyFhir(server.server_address[1], stop, other.hits, other.server_address[1])  # type: ignore[attr-defined]
    finally:
        stop.set()  # the endless answers end; their handler threads return
        for s in (server, other):
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(5)


@pytest.fixture
def client(engine: Any, fhir_mock: responses.RequestsMock) -> Iterator[FlaskClient]:
    fhir_mock.add_passthru("http://127.0.0.2")  # so that a followed redirect would really arrive there
    app = create_app({"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "FHIR_TIMEOUT": BUDGET})
    yield app.test_client()
    app_state(app).fetch.close()


def hook_call(base: str, *fetch: str) -> dict[str, Any]:
    body = request(VCF, pain("o1", 7))
    for key in fetch:
        del body["prefetch"][key]
    body["fhirServer"] = base
    body["fhirAuthorization"] = {"access_token": "fault-test-token", "token_type": "Bearer", "expires_in": 300}
    return body


def timed_call(client: FlaskClient, body: dict[str, Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.post("/cds-services/vcf-patient-view", json=body)
    return response, time.monotonic() - started


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_required_data_from_a_faulty_server_is_412_within_the_budget(
    client: FlaskClient, faulty: FaultyFhir, fault: str
) -> None:
    response, elapsed = timed_call(client, hook_call(faulty.base(fault, "Condition"), "conditions"))
    assert response.status_code == 412, response.get_data(as_text=True)
    assert elapsed < BUDGET + MARGIN
    text = response.get_json()["issue"][0]["diagnostics"]
    assert f"'conditions' (Condition): {SAYS[fault]}" in text
    assert "fault-test-token" not in response.get_data(as_text=True) and "127.0.0.1" not in text
    assert faulty.other_host_hits == []


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_optional_data_from_a_faulty_server_leaves_its_criteria_unknown(
    client: FlaskClient, faulty: FaultyFhir, fault: str
) -> None:
    # only the faulty search is fetched: a healthy one could miss the short budget on a busy machine
    body = hook_call(faulty.base(fault, "Observation"), "observations")
    response, elapsed = timed_call(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert elapsed < BUDGET + MARGIN
    assessment = vcf_extension(response.get_json()["cards"][0])
    assert "pain_score" in assessment["missing"]
    assert {c["id"]: c["status"] for c in assessment["criteria"]}["pain_nrs_5"] == "unknown"
    assert faulty.other_host_hits == []


@pytest.mark.parametrize("fault", ["endless-trickle", "endless-headers", "slow"])
def test_a_stuck_search_does_not_keep_its_pool_thread(faulty: FaultyFhir, fault: str) -> None:
    # One pool thread: if the stuck search still held it, the next call's searches could not start
    client = FhirClient(limits=Limits(budget=BUDGET), workers=1, loopback_dev=True)
    try:
        stuck = client(hook_call(faulty.base(fault, "Condition")), {"conditions": f"Condition?patient={PATIENT_ID}"})
        assert isinstance(stuck["conditions"], FetchFailure) and stuck["conditions"].reason.startswith(SAYS[fault])
        client.limits = Limits(budget=BUDGET + MARGIN)  # time enough for a healthy answer on a busy machine
        started = time.monotonic()
        healthy = client(hook_call(faulty.base("slow", "Nothing")), {"conditions": f"Condition?patient={PATIENT_ID}"})
        assert healthy["conditions"] == [VCF], healthy
        assert time.monotonic() - started < BUDGET + 2 * MARGIN
    finally:
        client.close()


def test_a_refused_connection_is_412_at_once(client: FlaskClient) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    body = hook_call(f"http://127.0.0.1:{closed}/fhir", "conditions")
    response, elapsed = timed_call(client, body)
    assert response.status_code == 412 and elapsed < BUDGET + MARGIN
    assert response.get_json()["issue"][0]["diagnostics"].endswith(UNREACHABLE)
