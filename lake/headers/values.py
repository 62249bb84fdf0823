"""Conversion of DICOM element values to typed Python values for table columns.

Every converter returns None for an absent, empty or malformed value: a bad value in one
attribute must never reject the whole instance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

_TM = re.compile(r"^(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?(?:\.(\d{1,6}))?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def _first(value: Any) -> Any:
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        parts = [str(v) for v in value]
        return "\\".join(parts) if parts else None
    if isinstance(value, PersonName):
        value = str(value)
    if isinstance(value, bytes):
        return None
    text = str(value).strip()
    return text or None


def as_int(value: Any) -> int | None:
    value = _first(value)
    if value in (None, ""):
        return None
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float) and (not math.isfinite(number) or number != int(number)):
            return None
        out = int(number)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if -(2**63) <= out < 2**63 else None


def as_float(value: Any) -> float | None:
    value = _first(value)
    if value in (None, ""):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def as_float_list(value: Any) -> list[float] | None:
    if value in (None, ""):
        return None
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    out = [as_float(v) for v in values]
    if not out or any(v is None for v in out):
        return None
    return [v for v in out if v is not None]


def as_int_list(value: Any) -> list[int] | None:
    if value in (None, ""):
        return None
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    out = [as_int(v) for v in values]
    if not out or any(v is None for v in out):
        return None
    return [v for v in out if v is not None]


def as_text_list(value: Any) -> list[str] | None:
    if value in (None, ""):
        return None
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v) for v in values]


def as_date(value: Any) -> date | None:
    text = as_text(_first(value))
    if not text:
        return None
    text = text.replace(".", "") if len(text) == 10 else text
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def as_time(value: Any) -> time | None:
    text = as_text(_first(value))
    if not text:
        return None
    m = _TM.match(text)
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    try:
        return time(int(hh), int(mm or 0), min(int(ss or 0), 59), int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None


def as_timestamp(value: Any) -> datetime | None:
    """DT to a naive timestamp in the attribute's own local time (the UTC offset, if any, is dropped)."""
    text = as_text(_first(value))
    if not text:
        return None
    m = _DT.match(text)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, _offset = m.groups()
    try:
        return datetime(
            int(y),
            int(mo or 1),
            int(d or 1),
            int(hh or 0),
            int(mi or 0),
            min(int(ss or 0), 59),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "VARCHAR": as_text,
    "BIGINT": as_int,
    "DOUBLE": as_float,
    "DATE": as_date,
    "TIME": as_time,
    "TIMESTAMP": as_timestamp,
    "DOUBLE[]": as_float_list,
    "BIGINT[]": as_int_list,
    "VARCHAR[]": as_text_list,
}
