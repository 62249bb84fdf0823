"""Worker processes with a per-file time limit and a memory cap, results in input order.

A file that hangs a parser or exhausts memory must cost one rejection, never the run: when the
oldest file in flight exceeds its time limit, or a worker dies, the workers are killed and a fresh
pool takes over the files still in flight. Memory per worker is capped with ``RLIMIT_AS`` so a
decompression bomb raises ``MemoryError`` in the worker instead of swapping the machine (the
budget is counted on top of what the worker inherits from its parent).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Reason codes of files a worker could not finish (stage ``process``).
TIMEOUT_REASON = "timeout"
WORKER_DIED_REASON = "worker_died"

#: Input bytes held for files in flight before the pool waits for results.
MAX_INFLIGHT_BYTES = 1024**3


@dataclass(frozen=True)
class WorkerFailure:
    """The outcome for an input whose worker timed out or died."""

    reason: str


def _address_space() -> int:
    """This process's virtual memory size in bytes (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _limited_init(memory_bytes: int | None, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    if memory_bytes:
        # A forked worker inherits the parent's address space (GBs of reserved, untouched
        # virtual memory with polars, duckdb and deltalake loaded): the budget comes on top.
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _address_space() + memory_bytes
        limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    if initializer is not None:
        initializer(*initargs)


@dataclass
class _Slot(Generic[T]):
    tag: T
    data: bytes
    future: Future[Any]
    attempts: int = 1


class TimedPool:
    """``run(items)`` yields ``(tag, result | WorkerFailure)`` in input order.

    ``timeout`` is seconds per file once it is the oldest in flight (``None``: no limit).
    """

    def __init__(
        self,
        func: Callable[[bytes], R],
        workers: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        timeout: float | None = None,
        memory_bytes: int | None = None,
    ) -> None:
        self.func = func
        self.workers = max(1, workers)
        self.initializer = initializer
        self.initargs = initargs
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.restarts = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            initializer=_limited_init,
            initargs=(self.memory_bytes, self.initializer, self.initargs),
        )

    def _restart(self, window: Iterable[_Slot[T]]) -> None:
        """Kill our workers (by pid), start a fresh pool and resubmit what was in flight."""
        self.restarts += 1
        processes = dict(getattr(self._pool, "_processes", None) or {})
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._new_pool()
        for slot in window:
            slot.future = self._pool.submit(self.func, slot.data)

    def run(self, items: Iterable[tuple[T, bytes]]) -> Iterator[tuple[T, R | WorkerFailure]]:
        window: deque[_Slot[T]] = deque()
        try:
            for tag, data in items:
                window.append(_Slot(tag, data, self._pool.submit(self.func, data)))
                # Bounded memory: at most 4 files per worker, and no more than MAX_INFLIGHT_BYTES
                # of input held in this process (beyond the one file that exceeds it alone).
                while len(window) > self.workers * 4 or (
                    len(window) > 1 and sum(len(s.data) for s in window) > MAX_INFLIGHT_BYTES
                ):
                    yield self._next(window)
            while window:
                yield self._next(window)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _next(self, window: deque[_Slot[T]]) -> tuple[T, R | WorkerFailure]:
        while True:
            head = window[0]
            try:
                result: R = head.future.result(timeout=self.timeout)
            except FutureTimeout:
                window.popleft()
                logger.warning("a file exceeded the %.0f s time limit; restarting the workers", self.timeout or 0)
                self._restart(window)
                return head.tag, WorkerFailure(TIMEOUT_REASON)
            except BrokenProcessPool:
                # Any file in flight may have killed the worker: retry them all once in a fresh pool;
                # the oldest one failing a second time is the culprit.
                if head.attempts > 1:
                    window.popleft()
                    self._restart(window)
                    return head.tag, WorkerFailure(WORKER_DIED_REASON)
                head.attempts += 1
                self._restart(window)
                continue
            except Exception as exc:  # the function itself raised: one file's failure, not the pool's
                window.popleft()
                return head.tag, WorkerFailure(f"worker_failed:{type(exc).__name__}")
            window.popleft()
            return head.tag, result
