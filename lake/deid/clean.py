"""The "C" (clean) action for free text: keep the words, remove what identifies this patient.

Cleaning replaces, inside a text value, every identifier known for the patient and study (name
parts, IDs, accession numbers, birth and study dates in their common written forms) and every
generic identifier pattern (any written date, phone numbers, e-mail addresses, long digit runs)
with ``*``. Technical words ("T1 MPRAGE SAG", "CHEST PA") survive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

REDACTED = "*"

_MONTHS = (
    "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|"
    "january|february|march|april|june|july|august|september|october|november|december"
)
_GENERIC = [
    # dates: 2020-03-14, 2020/3/14, 14.03.2020, 03/14/20, 20200314, 14 Mar 2020, March 14, 2020
    # (not inside a longer dotted number: "1.0.3.37" and "2.5.1" are versions, not dates)
    r"(?<![\w.,/:])\d{4}(?P<ymd_sep>[-/.])\d{1,2}(?P=ymd_sep)\d{1,2}(?![\w]|[.,/:-]\d)",
    r"(?<![\w.,/:])\d{1,2}(?P<dmy_sep>[-/.])\d{1,2}(?P=dmy_sep)\d{4}(?![\w]|[.,/:-]\d)",
    r"(?<![\w.,/:])\d{1,2}/\d{1,2}/\d{2}(?![\w]|[.,/:-]\d)",  # 03/14/20; "12.30.45" is a time
    r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",
    rf"\b\d{{1,2}}\s*(?:{_MONTHS})\.?\s*,?\s*\d{{2,4}}\b",
    rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b",
    # phone numbers and e-mail addresses
    r"(?:\+\d{1,3}[\s.-]?)?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}\b",
    r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b",
    # runs of 6 or more digits (record numbers, accession numbers, IDs)
    r"\b\d{6,}\b",
]


def date_forms(value: str) -> list[str]:
    """Common written forms of a DA value ``YYYYMMDD`` (other spellings: ``lake.deid.text_dates``)."""
    if len(value) != 8 or not value.isdigit():
        return []
    try:
        d = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return []
    return [
        value,
        d.strftime("%Y-%m-%d"),
        d.strftime("%d.%m.%Y"),
        d.strftime("%d/%m/%Y"),
        d.strftime("%m/%d/%Y"),
        d.strftime("%d %b %Y"),
        d.strftime("%d %B %Y"),
        d.strftime("%B %d, %Y"),
    ]


class TextCleaner:
    """Removes the given identifiers and generic identifier patterns from text."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        words = sorted({w.strip() for w in identifiers if w and len(w.strip()) >= 2}, key=len, reverse=True)
        patterns = [re.escape(w) for w in words]
        # Whole-token matches for identifiers so "ALI" does not blank "CALIBRATION".
        specific = rf"(?<![A-Za-z0-9])(?:{'|'.join(patterns)})(?![A-Za-z0-9])" if patterns else None
        alternatives = ([specific] if specific else []) + _GENERIC
        self._regex = re.compile("|".join(f"(?:{p})" for p in alternatives), re.IGNORECASE)
        self._known = re.compile(specific, re.IGNORECASE) if specific else None

    def clean(self, text: str) -> str:
        return self._regex.sub(REDACTED, text)

    def remove_known(self, text: str) -> str:
        """Only this patient's own identifiers (for kept values: no generic patterns)."""
        return self._known.sub(REDACTED, text) if self._known is not None else text

    def contains_identifier(self, text: str) -> bool:
        return self._regex.search(text) is not None
