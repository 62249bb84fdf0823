"""Content hashes of query results: canonical rows, per-row and per-member digests.

A row is serialised as JSON of ``[[column, value], ...]`` in the result's column order, with every
value in one canonical form (dates, times and timestamps in ISO 8601 with a type tag, decimals as
text, binary as base64, structs with sorted keys, floats as Python's shortest round-trip repr), so
the same rows give the same hash in any order, on any machine. The content hash is the SHA-256 of
the sorted row digests, one per line.

A *member* is a patient of the result (its ``PatientID``); the manifest keeps each row's digest
under a digest of its member, so a re-run can drop withdrawn members and still check the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

#: The column that names a result row's patient (required in a saved cohort).
MEMBER_COLUMN = "PatientID"


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else {"float": repr(value)}
    if isinstance(value, datetime):
        return {"timestamp": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, time):
        return {"time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"interval_us": value // timedelta(microseconds=1)}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    raise TypeError(f"cannot hash a {type(value).__name__} value of a result")


def row_digest(columns: list[str], row: Iterable[Any]) -> str:
    """SHA-256 (hex) of one row's canonical serialisation."""
    text = json.dumps([[c, _canonical(v)] for c, v in zip(columns, row, strict=True)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def member_digest(patient_id: object) -> str:
    """A digest of a result row's patient, as the manifest keeps it (the pseudonym is not written)."""
    return hashlib.sha256(b"lake-cohort-member\x00" + str(patient_id).encode()).hexdigest()[:32]


def content_hash(row_digests: Iterable[str]) -> str:
    """SHA-256 (hex) of sorted row digests: the same rows in any order give the same hash."""
    return hashlib.sha256("".join(d + "\n" for d in sorted(row_digests)).encode()).hexdigest()


def digests(frame: pl.DataFrame) -> list[tuple[str, str]]:
    """(member digest, row digest) of every row of ``frame``, in its order."""
    columns = frame.columns
    at = columns.index(MEMBER_COLUMN)
    return [(member_digest(row[at]), row_digest(columns, row)) for row in frame.iter_rows()]
