"""Reading the body under a deadline (gunicorn's socket), and what a broken transfer gets: never a 500."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.http import body as body_module
from service.state import app_state

from support.builders import ICD10CM, condition, request


class FakeSocket:
    """Stands for environ['gunicorn.socket']: records the read timeouts the app sets."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def gettimeout(self) -> float | None:
        return None

    def settimeout(self, value: float | None) -> None:
        self.timeouts.append(value)


class Stream(io.RawIOBase):
    """A body that delivers ``data`` and then fails the way a server's reader does."""

    def __init__(self, data: bytes, then: BaseException | None) -> None:
        self.data, self.then = data, then

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.data:
            if self.then:
                raise self.then
            return 0
        n = min(len(buffer), len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n


class InvalidChunkSize(Exception):
    """What gunicorn's chunked decoder raises (a ParseException, not an OSError)."""


def post(client: FlaskClient, stream: Stream, sock: FakeSocket, length: int | None) -> Any:
    """Raw WSGI input (the test client would measure a stream, so it goes in the environ)."""
    environ = {"wsgi.input": stream, "gunicorn.socket": sock, "wsgi.input_terminated": True}
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    headers = {"Transfer-Encoding": "chunked"} if length is None else {}
    return client.post(
        "/cds-services/vcf-patient-view", content_type="application/json", headers=headers, environ_overrides=environ
    )


VALID = orjson.dumps(request(condition("c1", ICD10CM, "M80.08XA")))


@pytest.mark.parametrize("length", [len(VALID), None], ids=["content-length", "chunked"])
def test_a_body_is_read_under_a_deadline_and_the_socket_restored(client: FlaskClient, length: int | None) -> None:
    sock = FakeSocket()
    response = post(client, Stream(VALID, None), sock, length)
    assert response.status_code == 200
    waits = sock.timeouts[:-1]
    assert waits and all(w is not None and 0 < w <= 20 for w in waits)
    assert sock.timeouts[-1] is None  # gunicorn's blocking socket, as it was


@pytest.mark.parametrize(
    ("then", "status", "code"),
    [
        (TimeoutError("timed out"), 408, "timeout"),
        (ConnectionResetError(), 400, "invalid"),
        (InvalidChunkSize(), 400, "invalid"),
    ],
    ids=["stalled", "reset", "bad-chunk"],
)
@pytest.mark.parametrize("length", [len(VALID) + 100, None], ids=["content-length", "chunked"])
def test_a_broken_transfer_is_a_4xx_outcome(
    client: FlaskClient, then: BaseException, status: int, code: str, length: int | None
) -> None:
    sock = FakeSocket()
    response = post(client, Stream(VALID[:50], then), sock, length)
    assert response.status_code == status
    issue = response.get_json()["issue"][0]
    assert issue["code"] == code and issue["diagnostics"]
    assert sock.timeouts[-1] is None


def test_the_deadline_covers_the_whole_body(client: FlaskClient, app: Any) -> None:
    app.config["BODY_TIMEOUT"] = 0.0  # already past: a trickling client is cut off between reads
    response = post(client, Stream(VALID, None), FakeSocket(), len(VALID))
    assert response.status_code == 408
    assert "VCF_CDS_BODY_TIMEOUT" in response.get_json()["issue"][0]["diagnostics"]


def test_a_body_shorter_than_its_content_length_is_not_read_as_whole(client: FlaskClient) -> None:
    # gunicorn's reader ends at EOF without an error: '{}' of a declared 100 bytes parsed as a request
    response = post(client, Stream(VALID, None), FakeSocket(), len(VALID) + 1)
    assert response.status_code == 400
    assert "closed before the whole request body" in response.get_json()["issue"][0]["diagnostics"]


# -- large bodies take turns ---------------------------------------------------------------
URL = "/cds-services/vcf-patient-view"


class Overlap:
    """Wraps Engine.evaluate: counts how many calls run at once, each held ``hold`` seconds."""

    def __init__(self, real: Any, hold: float, barrier: threading.Barrier | None = None):
        self.real, self.hold, self.barrier = real, hold, barrier
        self.running = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if self.barrier:
                self.barrier.wait(timeout=10)  # passes only if another call runs at the same time
            time.sleep(self.hold)
            return self.real(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def post_together(app: Flask, count: int) -> list[int]:
    data = orjson.dumps(request(condition("c1", ICD10CM, "M80.08XA")))

    def post() -> int:
        return app.test_client().post(URL, data=data, content_type="application/json").status_code

    with ThreadPoolExecutor(count) as pool:
        return [f.result(timeout=30) for f in [pool.submit(post) for _ in range(count)]]


def test_small_bodies_are_answered_concurrently(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    overlap = Overlap(app_state(app).engine.evaluate, hold=0, barrier=threading.Barrier(2))
    monkeypatch.setattr(app_state(app).engine, "evaluate", overlap)
    assert post_together(app, 2) == [200, 200] and overlap.most == 2


def test_large_bodies_take_turns_so_a_worker_holds_one_at_a_time(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body_module, "LARGE_BODY", 100)  # every request body here is larger
    overlap = Overlap(app_state(app).engine.evaluate, hold=0.05)
    monkeypatch.setattr(app_state(app).engine, "evaluate", overlap)
    assert post_together(app, 4) == [200] * 4 and overlap.most == 1


def test_a_large_body_that_waits_too_long_is_told_to_retry(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body_module, "LARGE_BODY", 100)
    monkeypatch.setattr(body_module, "TURN_TIMEOUT", 0.2)
    monkeypatch.setattr(app_state(app).engine, "evaluate", Overlap(app_state(app).engine.evaluate, hold=1.0))
    statuses = sorted(post_together(app, 2))
    assert statuses == [200, 503]


def test_the_turn_is_given_back_after_a_refusal(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(body_module, "LARGE_BODY", 100)
    monkeypatch.setattr(body_module, "TURN_TIMEOUT", 0.5)
    assert client.post(URL, data=b"{" * 200, content_type="application/json").status_code == 400
    assert client.post(URL, data=b"x" * 200, content_type="text/plain").status_code == 415
    assert client.post(URL, json=request(condition("c1", ICD10CM, "M80.08XA"))).status_code == 200
