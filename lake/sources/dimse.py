"""``dimse://AET@HOST:PORT``: a PACS pull over DIMSE (C-FIND, then C-GET or C-MOVE), through pynetdicom.

The pull (:class:`lake.sources.pacs.PacsPull`: plan, completeness, cursor, politeness) finds
studies with a Study Root C-FIND at study level (the filters of
:class:`~lake.sources.filters.PullOptions`: date range, ModalitiesInStudy, accession numbers,
patient IDs), their series at series level (``NumberOfSeriesRelatedInstances``) and the SOP classes
of each series at instance level, and retrieves each series:

- by **C-GET** (the default), proposing a presentation context per SOP class and per transfer
  syntax (compressed ones included), so the PACS sends what it stores and transcodes nothing
  (Debian's Orthanc 1.10 cannot transcode its JPEG 2000 files for a C-GET that offers only
  uncompressed ones);
- or by **C-MOVE** to the lake's own short-lived storage SCP (``move_port``, ``move_aet``: the PACS
  must know that AE title at that address), for the PACS that only do C-MOVE. The SCP runs for the
  pull only and refuses (status 0x0124) any instance of a series it did not ask for.

One association per request, ``max_requests`` at once; a failure status, a refused or aborted
association is retried with back-off. Received instances are spooled into a private folder in the
vault (``vault/spool/``), read into memory when the ingest takes them and removed then; the folder
is removed when the pull ends (and, after a killed run, by the next pull).

pynetdicom's own logs quote UIDs and values: only its warnings without them are kept
(:class:`_NoValues`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lake.errors import SourceError
from lake.sources.base import SourceContext
from lake.sources.filters import AE_TITLE
from lake.sources.pacs import PacsPull, Short, _Series, _Study, study_queries

__all__ = ["DimseSource", "dimse_address"]

#: Attributes a study-level C-FIND asks for: what the fingerprint of a study is made of.
STUDY_KEYS = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)  # fmt: skip
#: Attributes of a C-FIND answer left out of a study's fingerprint: they say where, not what.
NOT_CONTENT = {"QueryRetrieveLevel", "RetrieveAETitle", "SpecificCharacterSet", "InstanceAvailability"}
#: Transfer syntaxes proposed for each SOP class of a C-GET (one context each: the PACS picks the
#: one it stores), and accepted by the C-MOVE storage SCP.
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
)  # fmt: skip
#: A C-GET association holds at most 128 presentation contexts (PS3.8 9.3.2.2): one is the query model.
MAX_CONTEXTS = 128
PENDING = (0xFF00, 0xFF01)
#: C-STORE status: Refused, not authorised (PS3.7 C.5.2), for an instance the pull did not ask for.
NOT_ASKED = 0x0124

logger = logging.getLogger(__name__)


class _NoValues(logging.Filter):
    """pynetdicom logs datasets, UIDs and tracebacks below WARNING and in errors: keep only plain warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return record.levelno >= logging.WARNING and record.exc_info is None and "UID" not in text and "(" not in text


def quiet_pynetdicom() -> None:
    """Put :class:`_NoValues` on pynetdicom's loggers (a parent's filter does not see its children's
    records). Called once pynetdicom is imported, before each association."""
    for name in ["pynetdicom", *logging.root.manager.loggerDict]:
        if name == "pynetdicom" or name.startswith("pynetdicom."):
            logger_ = logging.getLogger(name)
            if not any(isinstance(f, _NoValues) for f in logger_.filters):
                logger_.addFilter(_NoValues())


@dataclass(frozen=True)
class DimseAddress:
    """The called AE title, host and port of ``dimse://AET@HOST:PORT``."""

    aet: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"dimse://{self.aet}@{self.host}:{self.port}"


