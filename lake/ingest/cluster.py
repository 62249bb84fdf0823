"""Ingest on an existing Dask distributed cluster (``lake ingest ... --scheduler tcp://HOST:PORT``).

The same units of work as the local pool (:mod:`lake.ingest.work`): each Dask worker parses,
de-identifies, encodes, verifies and writes the pixel arrays of a unit into the lake's folder (which
every worker must see at the same path: a shared filesystem), and this process commits the rows, in
input order, so the lake equals a single-process ingest of the same files.

The lake's key reaches the workers in a :class:`LakeWorkerPlugin` (registered with the client, it
builds each worker's :class:`WorkerState` once), never as a task argument that the scheduler would
log or show on its dashboard; a task carries its files' bytes only. At most ``in_flight`` units are
submitted and not yet done (twice the cluster's threads by default), and up to ``WAITING`` times as
many done and waiting behind an older unit; units are read ahead of those submitted (``AHEAD``
times as many, within the local pool's bytes bound, held here, not by the scheduler) and the
costliest is submitted first after the oldest. So memory here and on the cluster stays bounded
whatever the input, and one long unit does not idle the cluster. A worker
that dies takes its tasks with it and the scheduler runs them again elsewhere: arrays are named by
their content (:func:`lake.pixels.store.frames_array_key`), so a unit run twice writes the same
arrays. A unit whose task killed every worker that tried it (``KilledWorker``) runs again one file
per task, so that only the culprit is rejected (``worker_died``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed import Client, KilledWorker, WorkerPlugin, get_worker, wait

from lake.deid.ocr_read import forget_readings
from lake.errors import ClusterError, ConfigError
from lake.ingest.pool import AHEAD, MAX_INFLIGHT_BYTES, WAITING, WORKER_DIED_REASON
from lake.ingest.work import Outcome, StoreFailure, WorkerSpec, WorkerState
from lake.ingest.worker import Rejection
from lake.keys import LakeKey

if TYPE_CHECKING:
    from distributed import Future, Worker

logger = logging.getLogger(__name__)

PLUGIN_NAME = "lake-ingest"
#: Seconds to wait for the scheduler when connecting.
CONNECT_TIMEOUT = 30

Result = list[Outcome] | StoreFailure


class LakeWorkerPlugin(WorkerPlugin):
    """Builds a :class:`WorkerState` on each Dask worker (the key travels in the plugin only)."""

    name = PLUGIN_NAME

    def __init__(self, spec: WorkerSpec, secret: bytes) -> None:
        self.spec = spec
        self._secret = secret
        self.state: WorkerState | None = None

    def __repr__(self) -> str:  # the scheduler may log plugins: never the secret
        return f"LakeWorkerPlugin(run={self.spec.run_id})"

    def setup(self, worker: Worker) -> None:
        self.state = WorkerState(self.spec, LakeKey(self._secret))

    def teardown(self, worker: Worker) -> None:
        """The run is over (the plugin is unregistered): OCR's readings of its pixels go with it."""
        self.state = None
        forget_readings()


def _run_on_worker(files: Sequence[bytes]) -> Result:
    """The task: one unit of work, with this worker's state (built by the plugin)."""
    plugin = get_worker().plugins[PLUGIN_NAME]
    assert isinstance(plugin, LakeWorkerPlugin) and plugin.state is not None
    return plugin.state.run(files)


def check_address(address: str) -> None:
    """:class:`ConfigError` unless ``address`` looks like a Dask scheduler's (``tcp://HOST:PORT``)."""
    host, _, port = address.partition("://")[2].rpartition(":")
    if not address.startswith(("tcp://", "tls://")) or not host or not port.isdigit():
        raise ConfigError(f"--scheduler {address!r} is not a Dask scheduler address: give tcp://HOST:PORT")


def connect(address: str) -> Client:
    """A client of the scheduler at ``address``; :class:`ClusterError` if none answers."""
    check_address(address)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"no Dask scheduler answered at {address}: start one (`dask scheduler`)") from exc


@dataclass
class _Unit:
    tag: Any
    files: Sequence[bytes]
    weight: float  # what it costs a worker (the costliest read ahead is submitted first)
    future: Future | None = None  # None: read ahead, not submitted yet

    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done()


