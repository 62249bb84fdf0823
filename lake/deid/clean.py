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
from functools import lru_cache

from lake.deid.names import SUBSTRING_MIN, Reach, alnum, distinctiveness, fold_text, variant_regex

REDACTED = "*"

_MONTHS = (
    "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|"
    "january|february|march|april|june|july|august|september|october|november|december"
)
#: a phone number starts where no number, date, version or UID goes on (``1.2.840...``, ``0.5``)
_NOT_AFTER = r"(?<![\w.,/-])"
#: ... and ends where none goes on (``2019-03-14``, ``1.0.3``)
_NOT_BEFORE = r"(?![\w]|[.,/:-]\d)"
#: a number followed by a unit is a measurement (``400 1500 ms``), never a phone number
_NO_UNIT = r"(?!\s*(?:(?:mm|cm|m|um|µm|ms|s|sec|min|h|kv|kvp|mas|ma|hz|khz|mhz|t|mt|ml|mg|kg|g|hu|mbq|mci|px|bpm)\b|%))"
#: phone numbers (issue 12: national forms too) and e-mail addresses: never part of a code or an
#: enumerated value either
_CONTACT = [
    # international: +44 20 7946 0958, +49 30 1234567, +81 3-1234-5678, +33 1 23 45 67 89
    rf"\+\d{{1,3}}[\s-]?\(?\d{{1,5}}\)?(?:[\s./-]\d{{2,8}}){{1,5}}{_NOT_BEFORE}",
    # three groups: (555) 555-0199, UK 020 7946 0958, JP 03-1234-5678; with dots only 555.555.0199
    # (a dotted number of other lengths is a version: 10.100.100)
    rf"(?:{_NOT_AFTER}|(?<=\())\(?\d{{2,4}}\)?[\s-]\d{{3,4}}[\s-]\d{{3,4}}{_NOT_BEFORE}",
    rf"{_NOT_AFTER}\d{{3}}\.\d{{3}}\.\d{{4}}{_NOT_BEFORE}",
    # FR 01 23 45 67 89, 01.23.45.67.89
    rf"{_NOT_AFTER}0[1-9](?:[\s.-]\d{{2}}){{4}}{_NOT_BEFORE}",
    # a trunk prefix, an area code and the number: DE 030 1234567, 030/1234567, UK 07700 900123
    rf"{_NOT_AFTER}0\d{{1,4}}[\s/-]\d{{5,8}}{_NOT_BEFORE}{_NO_UNIT}",
    # a local number: 555 0199, 555-0199
    rf"{_NOT_AFTER}[2-9]\d{{2}}[ -]\d{{4}}{_NOT_BEFORE}{_NO_UNIT}",
    r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b",
]
#: labels of identifiers written in text (case-insensitive)
_ID_LABELS = (
    r"MRN|MR\s?#|MR\s+No|medical\s+record(?:\s+(?:number|no|#))?|record\s+(?:number|no|#)|"
    r"patient\s+(?:id|identifier|number|no|#)|PID|hospital\s+(?:number|no|#)|NHS\s+(?:number|no)|NHS|"
    r"accession(?:\s+(?:number|no|#))?|acc\s?#|acc\s+no|case\s+(?:number|no|#)|SSN|insurance\s+(?:number|no)"
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
    *_CONTACT,
    # runs of 6 or more digits (record numbers, accession numbers, IDs)
    r"\b\d{6,}\b",
    # a value written after its label ("MRN GH00123", "Patient ID: 4711", "Acc# A-77"): the value
    # goes, the label stays; it need not be this file's own (a file without Patient ID, an old MRN)
    rf"\b(?:{_ID_LABELS})(?:\b|(?<=#))\.?(?:\s*(?:is|was|=|:|#|-)\s*|\s+)"
    r"(?P<labelled>(?=[\w/-]*\d)[A-Z0-9][\w/-]+(?: \d{2,})*)",
]


def date_forms(value: str) -> list[str]:
    """Common written forms of a DA value ``YYYYMMDD`` (other spellings: ``lake.deid.text_dates``)."""
    return list(_date_forms(value))


@lru_cache(maxsize=4096)
def _date_forms(value: str) -> tuple[str, ...]:
    """Remembered: the files of a study share their dates, and ``strftime`` is slow."""
    if len(value) != 8 or not value.isdigit():
        return ()
    try:
        d = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return ()
    formats = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d %b %Y", "%d %B %Y", "%B %d, %Y")
    return (value, *(d.strftime(f) for f in formats))


