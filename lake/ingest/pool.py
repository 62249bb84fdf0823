"""Worker processes with a per-file time limit and a memory cap, results in input order.

A file that hangs a parser or exhausts memory must cost one rejection, never the run: when the
oldest file in flight exceeds its time limit, or a worker dies, the workers are killed and a fresh
pool takes over the files still in flight. A dead worker does not say which of the files in flight
killed it, so each of those suspects then runs alone, in input order, before the pool fills up again:
the one that kills its worker alone is the culprit, and a healthy file is never blamed for another.

An input is one file's bytes or a unit of work (a sequence of files' bytes, :mod:`lake.ingest.work`)
with the same time limit: the ingest runs a unit that exceeds it (or whose worker died) again one
file at a time, so a file is only rejected for what it does alone.

Memory per worker is capped with ``RLIMIT_AS`` so a decompression bomb raises ``MemoryError`` in
the worker instead of swapping the machine (the budget is counted on top of what the worker
inherits from its parent).

Workers never outlive the run. Each asks the kernel for ``SIGKILL`` when its parent dies
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of the ingest, or the OOM killer, takes the workers with it
wherever they are (decoding in C or idle on the queue); where ``prctl`` is missing a watchdog thread
polls the parent's pid. The kernel sends the signal when the parent *thread* that forked exits: the
workers are forked by ``submit``, from the thread that iterates :meth:`TimedPool.run`, which
outlives the pool. Workers ignore SIGINT and SIGTERM: Ctrl-C reaches the terminal's whole process
group, and the parent alone decides (it kills the workers when it stops early).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lake import crashpoints

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Reason codes of files a worker could not finish (stage ``process``).
TIMEOUT_REASON = "timeout"
WORKER_DIED_REASON = "worker_died"

#: Input bytes held for files in flight before the pool waits for results.
MAX_INFLIGHT_BYTES = 1024**3
#: Inputs finished behind an older one still running, as a multiple of those submitted at once.
WAITING = 8
#: Inputs read ahead and not yet finished (submitted, or waiting to be), as a multiple of those submitted
#: (with 2 workers or more).
AHEAD = 8


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


#: ``prctl`` option: the signal this process gets when its parent dies (``linux/prctl.h``).
PR_SET_PDEATHSIG = 1
#: Seconds between two looks at the parent where ``prctl`` is missing.
WATCHDOG_POLL = 0.5


def _die_with_parent(parent: int) -> None:
    """End this worker when process ``parent`` ends (SIGKILL from the kernel, or a watchdog)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        armed = False
    if os.getppid() != parent:  # the parent died before prctl: nobody will send the signal
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(WATCHDOG_POLL)
            os._exit(1)

        threading.Thread(target=watch, name="lake-parent-watchdog", daemon=True).start()


