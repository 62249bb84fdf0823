"""What an ingest needs to know about the lake before it starts: what is there already."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np

from lake import memory
from lake.catalog.tables import snapshot_files
from lake.config import LakePaths
from lake.ingest.keyset import KeySet


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


class RejectReasons:
    """The ``stage:reason`` of each committed reject, so a rerun that meets a rejected file again
    counts it under its reason (the summary's breakdown adds up to the rejected count).

    Held as a sorted array of the references and a small code per reject (about 40 bytes each),
    not a dict of Python strings, like :class:`lake.ingest.keyset.KeySet`.
    """

    def __init__(self, refs: np.ndarray | None = None, codes: np.ndarray | None = None, names: list[str] | None = None):
        self._refs = refs if refs is not None else np.empty(0, dtype="S32")
        self._codes = codes if codes is not None else np.empty(0, dtype=np.int32)
        self._names = names or []
        self._added: dict[str, str] = {}

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, source: str) -> RejectReasons:
        """From ``source`` (a FROM clause over the rejects table's files)."""
        data = con.execute(
            "SELECT source_ref, coalesce(stage, 'unknown') || ':' || coalesce(reason, 'unknown') AS why "
            f"FROM {source} WHERE source_ref IS NOT NULL"
        ).fetchnumpy()
        if not len(data["source_ref"]):
            return cls()
        refs = np.char.encode(np.asarray(data["source_ref"], dtype=str), "utf-8")
        names, codes = np.unique(np.asarray(data["why"], dtype=str), return_inverse=True)
        order = np.argsort(refs, kind="stable")
        return cls(refs[order], codes[order].astype(np.int32), [str(n) for n in names])

    def add(self, ref: str, why: str) -> None:
        self._added[ref] = why

    def get(self, ref: str) -> str | None:
        """``stage:reason`` of the reject with this reference, or None."""
        if ref in self._added:
            return self._added[ref]
        key = ref.encode("utf-8")
        i = int(np.searchsorted(self._refs, key))
        if i < len(self._refs) and bytes(self._refs[i]) == key:
            return self._names[int(self._codes[i])]
        return None


@dataclass
class LakeState:
    """Committed SOP instances, source references and the pixel arrays committed rows use (with the
    end of their last committed frame): an array not in ``next_frame`` is an orphan. The key sets hold 16 bytes per
    key (:mod:`lake.ingest.keyset`), so an ingest into a lake of 10^7 instances starts in seconds.
    """

    sop_uids: KeySet = field(default_factory=lambda: KeySet("uid"))
    instance_sources: KeySet = field(default_factory=lambda: KeySet("hex"))
    reject_sources: KeySet = field(default_factory=lambda: KeySet("hex"))
    reject_reasons: RejectReasons = field(default_factory=RejectReasons)
    next_frame: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: LakePaths) -> LakeState:
        state = cls()
        with memory.connect("ingest-state", ordered=False) as con:
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
                src = f"read_parquet({_files_sql(rej)})"
                state.reject_sources = KeySet.load(con, src, "source_ref", "hex")
                state.reject_reasons = RejectReasons.load(con, src)
        return state
