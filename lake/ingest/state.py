"""What an ingest needs to know about the lake before it starts: what is there already."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from lake.catalog.tables import snapshot_files
from lake.config import LakePaths


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


@dataclass
class LakeState:
    """Committed SOP instances, source references and the next free frame of each pixel array.

    Frame allocation starts from the *committed* rows, never from an array's shape: frames a
    crashed run wrote without committing are simply overwritten.
    """

    sop_uids: set[str] = field(default_factory=set)
    instance_sources: set[str] = field(default_factory=set)
    reject_sources: set[str] = field(default_factory=set)
    next_frame: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: LakePaths) -> LakeState:
        state = cls()
        con = duckdb.connect(":memory:")
        inst = snapshot_files(paths.table("instances"))
        if inst:
            src = f"read_parquet({_files_sql(inst)}, union_by_name = true)"
            for sop, ref in con.execute(f"SELECT SOPInstanceUID, source_ref FROM {src}").fetchall():
                state.sop_uids.add(sop)
                if ref:
                    state.instance_sources.add(ref)
            state.next_frame = dict(
                con.execute(
                    f"SELECT pixel_array, max(pixel_frame_start + frame_count) FROM {src} "
                    "WHERE pixel_array IS NOT NULL GROUP BY pixel_array"
                ).fetchall()
            )
        rej = snapshot_files(paths.table("rejects"))
        if rej:
            state.reject_sources = {
                r for (r,) in con.execute(f"SELECT DISTINCT source_ref FROM read_parquet({_files_sql(rej)})").fetchall()
            }
        con.close()
        return state
