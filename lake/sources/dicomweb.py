"""``dicomweb://HOST:PORT/PATH`` (and ``dicomweb+https://``): a PACS pull over QIDO-RS and WADO-RS.

Through the ``dicomweb-client`` package. The pull (:class:`lake.sources.pacs.PacsPull`: plan,
completeness, cursor, politeness) searches studies with QIDO-RS, lists the series of those not
pulled before, or changed since (another keyed fingerprint of what QIDO-RS says about them: a
corrected PatientID, a new series), with their instance counts (``NumberOfSeriesRelatedInstances``
per series, ``NumberOfStudyRelatedInstances``) and retrieves each series with WADO-RS, in the
transfer syntax the PACS stores, so nothing is transcoded.

UIDs go only into item labels (the vault's run log); the library's own logs, which quote them,
are dropped (see :class:`_NoUids`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lake.errors import SourceError
from lake.sources.auth import Credentials, load_credentials
from lake.sources.base import SourceContext
from lake.sources.pacs import PacsPull, PullProgress, Short, _Series, _Study, study_queries

__all__ = ["DicomWebSource", "PullProgress", "http_url"]

NUMBER_OF_STUDY_SERIES = "00201206"
NUMBER_OF_STUDY_INSTANCES = "00201208"
NUMBER_OF_SERIES_INSTANCES = "00201209"
STUDY_UID, SERIES_UID = "0020000D", "0020000E"
SOP_INSTANCE_UID = 0x00080018
#: QIDO-RS attributes left out of a study's fingerprint: they say where, not what.
_NOT_CONTENT = {"00081190", "00080056", "00080005"}
#: The WADO-RS Accept header for any transfer syntax: the PACS sends what it stores (Orthanc 1.10
#: cannot transcode JPEG 2000).
ACCEPT_STORED_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'

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


def _value(attrs: dict[str, Any], tag: str) -> Any:
    values = attrs.get(tag, {}).get("Value") or [None]
    return values[0]


class DicomWebSource(PacsPull):
    """A DICOMweb PACS as an ingest source (see the module and :class:`~lake.sources.pacs.PacsPull`)."""

    protocol, name = "dicomweb", "DICOMweb"

    def __init__(self, spec: str, context: SourceContext) -> None:
        super().__init__(http_url(spec), context)
        self.credentials: Credentials = load_credentials(self.options.auth_file)

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

    def _retriable(self, exc: BaseException) -> bool:
        import requests

        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            return status >= 500 or status in (408, 429)
        return isinstance(exc, requests.RequestException | OSError | Short)

    def _why(self, exc: BaseException) -> str:
        """The HTTP status or the kind of error, never the URL (it holds UIDs)."""
        import requests

        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return f"HTTP {exc.response.status_code}"
        return super()._why(exc)

    def _studies(self, client: Any) -> list[_Study]:
        """Every matching study once (QIDO-RS pages of ``page_size``), in StudyInstanceUID order."""
        studies: dict[str, dict[str, Any]] = {}
        fields = [NUMBER_OF_STUDY_SERIES, NUMBER_OF_STUDY_INSTANCES]
        size = self.options.page_size
        for query in study_queries(self.options):
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
        return [self._study(studies[uid]) for uid in sorted(studies)]

    def _study(self, attrs: dict[str, Any]) -> _Study:
        content = {k: v for k, v in attrs.items() if k not in _NOT_CONTENT}
        return self._new_study(str(_value(attrs, STUDY_UID)), content, _value(attrs, NUMBER_OF_STUDY_INSTANCES))

    def _series_of(self, client: Any, study: _Study) -> list[_Series]:
        found = self._call(
            "series search (QIDO-RS)",
            lambda: client.search_for_series(study.uid, fields=[NUMBER_OF_SERIES_INSTANCES]),
        )
        return [
            self._new_series(study, str(_value(attrs, SERIES_UID)), _value(attrs, NUMBER_OF_SERIES_INSTANCES))
            for attrs in sorted(found, key=lambda a: str(_value(a, SERIES_UID)))
        ]

    def _retrieve(self, client: Any, series: _Series, deliver: Callable[[str, bytes | Path], None]) -> None:
        for data in _series_parts(client, series.study.uid, series.uid):
            deliver(_sop_instance_uid(data), data)


def _series_parts(client: Any, study_uid: str, series_uid: str) -> Iterator[bytes]:
    """Each instance of a series as the PACS sent it (WADO-RS, any transfer syntax, streamed).

    The bytes, not datasets: ``iter_series`` parses every instance (``dcmread``) and the ingest
    then needs bytes again, so a retrieve thread parsed and re-wrote each instance, holding the GIL
    the ingest needs (a pull cost the transfer plus the ingest, not the larger of the two). The
    multipart decoding is dicomweb-client's own (``_decode_multipart_message``: it has no public
    call returning the parts' bytes), with its URL, request and Accept header (as ``iter_series``).
    """
    from dicomweb_client.web import _Transaction

    url = client._get_series_url(_Transaction.RETRIEVE, study_uid, series_uid)
    response = client._http_get(url, headers={"Accept": ACCEPT_STORED_SYNTAX}, stream=True)
    if response.headers.get("Content-Type", "").startswith("application/dicom"):  # a lone part, not encapsulated
        yield response.content
        return
    for part in client._decode_multipart_message(response, stream=True):
        yield bytes(part)


def _sop_instance_uid(data: bytes) -> str:
    """The SOP Instance UID of a received instance, or for one without (the ingest rejects it, and
    says why) a digest of its bytes: distinct such parts stay distinct, a retried one is known."""
    from pydicom import dcmread

    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=[SOP_INSTANCE_UID])
        uid = str(ds.get("SOPInstanceUID", "") or "")
    except Exception:
        uid = ""
    return uid or "content:" + hashlib.sha256(data).hexdigest()
