"""``lake vacuum``: remove what no snapshot needs: uncommitted pixel arrays and old table files.

Delta tables keep the Parquet files of earlier versions (time travel) until a vacuum removes
those older than the retention. :func:`purge_history` goes further, for withdrawals: it also
rewrites the log into one checkpoint and deletes the older log entries, whose statistics quote
values of deleted rows.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from lake.config import LakePaths, read_config
from lake.fixity import record_table_fixity, table_dirs
from lake.lock import write_lock
from lake.maintenance import DEFAULT_RETENTION_HOURS
from lake.maintenance.orphans import committed_arrays, remove_orphan_bulk, remove_orphans
from lake.runs import append_run, new_run_id, utc_now


@dataclass
class VacuumSummary:
    run_id: str
    orphan_arrays: int = 0
    orphan_bulk_rows: int = 0  # bulk rows of instances never committed
    table_files: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vacuum_table(table_dir: Path, retention_hours: int) -> int:
    """Delete the table's files unreferenced for ``retention_hours`` (0: all); returns how many."""
    dt = DeltaTable(str(table_dir))
    removed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
    return len(removed)


def purge_history(table_dir: Path) -> int:
    """Checkpoint the table and delete every log entry and checkpoint before it; returns how many.

    Afterwards the table has no history: readers start from the checkpoint, which lists only the
    current files and their statistics.
    """
    dt = DeltaTable(str(table_dir))
    # The newest log entry survives the purge; make it one that quotes nothing (a delete's entry
    # quotes its predicate, e.g. the forgotten patient's pseudonym).
    dt.alter.set_table_properties({"lake.history": "purged"}, raise_if_not_exists=False)
    dt.create_checkpoint()
    version = dt.version()
    log = table_dir / "_delta_log"
    removed = 0
    for entry in sorted(log.iterdir()):
        head = entry.name.split(".", 1)[0]
        if not head.isdigit() or int(head) >= version:
            continue
        if entry.name.endswith((".json", ".checkpoint.parquet", ".crc")) or ".checkpoint." in entry.name:
            entry.unlink()
            removed += 1
    return removed


def vacuum(root: str | os.PathLike[str], retention_hours: int = DEFAULT_RETENTION_HOURS) -> VacuumSummary:
    """Remove orphan arrays and bulk rows, and table files unreferenced for ``retention_hours``, under the lock."""
    paths = LakePaths(root)
    read_config(paths)
    started = utc_now()
    summary = VacuumSummary(new_run_id("M"))
    with write_lock(paths.lock):
        summary.orphan_bulk_rows = remove_orphan_bulk(paths, None, summary.run_id)
        for table_dir in table_dirs(paths):
            summary.table_files[table_dir.name] = vacuum_table(table_dir, retention_hours)
        # after the tables: an array only the versions just vacuumed pointed to (lake optimize merged
        # it, a correction replaced it) is no longer retained (lake.maintenance.orphans.retained_arrays)
        summary.orphan_arrays = len(remove_orphans(paths, committed_arrays(paths)))
        record_table_fixity(paths, summary.run_id)
        params = {"retention_hours": retention_hours}
        append_run(paths, summary.run_id, "vacuum", started, params, summary.to_dict(), "ok")
    return summary
