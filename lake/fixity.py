"""Checksums of the tables' Parquet files, recorded when they are committed, for ``lake verify``.

Each Delta table folder ``tables/<name>/`` holds a sidecar ``_lake_fixity.json``::

    {"format": 1, "files": {"tables/<name>/part-....parquet": {"sha256": "...", "size": 123, "run": "..."}}}

(Delta treats names starting with ``_`` as its own, so a Delta vacuum never removes it.) Entries are
added for every file of the table's current snapshot not yet recorded and dropped for files no longer
in the snapshot; the sidecar is replaced atomically. Pixel files are recorded by
:mod:`lake.pixels.fixity`. Paths are lake-relative and hold only generated file names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lake.config import LakePaths
from lake.pixels.fixity import sha256_file

SIDECAR = "_lake_fixity.json"
FORMAT = 1


class TableFileStatus(StrEnum):
    CHANGED = "changed"  # bytes differ from those recorded at commit time
    MISSING = "missing"  # in the snapshot but not on disk
    SIZE_MISMATCH = "size_mismatch"  # size differs from the Delta log's add action
    UNRECORDED = "unrecorded"  # in the snapshot but never checksummed (a crash right after a commit)


@dataclass(frozen=True)
class TableFileProblem:
    path: str  # lake-relative
    status: TableFileStatus


def table_dirs(paths: LakePaths) -> list[Path]:
    """Every Delta table folder of the lake (tables added by other parts of ``lake`` included)."""
    if not paths.tables.is_dir():
        return []
    return sorted(p for p in paths.tables.iterdir() if (p / "_delta_log").is_dir())


def snapshot_sizes(table_dir: Path) -> dict[str, int]:
    """Table-relative path -> size in bytes of every file of the current snapshot (from the log)."""
    try:
        dt = DeltaTable(str(table_dir))
    except TableNotFoundError:
        return {}
    actions = dt.get_add_actions(flatten=True)
    data = actions.to_pydict() if hasattr(actions, "to_pydict") else {}
    if not data:  # arro3 tables: read the columns one by one
        data = {name: actions.column(name).to_pylist() for name in ("path", "size_bytes")}
    return {str(p): int(s) for p, s in zip(data["path"], data["size_bytes"], strict=True)}


def _read_sidecar(table_dir: Path) -> dict[str, dict[str, Any]]:
    sidecar = table_dir / SIDECAR
    if not sidecar.is_file():
        return {}
    files: dict[str, dict[str, Any]] = json.loads(sidecar.read_text(encoding="utf-8"))["files"]
    return files


def record_table_fixity(paths: LakePaths, run_id: str | None = None) -> int:
    """Checksum the not yet recorded snapshot files of every table; returns how many were added.

    Call it right after a commit (under the write lock).
    """
    added = 0
    for table_dir in table_dirs(paths):
        recorded = _read_sidecar(table_dir)
        current: dict[str, dict[str, Any]] = {}
        for rel, size in snapshot_sizes(table_dir).items():
            key = (table_dir / rel).relative_to(paths.root).as_posix()
            if key in recorded:
                current[key] = recorded[key]
            elif (table_dir / rel).is_file():
                current[key] = {"sha256": sha256_file(table_dir / rel), "size": size, "run": run_id}
                added += 1
        if current != recorded:
            tmp = table_dir / (SIDECAR + ".tmp")
            tmp.write_text(json.dumps({"format": FORMAT, "files": current}, sort_keys=True, indent=1), encoding="utf-8")
            os.replace(tmp, table_dir / SIDECAR)
    return added


def verify_table_fixity(paths: LakePaths) -> tuple[list[TableFileProblem], int]:
    """Problems with the Parquet files of every table's snapshot, and how many files were checked."""
    problems: list[TableFileProblem] = []
    checked = 0
    for table_dir in table_dirs(paths):
        recorded = _read_sidecar(table_dir)
        for rel, size in sorted(snapshot_sizes(table_dir).items()):
            path = table_dir / rel
            key = path.relative_to(paths.root).as_posix()
            checked += 1
            if not path.is_file():
                problems.append(TableFileProblem(key, TableFileStatus.MISSING))
            elif path.stat().st_size != size:
                problems.append(TableFileProblem(key, TableFileStatus.SIZE_MISMATCH))
            elif key not in recorded:
                problems.append(TableFileProblem(key, TableFileStatus.UNRECORDED))
            elif sha256_file(path) != recorded[key]["sha256"]:
                problems.append(TableFileProblem(key, TableFileStatus.CHANGED))
    return problems, checked
