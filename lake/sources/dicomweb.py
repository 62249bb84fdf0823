"""``dicomweb://HOST:PORT/PATH`` (and ``dicomweb+https://``): a PACS pull over QIDO-RS and WADO-RS.

Through the ``dicomweb-client`` package. The pull searches studies (QIDO-RS, with the filters of
:class:`~lake.sources.filters.PullOptions`), and for each study not pulled before, or changed
since (another keyed fingerprint of what QIDO-RS says about it: a corrected PatientID, a new
series), lists its series with their instance counts and retrieves each series (WADO-RS, in the
transfer syntax the PACS stores, so nothing is transcoded). A study is **complete** when the
instances that arrived reach the counts QIDO-RS reported (``NumberOfSeriesRelatedInstances`` per
series, ``NumberOfStudyRelatedInstances``); a series short of its count or failing is retried with
back-off, then the study is reported ``incomplete`` (with its counts) or ``failed`` and left for
the next run. A complete study is remembered in the vault (:mod:`lake.sources.pull_state`) only
once all its instances are committed to the lake, so a killed pull resumes where it stopped.

UIDs go only into item labels (the vault's run log); the library's own logs, which quote them,
are dropped (see :class:`_NoUids`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import product
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lake.errors import ConfigError, SourceError
from lake.sources.auth import Credentials, load_credentials
from lake.sources.base import SourceContext, SourceItem
from lake.sources.filters import PullOptions
from lake.sources.polite import Stopped, Throttle, backoff_delays, with_retries
from lake.sources.pull_state import PullState

NUMBER_OF_STUDY_SERIES = "00201206"
NUMBER_OF_STUDY_INSTANCES = "00201208"
NUMBER_OF_SERIES_INSTANCES = "00201209"
STUDY_UID, SERIES_UID = "0020000D", "0020000E"
#: QIDO-RS attributes left out of a study's fingerprint: they say where, not what.
_NOT_CONTENT = {"00081190", "00080056", "00080005"}
#: Instances a series' retrieve may hold in memory ahead of the ingest (per request in flight).
QUEUE_DEPTH = 16
#: Any transfer syntax: the PACS sends what it stores (Orthanc 1.10 cannot transcode JPEG 2000).
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)

logger = logging.getLogger(__name__)


class _NoUids(logging.Filter):
    """dicomweb-client and urllib3 log request URLs, which hold UIDs: below WARNING, not a line of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and "/studies" not in str(record.msg)


for _name in ("dicomweb_client", "dicomweb_client.web", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_NoUids())


