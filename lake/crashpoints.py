"""Named points on the write paths where a test can stop the process, so crash tests need no sleeps.

``crash_point("ingest.after_pixels")`` does nothing unless the environment asked for it when this
module was imported (workers forked later inherit the setting):

- ``LAKE_CRASH_AT=name[:n]``: the process kills itself with ``SIGKILL`` the ``n``-th time (default 1)
  it reaches ``name``: what ``kill -9``, the OOM killer or a power cut do at that moment.
- ``LAKE_PAUSE_AT=name[:n]`` with ``LAKE_PAUSE_FILE=path``: the ``n``-th time, the process appends
  its pid as a line to ``path`` and waits until ``path`` is removed. A test waits for the file, then
  kills the process (or signals it) at a known moment, and removes the file to let it go on.
- ``LAKE_CRASH_TRACE=path``: every point reached is appended to ``path`` (``name pid`` lines), to
  list the points a run goes through.

Counts are per process; a worker counts from zero (:func:`reset_counts` in its initializer). A crash
point reached in an ingest's worker process (workers write pixel arrays) kills the ingest first,
then the worker: the moment is the run's, as if ``kill -9`` hit the ingest while that worker was
there (:func:`worker_of`). With
nothing set a point costs one global lookup (about 30 ns); the write paths reach one per batch or
per file, never per row.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Mapping

from lake.errors import ConfigError

CRASH_ENV = "LAKE_CRASH_AT"
PAUSE_ENV = "LAKE_PAUSE_AT"
PAUSE_FILE_ENV = "LAKE_PAUSE_FILE"
TRACE_ENV = "LAKE_CRASH_TRACE"

#: Seconds between two looks at the pause file while paused (the test is waiting, not timing).
PAUSE_POLL = 0.005

_armed = False
_crash: tuple[str, int] | None = None
_pause: tuple[str, int] | None = None
_pause_file = ""
_trace = ""
_counts: Counter[str] = Counter()
_leader: int | None = None  # in a worker process: the ingest's pid (see worker_of)


def _parse(spec: str, variable: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    if not name or (nth and not nth.isdigit()) or nth == "0":
        raise ConfigError(f"{variable}={spec!r}: expected NAME or NAME:N with N a positive count")
    return name, int(nth or 1)


def configure(environ: Mapping[str, str] = os.environ) -> None:
    """Read the settings from ``environ`` (done at import; tests running in-process call it again)."""
    global _armed, _crash, _pause, _pause_file, _trace
    _crash = _parse(environ.get(CRASH_ENV, ""), CRASH_ENV)
    _pause = _parse(environ.get(PAUSE_ENV, ""), PAUSE_ENV)
    _pause_file = environ.get(PAUSE_FILE_ENV, "")
    if _pause is not None and not _pause_file:
        raise ConfigError(f"{PAUSE_ENV} needs {PAUSE_FILE_ENV}: the file a paused process writes and waits on")
    _trace = environ.get(TRACE_ENV, "")
    _armed = bool(_crash or _pause or _trace)
    reset_counts()


def worker_of(leader: int) -> None:
    """This process is a worker of process ``leader`` (the ingest): count from zero, and a crash
    here kills ``leader`` too."""
    global _leader
    _leader = leader
    reset_counts()


def reset_counts() -> None:
    """Count every point from zero again (a forked worker must not inherit its parent's counts)."""
    _counts.clear()


def crash_point(name: str) -> None:
    """A named moment of a write path: kill, pause or trace here when the environment asks."""
    if _armed:
        _reached(name)


def _reached(name: str) -> None:
    _counts[name] += 1
    n = _counts[name]
    if _trace:
        with open(_trace, "a", encoding="ascii") as f:
            f.write(f"{name} {os.getpid()}\n")
    if _pause == (name, n):
        with open(_pause_file, "a", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        while os.path.exists(_pause_file):
            time.sleep(PAUSE_POLL)  # a signal's handler runs here, as it would at this point of the run
    if _crash == (name, n):
        if _leader is not None and _leader == os.getppid():
            os.kill(_leader, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


configure()
