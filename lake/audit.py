"""Looking for PHI in every file of a lake, decoded the way a reader would decode it.

Parquet files are decoded (all values, footer statistics, key-value metadata), Delta logs and
JSON read as text (including column statistics), Zarr metadata read as JSON, file and folder
names checked too. Compressed pixel chunks are not text and are skipped (burned-in text is the
pixel policy's job).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

SUBSTRING_MIN_LENGTH = 6
TEXT_SUFFIXES = (".json", ".jsonl", ".txt", ".csv", ".md", ".html", ".crc", ".sql", ".toml")


@dataclass(frozen=True)
class Hit:
    path: str  # relative to the lake root
    where: str  # "name", "content", "parquet column X", "parquet statistics", ...
    identifier: str


def _parquet_texts(path: Path) -> Iterator[tuple[str, str]]:
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    kv = meta.metadata or {}
    yield (
        "parquet metadata",
        " ".join(k.decode("utf-8", "replace") + "=" + v.decode("utf-8", "replace") for k, v in kv.items()),
    )
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            col = group.column(c)
            stats = col.statistics
            if stats is not None and stats.has_min_max:
                yield f"parquet statistics {col.path_in_schema}", f"{stats.min!s} {stats.max!s}"
    table = pf.read()
    for name in table.column_names:
        values = table.column(name).to_pylist()
        yield f"parquet column {name}", "\n".join(str(v) for v in values if v is not None)


def lake_texts(root: Path) -> Iterator[tuple[str, str, str]]:
    """(relative path, where, text) for every name and decodable content in the lake."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            yield rel, "name", rel
        for name in filenames:
            path = Path(dirpath) / name
            rel = os.path.relpath(path, root)
            if name.endswith(".parquet"):
                for where, text in _parquet_texts(path):
                    yield rel, where, text
            elif name.endswith(TEXT_SUFFIXES) or name == "zarr.json" or name == ".lock":
                yield rel, "content", path.read_bytes().decode("utf-8", "replace")
            elif "/c/" in rel.replace(os.sep, "/") or "\\c\\" in rel:
                continue  # a compressed pixel chunk or shard
            else:
                yield rel, "content", path.read_bytes().decode("latin-1")


def identifier_pattern(identifier: str) -> re.Pattern[str]:
    """Case-insensitive; identifiers under 6 characters must stand alone ("ADA" is not in "metadata")."""
    return re.compile(_identifier_regex(identifier), re.IGNORECASE)


def _identifier_regex(identifier: str) -> str:
    escaped = re.escape(identifier.strip())
    if len(identifier.strip()) < SUBSTRING_MIN_LENGTH:
        escaped = rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"
    return escaped


#: Generic PHI patterns: (name reported instead of the value, regex). Chosen so that what a lake
#: legitimately holds (UIDs, numbers, ISO dates, pseudonyms) does not match.
PHI_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email-like", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    ("ssn-like", re.compile(r"(?<![\d.-])\d{3}-\d{2}-\d{4}(?![\d.-])")),
    (
        "phone-like",
        re.compile(
            r"(?<![\w.])(?:\(\d{3}\)\s?\d{3}[-.\s]\d{4}|\d{3}-\d{3}-\d{4}"
            r"|\+\d{1,3}[ -]\d{1,4}[ -]\d{3,4}[ -]\d{3,4})(?![\w.])"
        ),
    ),
)


def find_identifiers(root: Path, identifiers: Iterable[str], min_length: int = 3) -> list[Hit]:
    """Every place where one of ``identifiers`` occurs in the lake's files (see ``identifier_pattern``)."""
    return audit_lake(root, identifiers, min_length=min_length, patterns=())


def audit_lake(
    root: Path,
    identifiers: Iterable[str] = (),
    min_length: int = 2,
    patterns: Iterable[tuple[str, re.Pattern[str]]] = PHI_PATTERNS,
) -> list[Hit]:
    """Hits of known ``identifiers`` (case-insensitive) and generic PHI ``patterns`` in every lake file.

    A pattern hit reports the pattern's name, never the matched text.
    """
    needles = sorted({i.strip() for i in identifiers if len(i.strip()) >= min_length}, key=str.lower)
    combined = re.compile("|".join(f"(?:{_identifier_regex(n)})" for n in needles), re.IGNORECASE) if needles else None
    lowered = {n.lower(): n for n in needles}
    singles = {n: identifier_pattern(n) for n in needles}
    patterns = tuple(patterns)
    hits: list[Hit] = []
    for rel, where, text in lake_texts(root):
        if combined is not None and combined.search(text):
            # The combined regex says "something"; name each identifier that occurs.
            found = {lowered[m.group(0).lower()] for m in combined.finditer(text) if m.group(0).lower() in lowered}
            found |= {n for n, pat in singles.items() if n not in found and pat.search(text)}
            hits.extend(Hit(rel, where, n) for n in sorted(found, key=str.lower))
        for name, pattern in patterns:
            if pattern.search(text):
                hits.append(Hit(rel, where, f"<{name}>"))
    return hits


def read_identifiers(path: Path) -> list[str]:
    """An identifiers file: plain text, one identifier per line; blank lines are ignored."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
