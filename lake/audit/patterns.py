"""Generic PHI patterns (e-mail, SSN, phone numbers in several national formats) and what they must not fire on.

A lake legitimately holds UIDs (``2.25.<digits>``), version strings, numbers, ISO dates and
timestamps of its own metadata, run ids (``R20261201T222026-c1edb4``) and pseudonyms; a match that
lies inside one of those is not a hit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: Not after a letter, digit or a number's punctuation (so "1.2.555 0199" or "x555 0199" do not count).
_B = r"(?<![\w.,:/+-])"
#: Not before a letter or digit, nor before punctuation that continues a number.
_E = r"(?![\w]|[.,:/-]\d)"

PHONE = re.compile(
    _B
    + r"(?:"
    + r"\(\d{3}\) ?\d{3}[-. ]\d{4}"  # (555) 010-0199
    + r"|\d{3}[-.]\d{3}[-.]\d{4}"  # 555-010-0199
    + r"|\+\d{1,3}(?:[ .-]?(?:\(\d{1,5}\)|\d{1,6})){1,5}"  # +49 30 1234567, +1 (555) 010 0199
    + r"|0\d{1,4}[ /-]\d{4,8}"  # 030/1234567, 07700 900123, 030-1234567
    + r"|\d{3}[ -]\d{4}"  # 555 0199, 555-0199
    + r")"
    + _E
)

#: A US social security number: ``123-45-6789`` not inside a longer number. A full stop or comma
#: after it ends a sentence or a list ("SSN 123-45-6789."), unless a digit follows (a decimal,
#: a dotted number); before it, a dot only counts when it follows a digit (``1.123-45-6789``).
SSN = re.compile(r"(?<![\d-])(?<!\d[.,])\d{3}-\d{2}-\d{4}(?![\d-]|[.,]\d)")

#: (name reported instead of the value, regex).
PHI_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email-like", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    ("ssn-like", SSN),
    ("phone-like", PHONE),
)

#: A cheap test that must pass before a pattern is searched (Python's ``re`` scans the e-mail and
#: SSN patterns slowly: 50 ms for the 0.5 MB of headers of the demo lake; the hint takes 0.3 ms).
_HINTS: dict[str, re.Pattern[str]] = {"email-like": re.compile("@"), "ssn-like": re.compile(r"-\d\d-")}

#: What a lake writes itself: UIDs and dotted versions, ISO dates and times, run ids.
_OWN = re.compile(
    r"\d+(?:\.\d+){2,}"  # a UID, a version string
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"  # ISO date, date-time
    r"|[A-Z]\d{8}T\d{6}-[0-9a-f]{6}"  # a run id
)


def _token(text: str, start: int, end: int) -> str:
    """The match with the non-blank characters glued to it on either side."""
    left = start
    while left > 0 and not text[left - 1].isspace():
        left -= 1
    right = end
    while right < len(text) and not text[right].isspace():
        right += 1
    return text[left:right].strip("\"',;()[]{}")


def inside_own_value(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` lies inside a longer UID, version, ISO date-time or run id (not PHI)."""
    token = _token(text, start, end)
    return len(token) > end - start and _OWN.fullmatch(token) is not None


def may_contain(name: str, pattern: re.Pattern[str], text: str) -> bool:
    """A quick test: False when ``pattern`` (named ``name``) cannot match ``text``."""
    hint = _HINTS.get(name)
    return (hint is None or hint.search(text) is not None) and pattern.search(text) is not None


def pattern_matches(text: str, name: str, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """Matches of ``pattern`` in ``text`` that are not the lake's own values (and, for phones, 7 to 15 digits)."""
    hint = _HINTS.get(name)
    if hint is not None and not hint.search(text):
        return
    for m in pattern.finditer(text):
        if inside_own_value(text, m.start(), m.end()) or _OWN.fullmatch(m.group(0)):
            continue
        if pattern is PHONE and not 7 <= sum(ch.isdigit() for ch in m.group(0)) <= 15:
            continue
        yield m
