"""What a crashed run leaves behind: pixel arrays and ``bulk`` rows no committed instance row points to.

Ingest workers build each pixel array under ``pixels/.writing/`` and rename it into place when it is
verified (:meth:`lake.pixels.store.PixelStore.write_new`); a dead writer's folder there is listed
here like any array no row points to, and removed.

An ingest batch commits its pixels, then its ``bulk`` rows, then its ``instances`` rows (the
commit that makes the batch visible). A kill between the last two leaves bulk rows of instances
that are not in the lake: readers never see them (the ``bulk`` view keeps the rows of committed
instances only, :mod:`lake.catalog.query`), and the next write under the lock deletes them
(:func:`remove_orphan_bulk`, run by ``lake ingest`` and ``lake vacuum`` before they write), so a
rerun writes them again once, as an uninterrupted run would have.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Container
from pathlib import Path

from lake import memory
from lake.catalog.tables import delete_where, distinct_values, snapshot_files
from lake.config import LakePaths
from lake.fixity import record_table_fixity

logger = logging.getLogger(__name__)

_FALLBACK_OLD = ".fallback-old"


def _recover_fallback(pixels: Path) -> None:
    """Undo a codec fallback cut between its two renames (the old array is the committed one)."""
    for old in sorted(pixels.glob(f"*/*{_FALLBACK_OLD}")):
        target = old.with_name(old.name.removesuffix(_FALLBACK_OLD))
        if target.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, target)


def orphan_arrays(paths: LakePaths, committed: Container[str]) -> list[str]:
    """Array keys (``series/group``) under ``pixels/`` that are neither in ``committed`` nor retained
    (:func:`retained_arrays`)."""
    if not paths.pixels.is_dir():
        return []
    found = sorted(
        p.relative_to(paths.pixels).as_posix()
        for p in paths.pixels.glob("*/*")
        if p.is_dir() and p.relative_to(paths.pixels).as_posix() not in committed
    )
    if not found:
        return []
    retained = retained_arrays(paths)
    return [key for key in found if key not in retained]


def retained_arrays(paths: LakePaths) -> set[str]:
    """The arrays that rows of any ``instances`` file still on disk point to: the current snapshot's,
    and those of the older versions Delta keeps for time travel until ``lake vacuum`` removes their
    files (``lake forget`` and corrections vacuum at once). A snapshot pinned to an older version (a
    cohort's manifest) so reads its pixels after ``lake optimize`` merged its arrays, until the
    retention ends. A file never committed (a killed writer's) counts too: the array it names is
    kept until vacuum, and a rerun writing the same content finds it by its name."""
    folder = paths.table("instances")
    if not folder.is_dir():
        return set()
    files = sorted(str(p) for p in folder.rglob("*.parquet") if "_delta_log" not in p.relative_to(folder).parts)
    if not files:
        return set()
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    with memory.connect("arrays", ordered=False) as con:
        rows = con.execute(
            f"SELECT DISTINCT pixel_array FROM read_parquet([{listed}], union_by_name = true) "
            "WHERE pixel_array IS NOT NULL"
        ).fetchall()
    return {str(r[0]) for r in rows}


def remove_orphans(paths: LakePaths, committed: Container[str]) -> list[str]:
    """Delete arrays no committed row points to, nor a retained older version's (call under the
    write lock); returns their keys.

    ``committed`` is the set of ``pixel_array`` values of the ``instances`` snapshot.
    """
    if not paths.pixels.is_dir():
        return []
    _recover_fallback(paths.pixels)
    removed = orphan_arrays(paths, committed)
    for key in removed:
        shutil.rmtree(paths.pixels / key)
        logger.info("removed an uncommitted pixel array")
    for series in paths.pixels.iterdir():
        if series.is_dir() and not any(series.iterdir()):
            series.rmdir()
    return removed


def committed_arrays(paths: LakePaths) -> set[str]:
    """The pixel arrays committed rows use (one DISTINCT in DuckDB, not the ingest state)."""
    inst = snapshot_files(paths.table("instances"))
    if not inst:
        return set()
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in inst)
    with memory.connect("arrays", ordered=False) as con:
        rows = con.execute(
            f"SELECT DISTINCT pixel_array FROM read_parquet([{listed}], union_by_name = true) "
            "WHERE pixel_array IS NOT NULL"
        ).fetchall()
    return {str(r[0]) for r in rows}


def orphan_bulk_instances(paths: LakePaths, committed: Container[str] | None = None) -> list[str]:
    """SOPInstanceUIDs of ``bulk`` rows whose instance is not in ``committed`` (default: the instances
    snapshot, by an anti-join in DuckDB within the memory budget)."""
    files = snapshot_files(paths.table("bulk"))
    if not files:
        return []
    if committed is not None:
        return sorted(uid for uid in distinct_values(files, "SOPInstanceUID") if uid not in committed)
    inst = snapshot_files(paths.table("instances"))

    def listed(found: list[str]) -> str:
        return ", ".join("'" + f.replace("'", "''") + "'" for f in found)

    query = f"SELECT DISTINCT SOPInstanceUID FROM read_parquet([{listed(files)}], union_by_name = true)"
    if inst:
        query += (
            f" EXCEPT SELECT SOPInstanceUID FROM read_parquet([{listed(inst)}], union_by_name = true)"
        )
    with memory.connect("bulk-orphans", ordered=False) as con:
        return sorted(str(r[0]) for r in con.execute(query).fetchall())


def remove_orphan_bulk(paths: LakePaths, committed: Container[str] | None = None, run_id: str | None = None) -> int:
    """Delete the ``bulk`` rows of instances not in ``committed`` (under the write lock), in one commit
    whose files get their checksums; returns the rows deleted."""
    orphans = orphan_bulk_instances(paths, committed)
    if not orphans:
        return 0
    quoted = ", ".join("'" + uid.replace("'", "''") + "'" for uid in orphans)
    deleted = delete_where(paths.table("bulk"), f"SOPInstanceUID IN ({quoted})")
    record_table_fixity(paths, run_id)
    logger.info("removed %d bulk rows of uncommitted instances", deleted)
    return deleted
