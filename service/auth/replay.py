"""The replay store: each token's ``(iss, jti)`` is accepted once, until the token expires."""

from __future__ import annotations

import hashlib
import heapq
import threading
from typing import Protocol

REPLAY_CAPACITY = 200_000  # remembered `jti`s per process (~200 B each)


class ReplayStore(Protocol):
    def claim(self, iss: str, jti: str, *, expires_at: float, now: float) -> bool:
        """Record ``(iss, jti)`` until ``expires_at``; False if it is already recorded (a replay).
        Raises ``ReplayStoreFullError`` rather than forget an unexpired entry."""
        ...


class ReplayStoreFullError(Exception):
    pass


class MemoryReplayStore:
    """Seen ``(iss, jti)`` pairs of this process, each kept until its token expires.

    Bounded: ``capacity`` unexpired entries at most; when full it refuses (fail closed) instead of
    evicting an entry whose token could still be replayed. Only verified tokens reach it, so only a
    trusted issuer can fill it. Per process, so for tests: the app uses the database's (replay_store.py).
    """

    def __init__(self, capacity: int = REPLAY_CAPACITY):
        self.capacity = capacity
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, iss: str, jti: str, *, expires_at: float, now: float) -> bool:
        key = hashlib.sha256(f"{iss}\0{jti}".encode()).digest()
        with self._lock:
            while self._heap and self._heap[0][0] <= now:  # each key is in the heap once: the only removal
                del self._expiry[heapq.heappop(self._heap)[1]]
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.capacity:
                raise ReplayStoreFullError
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True
