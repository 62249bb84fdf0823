"""Looking for PHI in every file of a lake, decoded the way a reader would decode it.

:func:`audit` reads every text of the lake (see :mod:`lake.audit.decode`: Parquet values,
statistics and metadata, the Delta log with its column statistics and checkpoints, JSON files,
``zarr.json`` attributes, ``InlineBinary`` and base64 payloads, UTF-16 and latin-1 bytes, file
and folder names) and reports each place where a known identifier or a generic PHI pattern
occurs: file, table, column, DICOM tag path, how it was decoded, and whether the value *equals*
the identifier or only *contains* it. A hit names the identifier (or the pattern), never the
value around it. Identifiers too short or too common to mean a person (``CT``, ``DEFAULT``,
``OFFIS``, ``00000``: see :mod:`lake.audit.vocabulary`) are not searched and are listed instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lake.audit.decode import Place, lake_texts
from lake.audit.patterns import PHI_PATTERNS, inside_own_value, may_contain, pattern_matches
from lake.audit.vocabulary import MIN_LENGTH, is_rule_reason, is_vocabulary, not_searched_reason

__all__ = [
    "PHI_PATTERNS",
    "AuditReport",
    "Hit",
    "Identifier",
    "NotSearched",
    "audit",
    "audit_lake",
    "find_identifiers",
    "identifier_pattern",
    "read_identifiers",
]

#: Identifiers at least this long are also found inside words ("SMITH" in "JSMITH2" needs 6: "SMITHS").
SUBSTRING_MIN_LENGTH = 6
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "AE", "Ö": "OE", "Ü": "UE"})


@dataclass(frozen=True)
class Identifier:
    """One identifier to look for, with its line in the identifiers file (if it came from one)."""

    text: str
    line: int | None = None


@dataclass(frozen=True)
class Hit:
    """One place where an identifier or pattern occurs; ``count`` values there had it."""

    path: str  # relative to the lake root
    where: str  # name | text | binary | json | delta log | delta stats | parquet value | parquet statistics | ...
    identifier: str  # as supplied by the auditor, or "<pattern-name>"
    match: str = "contains"  # "equals": the whole value is the identifier; "contains": it is part of it
    table: str | None = None
    column: str | None = None
    key: str | None = None
    tag_path: str | None = None
    keywords: str | None = None
    encoding: str = "text"
    line: int | None = None
    count: int = 1

    def describe(self) -> str:
        """One PHI-safe line: where, equals/contains, and the identifier (never the value)."""
        parts = [self.where]
        if self.table:
            parts.append(f"table {self.table}")
        if self.column:
            parts.append(f"column {self.column}")
        if self.tag_path:
            tag = f"tag {self.tag_path}"
            if self.keywords and self.keywords != self.tag_path:
                tag += f" ({self.keywords})"
            parts.append(tag)
        if self.key:
            parts.append(f"key {self.key}")
        if self.encoding != "text":
            parts.append(f"decoded {self.encoding}")
        line = f" (line {self.line})" if self.line is not None else ""
        times = f", {self.count} values" if self.count > 1 else ""
        return f"{self.path}: {', '.join(parts)}: {self.match} {self.identifier}{line}{times}"


@dataclass(frozen=True)
class NotSearched:
    """An identifier left out: ``reason`` is "too short" or "too common", ``detail`` says which rule."""

    identifier: str
    line: int | None
    reason: str
    detail: str


@dataclass
class AuditReport:
    hits: list[Hit] = field(default_factory=list)
    not_searched: list[NotSearched] = field(default_factory=list)
    searched: int = 0
    patterns: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.hits

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (PHI-safe: identifiers, pattern names and places only)."""
        return {
            "clean": self.clean,
            "hits": [{k: v for k, v in asdict(h).items() if v is not None} for h in self.hits],
            "not_searched": [asdict(n) for n in self.not_searched],
            "identifiers_searched": self.searched,
            "patterns": list(self.patterns),
        }


def identifier_pattern(identifier: str) -> re.Pattern[str]:
    """Case-insensitive; identifiers under 6 characters must stand alone ("ADA" is not in "metadata")."""
    return re.compile(_identifier_regex(identifier), re.IGNORECASE)


def _identifier_regex(identifier: str) -> str:
    text = identifier.strip()
    escaped = re.escape(text)
    if len(text) < SUBSTRING_MIN_LENGTH:
        escaped = rf"(?<![^\W_]){escaped}(?![^\W_])"
    else:  # a number is not found inside a longer number
        escaped = ("(?<!\\d)" if text[:1].isdigit() else "") + escaped + ("(?!\\d)" if text[-1:].isdigit() else "")
    return escaped


def _variants(text: str) -> set[str]:
    """The identifier, without accents, and transliterated (MÜLLER, MULLER, MUELLER; ß as ss)."""
    out = {text}
    if not text.isascii():
        out.add(text.translate(_TRANSLITERATION))
        decomposed = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
        out.add("".join(ch for ch in decomposed if not unicodedata.combining(ch)))
    return {v for v in out if v.strip()}


