"""Limits a PACS administrator asks for: requests in flight, a rate, back-off after errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The pull was closed while a request waited for its turn."""


class Throttle:
    """At most ``max_requests`` requests at once and ``rate`` per second (None: no rate limit).

    ``with throttle.request():`` waits for both; :meth:`close` wakes every waiter with :class:`Stopped`.
    """

    def __init__(self, max_requests: int, rate: float | None, stop: threading.Event) -> None:
        self._slots = threading.BoundedSemaphore(max_requests)
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()
        self.stop = stop
        self.requests = 0

    def _turn(self) -> None:
        while not self._slots.acquire(timeout=0.1):
            if self.stop.is_set():
                raise Stopped
        if self._interval:
            with self._lock:
                now = time.monotonic()
                at = max(now, self._next)
                self._next = at + self._interval
            if self.stop.wait(at - now):
                self._slots.release()
                raise Stopped
        with self._lock:
            self.requests += 1

    def request(self) -> _Slot:
        return _Slot(self)


class _Slot:
    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle

    def __enter__(self) -> None:
        self.throttle._turn()

    def __exit__(self, *exc: object) -> None:
        self.throttle._slots.release()


def backoff_delays(first: float, longest: float, retries: int) -> list[float]:
    """Seconds to wait before each retry: doubling from ``first``, at most ``longest``."""
    return [min(first * 2**i, longest) for i in range(retries)]


def with_retries(
    call: Callable[[], T],
    retriable: Callable[[BaseException], bool],
    delays: list[float],
    stop: threading.Event,
) -> T:
    """``call()``, again after each delay while it raises a retriable error; the last error is raised."""
    for delay in delays:
        try:
            return call()
        except Stopped:
            raise
        except Exception as exc:
            if not retriable(exc):
                raise
        if stop.wait(delay):
            raise Stopped
    return call()
