"""The worker pool's per-file time limit, worker replacement and memory cap."""

from __future__ import annotations

import os
import time

from lake.ingest.pool import TIMEOUT_REASON, WORKER_DIED_REASON, TimedPool, WorkerFailure


def _task(data: bytes) -> int:
    if data == b"hang":
        time.sleep(60)
    if data == b"die":
        os._exit(3)  # a worker killed by the OS (segfault, OOM killer) looks like this
    if data == b"hog":
        blob = bytearray(2 * 1024**3)  # beyond the memory budget: MemoryError in the worker
        return len(blob)
    return len(data)


def test_a_hung_file_is_rejected_and_the_rest_still_processed() -> None:
    pool = TimedPool(_task, workers=2, timeout=1.5)
    items = [(i, d) for i, d in enumerate([b"a", b"bb", b"hang", b"cccc", b"ddddd", b"hang", b"e"])]
    t0 = time.monotonic()
    results = list(pool.run(items))
    assert time.monotonic() - t0 < 20
    assert [tag for tag, _ in results] == list(range(7))  # input order, every input accounted for
    outcomes = [r for _, r in results]
    assert outcomes[2] == WorkerFailure(TIMEOUT_REASON) and outcomes[5] == WorkerFailure(TIMEOUT_REASON)
    assert [outcomes[i] for i in (0, 1, 3, 4, 6)] == [1, 2, 4, 5, 1]
    assert pool.restarts == 2


def test_a_worker_that_dies_costs_one_file() -> None:
    pool = TimedPool(_task, workers=1, timeout=30)
    results = dict(pool.run([(0, b"x"), (1, b"die"), (2, b"yy")]))
    assert results == {0: 1, 1: WorkerFailure(WORKER_DIED_REASON), 2: 2}


def test_memory_is_capped_per_worker() -> None:
    pool = TimedPool(_task, workers=1, timeout=30, memory_bytes=256 * 1024**2)
    results = dict(pool.run([(0, b"hog"), (1, b"ok")]))
    assert results == {0: WorkerFailure("worker_failed:MemoryError"), 1: 2}