def run_on_cluster(
    client: Client,
    spec: WorkerSpec,
    key: LakeKey,
    units: Iterator[tuple[Any, Sequence[bytes]]],
    handle: Callable[[Any, Result], None],
    in_flight: int | None = None,
    weigh: Callable[[Any], float] | None = None,
) -> None:
    """Process ``(tag, files)`` units on the cluster; ``handle(tag, result)`` is called in input order.

    Units are read ahead of those submitted (up to ``AHEAD`` times as many, within the local pool's
    bytes bound, held in this process: the scheduler holds only what is submitted), and the oldest
    is submitted first, then the costliest of the others (``weigh(tag)``), so that a long unit read
    late still starts early. Raises :class:`ClusterError` when the cluster itself fails."""
    client.register_plugin(LakeWorkerPlugin(spec, key.secret), name=PLUGIN_NAME)
    limit = in_flight or max(2, 2 * sum(client.nthreads().values()))
    window: deque[_Unit] = deque()  # read, in input order
    submitted = 0

    def dispatch() -> None:
        nonlocal submitted
        waiting = [u for u in window if u.future is None]
        if not waiting:
            return
        head = [window[0]] if window[0].future is None else []  # the unit handled next goes first, always
        rest = sorted((u for u in waiting if u is not window[0]), key=lambda u: -u.weight)  # stable: ties in order
        free = limit - sum(u.running for u in window)
        for unit in (head + rest)[: max(free, len(head))]:
            unit.future = client.submit(_run_on_worker, unit.files, key=f"lake-{spec.run_id}-{submitted}", pure=False)
            submitted += 1

    def step(must: bool) -> None:
        """Handle what is done at the head; with ``must``, make progress: wait for a unit (or
        handle the head, once units done behind it fill the window)."""
        dispatch()
        while window and window[0].future is not None and window[0].future.done():
            _handle_next(client, spec, window, handle)
            dispatch()
        if not must or not window:
            return
        if len(window) >= limit * WAITING:
            _handle_next(client, spec, window, handle)  # blocks on the head: the window is full
            return
        running = [u.future for u in window if u.running]
        if running:
            with client.as_current():  # wait asks the current client (this one is not the default)
                wait(running, return_when="FIRST_COMPLETED")

    try:
        for tag, files in units:
            window.append(_Unit(tag, files, weigh(tag) if weigh else 0.0))
            while True:
                step(must=False)
                unfinished = sum(u.future is None or u.running for u in window)
                held = len(window) > 1 and sum(len(d) for u in window for d in u.files) > MAX_INFLIGHT_BYTES
                if not (held or len(window) >= limit * WAITING or unfinished > limit * AHEAD):
                    break
                step(must=True)
        while window:
            step(must=True)
    finally:
        for unit in window:
            if unit.future is not None:
                unit.future.cancel()
        try:
            client.unregister_worker_plugin(PLUGIN_NAME)
        except Exception:  # the cluster is going away: its workers forget the plugin with it
            logger.info("could not unregister the ingest's worker plugin")


def _handle_next(
    client: Client,
    spec: WorkerSpec,
    window: deque[_Unit],
    handle: Callable[[Any, Result], None],
) -> None:
    unit = window.popleft()
    assert unit.future is not None
    handle(unit.tag, _result(client, spec, unit.files, unit.future))


def _result(client: Client, spec: WorkerSpec, files: Sequence[bytes], future: Future, alone: bool = False) -> Result:
    try:
        return future.result()
    except KilledWorker:
        if alone or len(files) == 1:
            return [Rejection("process", WORKER_DIED_REASON)]
        return _one_by_one(client, spec, files)
    except (OSError, TimeoutError, CancelledError) as exc:
        raise ClusterError(f"the Dask cluster failed ({type(exc).__name__}); run the ingest again") from None
    except Exception as exc:  # the task raised: the unit's failure, not the cluster's
        return [Rejection("process", f"worker_failed:{type(exc).__name__}") for _ in files]
    finally:
        future.release()


def _one_by_one(client: Client, spec: WorkerSpec, files: Sequence[bytes]) -> Result:
    """A unit whose task killed its workers, one file per task (the culprit alone is rejected)."""
    futures = [
        client.submit(_run_on_worker, (data,), key=f"lake-{spec.run_id}-alone-{n}-{id(files)}", pure=False)
        for n, data in enumerate(files)
    ]
    outcomes: list[Outcome] = []
    for data, future in zip(files, futures, strict=True):
        result = _result(client, spec, (data,), future, alone=True)
        if isinstance(result, StoreFailure):
            return result
        outcomes += result
    return outcomes
