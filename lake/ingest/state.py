"""What an ingest needs to know about the lake before it starts: what is there already."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from lake.catalog.tables import snapshot_files
from lake.config import LakePaths
from lake.ingest.keyset import KeySet


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


@dataclass
class LakeState:
    """Committed SOP instances, source references and the next free frame of each pixel array.

    Frame allocation starts from the *committed* rows, never from an array's shape: frames a
    crashed run wrote without committing are simply overwritten. The key sets hold 16 bytes per
    key (:mod:`lake.ingest.keyset`), so an ingest into a lake of 10^7 instances starts in seconds.
    """

    sop_uids: KeySet = field(default_factory=lambda: KeySet("uid"))
    instance_sources: KeySet = field(default_factory=lambda: KeySet("hex"))
    reject_sources: KeySet = field(default_factory=lambda: KeySet("hex"))
    next_frame: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: LakePaths) -> LakeState:
        state = cls()
        con = duckdb.connect(":memory:")
        inst = snapshot_files(paths.table("instances"))
        if inst:
            src = f"read_parquet({_files_sql(inst)}, union_by_name = true)"
            state.sop_uids = KeySet.load(con, src, "SOPInstanceUID", "uid")
            state.instance_sources = KeySet.load(con, src, "source_ref", "hex")
            state.next_frame = dict(
                con.execute(
                    f"SELECT pixel_array, max(pixel_frame_start + frame_count) FROM {src} "
                    "WHERE pixel_array IS NOT NULL GROUP BY pixel_array"
                ).fetchall()
            )
        rej = snapshot_files(paths.table("rejects"))
        if rej:
            state.reject_sources = KeySet.load(con, f"read_parquet({_files_sql(rej)})", "source_ref", "hex")
        con.close()
        return state
