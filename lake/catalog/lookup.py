"""One instance's whole header by SOP Instance UID, without scanning the table.

The filter is a literal equality on ``SOPInstanceUID`` so DuckDB pushes it into the Parquet scan:
row groups are skipped by min/max statistics and, after ``lake optimize``, by the bloom filter on
the key; only the matching row group's ``header_json`` pages are read.
"""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb

from lake.errors import InvalidUIDError, NotInLakeError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(uid: str) -> str:
    """``uid`` if it is a syntactically valid DICOM UID; raises :class:`InvalidUIDError` otherwise."""
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise InvalidUIDError(f"{uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return uid


def header_text(con: duckdb.DuckDBPyConnection, uid: str) -> str:
    """The DICOM JSON text of instance ``uid``; raises :class:`NotInLakeError` when absent."""
    # a validated UID is digits and dots only, so the literal is safe; a literal (unlike a bound
    # parameter) is always pushed into the Parquet reader's statistics and bloom filter checks
    rows = con.execute(
        f"SELECT header_json FROM instances WHERE SOPInstanceUID = '{check_uid(uid)}' LIMIT 1"
    ).fetchall()
    if not rows or rows[0][0] is None:
        raise NotInLakeError(f"no instance with SOPInstanceUID {uid} in this lake")
    return str(rows[0][0])


def header(con: duckdb.DuckDBPyConnection, uid: str) -> dict[str, Any]:
    """The whole de-identified header of instance ``uid`` as a DICOM JSON model dict."""
    result: dict[str, Any] = json.loads(header_text(con, uid))
    return result
