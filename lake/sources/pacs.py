"""What every PACS pull shares (DICOMweb, DIMSE): plan, completeness, cursor, politeness, progress.

A pull searches studies (with the filters of :class:`~lake.sources.filters.PullOptions`), skips
those the vault's cursor (:mod:`lake.sources.pull_state`) holds with the same keyed fingerprint of
what the PACS said about them, lists the series of the others with their instance counts and
retrieves each series, ``max_requests`` at once. A study is **complete** when the instances that
arrived reach the reported counts; a series short of its count or failing is retried with back-off,
then the study is reported ``incomplete`` (with its counts) or ``failed`` and left for the next run.
A complete study is recorded in the cursor only once all its instances are committed to the lake,
so a killed pull resumes where it stopped.

A protocol subclasses :class:`PacsPull` and gives its client, the study and series searches, one
attempt at retrieving a series, and what of its errors is worth a retry.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import product
from pathlib import Path
from typing import Any

from lake.errors import ConfigError, SourceError
from lake.sources.base import SourceContext, SourceItem
from lake.sources.filters import PullOptions
from lake.sources.polite import Stopped, Throttle, backoff_delays, with_retries
from lake.sources.pull_state import PullState

#: Instances a series' retrieve may hold in memory ahead of the ingest (per request in flight).
QUEUE_DEPTH = 16

#: What a retrieve hands over: a SOP Instance UID and its bytes, or a spooled file read then removed.
Received = tuple[str, bytes | Path]


@dataclass
class PullProgress:
    """Where a pull is: studies done of planned, instances received, seconds since it began."""

    studies_done: int
    studies_planned: int
    instances: int
    seconds: float

    @property
    def studies_per_second(self) -> float:
        return self.studies_done / self.seconds if self.seconds else 0.0

    @property
    def instances_per_second(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0


@dataclass
class _Study:
    uid: str
    ref: str
    fingerprint: str
    expected: int
    yielded: int = 0
    durable: int = 0
    fetched: bool = False
    short: bool = False  # a series ended short of its count after every retry
    outcome: str = ""  # complete, incomplete, failed, once fetched
    received: set[str] = field(default_factory=set)


@dataclass
class _Series:
    study: _Study
    uid: str
    expected: int | None
    out: queue.Queue[Received | BaseException | None] = field(default_factory=lambda: queue.Queue(QUEUE_DEPTH))


class Short(Exception):
    """A series retrieve ended before its count (retried like an error)."""


def study_queries(options: PullOptions) -> list[dict[str, str]]:
    """The study searches of ``options`` by attribute keyword: one per modality and identifier (a PACS
    matches one value per attribute), each with the date range."""
    base = {"StudyDate": options.study_dates} if options.study_dates else {}
    ids: list[tuple[str, str] | None] = [("AccessionNumber", v) for v in options.accession_numbers]
    ids += [("PatientID", v) for v in options.patient_ids]
    queries = []
    for modality, ident in product(options.modalities or (None,), ids or [None]):
        q = dict(base)
        if modality:
            q["ModalitiesInStudy"] = modality
        if ident:
            q[ident[0]] = ident[1]
        queries.append(q)
    return queries


class PacsPull:
    """A PACS as an ingest source (see the module). ``report()`` counts studies found, pulled,
    complete, incomplete, skipped (complete before and unchanged), failed and deferred (outside
    ``--window``), and instances expected and received."""

    #: The protocol's name in messages and in the keyed references (``dicomweb``, ``dimse``).
    protocol = ""
    #: How messages name it.
    name = ""
    #: Instances a series may hold ahead of the ingest (0: no bound, for a retrieve that spools to disk).
    queue_depth = QUEUE_DEPTH

    def __init__(self, url: str, context: SourceContext) -> None:
        if context.key is None or context.vault is None:
            raise ConfigError(f"a {self.name} source needs the lake's key and vault (open it through lake.ingest)")
        self.url = url
        self.label = url
        self.options = context.pull or PullOptions()
        self.context = context
        self.key = context.key
        self.state = PullState.for_source(context.vault, context.key, f"{context.lake_id} {url}")
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()
        self.throttle = Throttle(self.options.max_requests, self.options.rate, self.stop)
        self.delays = backoff_delays(self.options.backoff, self.options.max_backoff, self.options.retries)
        self.incomplete: list[tuple[str, int, int]] = []
        self.on_progress: Callable[[PullProgress], None] | None = context.on_progress
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- what a protocol gives ------------------------------------------------------------------
    def _client(self) -> Any:
        """What the searches and retrieves talk through."""
        raise NotImplementedError

    def _studies(self, client: Any) -> list[_Study]:
        """Every matching study once, in StudyInstanceUID order (see :meth:`_new_study`)."""
        raise NotImplementedError

    def _series_of(self, client: Any, study: _Study) -> list[_Series]:
        """The series of ``study`` with their reported counts, in SeriesInstanceUID order."""
        raise NotImplementedError

    def _retrieve(self, client: Any, series: _Series, deliver: Callable[[str, bytes | Path], None]) -> None:
        """One attempt at ``series``: ``deliver(sop_uid, data)`` for each instance as it arrives."""
        raise NotImplementedError

    def _retriable(self, exc: BaseException) -> bool:
        """Whether a failed request is worth another attempt after a back-off."""
        return isinstance(exc, OSError | Short)

    def _why(self, exc: BaseException) -> str:
        """A PHI-free reason for a failure (never a UID or a value)."""
        return "fewer instances than reported" if isinstance(exc, Short) else type(exc).__name__

    # -- shared ---------------------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        attempts = 0

        def once() -> Any:
            nonlocal attempts
            attempts += 1
            with self.throttle.request():
                return call()

        try:
            return with_retries(once, self._retriable, self.delays, self.stop)
        except Stopped:
            raise
        except Exception as exc:
            times = f"{attempts} attempts" if attempts > 1 else "1 attempt (not worth a retry)"
            raise SourceError(f"{self.name} {what} failed after {times}: {self._why(exc)}") from None

    def _new_study(self, uid: str, content: dict[str, Any], expected: Any) -> _Study:
        """A study found by a search: its keyed reference and the keyed fingerprint of ``content``
        (what the PACS said about it: a corrected PatientID or a new series changes it)."""
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        ref = self.key.digest(f"{self.protocol}-study", self.url, uid)[:16].hex()
        fingerprint = self.key.digest(f"{self.protocol}-study-version", canonical)[:16].hex()
        return _Study(uid, ref, fingerprint, int(expected) if expected not in (None, "") else -1)

    def _new_series(self, study: _Study, uid: str, expected: Any) -> _Series:
        n = int(expected) if expected not in (None, "") else None
        return _Series(study, uid, n, queue.Queue(self.queue_depth))

    def _put(self, series: _Series, thing: Received | BaseException | None) -> None:
        while not self.stop.is_set():
            try:
                series.out.put(thing, timeout=0.1)
                return
            except queue.Full:
                continue
        raise Stopped

    def _stream(self, client: Any, series: _Series) -> None:
        """Retrieve one series into its queue (ends with None, or the error); already-received
        instances of a retried series are not sent again."""
        seen: set[str] = set()

        def deliver(sop: str, data: bytes | Path) -> None:
            if sop in seen:
                if isinstance(data, Path):
                    data.unlink(missing_ok=True)
                return
            seen.add(sop)
            self._put(series, (sop, data))

        def attempt() -> None:
            with self.throttle.request():
                self._retrieve(client, series, deliver)
            if series.expected is not None and len(seen) < series.expected:
                raise Short

        try:
            with_retries(attempt, self._retriable, self.delays, self.stop)
        except Stopped:
            return
        except Short:
            series.study.short = True  # the study is reported incomplete, with its counts
        except Exception as exc:
            with contextlib.suppress(Stopped):
                self._put(series, exc)
            return
        with contextlib.suppress(Stopped):
            self._put(series, None)

    def _plan(self, client: Any, studies: list[_Study]) -> Iterator[_Series | _Study]:
        """Series of each study in order, then the study itself (its end); failed series searches
        are reported by yielding the study with outcome ``failed``."""
        for study in studies:
            if self.options.window is not None and not self.options.window.open_at(datetime.now().time()):
                self.counts["studies_deferred"] += 1
                continue
            try:
                yield from self._series_of(client, study)
            except SourceError:
                study.outcome = "failed"
            yield study

    def items(self) -> Iterator[SourceItem]:
        client = self._client()
        t0 = time.monotonic()
        found = self._studies(client)
        self.counts["studies_found"] += len(found)
        todo = []
        for study in found:
            if self.state.is_current(study.ref, study.fingerprint):
                self.counts["studies_skipped"] += 1
            else:
                todo.append(study)
        self._pool = ThreadPoolExecutor(self.options.max_requests, thread_name_prefix=f"lake-{self.protocol}")
        ahead: list[tuple[_Series | _Study, Future[None] | None]] = []
        plan = self._plan(client, todo)
        done = instances = 0
        try:
            while True:
                while len([f for _s, f in ahead if f is not None]) < self.options.max_requests:
                    nxt = next(plan, None)
                    if nxt is None:
                        break
                    future = self._pool.submit(self._stream, client, nxt) if isinstance(nxt, _Series) else None
                    ahead.append((nxt, future))
                if not ahead:
                    break
                head, _future = ahead.pop(0)
                if isinstance(head, _Study):
                    self._fetched(head)
                    done += 1
                    if self.on_progress is not None:
                        self.on_progress(PullProgress(done, len(todo), instances, time.monotonic() - t0))
                    continue
                while True:
                    got = head.out.get()
                    if got is None:
                        break
                    if isinstance(got, BaseException):
                        head.study.outcome = "failed"
                        break
                    sop, data = got
                    if isinstance(data, Path):  # spooled: read into memory, never left behind
                        path, data = data, data.read_bytes()
                        path.unlink()
                    if sop in head.study.received:
                        continue
                    head.study.received.add(sop)
                    head.study.yielded += 1
                    instances += 1
                    label = f"{self.url} study {head.study.uid} series {head.uid} instance {sop}"
                    yield SourceItem(label, len(data), _constant(data), on_durable=_durable(self, head.study))
        finally:
            self.close()
        self.counts["instances_received"] += instances
        for ref, received, expected in self.incomplete:
            if self.context.on_message:
                self.context.on_message(f"study {ref} incomplete: {received} of {expected} instances")

    def _fetched(self, study: _Study) -> None:
        """Every series of ``study`` has been tried: decide its outcome."""
        self.counts["instances_expected"] += max(study.expected, 0)
        if study.outcome != "failed":
            short = study.short or len(study.received) < study.expected
            study.outcome = "incomplete" if short else "complete"
        if study.outcome == "incomplete":
            self.incomplete.append((study.ref, len(study.received), study.expected))
        if study.outcome != "failed" or study.received:
            self.counts["studies_pulled"] += 1
        self.counts[f"studies_{study.outcome}"] += 1
        with self._lock:
            study.fetched = True
            self._maybe_record(study)

    def _maybe_record(self, study: _Study) -> None:
        if study.fetched and study.outcome == "complete" and study.durable == study.yielded:
            self.state.record(study.ref, study.fingerprint, study.expected, len(study.received))

    def report(self) -> Counter[str]:
        return Counter(self.counts)

    def close(self) -> None:
        self.stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _durable(source: PacsPull, study: _Study) -> Callable[[], None]:
    def committed() -> None:
        with source._lock:
            study.durable += 1
            source._maybe_record(study)

    return committed