class TextCleaner:
    """Removes the given identifiers and generic identifier patterns from text.

    Identifiers are matched on folded text (:mod:`lake.deid.names`: case, accents and the usual
    transliterations ignored), each as far as its distinctiveness allows: long tokens inside other
    tokens (the whole glued token goes: ``JSMITH``, ``SMITH2``, ``HEAD_SMITHJ`` -> ``HEAD_*``),
    medium ones and phrases as whole tokens, and short or common ones (``CT``, ``PERFUSION``) only
    when they are the whole value. Digit-only IDs match where no digit touches them
    (``MRN448100``), never inside a longer number.
    """

    def __init__(self, identifiers: Iterable[str]) -> None:
        groups: dict[str, list[tuple[int, str]]] = {"value": [], "token": [], "inside": [], "digits": []}
        for ident in {w.strip() for w in identifiers if w and w.strip()}:
            regex = variant_regex(ident)
            if not regex:
                continue
            reach = distinctiveness(ident)
            letters = alnum(ident)
            if reach is Reach.VALUE:
                group = "value"
            elif letters.isdigit() and len(letters) >= SUBSTRING_MIN:
                group = "digits"
            else:
                group = "token" if reach is Reach.TOKEN else "inside"
            groups[group].append((len(letters), regex))

        def alternation(name: str) -> str:
            return "|".join(r for _n, r in sorted(groups[name], key=lambda x: (-x[0], x[1])))

        branches = []
        if groups["value"]:
            branches.append(rf"(?P<value>\A[\W_]*(?:{alternation('value')})[\W_]*\Z)")
        if groups["token"]:
            branches.append(rf"(?<![^\W_])(?:{alternation('token')})(?![^\W_])")
        if groups["digits"]:
            branches.append(rf"(?<!\d)(?:{alternation('digits')})(?!\d)")
        if groups["inside"]:
            branches.append(rf"(?P<inside>{alternation('inside')})")
        self._known = re.compile("|".join(branches)) if branches else None

    def scrub(self, text: str, generic: bool = True, contact: bool = False) -> tuple[str, str | None]:
        """``text`` cleaned, and why it changed: ``"identifier_value"`` (the whole value is a short or
        common identifier), ``"identifier"``, ``"pattern"`` (a generic pattern only) or None.

        ``generic`` adds every generic pattern; ``contact`` only phone numbers and e-mail addresses
        (for local codes, where digit runs and dates are legitimate code values)."""
        spans: list[tuple[int, int]] = []
        reason: str | None = None
        if self._known is not None:
            folded, origin = fold_text(text)
            for m in self._known.finditer(folded):
                start, end = m.span()
                if start == end:
                    continue
                if m.lastgroup == "value":
                    return REDACTED, "identifier_value"
                if m.lastgroup == "inside":  # the glued token goes with it: JSMITH, SMITH2
                    while start > 0 and folded[start - 1].isalnum():
                        start -= 1
                    while end < len(folded) and folded[end].isalnum():
                        end += 1
                if origin is not None:
                    start, end = origin[start], origin[end - 1] + 1
                spans.append((start, end))
            if spans:
                reason = "identifier"
        if generic or contact:
            regex = _generic_regex() if generic else _contact_regex()
            found = [_span(m) for m in regex.finditer(text) if m.end() > m.start()]
            if found and reason is None:
                reason = "pattern"
            spans.extend(found)
        if not spans:
            return text, None
        return redact(text, spans), reason

    def clean(self, text: str) -> str:
        return self.scrub(text, generic=True)[0]

    def remove_known(self, text: str) -> str:
        """Only this patient's own identifiers (for kept values: no generic patterns)."""
        return self.scrub(text, generic=False)[0]

    def contains_identifier(self, text: str) -> bool:
        return self.scrub(text, generic=True)[1] is not None


@lru_cache(maxsize=1)
def _generic_regex() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in _GENERIC), re.IGNORECASE)


def _span(match: re.Match[str]) -> tuple[int, int]:
    """What a generic pattern removes: a labelled value without its label, else the whole match."""
    if match.re.groupindex.get("labelled") and match.group("labelled") is not None:
        return match.span("labelled")
    return match.span()


@lru_cache(maxsize=1)
def _contact_regex() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in _CONTACT), re.IGNORECASE)


def redact(text: str, spans: list[tuple[int, int]]) -> str:
    """Each run of overlapping or touching spans becomes one ``*``."""
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:  # overlaps the previous span
            if end > pos:
                pos = end
            continue
        out.append(text[pos:start])
        out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    return "".join(out)


@lru_cache(maxsize=256)
def cleaner_for(identifiers: frozenset[str]) -> TextCleaner:
    """One compiled cleaner per identity: the files of a series share it (compiling is the cost)."""
    return TextCleaner(identifiers)


#: The contact and labelled-identifier patterns on their own (regex sources, case-insensitive), for
#: the audit of text that is kept as it is (:mod:`lake.deid.passthrough`): dates and long numbers
#: are legitimate there (already shifted dates, numeric pseudonyms).
PHONE_PATTERNS: tuple[str, ...] = tuple(_CONTACT[:-1])
EMAIL_PATTERN: str = _CONTACT[-1]
LABELLED_ID_PATTERN: str = _GENERIC[-1]
