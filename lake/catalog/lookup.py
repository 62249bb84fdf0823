"""One instance's whole header by SOP Instance UID, without scanning the table.

After ``lake optimize`` the UID-sorted ``header_index`` answers (see :mod:`lake.catalog.header_index`),
then the instances files ingested since. Without an index, the filter is a literal equality on
``SOPInstanceUID`` so DuckDB pushes it into the Parquet scan of ``instances``: row groups are
skipped by min/max statistics and bloom filters; only matching row groups' ``header_json`` is read.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

from lake.catalog import header_index, ordered
from lake.errors import InvalidUIDError, NotInLakeError, QueryRefusedError
from lake.headers.bulk_uri import BULK_SCHEME, STORED_BULK_VIEW

if TYPE_CHECKING:
    from lake.catalog.sandbox import ReadOnlyConnection
    from lake.catalog.snapshot import Snapshot
    from lake.core import Lake

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(uid: str) -> str:
    """``uid`` if it is a syntactically valid DICOM UID; raises :class:`InvalidUIDError` otherwise."""
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise InvalidUIDError(f"{uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return uid


def _scan(con: ReadOnlyConnection, source: str, uid: str) -> str | None:
    # a validated UID is digits and dots only, so the literal is safe; a literal (unlike a bound
    # parameter) is always pushed into the Parquet reader's statistics and bloom filter checks
    rows = con.execute(f"SELECT header_json FROM {source} WHERE SOPInstanceUID = '{uid}' LIMIT 1").fetchall()
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def header_text(lk: Lake | Snapshot, uid: str) -> str:
    """The DICOM JSON text of instance ``uid``; raises :class:`NotInLakeError` when absent.

    A :class:`~lake.catalog.snapshot.Snapshot` is read through its own pinned ``instances`` files
    (``header_index`` describes the latest version only)."""
    check_uid(uid)
    from lake.catalog.snapshot import Snapshot

    if isinstance(lk, Snapshot):
        text = _scan(lk.connection(), "instances", uid)
        if text is None:
            raise NotInLakeError(f"no instance with SOPInstanceUID {uid} in this snapshot")
        return text
    try:
        return _header_text(lk, uid)
    except QueryRefusedError:
        # An optimize committed between listing the files ingested since the index and opening the
        # query connection: those files left the snapshot (the sandbox refuses them). Look again.
        return _header_text(lk, uid)


def _header_text(lk: Lake, uid: str) -> str:
    # the index's range map is a local file: a lake in object storage scans instances (statistics and
    # bloom filters still skip most row groups)
    ranges = header_index.range_map(lk.paths) if lk.paths.is_local else None
    if ranges is None:
        text = _scan(lk.connection(), "instances", uid)
    else:
        text = header_index.find(ranges, uid)
        newer = header_index.uncovered_instances_files(lk.paths, ranges) if text is None else []
        if newer:
            text = _scan(lk.connection(), ordered.parquet_source(newer), uid)
    if text is None:
        raise NotInLakeError(f"no instance with SOPInstanceUID {uid} in this lake")
    return text


def header(lk: Lake | Snapshot, uid: str, bulk: bool = False) -> dict[str, Any]:
    """The whole de-identified header of instance ``uid`` as a DICOM JSON model dict.

    With ``bulk=True`` every ``BulkDataURI`` ``bulk:<sha256>`` is replaced by the value's
    ``InlineBinary`` from the ``bulk`` table (what :meth:`pydicom.Dataset.from_json` needs to
    rebuild the dataset); values the lake omitted keep ``BulkDataURI`` ``lake:bulkdata-omitted``.
    Raises :class:`NotInLakeError` when a referenced value is not in the bulk table.
    """
    result: dict[str, Any] = json.loads(header_text(lk, uid))
    if bulk:
        inline_bulk(result, bulk_values(lk, uid))
    return result


def bulk_values(lk: Lake | Snapshot, uid: str) -> dict[str, bytes]:
    """The bulk values of instance ``uid``: sha256 (hex) -> bytes ({} when it has none)."""
    check_uid(uid)
    # a literal for the same reason as _scan. Every stored row, not the bulk view's committed ones:
    # the caller resolves the URIs of a committed instance's header (by sha256), and the view's
    # semi-join with instances costs a scan of their UIDs per call (lake.catalog.query)
    rows = (
        lk.connection()
        .execute(f"SELECT DISTINCT sha256, value FROM {STORED_BULK_VIEW} WHERE SOPInstanceUID = '{uid}'")
        .fetchall()
    )
    return {str(digest): bytes(value) for digest, value in rows if value is not None}


def inline_bulk(model: dict[str, Any], values: dict[str, bytes]) -> int:
    """Replace ``bulk:<sha256>`` references in a DICOM JSON dataset (any depth) by InlineBinary.

    Returns how many were replaced; raises :class:`NotInLakeError` for a value not in ``values``.
    """
    done = 0
    for element in model.values():
        if not isinstance(element, dict):
            continue
        uri = element.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith(BULK_SCHEME):
            digest = uri.removeprefix(BULK_SCHEME)
            if digest not in values:
                raise NotInLakeError(
                    f"the bulk value {uri} is not in the bulk table: the table lost rows; run lake verify, "
                    "and lake restore from a replica"
                )
            del element["BulkDataURI"]
            element["InlineBinary"] = base64.b64encode(values[digest]).decode("ascii")
            done += 1
        elif element.get("vr") == "SQ":
            for item in element.get("Value") or []:
                if isinstance(item, dict):
                    done += inline_bulk(item, values)
    return done
