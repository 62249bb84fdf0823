"""Shifting DICOM DA and DT values by whole days, keeping times, fractions and UTC offsets."""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache

_DT = re.compile(r"^(\d{8})(\d{0,6}(?:\.\d{1,6})?)?([+-]\d{4})?$")
#: A calendar date of 1900-2099 written ``YYYYMMDD`` anywhere in a text (``search``, not ``match``):
#: a vendor's protocol line holding one is never kept (:mod:`lake.deid.csa`, :mod:`lake.deid.ge_protocol`).
COMPACT_DATE = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


@lru_cache(maxsize=4096)  # pure, and the files of a study share their dates
def shift_da(value: str, days: int) -> str | None:
    """Shift one DA value (``YYYYMMDD``, legacy ``YYYY.MM.DD``, or a ``A-B`` range).

    Returns None when the value is not a complete date: a partial or malformed date cannot be
    shifted consistently, so the caller removes it instead of keeping the original.
    """
    value = value.strip()
    if "-" in value:
        parts = value.split("-")
        if len(parts) != 2:
            return None
        shifted = [shift_da(p, days) if p else "" for p in parts]
        if any(s is None for s in shifted):
            return None
        return "-".join(s for s in shifted if s is not None)
    if len(value) == 10 and value[4] == "." and value[7] == ".":
        value = value.replace(".", "")
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        d = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
    try:
        return (d + timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


@lru_cache(maxsize=4096)
def shift_dt(value: str, days: int) -> str | None:
    """Shift a DT value's date part; time of day, fraction and ``&ZZXX`` offset are kept as they were.

    A DT with less than a full date (``YYYY`` or ``YYYYMM``) is returned as None (removed).
    """
    value = value.strip()
    m = _DT.match(value)
    if not m:
        return None
    shifted = shift_da(m.group(1), days)
    if shifted is None:
        return None
    return shifted + (m.group(2) or "") + (m.group(3) or "")