class _Matcher:
    """Every identifier and pattern in one text; a combined regex tells first whether to look closer."""

    def __init__(self, identifiers: list[Identifier], patterns: tuple[tuple[str, re.Pattern[str]], ...]) -> None:
        self.needles: list[tuple[str, re.Pattern[str], Identifier]] = []
        for ident in identifiers:
            for variant in sorted(_variants(ident.text.strip())):
                self.needles.append((variant.casefold(), identifier_pattern(variant), ident))
        self.folded = sorted({v for v, _, _ in self.needles})
        self.patterns = patterns

    def may_match(self, text: str) -> bool:
        """False when nothing can be found in ``text`` (substring tests and pattern hints, no big regex)."""
        if self.folded:
            folded = text.casefold()
            if any(v in folded for v in self.folded):
                return True
        return any(may_contain(name, pattern, text) for name, pattern in self.patterns)

    def find(self, text: str, is_name: bool = False) -> list[tuple[str, int | None, str]]:
        """(identifier or <pattern>, its line, equals|contains) for each one found in ``text``.

        A file name equals an identifier also when its stem does (``quixote.txt``).
        """
        if not self.may_match(text):
            return []
        found: dict[tuple[str, int | None], str] = {}
        folded = text.casefold()
        wholes = {text.strip().strip("\x00").strip().casefold()}
        if is_name and "." in text:
            wholes.add(text.split(".", 1)[0].casefold())
        for variant, pattern, ident in self.needles:
            if variant not in folded:
                continue
            for m in pattern.finditer(text):
                if not _uid_like(variant) and inside_own_value(text, m.start(), m.end()):
                    continue  # digits inside a UID or a timestamp
                if _inside_vocabulary_word(text, m.start(), m.end()):
                    continue  # "operator" in OperatorsName
                if _part_of_a_uuid(text, m.start(), m.end()):
                    continue  # "abcd" in a table file's random name (part-00000-...-abcd-...-c000)
                match = "equals" if variant in wholes else "contains"
                key = (ident.text, ident.line)
                if found.get(key) != "equals":
                    found[key] = match
                break
        for name, pattern in self.patterns:
            for m in pattern_matches(text, name, pattern):
                found[(f"<{name}>", None)] = "equals" if m.group(0).strip() == text.strip() else "contains"
                break
        return [(ident, line, match) for (ident, line), match in found.items()]


def _inside_vocabulary_word(text: str, start: int, end: int) -> bool:
    """True when the match is part of a longer word of the lake's vocabulary (a keyword, a column name)."""
    left, right = start, end
    while left > 0 and (text[left - 1].isalnum() or text[left - 1] == "_"):
        left -= 1
    while right < len(text) and (text[right].isalnum() or text[right] == "_"):
        right += 1
    return (left, right) != (start, end) and is_vocabulary(text[left:right])


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _part_of_a_uuid(text: str, start: int, end: int) -> bool:
    """True when the match is a part, not the whole, of a UUID (the writers name files with random
    ones: a short identifier turns up in one of them now and then). A whole UUID still matches."""
    return any(
        u.start() <= start and end <= u.end() and (u.start(), u.end()) != (start, end) for u in _UUID.finditer(text)
    )


def _uid_like(text: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+", text))


def audit(
    root: Path,
    identifiers: Iterable[str | Identifier] = (),
    patterns: Iterable[tuple[str, re.Pattern[str]]] = PHI_PATTERNS,
    skip_common: bool = True,
    min_length: int = MIN_LENGTH,
) -> AuditReport:
    """Every hit of ``identifiers`` (case-insensitive) and ``patterns`` in every file of the lake at ``root``.

    With ``skip_common`` identifiers too short or too common to mean a person are listed in
    ``not_searched`` instead of being searched; without it only those under ``min_length``.
    """
    report = AuditReport(patterns=tuple(name for name, _ in patterns))
    seen: set[str] = set()
    wanted: list[Identifier] = []
    for item in identifiers:
        ident = item if isinstance(item, Identifier) else Identifier(item)
        text = ident.text.strip()
        if not text or text.casefold() in seen:
            continue
        seen.add(text.casefold())
        why = not_searched_reason(text) if skip_common else None
        if why is None and len(text) < min_length:
            why = ("too short", f"under {min_length} characters")
        if why is not None:
            report.not_searched.append(NotSearched(text, ident.line, *why))
        else:
            wanted.append(Identifier(text, ident.line))
    report.searched = len(wanted)
    matcher = _Matcher(wanted, tuple(patterns))
    counts: dict[Hit, int] = {}
    for place, text in lake_texts(Path(root), matcher.may_match):
        if "deid_rule:" in text and is_rule_reason(text):
            continue  # a pixel reason naming deid's filter rules: their labels, not a file's value
        for name, line, match in matcher.find(text, is_name=place.where == "name"):
            hit = _hit(place, name, line, match)
            counts[hit] = counts.get(hit, 0) + 1
    report.hits = [_with_count(h, n) for h, n in counts.items()]
    return report


def _hit(place: Place, identifier: str, line: int | None, match: str) -> Hit:
    return Hit(
        path=place.path,
        where=place.where,
        identifier=identifier,
        match=match,
        table=place.table,
        column=place.column,
        key=place.key,
        tag_path=place.tag_path,
        keywords=place.keywords,
        encoding=place.encoding,
        line=line,
    )


def _with_count(hit: Hit, count: int) -> Hit:
    from dataclasses import replace

    return replace(hit, count=count)


def audit_lake(
    root: Path,
    identifiers: Iterable[str | Identifier] = (),
    min_length: int = MIN_LENGTH,
    patterns: Iterable[tuple[str, re.Pattern[str]]] = PHI_PATTERNS,
) -> list[Hit]:
    """The hits of :func:`audit` (common identifiers skipped). A pattern hit names the pattern, never the text."""
    return audit(root, identifiers, patterns=patterns, min_length=min_length).hits


def find_identifiers(root: Path, identifiers: Iterable[str], min_length: int = 3) -> list[Hit]:
    """Every place where one of ``identifiers`` occurs, common words included (for tests of the lake's writers)."""
    return audit(root, identifiers, patterns=(), skip_common=False, min_length=min_length).hits


def read_identifiers(path: Path) -> list[Identifier]:
    """An identifiers file: plain UTF-8 text, one identifier per line; blank lines are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [Identifier(line.strip(), number) for number, line in enumerate(lines, 1) if line.strip()]
