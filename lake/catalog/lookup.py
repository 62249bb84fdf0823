"""One instance's whole header by SOP Instance UID, without scanning the table.

After ``lake optimize`` the UID-sorted ``header_index`` answers (see :mod:`lake.catalog.header_index`),
then the instances files ingested since. Without an index, the filter is a literal equality on
``SOPInstanceUID`` so DuckDB pushes it into the Parquet scan of ``instances``: row groups are
skipped by min/max statistics and bloom filters; only matching row groups' ``header_json`` is read.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from lake.catalog import header_index, ordered
from lake.errors import InvalidUIDError, NotInLakeError, QueryRefusedError

if TYPE_CHECKING:
    from lake.catalog.sandbox import ReadOnlyConnection
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


def header_text(lk: Lake, uid: str) -> str:
    """The DICOM JSON text of instance ``uid``; raises :class:`NotInLakeError` when absent."""
    check_uid(uid)
    try:
        return _header_text(lk, uid)
    except QueryRefusedError:
        # An optimize committed between listing the files ingested since the index and opening the
        # query connection: those files left the snapshot (the sandbox refuses them). Look again.
        return _header_text(lk, uid)


def _header_text(lk: Lake, uid: str) -> str:
    ranges = header_index.range_map(lk.paths)
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


def header(lk: Lake, uid: str) -> dict[str, Any]:
    """The whole de-identified header of instance ``uid`` as a DICOM JSON model dict."""
    result: dict[str, Any] = json.loads(header_text(lk, uid))
    return result