def http_url(spec: str) -> str:
    """``dicomweb://h:p/path`` -> ``http://h:p/path``; ``dicomweb+https://`` -> ``https://``.
    Raises :class:`SourceError` for a URL without a host or holding credentials or a query (its
    message names the scheme and host only: a path or query could hold identifiers)."""
    parts = urlsplit(spec)
    scheme = {"dicomweb": "http", "dicomweb+http": "http", "dicomweb+https": "https"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise SourceError(
            f"a {parts.scheme}:// source: expected dicomweb://HOST:PORT/PATH or dicomweb+https://HOST:PORT/PATH"
        )
    if parts.username or parts.password:
        raise SourceError(
            "credentials in a source URL are refused (they would show in process lists and shell history): "
            "use --auth-file or LAKE_DICOMWEB_TOKEN / LAKE_DICOMWEB_USER and LAKE_DICOMWEB_PASSWORD"
        )
    if parts.query or parts.fragment:
        raise SourceError(
            f"the source {parts.scheme}://{parts.hostname}: no query in the source URL; "
            "give the filters as options (--study-dates, --modality, --accessions, --patient-ids)"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise SourceError(
            f"the source {parts.scheme}://{parts.hostname}: the port is not a number from 1 to 65535"
        ) from None
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _retriable(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status in (408, 429)
    return isinstance(exc, requests.RequestException | OSError | _Short)


class _Short(Exception):
    """A series retrieve ended before its count (retried like an error)."""


def _value(attrs: dict[str, Any], tag: str) -> Any:
    values = attrs.get(tag, {}).get("Value") or [None]
    return values[0]


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
    out: queue.Queue[tuple[str, bytes] | BaseException | None] = field(default_factory=lambda: queue.Queue(QUEUE_DEPTH))


class DicomWebSource:
    """A DICOMweb PACS as an ingest source (see the module). ``report()`` counts studies found,
    pulled, complete, incomplete, skipped (complete before and unchanged), failed and deferred
    (outside ``--window``), and instances expected and received."""

    def __init__(self, spec: str, context: SourceContext) -> None:
        if context.key is None or context.vault is None:
            raise ConfigError("a DICOMweb source needs the lake's key and vault (open it through lake.ingest)")
        self.url = http_url(spec)
        self.label = self.url
        self.options = context.pull or PullOptions()
        self.context = context
        self.key = context.key
        self.credentials: Credentials = load_credentials(self.options.auth_file)
        self.state = PullState.for_source(context.vault, context.key, f"{context.lake_id} {self.url}")
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()
        self.throttle = Throttle(self.options.max_requests, self.options.rate, self.stop)
        self.delays = backoff_delays(self.options.backoff, self.options.max_backoff, self.options.retries)
        self.incomplete: list[tuple[str, int, int]] = []
        self.on_progress: Callable[[PullProgress], None] | None = context.on_progress
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @staticmethod
    def check(spec: str) -> None:
        """Before the lake is touched: the URL, the package and the credentials."""
        http_url(spec)
        try:
            import dicomweb_client  # noqa: F401
        except ImportError:
            raise SourceError(
                "DICOMweb sources need the dicomweb-client package: pip install 'dicomweb-client>=0.59'"
            ) from None

    # -- the client -----------------------------------------------------------------------------
    def _client(self) -> Any:
        import requests
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        if self.credentials.token:
            session.headers["Authorization"] = f"Bearer {self.credentials.token}"
        elif self.credentials.user is not None:
            session.auth = (self.credentials.user, self.credentials.password or "")
        client = DICOMwebClient(self.url, session=session, timeout=self.options.timeout)
        client.set_http_retry_params(retry=False)  # ours: back-off counted by the throttle
        return client

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        def once() -> Any:
            with self.throttle.request():
                return call()

        try:
            return with_retries(once, _retriable, self.delays, self.stop)
        except Stopped:
            raise
        except Exception as exc:
            raise SourceError(f"DICOMweb {what} failed after {len(self.delays) + 1} attempts: {_why(exc)}") from None

    # -- search ---------------------------------------------------------------------------------
    def _queries(self) -> list[dict[str, str]]:
        o = self.options
        base = {"StudyDate": o.study_dates} if o.study_dates else {}
        ids: list[tuple[str, str] | None] = [("AccessionNumber", v) for v in o.accession_numbers]
        ids += [("PatientID", v) for v in o.patient_ids]
        queries = []
        for modality, ident in product(o.modalities or (None,), ids or [None]):
            q = dict(base)
            if modality:
                q["ModalitiesInStudy"] = modality
            if ident:
                q[ident[0]] = ident[1]
            queries.append(q)
        return queries

    def _search(self, client: Any) -> list[dict[str, Any]]:
        """Every matching study once (QIDO-RS pages of ``page_size``), in StudyInstanceUID order."""
        studies: dict[str, dict[str, Any]] = {}
        fields = [NUMBER_OF_STUDY_SERIES, NUMBER_OF_STUDY_INSTANCES]
        size = self.options.page_size
        for query in self._queries():
            offset = 0
            while True:

                def search(q: dict[str, str] = query, at: int = offset) -> Any:
                    return client.search_for_studies(search_filters=q, fields=fields, limit=size, offset=at)

                page = self._call("study search (QIDO-RS)", search)
                for attrs in page:
                    uid = _value(attrs, STUDY_UID)
                    if uid:
                        studies.setdefault(str(uid), attrs)
                if len(page) < size:
                    break
                offset += len(page)
        return [studies[uid] for uid in sorted(studies)]

    def _study(self, attrs: dict[str, Any]) -> _Study:
        uid = str(_value(attrs, STUDY_UID))
        content = {k: v for k, v in attrs.items() if k not in _NOT_CONTENT}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        ref = self.key.digest("dicomweb-study", self.url, uid)[:16].hex()
        fingerprint = self.key.digest("dicomweb-study-version", canonical)[:16].hex()
        expected = _value(attrs, NUMBER_OF_STUDY_INSTANCES)
        return _Study(uid, ref, fingerprint, int(expected) if expected is not None else -1)

    # -- retrieve -------------------------------------------------------------------------------
    def _series_of(self, client: Any, study: _Study) -> list[_Series]:
        found = self._call(
            "series search (QIDO-RS)",
            lambda: client.search_for_series(study.uid, fields=[NUMBER_OF_SERIES_INSTANCES]),
        )
        series = []
        for attrs in sorted(found, key=lambda a: str(_value(a, SERIES_UID))):
            n = _value(attrs, NUMBER_OF_SERIES_INSTANCES)
            series.append(_Series(study, str(_value(attrs, SERIES_UID)), int(n) if n is not None else None))
        return series

    def _put(self, series: _Series, thing: tuple[str, bytes] | BaseException | None) -> None:
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
        from pydicom import dcmwrite

        seen: set[str] = set()

        def attempt() -> None:
            with self.throttle.request():
                for ds in client.iter_series(series.study.uid, series.uid, media_types=ANY_TRANSFER_SYNTAX):
                    sop = str(ds.get("SOPInstanceUID", ""))
                    if sop in seen:
                        continue
                    seen.add(sop)
                    buffer = io.BytesIO()
                    dcmwrite(buffer, ds, enforce_file_format=True)
                    self._put(series, (sop, buffer.getvalue()))
            if series.expected is not None and len(seen) < series.expected:
                raise _Short

        try:
            with_retries(attempt, _retriable, self.delays, self.stop)
        except Stopped:
            return
        except _Short:
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
        found = [self._study(a) for a in self._search(client)]
        self.counts["studies_found"] += len(found)
        todo = []
        for study in found:
            if self.state.is_current(study.ref, study.fingerprint):
                self.counts["studies_skipped"] += 1
            else:
                todo.append(study)
        self._pool = ThreadPoolExecutor(self.options.max_requests, thread_name_prefix="lake-dicomweb")
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


def _durable(source: DicomWebSource, study: _Study) -> Callable[[], None]:
    def committed() -> None:
        with source._lock:
            study.durable += 1
            source._maybe_record(study)

    return committed


def _why(exc: BaseException) -> str:
    """A PHI-free reason: the HTTP status or the kind of error, never the URL (it holds UIDs)."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, _Short):
        return "fewer instances than reported"
    return type(exc).__name__
