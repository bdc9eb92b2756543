"""Group commit: the writes of concurrent threads, committed together in one transaction.

Every hook call commits its audit row before it answers. A durable commit waits for the disk
(an fsync, ``sqlite.WalSync`` for SQLite), and SQLite admits one writer at a time, so under load the
calls queued on the disk, one fsync each, with the CPUs idle. Here a call that finds no commit in
progress leads: it opens a transaction (for SQLite, waiting for the write lock, which another worker
process may hold), then takes every write queued until then, its own included, writes them and
commits once, and wakes their callers. Each caller still returns only once its write is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Transaction = TypeVar("Transaction")

MAX_BATCH = 64


@dataclass(eq=False)
class _Slot(Generic[Item]):
    item: Item
    done: bool = False
    committed: bool = False
    result: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Transaction, Item, Result]):
    """``submit(item)`` → ``write(transaction, [item, …])[i]``, batching the items of concurrent callers.

    ``begin()`` opens a transaction (a context manager that commits on leaving); ``write`` writes a
    batch in it and returns one result per item, in order. When writing a batch fails, its items are
    retried one by one, each in a transaction of its own, so one bad item fails alone. When the
    commit fails, every caller of the batch gets the error and nothing is written again: a failed
    commit may still have reached the database (a lost connection, or a SQLite commit whose log
    could not be synced), and a retry would write it twice.
    """

    def __init__(
        self,
        begin: Callable[[], AbstractContextManager[Transaction]],
        write: Callable[[Transaction, Sequence[Item]], Sequence[Result]],
        max_batch: int = MAX_BATCH,
    ):
        self._begin = begin
        self._write = write
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
                self._committing = True  # nobody is: lead
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[no-any-return]

    def _take(self) -> list[_Slot[Item]]:
        with self._changed:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        return batch

    def _lead(self) -> None:
        batch: list[_Slot[Item]] = []
        written = False
        try:
            try:
                with self._begin() as transaction:
                    batch = self._take()  # what queued up while the transaction waited for its lock, too
                    results = self._write(transaction, [slot.item for slot in batch])
                    written = True
            except Exception as e:
                if not batch:  # the transaction could not begin: nothing was tried, all fail alike
                    batch = self._take()
                    for slot in batch:
                        slot.error = e
                elif len(batch) == 1 or written:  # one item, or the commit failed: its outcome is unknown
                    for slot in batch:
                        slot.error = e
                else:
                    for slot in batch:
                        self._commit_alone(slot)
            else:
                for slot, result in zip(batch, results, strict=True):
                    slot.result, slot.committed = result, True
        finally:
            with self._changed:
                for slot in batch:
                    if not slot.committed and slot.error is None:  # interrupted (BaseException)
                        slot.error = RuntimeError("the commit was interrupted")
                    slot.done = True
                self._committing = False
                self._changed.notify_all()  # their callers return; one of the rest leads next

    def _commit_alone(self, slot: _Slot[Item]) -> None:
        try:
            with self._begin() as transaction:
                (result,) = self._write(transaction, [slot.item])
        except Exception as e:
            slot.error = e
        else:
            slot.result, slot.committed = result, True
