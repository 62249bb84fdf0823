"""Ctrl-C (SIGINT) and SIGTERM as one exception, and the sections of a write they must not cut.

A long write (``ingest``, ``optimize``) runs inside :func:`signals_raise`: both signals then raise
:class:`Interrupted` in the main thread, so the operation can stop cleanly, record itself as
interrupted and return an exit status (a scheduler's SIGTERM otherwise kills the process before it
writes its audit row). Inside :func:`deferred` a signal is held until the block ends: a batch's
commits are made all together, never half of them.

Handlers are installed only in the main thread and only over Python's defaults, so an
application's own handlers (or a SIGINT ignored by ``nohup``) are left alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A ``KeyboardInterrupt``, so ``except Exception`` never swallows it."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by this signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def signal_of(exc: BaseException) -> int:
    """The signal behind an interrupt (a plain ``KeyboardInterrupt`` is SIGINT)."""
    return exc.signum if isinstance(exc, Interrupted) else signal.SIGINT


_defer_depth = 0
_pending: int | None = None


def _handler(signum: int, _frame: FrameType | None) -> None:
    global _pending
    if _defer_depth:
        _pending = signum
        return
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` within the block (main thread, default handlers only)."""
    previous = {}
    if _in_main_thread():
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current in (signal.default_int_handler, signal.SIG_DFL):
                previous[signum] = current
                signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then raise :class:`Interrupted` (if the block
    raised something else, that error goes on and the signal is dropped)."""
    global _defer_depth, _pending
    if not _in_main_thread():  # signal handlers only ever run in the main thread
        yield
        return
    _defer_depth += 1
    try:
        yield
    except BaseException:
        _defer_depth -= 1
        if not _defer_depth:
            _pending = None
        raise
    _defer_depth -= 1
    if not _defer_depth and _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)
