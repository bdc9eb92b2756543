"""Reading a request body under a deadline: a client that stops sending gets an answer, not a held thread.

gunicorn's threads read the body as the application asks for it, with no time limit of their own: a
client that sends the headers and part of the body, then nothing, held a thread until it hung up.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Request
from werkzeug.exceptions import ClientDisconnected, HTTPException

from .errors import BadRequestError, RequestTimeoutError

CHUNK = 64 * 1024


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
    try:
        while True:
            if bounded:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _too_slow(timeout)
                sock.settimeout(left)  # each read waits at most the time left
            chunk = request.stream.read(CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
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
