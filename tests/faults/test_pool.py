"""The worker pool's per-file time limit, worker replacement and memory cap."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _deaths(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _task_with_marker(data: bytes) -> int:
    """``die:PATH`` counts a death in PATH and kills its worker; ``wait:PATH`` is a healthy file that
    stays in flight until a worker dies while it runs (or, alone, for 2 s at most: the outcome never
    depends on that limit, only the test's duration)."""
    kind, _, path = data.decode().partition(":")
    if kind == "die":
        with open(path, "ab") as f:
            f.write(b"x")
        os._exit(3)
    if kind == "wait":
        seen, deadline = _deaths(path), time.monotonic() + 2
        while _deaths(path) == seen and time.monotonic() < deadline:
            time.sleep(0.01)
    return len(data)


def test_a_healthy_file_in_flight_beside_a_killer_is_never_blamed(tmp_path: Path) -> None:
    marker = tmp_path / "died"
    wait, die = f"wait:{marker}".encode(), f"die:{marker}".encode()
    items = [(0, wait), (1, die), (2, b"ok"), (3, wait), (4, die), (5, b"fine")]
    pool = TimedPool(_task_with_marker, workers=2, timeout=60)
    results = dict(pool.run(items))
    assert results == {
        0: len(wait),
        1: WorkerFailure(WORKER_DIED_REASON),
        2: 2,
        3: len(wait),
        4: WorkerFailure(WORKER_DIED_REASON),
        5: 4,
    }


def _slow_first(data: bytes) -> int:
    """``slow:PATH:N`` stays in flight until N other files have written a byte to PATH (``quick:PATH``
    writes one): the slow one finishes only if the pool keeps the other worker fed meanwhile (under
    a deadline far beyond what the test needs: -1 when the other files never came)."""
    kind, path, *n = data.decode().split(":")
    if kind == "quick":
        with open(path, "ab") as f:
            f.write(b"x")
        return 1
    deadline = time.monotonic() + 60
    while _deaths(path) < int(n[0]):
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.01)
    return 0


def test_a_long_input_does_not_idle_the_other_workers(tmp_path: Path) -> None:
    """Results come in input order, but inputs finished behind a long one do not count against the
    inputs kept running: 20 quick files finish on one worker while the first runs on the other
    (with a time limit too: it counts for the oldest input alone)."""
    marker = str(tmp_path / "done")
    for timeout in (None, 120.0):
        Path(marker).unlink(missing_ok=True)
        pool = TimedPool(_slow_first, workers=2, timeout=timeout)
        items = [(0, f"slow:{marker}:20".encode())] + [(i, f"quick:{marker}".encode()) for i in range(1, 21)]
        assert list(pool.run(items)) == [(0, 0)] + [(i, 1) for i in range(1, 21)]


def _held_until_ready(data: bytes) -> int:
    """``N:READY``: inputs 0 and 1 wait until READY exists (the pool has read every input by then),
    so that both workers stay busy and what is submitted next is the pool's choice alone."""
    n, ready = data.decode().split(":")
    deadline = time.monotonic() + 60
    while n in ("0", "1") and not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(n)


class _RecordingPool(TimedPool):
    """A pool that notes the inputs in the order it submits them to its executor."""

    def _new_pool(self) -> Any:
        executor = super()._new_pool()
        submit = executor.submit
        self.submitted: list[int] = getattr(self, "submitted", [])

        def recorded(fn: Any, data: bytes) -> Any:
            self.submitted.append(int(data.split(b":")[0]))
            return submit(fn, data)

        executor.submit = recorded  # type: ignore[method-assign]
        return executor


def test_the_costliest_input_read_ahead_is_submitted_first(tmp_path: Path) -> None:
    """Results stay in input order; what is submitted next is the oldest input, then the costliest
    of those read ahead (2 workers: 8 files submitted at once, more read ahead)."""
    ready = tmp_path / "all-read"

    def items() -> Iterator[tuple[int, bytes]]:
        for n in range(12):
            yield n, f"{n}:{ready}".encode()
        ready.touch()  # asked for more: every input is in the pool's window

    weights = {11: 9.0}
    pool = _RecordingPool(_held_until_ready, workers=2, timeout=None, weigh=lambda n: weights.get(n, 0.0))
    assert list(pool.run(items())) == [(n, n) for n in range(12)]
    assert pool.submitted == [0, 1, 2, 3, 4, 5, 6, 7, 11, 8, 9, 10]
