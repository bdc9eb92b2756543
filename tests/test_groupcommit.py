"""Group commit: concurrent writes share a transaction, each caller gets its own result or error."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from service.store.groupcommit import GroupCommit


class Database:
    """A stand-in for a database: transactions that can wait for a lock, be refused or fail to commit;
    what each committed transaction held is recorded."""

    def __init__(self, bad: frozenset[str] = frozenset(), locked: bool = False):
        self.batches: list[list[str]] = []  # what each attempted transaction wrote
        self.committed: list[list[str]] = []
        self.bad = bad  # items whose write fails
        self.lock = threading.Semaphore(0 if locked else 1)
        self.waiting = threading.Event()  # someone waits for the lock
        self.refuse: Exception | None = None  # begin() fails with this
        self.fail_commit = False

    @contextmanager
    def begin(self) -> Iterator[list[str]]:
        if self.refuse:
            raise self.refuse
        self.waiting.set()
        assert self.lock.acquire(timeout=10)
        written: list[str] = []
        try:
            yield written
            if self.fail_commit and len(written) > 1:
                raise OSError("disk I/O error")
            self.committed.append(written)
        finally:
            self.lock.release()

    def write(self, transaction: list[str], items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        if self.bad & set(items):
            raise ValueError("constraint violated")
        transaction.extend(items)
        return [f"id-{item}" for item in items]

    def committer(self, max_batch: int = 64) -> GroupCommit[list[str], str, str]:
        return GroupCommit(self.begin, self.write, max_batch=max_batch)


def wait_for_queue(committer: GroupCommit[Any, Any, Any], size: int) -> None:
    for _ in range(1000):
        if len(committer._queue) >= size:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"queue never reached {size}")


def test_one_caller_commits_alone() -> None:
    db = Database()
    assert db.committer().submit("a") == "id-a"
    assert db.committed == [["a"]]


def test_writes_queued_while_the_leader_waits_for_the_lock_share_its_transaction() -> None:
    db = Database(locked=True)  # another worker process holds the database's write lock
    committer = db.committer()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(committer.submit, "first")
        assert db.waiting.wait(10)
        rest = {name: pool.submit(committer.submit, name) for name in "bcdefg"}
        wait_for_queue(committer, 7)
        db.lock.release()
        assert first.result(10) == "id-first"
        assert {name: f.result(10) for name, f in rest.items()} == {name: f"id-{name}" for name in "bcdefg"}
    assert db.committed == [["first", *"bcdefg"]]  # one transaction, one commit, in arrival order


def test_a_failing_batch_is_retried_item_by_item_so_one_bad_item_fails_alone() -> None:
    db = Database(bad=frozenset({"bad"}), locked=True)
    committer = db.committer()
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(committer.submit, name) for name in ("good1", "bad", "good2")}
        wait_for_queue(committer, 3)
        db.lock.release()
        assert futures["good1"].result(10) == "id-good1" and futures["good2"].result(10) == "id-good2"
        with pytest.raises(ValueError, match="constraint violated"):
            futures["bad"].result(10)
    assert sorted(db.batches[0]) == ["bad", "good1", "good2"]  # tried together first
    assert sorted(map(tuple, db.batches[1:])) == [("bad",), ("good1",), ("good2",)]
    assert sorted(map(tuple, db.committed)) == [("good1",), ("good2",)]


def test_a_failed_commit_fails_its_callers_and_writes_nothing_again() -> None:
    # a commit that failed may still have reached the database: retried, its rows would be there twice
    db = Database(locked=True)
    db.fail_commit = True  # batches of more than one
    committer = db.committer()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(committer.submit, name) for name in "abc"]
        wait_for_queue(committer, 3)
        db.lock.release()
        for future in futures:
            with pytest.raises(OSError, match="disk I/O error"):
                future.result(10)
    assert db.batches == [["a", "b", "c"]]  # written once, never again
    assert committer.submit("d") == "id-d"  # and the next caller leads as usual


def test_a_transaction_that_cannot_begin_fails_every_queued_caller_once() -> None:
    db = Database()
    db.refuse = ConnectionError("database unavailable")
    with pytest.raises(ConnectionError):
        db.committer().submit("a")
    assert db.batches == []


def test_batches_are_bounded() -> None:
    db = Database(locked=True)
    committer = db.committer(max_batch=2)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(committer.submit, str(n)) for n in range(5)]
        wait_for_queue(committer, 5)
        db.lock.release()
        assert [f.result(10) for f in futures] == [f"id-{n}" for n in range(5)]
    assert all(len(batch) <= 2 for batch in db.committed)
    assert sorted(item for batch in db.committed for item in batch) == [str(n) for n in range(5)]


def test_an_interrupted_commit_is_an_error_for_every_caller_not_a_silent_none() -> None:
    def interrupted(transaction: Any, items: Sequence[str]) -> list[str]:
        raise KeyboardInterrupt

    committer: GroupCommit[list[str], str, str] = GroupCommit(Database().begin, interrupted)
    with pytest.raises(KeyboardInterrupt):
        committer.submit("a")
    assert committer._committing is False  # the next caller can lead
