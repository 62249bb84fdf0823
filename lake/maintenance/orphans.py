"""Pixel arrays no committed row points to: what a crashed run leaves behind."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Container
from pathlib import Path

from lake import memory
from lake.catalog.tables import snapshot_files
from lake.config import LakePaths

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
    """Array keys (``series/group``) under ``pixels/`` that are not in ``committed``."""
    if not paths.pixels.is_dir():
        return []
    return sorted(
        p.relative_to(paths.pixels).as_posix()
        for p in paths.pixels.glob("*/*")
        if p.is_dir() and p.relative_to(paths.pixels).as_posix() not in committed
    )


def remove_orphans(paths: LakePaths, committed: Container[str]) -> list[str]:
    """Delete arrays no committed row points to (call under the write lock); returns their keys.

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
