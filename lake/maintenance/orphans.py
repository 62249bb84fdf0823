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

import json
import logging
import os
import shutil
from collections.abc import Container, Iterable
from pathlib import Path

from lake import memory
from lake.catalog.ordered import parquet_source
from lake.catalog.tables import delete_where, distinct_values, lake_snapshot, snapshot_files
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
    """The arrays that rows of a committed ``instances`` file still on disk point to: the current
    snapshot's, and those of the older versions Delta keeps for time travel until ``lake vacuum``
    removes their files (``lake forget`` and corrections vacuum at once). A snapshot pinned to an
    older version (a cohort's manifest) so reads its pixels after ``lake optimize`` merged its
    arrays, until the retention ends. A file no commit of the log adds (a killed writer's) does not
    count: the arrays it names are orphans."""
    if not paths.is_local:
        return _retained_in_objects(paths)
    folder = paths.table("instances")
    log = folder / "_delta_log"
    if not log.is_dir():
        return set()
    added = _added_paths(entry.read_bytes() for entry in sorted(log.glob("*.json")))
    files = sorted({str(folder / rel) for rel in added} | set(snapshot_files(folder)))
    files = [f for f in files if os.path.isfile(f)]
    return _arrays_in(files)


def _added_paths(commits: Iterable[bytes]) -> set[str]:
    """The data file paths (relative to the table) that the Delta commits' ``add`` actions name."""
    from urllib.parse import unquote

    added: set[str] = set()
    for commit in commits:
        for line in commit.splitlines():
            if b'"add"' not in line:
                continue
            action = json.loads(line).get("add")
            if isinstance(action, dict) and isinstance(action.get("path"), str):
                added.add(unquote(action["path"]))
    return added


def _retained_in_objects(paths: LakePaths) -> set[str]:
    """:func:`retained_arrays` of a lake in object storage (its Parquet files read through pyarrow's
    filesystem, the one column only)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    storage = paths.storage
    prefix = paths.table_key("instances")
    listed = [i.path for i in storage.list(prefix)]
    commits = (storage.read(path) for path in sorted(listed) if "/_delta_log/" in path and path.endswith(".json"))
    added = {f"{prefix}/{rel}" for rel in _added_paths(commits)}
    current = lake_snapshot(paths, "instances")[0]  # its files may be named by a checkpoint only
    files = sorted({storage.uri(path) for path in listed if path in added} | set(current))
    if not files:
        return set()
    fs, _root = storage.arrow_filesystem()
    column = ds.dataset([f.split("://", 1)[-1] for f in files], format="parquet", filesystem=fs).to_table(
        columns=["pixel_array"]
    )["pixel_array"]
    return {str(v) for v in pc.unique(column).drop_null().to_pylist()}


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
    return _arrays_in(inst)


def _arrays_in(files: list[str]) -> set[str]:
    """The distinct ``pixel_array`` values of the rows of ``files`` (one DISTINCT in DuckDB)."""
    if not files:
        return set()
    with memory.connect("arrays", ordered=False) as con:
        rows = con.execute(
            f"SELECT DISTINCT pixel_array FROM {parquet_source(files)} WHERE pixel_array IS NOT NULL"
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
