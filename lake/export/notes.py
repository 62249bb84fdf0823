"""Per-case teaching notes from a CSV or YAML file (``lake export teaching --notes FILE``).

A note names its case by ``study`` (the lake's de-identified StudyInstanceUID, as the selection
query returns it) or ``case`` (the case number on the index page, from 1), and may hold
``title``, ``history``, ``findings``, ``diagnosis`` and ``discussion`` (plain text).

- CSV: a header row with ``study`` or ``case`` and any of the fields;
- YAML: a list of mappings with the same keys, or a mapping of study UID (or case number) to the fields.

Unknown columns, a note for a case that is not exported and a case with two notes raise
:class:`~lake.errors.ExportError` naming the column, case or line: a typo must not silently drop
the diagnosis of a case.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lake.errors import ExportError

FIELDS = ("title", "history", "findings", "diagnosis", "discussion")
KEYS = ("study", "case")


@dataclass(frozen=True)
class CaseNote:
    """The teaching text of one case (empty strings where the notes say nothing)."""

    title: str = ""
    history: str = ""
    findings: str = ""
    diagnosis: str = ""
    discussion: str = ""

    def as_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FIELDS}


def load_notes(path: str | os.PathLike[str], studies: list[str]) -> dict[str, CaseNote]:
    """Notes by StudyInstanceUID for the exported ``studies`` (in case order). Raises :class:`ExportError`."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"--notes {source}: cannot be read as UTF-8 text ({type(exc).__name__})") from None
    if source.suffix.lower() == ".csv":
        records = _csv_records(text, source)
    elif source.suffix.lower() in (".yaml", ".yml"):
        records = _yaml_records(text, source)
    else:
        raise ExportError(f"--notes {source}: name a .csv, .yaml or .yml file")
    by_case = {str(i + 1): uid for i, uid in enumerate(studies)}
    known = set(studies)
    notes: dict[str, CaseNote] = {}
    for where, record in records:
        unknown = sorted(set(record) - set(FIELDS) - set(KEYS))
        if unknown:
            raise ExportError(
                f"--notes {source} {where}: unknown field(s) {', '.join(unknown)}; use study or case, and "
                f"{', '.join(FIELDS)}"
            )
        study = str(record.get("study") or "").strip()
        case = str(record.get("case") or "").strip()
        uid = study or by_case.get(case, "")
        if not uid or uid not in known:
            named = f"study {study}" if study else f"case {case}" if case else "no study or case"
            raise ExportError(
                f"--notes {source} {where}: {named} is not one of the {len(studies)} exported cases "
                "(give study: the StudyInstanceUID the selection returns, or case: 1 to the number of cases)"
            )
        if uid in notes:
            raise ExportError(f"--notes {source} {where}: a second note for case {studies.index(uid) + 1}")
        notes[uid] = CaseNote(**{f: _text(record.get(f)) for f in FIELDS})
    return notes


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _csv_records(text: str, source: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    if not set(header) & set(KEYS):
        raise ExportError(f"--notes {source}: the CSV header needs a study or case column (found {', '.join(header)})")
    reader.fieldnames = header
    return [(f"line {n + 2}", {k: v for k, v in row.items() if k}) for n, row in enumerate(reader)]


def _yaml_records(text: str, source: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        import yaml
    except ImportError:
        raise ExportError(f"--notes {source}: YAML notes need PyYAML (pip install pyyaml), or give a CSV") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExportError(f"--notes {source}: not valid YAML ({type(exc).__name__})") from None
    if isinstance(data, dict):
        records = []
        for key, fields in data.items():
            if not isinstance(fields, dict):
                raise ExportError(f"--notes {source}: the entry {key} must be a mapping of {', '.join(FIELDS)}")
            name = "case" if isinstance(key, int) else "study"
            records.append((f"entry {key}", {name: key, **fields}))
        return records
    if isinstance(data, list) and all(isinstance(x, dict) for x in data):
        return [(f"item {n + 1}", item) for n, item in enumerate(data)]
    raise ExportError(f"--notes {source}: expected a list of notes or a mapping of study UID to note")