def dimse_address(spec: str) -> DimseAddress:
    """``dimse://AET@HOST:PORT`` -> its parts. Raises :class:`SourceError` naming the scheme and host only."""
    parts = urlsplit(spec)
    if parts.scheme.lower() != "dimse" or not parts.hostname or not parts.username:
        raise SourceError(
            "a dimse:// source: expected dimse://AET@HOST:PORT (the PACS's AE title, host and DICOM port)"
        )
    if parts.password is not None or parts.path.strip("/") or parts.query or parts.fragment:
        raise SourceError(
            f"the source dimse://{parts.hostname}: expected dimse://AET@HOST:PORT and nothing else; "
            "give the filters as options (--study-dates, --modality, --accessions, --patient-ids)"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port:
        raise SourceError(f"the source dimse://{parts.hostname}: give the DICOM port, a number from 1 to 65535")
    aet = unquote(parts.username)
    if not AE_TITLE.match(aet):
        raise SourceError(
            f"the source dimse://{parts.hostname}: the called AE title must be 1 to 16 characters, no backslash"
        )
    return DimseAddress(aet.strip(), parts.hostname, port)


class _Failure(Exception):
    """A DIMSE request that failed: ``status`` (None: no association or no answer) and whether to retry."""

    def __init__(self, what: str, status: int | None, retriable: bool) -> None:
        super().__init__(what)
        self.what, self.status, self.retriable = what, status, retriable


def _failure(request: str, status: int) -> _Failure:
    if status == 0xA801:
        return _Failure(f"{request}: the PACS does not know the move destination (status 0xA801)", status, False)
    if 0xA900 <= status <= 0xA9FF:
        return _Failure(f"{request}: the PACS cannot match the request (status 0x{status:04X})", status, False)
    if status == 0xB000:  # some sub-operations failed: the count check decides (a retry asks for the rest)
        return _Failure(f"{request}: some instances were not sent (status 0xB000)", status, True)
    return _Failure(f"{request}: status 0x{status:04X}", status, True)


class DimseSource(PacsPull):
    """A DIMSE PACS as an ingest source (see the module and :class:`~lake.sources.pacs.PacsPull`)."""

    protocol, name = "dimse", "DIMSE"
    queue_depth = 0  # instances are spooled to the vault: the PACS is never kept waiting by the ingest

    def __init__(self, spec: str, context: SourceContext) -> None:
        self.address = dimse_address(spec)
        super().__init__(self.address.url, context)
        o = self.options
        self.calling = o.calling_aet.strip()
        self.move_aet = (o.move_aet or o.calling_aet).strip() if o.move_port else None
        assert context.vault is not None  # checked by PacsPull
        spool_root = context.vault / "spool"
        spool_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _remove_stale_spools(spool_root)
        self.spool = Path(tempfile.mkdtemp(prefix=f"dimse-{os.getpid()}-", dir=spool_root))
        self._server: Any = None
        self._moving: dict[str, Callable[[str, bytes | Path], None]] = {}

    @staticmethod
    def check(spec: str) -> None:
        """Before the lake is touched: the URL and the package."""
        dimse_address(spec)
        try:
            import pynetdicom  # noqa: F401
        except ImportError:
            raise SourceError("DIMSE sources need the pynetdicom package: pip install 'pynetdicom>=3'") from None

    # -- associations ---------------------------------------------------------------------------
    def _ae(self) -> Any:
        from pynetdicom import AE

        quiet_pynetdicom()
        ae = AE(ae_title=self.calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.options.timeout
        return ae

    def _associate(self, ae: Any, **kwargs: Any) -> Any:
        a = self.address
        assoc = ae.associate(a.host, a.port, ae_title=a.aet, **kwargs)
        if assoc.is_rejected:
            raise _Failure("association rejected by the PACS", None, self._transient_rejection(assoc))
        if not assoc.is_established:
            raise _Failure("no association (the PACS is unreachable or aborted it)", None, True)
        return assoc

    @staticmethod
    def _transient_rejection(assoc: Any) -> bool:
        """A rejection that may pass (PS3.8 9.3.4: result 2, transient; e.g. too many associations)."""
        return getattr(getattr(assoc, "acceptor", None), "result", None) == 2

    def _client(self) -> Any:
        if self.move_aet is not None:
            self._start_move_scp()
        return None

    def _find(self, level: str, keys: dict[str, str]) -> list[Any]:
        """A C-FIND at ``level`` in its own request slot, retried with back-off."""
        return list(self._call(f"{level.lower()} search (C-FIND)", lambda: self._find_once(level, keys)))

    def _studies(self, client: Any) -> list[_Study]:
        studies: dict[str, Any] = {}
        for query in study_queries(self.options):
            keys = {k: "" for k in ("StudyInstanceUID", *STUDY_KEYS)} | query
            for identifier in self._find("STUDY", keys):
                uid = str(identifier.get("StudyInstanceUID", "") or "")
                if uid:
                    studies.setdefault(uid, identifier)
        return [self._study(uid, studies[uid]) for uid in sorted(studies)]

    def _study(self, uid: str, identifier: Any) -> _Study:
        content = {k: v for k, v in identifier.to_json_dict().items() if _keyword(k) not in NOT_CONTENT}
        return self._new_study(uid, content, identifier.get("NumberOfStudyRelatedInstances"))

    def _series_of(self, client: Any, study: _Study) -> list[_Series]:
        keys = {"StudyInstanceUID": study.uid, "SeriesInstanceUID": "", "NumberOfSeriesRelatedInstances": ""}
        found = self._find("SERIES", keys)
        return [
            self._new_series(study, str(ds.SeriesInstanceUID), ds.get("NumberOfSeriesRelatedInstances"))
            for ds in sorted(found, key=lambda d: str(d.get("SeriesInstanceUID", "")))
            if ds.get("SeriesInstanceUID")
        ]

    # -- retrieve -------------------------------------------------------------------------------
    def _retrieve(self, client: Any, series: _Series, deliver: Callable[[str, bytes | Path], None]) -> None:
        if self.move_aet is not None:
            self._move(series, deliver)
        else:
            self._get(series, deliver)

    def _series_query(self, series: _Series) -> Any:
        from pydicom import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID, query.SeriesInstanceUID = series.study.uid, series.uid
        return query

    def _sop_classes(self, series: _Series) -> list[str]:
        """The SOP classes of a series' instances (an instance-level C-FIND; held by the thread's slot)."""
        keys = {"StudyInstanceUID": series.study.uid, "SeriesInstanceUID": series.uid, "SOPClassUID": ""}
        keys["SOPInstanceUID"] = ""
        found = self._find_once("IMAGE", keys)
        return sorted({str(ds.SOPClassUID) for ds in found if ds.get("SOPClassUID")})

    def _find_once(self, level: str, keys: dict[str, str]) -> list[Any]:
        """One C-FIND (Study Root) at ``level``: the identifiers of its pending answers. A retrieve
        calls it in the slot it holds (its own retry covers it)."""
        from pydicom import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND  # type: ignore[attr-defined]

        query = Dataset()
        query.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            setattr(query, keyword, value)
        ae = self._ae()
        ae.add_requested_context(FIND)
        assoc = self._associate(ae)
        found, final = [], None
        try:
            for status, identifier in assoc.send_c_find(query, FIND):
                if status is None or "Status" not in status:
                    raise _Failure("C-FIND: no answer", None, True)
                if status.Status in PENDING:
                    found.append(identifier)
                else:
                    final = int(status.Status)
        finally:
            assoc.release()
        if final != 0x0000:
            raise _failure("C-FIND", final if final is not None else 0xC000)
        return found

    def _store_handler(self, route: Callable[[Any], Callable[[str, bytes | Path], None] | None]) -> Callable[..., int]:
        """A C-STORE handler spooling each instance into the vault and handing it to ``route(event)``."""

        def on_store(event: Any) -> int:
            if self.stop.is_set():
                return 0xA700  # Refused: out of resources (the pull is closing)
            deliver = route(event)
            if deliver is None:
                return NOT_ASKED
            path = self.spool / f"{uuid.uuid4().hex}.dcm"
            path.write_bytes(event.encoded_dataset(include_meta=True))
            sop = str(event.request.AffectedSOPInstanceUID)
            try:
                deliver(sop, path)
            except Exception:
                path.unlink(missing_ok=True)
                return 0xA700
            return 0x0000

        return on_store

    def _get(self, series: _Series, deliver: Callable[[str, bytes | Path], None]) -> None:
        from pynetdicom import build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET  # type: ignore[attr-defined]

        classes = self._sop_classes(series)
        per_class = (MAX_CONTEXTS - 1) // max(len(classes), 1)
        if per_class < 1:
            raise _Failure(f"C-GET: a series of {len(classes)} SOP classes needs more than 128 contexts", None, False)
        syntaxes = TRANSFER_SYNTAXES[: min(per_class, len(TRANSFER_SYNTAXES))]
        ae = self._ae()
        ae.add_requested_context(GET)
        for sop_class in classes:
            for syntax in syntaxes:
                ae.add_requested_context(sop_class, [syntax])
        roles = [build_role(c, scp_role=True) for c in classes]
        handler = self._store_handler(lambda _event: deliver)
        assoc = self._associate(ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handler)])
        try:
            final = _final_status(assoc.send_c_get(self._series_query(series), GET), "C-GET")
        finally:
            assoc.release()
        if final != 0x0000:
            raise _failure("C-GET", final)

    def _start_move_scp(self) -> None:
        from pynetdicom import evt
        from pynetdicom.presentation import AllStoragePresentationContexts

        def route(event: Any) -> Callable[[str, bytes | Path], None] | None:
            try:
                series_uid = str(event.dataset.SeriesInstanceUID)
            except Exception:
                return None
            return self._moving.get(series_uid)

        ae = self._ae()
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, list(TRANSFER_SYNTAXES))
        assert self.move_aet is not None
        handlers = [(evt.EVT_C_STORE, self._store_handler(route))]
        try:
            self._server = ae.start_server(
                (self.options.move_bind, self.options.move_port or 0), block=False, evt_handlers=handlers,
                ae_title=self.move_aet,
            )  # fmt: skip
        except OSError as exc:
            raise SourceError(
                f"cannot listen on port {self.options.move_port} for C-MOVE ({type(exc).__name__}): "
                "give a free --move-port the PACS sends to"
            ) from None

    def _move(self, series: _Series, deliver: Callable[[str, bytes | Path], None]) -> None:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # type: ignore[attr-defined]

        ae = self._ae()
        ae.add_requested_context(MOVE)
        with self._lock:
            self._moving[series.uid] = deliver
        try:
            assoc = self._associate(ae)
            try:
                final = _final_status(assoc.send_c_move(self._series_query(series), self.move_aet, MOVE), "C-MOVE")
            finally:
                assoc.release()
        finally:
            with self._lock:
                self._moving.pop(series.uid, None)
        if final != 0x0000:
            raise _failure("C-MOVE", final)

    # -- errors ---------------------------------------------------------------------------------
    def _retriable(self, exc: BaseException) -> bool:
        if isinstance(exc, _Failure):
            return exc.retriable
        return isinstance(exc, OSError | Short)

    def _why(self, exc: BaseException) -> str:
        return exc.what if isinstance(exc, _Failure) else super()._why(exc)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return super()._call(what, call)
        except SourceError as exc:
            if "rejected" in str(exc):
                raise SourceError(
                    f"{exc}; check the PACS's AE title in the URL and that it knows ours ({self.calling})"
                ) from None
            raise

    def close(self) -> None:
        super().close()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        shutil.rmtree(self.spool, ignore_errors=True)


def _final_status(responses: Any, request: str) -> int:
    """The final status of a C-GET or C-MOVE (its pending answers only count sub-operations)."""
    final = None
    for status, _identifier in responses:
        if status is None or "Status" not in status:
            raise _Failure(f"{request}: no answer", None, True)
        if status.Status not in PENDING:
            final = int(status.Status)
    return final if final is not None else 0xC000


def _keyword(tag: str) -> str:
    from pydicom.datadict import keyword_for_tag

    with contextlib.suppress(ValueError, TypeError):
        return str(keyword_for_tag(int(tag, 16)))
    return tag


def _remove_stale_spools(root: Path) -> None:
    """Spool folders of pulls whose process is gone (killed): what they held was never committed."""
    for folder in root.glob("dimse-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