def _limited_init(
    parent: int,
    memory_bytes: int | None,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> None:
    # What the parent left for its garbage collector (cycles holding C resources: Tesseract
    # instances, fonts, numba objects) is not this process's to free: collecting a parent's
    # cycle in a forked worker crashed it. Inherited objects move to the permanent generation.
    gc.freeze()
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    crashpoints.worker_of(parent)
    if memory_bytes:
        # A forked worker inherits the parent's address space (GBs of reserved, untouched
        # virtual memory with polars, duckdb and deltalake loaded): the budget comes on top.
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _address_space() + memory_bytes
        limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    if initializer is not None:
        initializer(*initargs)


Payload = bytes | tuple[bytes, ...] | list[bytes]


def _bytes(data: Payload) -> int:
    return len(data) if isinstance(data, bytes | bytearray) else sum(len(d) for d in data)


def _unfinished(window: Iterable[_Slot[Any]]) -> int:
    """How many inputs of ``window`` a worker has still to finish (submitted or waiting)."""
    return sum(not _finished(s.future) for s in window)


def _finished(future: Future[Any] | None) -> bool:
    """The function returned or raised in a worker (a dead worker's files are not finished)."""
    if future is None or not future.done() or future.cancelled():
        return False
    return not isinstance(future.exception(), BrokenProcessPool)


@dataclass
class _Slot(Generic[T]):
    tag: T
    data: Payload
    future: Future[Any] | None = None
    #: in flight when a worker died: runs alone before anything after it is submitted
    suspect: bool = False
    #: when it became the oldest input waited for (its time limit counts from then)
    oldest_since: float | None = None
    #: what it costs a worker, relative to the others (the costliest read ahead is submitted first)
    weight: float = 0.0


class TimedPool:
    """``run(items)`` yields ``(tag, result | WorkerFailure)`` in input order.

    ``timeout`` is seconds per input once it is the oldest in flight (``None``: no limit).
    """

    def __init__(
        self,
        func: Callable[[Any], R],
        workers: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        timeout: float | None = None,
        memory_bytes: int | None = None,
        weigh: Callable[[Any], float] | None = None,
    ) -> None:
        self.func = func
        self.weigh = weigh  # an input's cost from its tag (None: all alike)
        self.workers = max(1, workers)
        self._limit = self.workers  # inputs submitted at once (set per kind of input by run)
        # one worker gains nothing from reading ahead: the order it runs inputs in is its only choice
        self._ahead = AHEAD if self.workers > 1 else 1
        self.initializer = initializer
        self.initargs = initargs
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.restarts = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # fork, named (Python 3.14 defaults to forkserver): a worker's parent is this process, and the
        # memory budget counts on top of the address space a forked worker inherits.
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_limited_init,
            initargs=(os.getpid(), self.memory_bytes, self.initializer, self.initargs),
        )

    def worker_pids(self) -> list[int]:
        """The pids of the current workers."""
        return list(getattr(self._pool, "_processes", None) or {})

    def _kill_workers(self) -> None:
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _restart(self, window: deque[_Slot[T]]) -> None:
        """Kill our workers (by pid), start a fresh pool and resubmit what was in flight."""
        self.restarts += 1
        self._kill_workers()
        self._pool = self._new_pool()
        for slot in window:
            if not _finished(slot.future):  # a result already in hand is kept
                slot.future, slot.oldest_since = None, None
        self._dispatch(window)

    def _dispatch(self, window: deque[_Slot[T]]) -> None:
        """Submit what waits: the first suspect not yet done alone while suspects remain (a file
        older than it may hold its result already: nothing after the suspect is submitted beside
        it); else the oldest input, then the costliest of the others (``weigh``), as long as fewer
        than ``self._limit`` run: a long input read late still starts early."""
        try:
            suspect = next((s for s in window if s.suspect and not _finished(s.future)), None)
            if suspect is not None:
                if suspect.future is None:
                    suspect.future = self._pool.submit(self.func, suspect.data)
                return
            if window and window[0].future is None:  # the input waited for comes first, always
                window[0].future = self._pool.submit(self.func, window[0].data)
            waiting = [s for s in window if s.future is None]
            running = sum(s.future is not None and not s.future.done() for s in window)
            for slot in sorted(waiting, key=lambda s: -s.weight)[: max(0, self._limit - running)]:
                slot.future = self._pool.submit(self.func, slot.data)
        except BrokenProcessPool:
            return  # a worker died: waiting for the oldest input finds out (_next), and restarts

    def run(self, items: Iterable[tuple[T, Payload]]) -> Generator[tuple[T, R | WorkerFailure], None, None]:
        """Close the iterator (``contextlib.closing``) to stop early: the workers are killed then,
        not waited for (a file may take minutes)."""
        window: deque[_Slot[T]] = deque()
        finished = False
        try:
            for tag, data in items:
                window.append(_Slot(tag, data, weight=self.weigh(tag) if self.weigh else 0.0))
                # Busy workers and bounded memory: at most 4 files or 2 units of work per worker
                # submitted (a unit holds up to 64 files: two keep a worker busy), as many again read
                # ahead (the costliest of them submitted first), at most WAITING times as many
                # finished behind an older one still running (results come in input order: one long
                # unit must not idle the other workers), and no more than MAX_INFLIGHT_BYTES of input
                # held in this process (beyond the one input that exceeds it alone). A pull reads no
                # further ahead than this from its PACS spool.
                self._limit = self.workers * (4 if isinstance(data, bytes | bytearray) else 2)
                self._dispatch(window)
                while True:
                    while window and _finished(window[0].future):
                        yield self._next(window)
                    held = len(window) > 1 and sum(_bytes(s.data) for s in window) > MAX_INFLIGHT_BYTES
                    full = held or len(window) > self._limit * WAITING
                    if not (full or _unfinished(window) > self._limit * self._ahead):
                        break
                    if full or not self._await_any(window):
                        yield self._next(window)
            while window:  # the input has ended: the rest, still fed to every worker
                while window and _finished(window[0].future):
                    yield self._next(window)
                if window and not self._await_any(window):
                    yield self._next(window)
            finished = True
        finally:
            if finished:
                self._pool.shutdown(wait=True, cancel_futures=True)
            else:  # interrupted, closed early or failed: nothing in flight is wanted any more
                self._kill_workers()

    def _await_any(self, window: deque[_Slot[T]]) -> bool:
        """Wait until an input after the oldest finishes, then submit what may run; False when the
        oldest must be waited for itself (it finished or failed, a worker died, nothing else runs,
        or its time limit ran out: :meth:`_next`)."""
        self._dispatch(window)
        head = window[0]
        running = [s.future for s in window if s.future is not None and not s.future.done()]
        if head.future is None or head.future.done() or len(running) < 2:
            return False
        left = self._time_left(head)
        if left is not None and left <= 0:
            return False
        done, _pending = wait(running, timeout=left, return_when=FIRST_COMPLETED)
        if not done or any(f is head.future or not _finished(f) for f in done):
            return False
        self._dispatch(window)
        return True

    def _time_left(self, head: _Slot[T]) -> float | None:
        """Seconds the oldest input may still take (its limit counts from when it was waited for
        and running: a costlier input submitted before it may hold its worker); None: no limit."""
        if self.timeout is None:
            return None
        if head.oldest_since is None:
            if head.future is not None and not (head.future.running() or head.future.done()):
                return self.timeout  # still queued behind another: its clock has not started
            head.oldest_since = time.monotonic()
        return self.timeout - (time.monotonic() - head.oldest_since)

    def _next(self, window: deque[_Slot[T]]) -> tuple[T, R | WorkerFailure]:
        while True:
            head = window[0]
            self._dispatch(window)
            try:
                if head.future is None:  # the pool broke (a worker died) before it was submitted
                    raise BrokenProcessPool("a worker died before this input was submitted")
                left = self._time_left(head)
                result: R = head.future.result(timeout=None if left is None else max(left, 0.0))
            except FutureTimeout:
                window.popleft()
                logger.warning("a file exceeded the %.0f s time limit; restarting the workers", self.timeout or 0)
                self._restart(window)
                return head.tag, WorkerFailure(TIMEOUT_REASON)
            except BrokenProcessPool:
                if head.suspect:  # it ran alone (see _dispatch) and killed its worker: the culprit
                    window.popleft()
                    self._restart(window)
                    return head.tag, WorkerFailure(WORKER_DIED_REASON)
                # Any file in flight may have killed the worker: each runs alone, oldest first.
                for slot in window:
                    slot.suspect = slot.suspect or (slot.future is not None and not _finished(slot.future))
                self._restart(window)
                continue
            except Exception as exc:  # the function itself raised: one file's failure, not the pool's
                window.popleft()
                return head.tag, WorkerFailure(f"worker_failed:{type(exc).__name__}")
            window.popleft()
            return head.tag, result
