"""Sockets watched while a call blocks on them, so that its deadline can wake a read at once.

A timeout bounds each read, not the whole answer: a server sending a byte just before each read
timeout never trips it. Shutting the socket down does. Two users, each with its own connection
class saying when a socket is watched: the hooks' FHIR client (fhirclient.py, one ``Cutoff`` per
search) and the SMART app's calls (smart/http.py, one ``Deadline`` per call). Imports ``requests``
for them (tests/test_purity.py lists the modules that may).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection


class SocketWatch:
    """The sockets one call opens, shut down by ``trip``: a read blocked on one fails at once.

    Watched through duplicates of their descriptors (closed by ``release``), so a socket closed
    and its number reused meanwhile is never touched.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self.tripped = False

    def watch(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:  # already closed: nothing to wake
            return
        with self._lock:
            self._watched.append(duplicate)
            if self.tripped:
                _shut(duplicate)

    def trip(self) -> None:
        with self._lock:
            self.tripped = True
            for sock in self._watched:
                _shut(sock)

    def release(self) -> None:
        """Close the duplicates (not the connections: they may go back to a pool)."""
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected any more
        sock.shutdown(socket.SHUT_RDWR)


class Adapter(HTTPAdapter):
    """A requests adapter whose pools make connections of the given classes (http, https)."""

    def __init__(self, http: type[HTTPConnection], https: type[HTTPSConnection], **kwargs: Any):
        class Pool(urllib3.HTTPConnectionPool):
            ConnectionCls = http

        class TLSPool(urllib3.HTTPSConnectionPool):
            ConnectionCls = https

        self._pools = {"http": Pool, "https": TLSPool}
        super().__init__(**kwargs)  # which calls init_poolmanager: the pools must be known first

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools
