"""Group commit: the writes of concurrent threads, committed together in one transaction.

Every hook call commits its audit row before it answers. A durable commit waits for the disk
(SQLite ``synchronous=FULL``: an fsync), and SQLite admits one writer at a time, so under load the
calls queued on the disk, one fsync each, with the CPUs idle. Here a call that finds no commit in
progress leads: it commits its own write and every write queued meanwhile, in one transaction and
one fsync, then wakes their callers. Each caller still returns only once its write is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 64


@dataclass(eq=False)
class _Slot(Generic[Item]):
    item: Item
    done: bool = False
    committed: bool = False
    result: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """``submit(item)`` → ``commit([item, …])[i]``, batching the items of concurrent callers.

    ``commit`` writes a batch in one transaction and returns one result per item, in order. When a
    batch fails, its items are retried one by one, so one bad item fails alone.
    """

    def __init__(self, commit: Callable[[Sequence[Item]], Sequence[Result]], max_batch: int = MAX_BATCH):
        self._commit = commit
        self._max_batch = max_batch
        self._queue: list[_Slot[Item]] = []
        self._committing = False
        self._changed = threading.Condition()

    def submit(self, item: Item) -> Result:
        slot = _Slot(item)
        with self._changed:
            self._queue.append(slot)
        while True:
            with self._changed:
                while not slot.done and self._committing:
                    self._changed.wait()
                if slot.done:
                    break
                self._committing = True  # nobody is: lead, with what has queued up (this slot too)
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            self._lead(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[no-any-return]

    def _lead(self, batch: list[_Slot[Item]]) -> None:
        try:
            self._commit_batch(batch)
        finally:
            with self._changed:
                for slot in batch:
                    if not slot.committed and slot.error is None:  # interrupted (BaseException)
                        slot.error = RuntimeError("the commit was interrupted")
                    slot.done = True
                self._committing = False
                self._changed.notify_all()  # their callers return; one of the rest leads next

    def _commit_batch(self, batch: list[_Slot[Item]]) -> None:
        try:
            results = self._commit([slot.item for slot in batch])
        except Exception as e:
            if len(batch) == 1:
                batch[0].error = e
            else:
                for slot in batch:
                    self._commit_batch([slot])
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result, slot.committed = result, True
