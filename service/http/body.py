"""Request bodies: read under a deadline, large ones taken one at a time per process, JSON parsed
within bounds (``read_json_body``, shared by every blueprint); and JSON responses.

gunicorn's threads read the body as the application asks for it, with no time limit of their own:
without the deadline, a client that sends the headers and part of the body, then nothing, would hold
a thread until it hung up.

A body parses into Python objects many times its size (benchmarks/RESULTS.md, "Measurements the
code relies on"), so a worker whose threads each held one would hold several. Large bodies wait for
their turn, unread, so a worker holds one; the GIL runs their parsing one at a time anyway, so
throughput is the same.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from flask import Flask, Request, Response, current_app, g
from flask import request as incoming
from werkzeug.exceptions import ClientDisconnected, HTTPException

from ..errors import BadRequestError, RequestTimeoutError, ServiceUnavailableError, UnsupportedMediaTypeError
from ..normalize.jsondepth import MAX_JSON_DEPTH, json_depth_exceeds

CHUNK = 1 << 20  # the most gunicorn reads at once; smaller steps re-copied what it had buffered
LARGE_BODY = 1 << 20  # bytes; a realistic patient-view call is ~300 KB, a 10,000-resource one ~8.5 MB
TURN_TIMEOUT = 30.0  # seconds a large request waits for its turn before a 503


def init_app(app: Flask) -> None:
    turn = threading.Semaphore(1)  # per worker process: what bounds its memory

    @app.before_request
    def wait_for_turn() -> None:
        length = incoming.content_length
        if incoming.method != "POST" or (length is not None and length <= LARGE_BODY):
            return  # chunked bodies (no length) count as large: their size is unknown until read
        if not turn.acquire(timeout=TURN_TIMEOUT):
            raise ServiceUnavailableError("The service is busy with other large requests; try again.")
        g.large_body_turn = True

    @app.teardown_request
    def end_turn(_: BaseException | None) -> None:
        if g.pop("large_body_turn", False):
            turn.release()


def read_body(request: Request, timeout: float) -> bytes:
    """The whole body, read within ``timeout`` seconds.

    Raises ``RequestTimeoutError`` (408) when the client stalls past the deadline,
    ``BadRequestError`` when the connection closes early or the transfer encoding is malformed,
    and Werkzeug's 413 over ``MAX_CONTENT_LENGTH`` - also for a chunked body, which Werkzeug's
    ``read()`` would cut at the limit silently: reading in steps asks for more once it is reached.
    """
    sock: Any = request.environ.get("gunicorn.socket")  # other servers: no per-read timeout to set
    bounded = hasattr(sock, "settimeout") and hasattr(sock, "gettimeout")
    prior = sock.gettimeout() if bounded else None
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    # with a Content-Length, ask for no more than is left: each read allocates the size asked for
    # (Werkzeug), and a last read for the end would allocate a whole CHUNK to find nothing
    left_to_read = request.content_length
    try:
        while left_to_read is None or left_to_read > 0:
            if bounded:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _too_slow(timeout)
                sock.settimeout(left)  # each read waits at most the time left
            chunk = request.stream.read(CHUNK if left_to_read is None else min(CHUNK, left_to_read))
            if not chunk:
                break
            chunks.append(chunk)
            if left_to_read is not None:
                left_to_read -= len(chunk)
    except ClientDisconnected as e:  # Werkzeug's name for any OSError while reading, a timeout included
        if isinstance(e.__context__, TimeoutError) or time.monotonic() >= deadline:
            raise _too_slow(timeout) from None
        raise _cut_short() from None
    except (HTTPException, RequestTimeoutError):
        raise  # Werkzeug's 413; our 408
    except Exception:  # the server's chunked-encoding decoder (bad chunk size, missing terminator)
        raise BadRequestError("The request body could not be read: malformed transfer encoding.") from None
    finally:
        if bounded:
            sock.settimeout(prior)
    body = b"".join(chunks)
    # gunicorn ends a Content-Length body at EOF without an error: a cut body must not pass as whole
    if request.content_length is not None and len(body) < request.content_length:
        raise _cut_short()
    return body


def _cut_short() -> BadRequestError:
    return BadRequestError("The connection closed before the whole request body arrived.")


def _too_slow(timeout: float) -> RequestTimeoutError:
    return RequestTimeoutError(f"The request body did not arrive within {timeout:g} seconds (VCF_CDS_BODY_TIMEOUT).")


JSON_TYPES = ("application/json", "application/fhir+json")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


ORJSON_MAX_DEPTH = 1024  # orjson's own, fixed


def too_deep(levels: int) -> BadRequestError:
    return BadRequestError(f"The request body nests JSON deeper than {levels} levels.")


def read_json_body(bound_nesting: bool = True) -> Any:
    """The body as JSON: 415 if not JSON, 413 over the limit, 408 when it arrives too slowly, 400 when
    malformed or, with ``bound_nesting``, nested deeper than ``MAX_JSON_DEPTH``.

    Hook calls bound nesting where they recurse, in each resource they validate (normalize/validation.py):
    bounding the whole body would cost every call time for parts never read (benchmarks/RESULTS.md,
    "Measurements the code relies on")."""
    if incoming.mimetype not in JSON_TYPES:
        raise UnsupportedMediaTypeError("Send the request as JSON (Content-Type: application/json).")
    raw = read_body(incoming, float(current_app.config["BODY_TIMEOUT"]))  # 413 over MAX_CONTENT_LENGTH
    if not raw.strip():
        raise BadRequestError("The request body is empty; a CDS Hooks request (JSON object) is expected.")
    try:
        body = orjson.loads(raw)  # rejects invalid UTF-8 and nesting deeper than ORJSON_MAX_DEPTH
    except orjson.JSONDecodeError as e:
        if "depth" in str(e):
            raise too_deep(MAX_JSON_DEPTH if bound_nesting else ORJSON_MAX_DEPTH) from None
        raise BadRequestError(f"The request body is not valid JSON: {str(e).split(':')[0]}.") from None
    if bound_nesting and json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise too_deep(MAX_JSON_DEPTH)
    return body
