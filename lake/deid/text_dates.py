"""Dates written in free text, in the spellings archives use: found, then shifted or removed.

The engine shifts DA and DT values by the patient's day offset; a date typed into a description or
comment (``14-MAR-2019``, ``14. März 2019``, ``14 de marzo de 2019``, ``03/2019``, ``14th of
March``) is the same information and is shifted by the same offset, re-written in its own spelling
(language, abbreviation, case, separators, zero padding, two- or four-digit year). What is found:

- day, month name or abbreviation and year in English, German, French, Spanish, Italian, Dutch and
  Portuguese, with or without dots, ordinals (``14th``, ``1er``, ``1º``), ``of`` / ``de``;
  ``March 14, 2019``; ``2019-Mar-14``; a two-digit year only beside a month name with the same
  separator on both sides (``12-JAN-18``, ``12JAN18``);
- numeric ``Y-M-D`` (``-`` ``/`` ``.``), ``D.M.Y``, ``D/M/Y`` or ``M/D/Y`` (``-`` too), compact
  ``YYYYMMDD``, ``DD/MM/YY`` with slashes only;
- month and year: ``Mar-2019``, ``March 2019``, ``marzo de 2019``, ``03/2019``, ``03.2019``, ``2019-03``;
- day and month without a year, when unmistakable: a full month name (``14 March``, ``14. März``,
  ``March 14``) or an English ordinal (``14th of Mar``).

How partial dates shift (documented choices, tested in ``tests/deid/test_text_dates.py``):

- a month-year stands for its 15th: the 15th is shifted and re-written at month precision, so the
  result is the month of the shifted mid-month day (within half a month of any day of that month
  shifted);
- a day-month without a year is shifted within a common year (2001; 29 February within 2000);
- a numeric date whose order is ambiguous (``03/04/2019``: both fields 12 or less) is removed,
  never guessed: ``04/04/2019`` too, because its shifted date could not be written in the writer's
  own order (``1/1/2000`` + 1 day is ``2/1/2000`` to a day-first reader, ``1/2/2000`` to a
  month-first one); ``D.M.Y`` with dots counts as day-first, which is how dotted dates are
  written; ``14/03/2019`` and ``03/14/2019`` are unambiguous;
- a date equal to the patient's birth date (at the precision written) is removed, as the header's
  Patient's Birth Date is; with no offset (``days=None``: dates are not shifted in this lake), every
  date found is removed.

Removed dates become :data:`MARKER`. Years alone (``2019``) are kept: a year is not a date element
HIPAA or the longitudinal options ask to hide, and bare four-digit numbers are too often not years.
What is never taken for a date (the false-positive corpus of the tests): version strings
(``1.0.3.37``, ``2.5.1``, ``VE11C``, ``syngo MR E11``), code values (``113690``, ``39607008``),
times (``12:30:45``, ``12.30.45``), UIDs, numbers with units (``3.0 mm``, ``120 kV``), and
month abbreviations that are also common words or acronyms (``MAR``, ``set``, ``out``) unless a day
or year is written beside them.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from lake.deid.clean import REDACTED, TextCleaner, date_forms

if TYPE_CHECKING:
    from pydicom import Dataset

MARKER = REDACTED

#: month names and abbreviations per language (lower case, as written with their accents)
_FULL: dict[str, tuple[str, ...]] = {
    "en": ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"),
    "de": ("januar", "februar", "märz", "april", "mai", "juni", "juli", "august", "september", "oktober",
           "november", "dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"),
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre"),
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
           "november", "december"),
    "pt": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
           "novembro", "dezembro"),
}  # fmt: skip
_ABBR: dict[str, tuple[str, ...]] = {
    "en": ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    "de": ("jan", "feb", "mär", "apr", "mai", "jun", "jul", "aug", "sep", "okt", "nov", "dez"),
    "fr": ("janv", "févr", "mars", "avr", "mai", "juin", "juil", "août", "sept", "oct", "nov", "déc"),
    "es": ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
    "it": ("gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic"),
    "nl": ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
    "pt": ("jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez"),
}
#: other spellings met in archives: (token, language, style, month)
_EXTRA = (
    ("sept", "en", "abbr", 9),
    ("sept", "de", "abbr", 9),
    ("mrz", "de", "abbr", 3),
    ("maerz", "de", "full", 3),
    ("jänner", "de", "full", 1),
    ("setiembre", "es", "full", 9),
)
LANGUAGES: tuple[str, ...] = tuple(_FULL)
#: abbreviations that are also acronyms or words: in capitals with only a space before a year
#: (``MAR 2019``: metal artifact reduction) they are not taken for a month
_RISKY = frozenset({"mar", "set", "out", "gen", "mag", "ago"})


def _fold(s: str) -> str:
    """Without accents (``févr`` -> ``fevr``), for archives that write ASCII only."""
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


@dataclass(frozen=True)
class _Spelling:
    lang: str
    style: str  # "full" or "abbr"
    ascii: bool  # written without its accents
    month: int


def _month_index() -> dict[str, list[_Spelling]]:
    index: dict[str, list[_Spelling]] = {}
    for table, style in ((_FULL, "full"), (_ABBR, "abbr")):
        for lang, names in table.items():
            for i, name in enumerate(names, 1):
                index.setdefault(name, []).append(_Spelling(lang, style, False, i))
                if _fold(name) != name:
                    index.setdefault(_fold(name), []).append(_Spelling(lang, style, True, i))
    for token, lang, style, month in _EXTRA:
        index.setdefault(token, []).append(_Spelling(lang, style, token == _fold(token), month))
    return index


_MONTHS = _month_index()
_LONGEST = max(len(t) for t in _MONTHS)
_WORD = re.compile(r"[^\W\d_]+")
_NOT_LETTER_BEFORE = r"(?<![^\W\d_])"
_NOT_LETTER_AFTER = r"(?![^\W\d_])"
# Any word of a month's length; _parse keeps the month names (an alternation of 150 names at every
# position costs 10x more than a character class and a dictionary look-up).
MON_WORD = rf"{_NOT_LETTER_BEFORE}(?P<m>[^\W\d_]{{3,{_LONGEST}}}){_NOT_LETTER_AFTER}"
MON = rf"{MON_WORD}(?P<mdot>\.)?"
DAY = r"(?P<d>0?[1-9]|[12]\d|3[01])"
ORD = r"(?P<o>st|nd|rd|th|er|º|°|ª|\.)?"
Y4 = r"(?P<y>(?:19|20)\d{2})"
#: a number is not part of a longer number, version string, UID or time
_NB = r"(?<![\w.,/:])(?<!\d-)"
_NA = r"(?![\w]|[.,/:-]\d)"
_SEP = r"(?:\s*[-/.,]\s*|\s+)"
_OF = r"(?:(?:of|de|del)\s+)?"


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# (kind, precision, regex) in priority order: a full date before a partial one at the same place.
_FORMS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("dmy", "day", _c(rf"{_NB}{DAY}{ORD}(?P<s1>{_SEP}|){_OF}{MON}(?P<s2>{_SEP}|){_OF}{Y4}{_NA}")),
    ("dmy2", "day", _c(rf"{_NB}{DAY}(?P<s1>[-/.]?){MON}(?P=s1)(?P<y>\d{{2}}){_NA}")),
    ("mdy", "day", _c(rf"{MON}\s*{DAY}(?P<o>st|nd|rd|th)?(?:\s*,\s*|\s+){Y4}{_NA}")),
    ("ymd_name", "day", _c(rf"{_NB}{Y4}(?P<s1>[-/ ]){MON}(?P=s1){DAY}{_NA}")),
    ("ymd", "day", _c(rf"{_NB}{Y4}(?P<s1>[-/.])(?P<mn>0?[1-9]|1[0-2])(?P=s1){DAY}{_NA}")),
    ("num", "day", _c(rf"{_NB}(?P<a>\d{{1,2}})(?P<s1>[-/.])(?P<b>\d{{1,2}})(?P=s1){Y4}{_NA}")),
    ("num2", "day", _c(rf"{_NB}(?P<a>\d{{2}})/(?P<b>\d{{2}})/(?P<y>\d{{2}}){_NA}")),
    ("compact", "day", _c(r"(?<![\w.])(?P<y>(?:19|20)\d{2})(?P<mn>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])"
                          r"(?![\w]|[.,]\d)")),
    ("my", "month", _c(rf"{MON}(?P<s1>\s*[-/.'’]\s*|\s+(?:de\s+|del\s+)?|){Y4}{_NA}")),
    ("my_num", "month", _c(rf"{_NB}(?P<mn>0[1-9]|1[0-2])(?P<s1>[-/.]){Y4}{_NA}")),
    ("ym_num", "month", _c(rf"{_NB}{Y4}(?P<s1>[-/])(?P<mn>0[1-9]|1[0-2]){_NA}")),
    ("dm", "yearless", _c(rf"{_NB}{DAY}{ORD}\s*{_OF}{MON}")),
    ("md", "yearless", _c(rf"{MON}\s+{DAY}(?P<o>st|nd|rd|th)?{_NA}")),
)  # fmt: skip
_LEAP_REFERENCE, _COMMON_REFERENCE = 2000, 2001


@dataclass(frozen=True)
class FoundDate:
    """One date found in a text: where, what it says, and what replaces it."""

    start: int
    end: int
    precision: str  # "day", "month" or "yearless"
    value: date | None  # None: the numeric order is ambiguous
    replacement: str


def _year(text: str) -> int:
    y = int(text)
    if len(text) == 2:  # POSIX %y: 69-99 are 19xx, 00-68 are 20xx
        y += 1900 if y >= 69 else 2000
    return y


def _spelling(token: str, dotted: bool) -> _Spelling | None:
    options = _MONTHS.get(token.lower())
    if not options or len({o.month for o in options}) != 1:
        return None
    # "Mai" / "May" are full names and abbreviations: a dot says abbreviation, else the full name
    chosen = [o for o in options if o.style == ("abbr" if dotted else "full")]
    return (chosen or options)[0]


def _case(template: str, word: str) -> str:
    if template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _month_word(month: int, like: _Spelling, template: str) -> str:
    word = (_FULL if like.style == "full" else _ABBR)[like.lang][month - 1]
    if like.ascii:
        word = _fold(word)
    return _case(template, word)


def _number(value: int, template: str, pad: bool) -> str:
    return f"{value:02d}" if pad or template.startswith("0") else str(value)


def _english_ordinal(day: int, template: str) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return suffix.upper() if template.isupper() else suffix


def _day_first(a: int, b: int, year: int, sep: str) -> bool | None:
    """Whether numeric ``a sep b sep year`` is day-first; None when it is no date or ambiguous.

    Ambiguous means both readings are dates (even the same date, ``04/04/2019``: the order of its
    shifted date would be a guess); dotted dates are read day-first, as they are written.
    """
    readings = {}
    for first, (day, month) in ((True, (a, b)), (False, (b, a))):
        with contextlib.suppress(ValueError):
            readings[first] = date(year, month, day)
    if len(readings) == 1:
        return next(iter(readings))
    if len(readings) == 2 and sep == ".":
        return True
    return None


def _is_numeric_date(a: int, b: int, year: int) -> bool:
    return any(1 <= m <= 12 and 1 <= d <= 31 for d, m in ((a, b), (b, a)))


class _Match:
    """Rewrites the groups of one regex match in place, keeping the literal text between them."""

    def __init__(self, m: re.Match[str]) -> None:
        self.m = m
        self.edits: dict[str, str] = {}

    def group(self, name: str) -> str | None:
        try:
            return self.m.group(name)
        except IndexError:
            return None

    def set(self, name: str, value: str) -> None:
        if self.group(name) is not None:
            self.edits[name] = value

    def render(self) -> str:
        text, base = self.m.group(0), self.m.start()
        spans = sorted((self.m.span(n), v) for n, v in self.edits.items())
        out, pos = [], 0
        for (s, e), v in spans:
            out.append(text[pos : s - base])
            out.append(v)
            pos = e - base
        out.append(text[pos:])
        return "".join(out)


@dataclass(frozen=True)
class _Parsed:
    value: date | None  # None: a date whose numeric order cannot be told
    spelling: _Spelling | None = None
    day_first: bool = True


def _parse(kind: str, m: re.Match[str]) -> _Parsed | None:
    """What the match says; None when it is not a date after all (31 April, ``MAR 2019``)."""
    g = m.groupdict()
    spelling = None
    month = 0
    if g.get("m"):
        spelling = _spelling(g["m"], bool(g.get("mdot")))
        if spelling is None:
            return None
        month = spelling.month
    if g.get("mn"):
        month = int(g["mn"])
    try:
        if kind in ("num", "num2"):
            a, b, year = int(g["a"]), int(g["b"]), _year(g["y"])
            first = _day_first(a, b, year, g.get("s1") or "/")
            if first is None:
                return _Parsed(None) if _is_numeric_date(a, b, year) else None
            return _Parsed(date(year, b, a) if first else date(year, a, b), None, first)
        if kind in ("my", "my_num", "ym_num"):
            risky = kind == "my" and g["m"].lower() in _RISKY and g["m"].isupper()
            if risky and not g.get("mdot") and not g["s1"].strip():
                return None  # "MAR 2019", "set 2019": an acronym or a word beside a number
            return _Parsed(date(_year(g["y"]), month, 15), spelling)
        if kind in ("dm", "md"):
            english_ordinal = (g.get("o") or "").lower() in ("st", "nd", "rd", "th")
            if spelling is not None and spelling.style != "full" and not english_ordinal:
                return None  # "3 mar", "gen 2": abbreviations without a year are too often not dates
            day = int(g["d"])
            year = _LEAP_REFERENCE if (month, day) == (2, 29) else _COMMON_REFERENCE
            return _Parsed(date(year, month, day), spelling)
        return _Parsed(date(_year(g["y"]), month, int(g["d"])), spelling)
    except ValueError:
        return None


def _render(kind: str, precision: str, m: re.Match[str], parsed: _Parsed, new: date) -> str:
    r = _Match(m)
    g = m.groupdict()
    numeric_two = kind in ("num", "num2", "ymd", "compact") and all(
        len(g.get(k) or "00") == 2 for k in ("a", "b", "mn", "d")
    )
    compact_sep = kind in ("dmy", "dmy2") and (g.get("s1") or "") in ("-", "/", ".", "") and not g.get("o")
    pad = numeric_two or compact_sep
    if precision in ("day", "yearless"):
        if kind in ("num", "num2"):
            dkey, mkey = ("a", "b") if parsed.day_first else ("b", "a")
            r.set(dkey, _number(new.day, g[dkey], pad))
            r.set(mkey, _number(new.month, g[mkey], pad))
        else:
            r.set("d", _number(new.day, g["d"], pad))
        o = g.get("o")
        if o and o.lower() in ("st", "nd", "rd", "th"):
            r.set("o", _english_ordinal(new.day, o))
        elif o and o.lower() == "er" and new.day != 1:
            r.set("o", "")
    if precision != "yearless":
        y = g["y"]
        r.set("y", f"{new.year % 100:02d}" if len(y) == 2 else f"{new.year:04d}")
    if parsed.spelling is not None:
        r.set("m", _month_word(new.month, parsed.spelling, g["m"]))
    elif g.get("mn"):
        r.set("mn", _number(new.month, g["mn"], pad or kind in ("my_num", "ym_num")))
    return r.render()


def _same(precision: str, a: date, b: date) -> bool:
    if precision == "month":
        return (a.year, a.month) == (b.year, b.month)
    if precision == "yearless":
        return (a.month, a.day) == (b.month, b.day)
    return a == b


def find_dates(text: str, days: int | None, remove: Iterable[date] = ()) -> list[FoundDate]:
    """Every date written in ``text`` with what replaces it: shifted by ``days``, or :data:`MARKER`.

    ``days`` None removes every date found; a date equal to one of ``remove`` (the birth date) at
    its written precision is removed; so is an ambiguous numeric date or one a shift would take
    out of the calendar.
    """
    if not any(c.isdigit() for c in text):
        return []
    removed = tuple(remove)
    taken: list[tuple[int, int]] = []
    found: list[FoundDate] = []
    names = any(w.lower() in _MONTHS for w in _WORD.findall(text))
    for kind, precision, regex in _FORMS:
        if not names and "(?P<m>" in regex.pattern:
            continue
        for m in regex.finditer(text):
            start, end = m.span()
            if any(start < e and s < end for s, e in taken):
                continue
            parsed = _parse(kind, m)
            if parsed is None:
                continue
            value = parsed.value
            taken.append((start, end))
            replacement = MARKER
            if value is not None and days is not None and not any(_same(precision, value, r) for r in removed):
                try:
                    shifted = value + timedelta(days=days)
                except OverflowError:
                    shifted = None
                if shifted is not None and 1000 <= shifted.year <= 9999:
                    replacement = _render(kind, precision, m, parsed, shifted)
            found.append(FoundDate(start, end, precision, value, replacement))
    return sorted(found, key=lambda f: f.start)


def _apply(text: str, found: list[FoundDate], replace: Callable[[FoundDate], str]) -> str:
    out, pos = [], 0
    for f in found:
        out.append(text[pos : f.start])
        out.append(replace(f))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def shift_dates_in_text(text: str, days: int | None, remove: Iterable[date] = ()) -> tuple[str, int]:
    """``text`` with every written date shifted by ``days`` (or removed), and how many were found.

    See the module docstring for the spellings and how partial and ambiguous dates are treated.
    """
    found = find_dates(text, days, remove)
    return _apply(text, found, lambda f: f.replacement), len(found)


# -- ages over 89 (HIPAA Safe Harbor, option hipaa_safe_harbor_ages) ------------------------------

_N = r"(?<![\w.,])\d{2,3}"
_AGE_TEXT = re.compile(
    "|".join(
        (
            rf"{_N}(?:\s*-\s*|\s+)?(?:years?|yrs?|y)(?:\s*-\s*|\s+)old\b",  # 93-year-old, 93 yrs old
            rf"{_N}\s*(?:yo|y/o|y\.o\.|ans|años|anni|jaar|anos)(?!\w)",  # 93 yo, 93 ans, 93 años
            rf"{_N}\s*-?\s*(?:jährig|jaehrig|jahre alt)",  # 93-jährig, 93 Jahre alt
            rf"\b(?:aged?|alter|âgée?|agée?|edad|età|leeftijd|idade)(?:\s+de)?\s*:?\s*{_N}(?!\d|[.,]\d)",
            r"(?<![\w.,])\d{3}Y\b",  # an Age String written into text: 093Y
        )
    ),
    re.IGNORECASE,
)
_AGE_NUM = re.compile(r"\d{2,3}")
#: what an age over 89 becomes in text; ``090Y`` in Age String values
AGE_90_PLUS_TEXT = "90+"
AGE_90_PLUS = "090Y"
_AS = re.compile(r"^\s*(\d{1,4})\s*([DWMY]?)\s*$", re.IGNORECASE)
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def collapse_ages_in_text(text: str) -> tuple[str, int]:
    """Ages over 89 written in ``text`` ("93-year-old", "aged 93", "93 yo") become "90+"; and how many."""
    count = 0

    def one(m: re.Match[str]) -> str:
        nonlocal count
        whole = m.group(0)
        if whole[-1:] in "Yy" and whole[:-1].isdigit():  # 093Y
            if int(whole[:-1]) < 90:
                return whole
            count += 1
            return AGE_90_PLUS
        number = _AGE_NUM.search(whole)
        if number is None or int(number.group()) < 90:
            return whole
        count += 1
        return whole[: number.start()] + AGE_90_PLUS_TEXT + whole[number.end() :]

    return _AGE_TEXT.sub(one, text), count


def collapse_age(value: str) -> str | None:
    """An Age String over 89 years (``093Y``, ``1100M``, ``4800W``) as ``090Y``; None when it stays.

    Malformed values with more than three digits are read too, since they occur in archives.
    """
    m = _AS.match(value)
    if not m:
        return None
    n, unit = int(m.group(1)), (m.group(2) or "Y").upper()
    years = int(n * _DAYS_PER[unit] // 365.25) if unit != "Y" else n
    return AGE_90_PLUS if years >= 90 else None


def collapse_ages(ds: Dataset) -> int:
    """Every AS value at every depth of ``ds`` over 89 years becomes ``090Y``; returns how many."""
    count = 0
    for elem in ds.iterall():
        if elem.VR == "AS" and isinstance(elem.value, str) and elem.value:
            new = collapse_age(elem.value)
            if new is not None and new != elem.value:
                elem.value = new
                count += 1
    return count


# -- the text-cleaning hook ---------------------------------------------------------------------

_PLACEHOLDER_BASE = 0xF0000  # Supplementary Private Use Area-A: no cleaner pattern matches it


class TextDateCleaner(TextCleaner):
    """A :class:`TextCleaner` that shifts written dates (and collapses ages) around the inner clean.

    It subclasses ``TextCleaner`` only so the engine's annotations accept it; every call goes to
    ``inner``. ``clean`` finds the dates first, puts a private-use placeholder where each was (so
    the inner cleaner's generic date patterns do not blank the shifted value), cleans, and puts the
    shifted date (or :data:`MARKER`) back. A date that contains one of the patient's non-date
    identifiers (an accession number that looks like a date) is left to the inner cleaner.
    """

    def __init__(
        self,
        inner: TextCleaner,
        days: int | None,
        birth_date: date | None = None,
        known_dates: Iterable[str] = (),
        ages: bool = False,
    ) -> None:  # no super().__init__: the state is inner's
        self._inner = inner
        self.days = days
        self._remove = (birth_date,) if birth_date is not None else ()
        self._known_dates = {d.casefold() for d in known_dates}
        self.ages = ages

    @classmethod
    def for_dataset(cls, inner: TextCleaner, ds: Dataset, days: int | None, ages: bool = False) -> TextDateCleaner:
        """The cleaner for one dataset (before it is de-identified): its birth date is removed in text."""
        birth = _da(str(ds.get("PatientBirthDate", "") or ""))
        known: list[str] = []
        for keyword in ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            value = ds.get(keyword)
            if isinstance(value, str):
                known.extend(date_forms(value))
        return cls(inner, days, birth, known, ages)

    def _is_identifier(self, span: str) -> bool:
        return span.casefold() not in self._known_dates and self._inner.remove_known(span) != span

    def scrub(self, text: str, generic: bool = True, contact: bool = False) -> tuple[str, str | None]:
        """The inner cleaner's :meth:`TextCleaner.scrub`, with the dates written in ``text`` shifted (or
        removed) around it when ``generic`` (values the profile keeps lose only identifiers, and
        phone numbers and e-mail addresses when ``contact``).

        Reasons are the inner cleaner's, plus ``"date"`` when only a date was shifted or removed (and
        ``"age"`` when only an age over 89 was collapsed).
        """
        if not generic:
            return self._inner.scrub(text, generic=False, contact=contact)
        found = [f for f in find_dates(text, self.days, self._remove) if not self._is_identifier(text[f.start : f.end])]
        if any(_PLACEHOLDER_BASE <= ord(c) < _PLACEHOLDER_BASE + 0x10000 for c in text):
            text = "".join("?" if _PLACEHOLDER_BASE <= ord(c) < _PLACEHOLDER_BASE + 0x10000 else c for c in text)
        if len(found) > 0xFFFF:  # pragma: no cover - a text of 65536 dates
            return MARKER, "date"
        slots = {id(f): i for i, f in enumerate(found)}
        protected = _apply(text, found, lambda f: chr(_PLACEHOLDER_BASE + slots[id(f)]))
        cleaned, reason = self._inner.scrub(protected, generic=True)
        if self.ages:
            cleaned, ages = collapse_ages_in_text(cleaned)
            reason = reason or ("age" if ages else None)
        restored = "".join(
            found[ord(c) - _PLACEHOLDER_BASE].replacement
            if _PLACEHOLDER_BASE <= ord(c) < _PLACEHOLDER_BASE + len(found)
            else c
            for c in cleaned
        )
        return restored, reason or ("date" if found else None)

    def clean(self, text: str) -> str:
        return self.scrub(text, generic=True)[0]

    def remove_known(self, text: str) -> str:
        return self._inner.remove_known(text)

    def contains_identifier(self, text: str) -> bool:
        return self.scrub(text, generic=True)[1] is not None


def _da(value: str) -> date | None:
    value = value.strip()
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
