"""What a PACS pull asks for (filters) and how politely (limits): one object for every PACS source.

The filter values (accession numbers, patient IDs) are PHI: they are read from a CSV file, never
from the command line, and never appear in a message.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path

from lake.errors import ConfigError

#: PS3.5 AE title: 1 to 16 printable characters, no backslash, not blank.
AE_TITLE = re.compile(r"^(?=.*[^ ])[\x20-\x5b\x5d-\x7e]{1,16}$")
_DATE_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$|^(\d{8})$")


@dataclass(frozen=True)
class Window:
    """Hours of the day a pull may start studies in (``19:00-07:00`` wraps past midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window:
        try:
            a, b = text.split("-")
            start, end = (datetime.strptime(t.strip(), "%H:%M").time() for t in (a, b))
        except ValueError:
            raise ConfigError(f"window {text!r}: expected HH:MM-HH:MM, e.g. 19:00-07:00") from None
        if start == end:
            raise ConfigError(f"window {text!r} is empty: give different start and end times, e.g. 19:00-07:00")
        return cls(start, end)

    def open_at(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True)
class PullOptions:
    """Filters and limits of a PACS pull.

    ``study_dates``: ``YYYYMMDD-YYYYMMDD`` (either side may be left open) or one day; ``modalities``:
    studies holding any of them; ``accession_numbers`` / ``patient_ids``: studies matching any
    (read with :func:`read_id_csv`). ``max_requests``: requests in flight at once; ``rate``: requests
    per second (None: no limit); ``retries``: attempts after the first for a failed or incomplete
    series, with exponential back-off from ``backoff`` seconds up to ``max_backoff``; ``window``:
    new studies start only inside it (the rest are left for the next run); ``auth_file``: where the
    credentials are (else the environment, see :mod:`lake.sources.auth`).

    DIMSE only: ``calling_aet``, the lake's AE title in its associations; ``move_port``: retrieve by
    C-MOVE to the lake's own storage SCP listening on that port (on ``move_bind``, all interfaces by
    default) under ``move_aet`` (default: ``calling_aet``), which the PACS must know at that address;
    without it, by C-GET.
    """

    study_dates: str | None = None
    modalities: tuple[str, ...] = ()
    accession_numbers: tuple[str, ...] = ()
    patient_ids: tuple[str, ...] = ()
    max_requests: int = 4
    rate: float | None = None
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 60.0
    window: Window | None = None
    auth_file: Path | None = field(default=None)
    page_size: int = 100
    calling_aet: str = "LAKE"
    move_port: int | None = None
    move_aet: str | None = None
    move_bind: str = "0.0.0.0"

    def __post_init__(self) -> None:
        if self.study_dates is not None and not _DATE_RANGE.match(self.study_dates):
            raise ConfigError(
                f"study dates {self.study_dates!r}: expected YYYYMMDD-YYYYMMDD (either side may be empty) or YYYYMMDD"
            )
        for m in self.modalities:
            if not re.fullmatch(r"[A-Z0-9]{1,16}", m):
                raise ConfigError(f"modality {m!r}: expected a DICOM modality code such as CT, MR or US")
        if self.max_requests < 1:
            raise ConfigError(f"max_requests must be at least 1, got {self.max_requests!r}")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate must be a positive number of requests per second, got {self.rate!r}")
        if self.retries < 0:
            raise ConfigError(f"retries must be 0 or more, got {self.retries!r}")
        for what, title in (("--calling-aet", self.calling_aet), ("--move-to", self.move_aet)):
            if title is not None and not AE_TITLE.match(title):
                raise ConfigError(f"{what} {title!r}: expected an AE title of 1 to 16 characters, no backslash")
        if self.move_port is not None and not 0 < self.move_port < 65536:
            raise ConfigError(f"move port must be a number from 1 to 65535, got {self.move_port!r}")
        if self.move_aet is not None and self.move_port is None:
            raise ConfigError("--move-to names the C-MOVE destination: give --move-port too (where the lake listens)")
        if self.page_size < 1:
            raise ConfigError(f"page_size must be at least 1, got {self.page_size!r}")


#: Column names read_id_csv recognises (case and spaces ignored), per kind of identifier.
ID_COLUMNS = {
    "accession": ("accessionnumber", "accession", "accession_number", "acc"),
    "patient": ("patientid", "patient_id", "patient", "mrn"),
}


def read_id_csv(path: str | os.PathLike[str], kind: str) -> tuple[str, ...]:
    """The identifiers in a CSV file: the column named for ``kind`` (``accession`` or ``patient``,
    see :data:`ID_COLUMNS`), or the only column of a file without such a header. Blank cells and
    repeats are dropped; the order of first appearance is kept. Raises :class:`ConfigError` naming the
    file (never a value)."""
    names = ID_COLUMNS[kind]
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {kind} list {path}: {type(exc).__name__}; give a UTF-8 CSV file") from None
    if not rows:
        raise ConfigError(f"the {kind} list {path} is empty: give one identifier a line (a header is optional)")
    header = [c.strip().lower().replace(" ", "") for c in rows[0]]
    column = next((i for i, h in enumerate(header) if h in names), None)
    if column is not None:
        rows = rows[1:]
    elif len(header) == 1:
        column = 0
    else:
        raise ConfigError(
            f"the {kind} list {path} has several columns and none is named {names[0]}: "
            f"name the column ({', '.join(names)}) or give a one-column file"
        )
    seen: dict[str, None] = {}
    for row in rows:
        if column < len(row) and row[column].strip():
            seen.setdefault(row[column].strip(), None)
    if not seen:
        raise ConfigError(f"the {kind} list {path} holds no identifier: give one a line")
    return tuple(seen)
