"""Group commit: concurrent writes share a transaction, each caller gets its own result or error."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.groupcommit import GroupCommit


class Recorder:
    """A commit function that records its batches and can hold the first one until released."""

    def __init__(self, hold_first: bool = False, bad: frozenset[str] = frozenset()):
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.bad = bad

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        self.entered.set()
        assert self.release.wait(10)
        if self.bad & set(items):
            raise ValueError("constraint violated")
        return [f"id-{item}" for item in items]


def wait_for_queue(committer: GroupCommit[Any, Any], size: int) -> None:
    for _ in range(1000):
        if len(committer._queue) >= size:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"queue never reached {size}")


def test_one_caller_commits_alone() -> None:
    recorder = Recorder()
    assert GroupCommit(recorder).submit("a") == "id-a"
    assert recorder.batches == [["a"]]


def test_writes_queued_during_a_commit_share_the_next_one() -> None:
    recorder = Recorder(hold_first=True)
    committer: GroupCommit[str, str] = GroupCommit(recorder)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(committer.submit, "first")
        assert recorder.entered.wait(10)
        rest = {name: pool.submit(committer.submit, name) for name in "bcdefg"}
        wait_for_queue(committer, 6)
        recorder.release.set()
        assert first.result(10) == "id-first"
        assert {name: f.result(10) for name, f in rest.items()} == {name: f"id-{name}" for name in "bcdefg"}
    assert recorder.batches[0] == ["first"]
    assert sorted(recorder.batches[1]) == list("bcdefg") and len(recorder.batches) == 2


def test_a_failing_batch_is_retried_item_by_item_so_one_bad_item_fails_alone() -> None:
    recorder = Recorder(hold_first=True, bad=frozenset({"bad"}))
    committer: GroupCommit[str, str] = GroupCommit(recorder)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(committer.submit, "first")
        assert recorder.entered.wait(10)
        futures = {name: pool.submit(committer.submit, name) for name in ("good1", "bad", "good2")}
        wait_for_queue(committer, 3)
        recorder.release.set()
        assert first.result(10) == "id-first"
        assert futures["good1"].result(10) == "id-good1" and futures["good2"].result(10) == "id-good2"
        with pytest.raises(ValueError, match="constraint violated"):
            futures["bad"].result(10)
    assert sorted(recorder.batches[1]) == ["bad", "good1", "good2"]  # tried together first
    assert sorted(map(tuple, recorder.batches[2:])) == [("bad",), ("good1",), ("good2",)]


def test_batches_are_bounded() -> None:
    recorder = Recorder(hold_first=True)
    committer: GroupCommit[str, str] = GroupCommit(recorder, max_batch=2)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(committer.submit, "first")
        assert recorder.entered.wait(10)
        rest = [pool.submit(committer.submit, str(n)) for n in range(5)]
        wait_for_queue(committer, 5)
        recorder.release.set()
        assert [f.result(10) for f in rest] == [f"id-{n}" for n in range(5)] and first.result(10) == "id-first"
    assert all(len(batch) <= 2 for batch in recorder.batches)
    assert sorted(item for batch in recorder.batches[1:] for item in batch) == [str(n) for n in range(5)]


def test_an_interrupted_commit_is_an_error_for_every_caller_not_a_silent_none() -> None:
    def interrupted(items: Sequence[str]) -> list[str]:
        raise KeyboardInterrupt

    committer: GroupCommit[str, str] = GroupCommit(interrupted)
    with pytest.raises(KeyboardInterrupt):
        committer.submit("a")
    assert committer._committing is False  # the next caller can lead
