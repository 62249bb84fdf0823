"""Corrections from the archive: new versions of instances, and IOCM rejection notes (issue 16).

A file whose SOP Instance UID the lake holds is compared with the committed row: the same
de-identified header and the same stored pixels make it a duplicate; anything else is an update,
applied by the lake's ``corrections.on_update`` (:class:`lake.config.OnUpdate`):

- ``replace``: the new version replaces the old in the tables and the pixel store, as ``lake
  forget`` removes rows (every table rewritten without them, files vacuumed, log history purged; a
  pixel array shared with other instances is compacted, one used only by the old version removed).
  A study re-sent under a corrected PatientID thus moves to the new pseudonym and date offset.
- ``keep-first``: ignored, counted; ``flag``: the new file is kept in the vault for review
  (``KEY.vault/updates/<ref>.dcm``), counted.

A rejection note (:mod:`lake.ingest.iocm`) removes the instances it lists the same way; later
arrivals of those instances are not stored.

Pixel arrays are written once per unit of work (:mod:`lake.ingest.work`), so the array of a
removed version may hold frames of other instances, committed or still in the run's batch (the
new version itself, often). The rows go at once; the arrays are compacted at the end of the run
(:func:`compact_removed`), when every row pointing to them is committed: an array no row uses any
more is deleted, one that other rows use is copied without the removed frames.

Crash safety: the ``corrections`` table row that records a correction (``superseded``, ``rejected``,
with the ``pixel_array`` that held the removed frames) is committed before anything is removed, and
an ``applied`` row after the old files are vacuumed. Every ingest first completes the corrections
that have no ``applied`` row (removal is idempotent) and compacts any array a correction row names
that is still there, so an ingest killed anywhere in a correction and run again ends in the lake
an uninterrupted run makes. Counts reach the summary and the ``runs`` row; the table holds keyed
references only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from lake import memory
from lake.catalog import header_index
from lake.catalog.tables import append, delete_where, snapshot_files, to_arrow
from lake.config import LakePaths, OnUpdate, vault_dir
from lake.crashpoints import crash_point
from lake.errors import RejectedInput
from lake.fixity import record_table_fixity, table_dirs
from lake.headers.schema import load_table_schema
from lake.ingest.iocm import RejectionNote, read_note
from lake.maintenance.forget import _compact as compact_array
from lake.maintenance.vacuum import purge_history, vacuum_table
from lake.runs import utc_now

if TYPE_CHECKING:
    from lake.ingest.run import _Run
    from lake.ingest.worker import Processed
    from lake.sources import SourceItem

NAME = "corrections"
SUPERSEDED, REJECTED, APPLIED = "superseded", "rejected", "applied"
COMPACTED = "compacted"  # the array a correction emptied in part was compacted (or was gone already)
#: Tables whose rows a correction never removes: audit rows, keyed content hashes, itself.
_KEPT_TABLES = {"runs", "rejects", NAME}
FLAGGED = "updates"  # the vault folder of flagged versions


def _sql_list(values: set[str] | list[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"


def _files_sql(files: list[str]) -> str:
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "], union_by_name = true)"


@dataclass
class Corrections:
    """What the ``corrections`` table says: superseded versions, applied notes, rejected instances,
    and the corrections not yet complete (no ``applied`` row)."""

    superseded: set[str] = field(default_factory=set)  # source refs of replaced versions
    notes: set[str] = field(default_factory=set)  # source refs of rejection notes applied
    rejected_sops: set[str] = field(default_factory=set)
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # source_ref -> its rows
    arrays: set[str] = field(default_factory=set)  # pixel arrays that held removed frames

    @classmethod
    def load(cls, paths: LakePaths) -> Corrections:
        out = cls()
        files = snapshot_files(paths.table(NAME))
        if not files:
            return out
        with memory.connect("ingest", ordered=False) as con:
            cur = con.execute(f"SELECT * FROM {_files_sql(files)}")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        compacted = {str(r["pixel_array"]) for r in rows if r["action"] == COMPACTED}
        out.arrays = {str(r["pixel_array"]) for r in rows if r.get("pixel_array") and r["action"] != COMPACTED}
        out.arrays -= compacted  # checked once: an ingest start does not look at every old correction's array
        done = {r["source_ref"] for r in rows if r["action"] == APPLIED}
        for r in rows:
            ref = r["source_ref"]
            if r["action"] == COMPACTED:
                continue
            if r["action"] == SUPERSEDED:
                out.superseded.add(ref)
            elif r["action"] in (REJECTED, APPLIED) and r["reason"] != "update":
                out.notes.add(ref)
                if r["SOPInstanceUID"]:
                    out.rejected_sops.add(r["SOPInstanceUID"])
            if r["action"] != APPLIED and ref not in done:
                out.pending.setdefault(ref, []).append(r)
        return out

    def known(self, ref: str) -> bool:
        """A version replaced earlier, or a note applied earlier: nothing to do with the file."""
        return ref in self.superseded or ref in self.notes


@dataclass
class Candidate:
    """A processed file whose SOP Instance UID the lake holds: decided at the next commit."""

    item: SourceItem
    ref: str
    size: int
    result: Processed


# -- deciding ---------------------------------------------------------------------------------------
def note_for(run: _Run, ref: str, data: bytes) -> None:
    """Remember the rejection note in ``data`` (if it is one) until its file's turn comes."""
    retain = "retain_uids" in run.lk.config.deid.options
    note = read_note(data, run.key, retain)
    if note is not None:
        run.notes[ref] = note


def handle(run: _Run, item: SourceItem, ref: str, size: int, result: Processed) -> bool:
    """Take over a processed file that is a note, a rejected instance or a known UID; False otherwise."""
    note = run.notes.pop(ref, None)
    if note is not None:
        apply_note(run, item, ref, note)
        return True
    sop = result.row["SOPInstanceUID"]
    if sop in run.corrections.rejected_sops:
        run.summary.rejected_by_note += 1
        run.record(item, ref, "rejected_by_note", warnings=result.warnings)
        return True
    if sop in run.batch_sops:  # two versions in one batch: commit the first, then compare
        run.flush()
    if sop not in run.state.sop_uids:
        return False
    run.candidates.append(Candidate(item, ref, size, result))
    run.batch_sops.add(sop)
    if len(run.batch) + len(run.candidates) >= run.max_batch:
        run.flush()
    return True


def _committed(paths: LakePaths, sops: set[str]) -> dict[str, dict[str, Any]]:
    files = snapshot_files(paths.table("instances"))
    if not files or not sops:
        return {}
    with memory.connect("ingest", ordered=False) as con:
        cur = con.execute(
            f"SELECT SOPInstanceUID, source_ref, header_json, pixel_sha256, pixel_status FROM {_files_sql(files)} "
            f"WHERE SOPInstanceUID IN {_sql_list(sops)}"
        )
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


#: Attributes of how the pixels are encoded (transfer syntax, colour space, bit depth, lossy
#: compression): another encoding of an instance is the same instance, not a new version of it.
_ENCODING_TAGS = frozenset(
    {"00280002", "00280004", "00280006", "00280100", "00280101", "00280102", "00280103",
     "00282110", "00282112", "00282114", "7FE00010", "00020010"}
)  # fmt: skip


def _described(header_json: Any) -> Any:
    """The de-identified header without its pixel encoding attributes."""
    try:
        model = json.loads(header_json) if isinstance(header_json, str) else None
    except ValueError:
        return header_json
    if not isinstance(model, dict):
        return header_json
    return {tag: value for tag, value in model.items() if tag not in _ENCODING_TAGS}


def _same(old: dict[str, Any], row: dict[str, Any]) -> bool:
    """The same instance version: the same de-identified header, apart from how the pixels are
    encoded. Another transfer syntax of an instance (lossless or lossy, as PACS and test collections
    keep several) is a duplicate; a corrected PatientID, date or description is an update."""
    return _described(old.get("header_json")) == _described(row.get("header_json"))


def resolve(run: _Run) -> list[dict[str, Any]]:
    """Decide the batch's candidates (called first in a commit); returns the ``superseded`` rows."""
    candidates, run.candidates = run.candidates, []
    if not candidates:
        return []
    committed = _committed(run.paths, {c.result.row["SOPInstanceUID"] for c in candidates})
    policy = OnUpdate(run.lk.config.corrections.on_update)
    intents: list[dict[str, Any]] = []
    for c in candidates:
        old = committed.get(c.result.row["SOPInstanceUID"])
        if old is None:  # removed since (a note of this run): a new instance
            run.enqueue(c.item, c.ref, c.size, c.result)
        elif _same(old, c.result.row):
            run.summary.duplicates += 1
            run.record(c.item, c.ref, "duplicate", "same_content", warnings=c.result.warnings)
        elif policy is OnUpdate.KEEP_FIRST:
            run.summary.updates["kept_first"] += 1
            run.record(c.item, c.ref, "update_kept_first", warnings=c.result.warnings)
        elif policy is OnUpdate.FLAG:
            run.summary.updates["flagged"] += 1
            _flag(run, c, old["source_ref"])
            run.record(c.item, c.ref, "update_flagged", warnings=c.result.warnings)
        else:
            intents.append(_row(old["source_ref"], old["SOPInstanceUID"], SUPERSEDED, "update", run.run_id, c.ref))
            run.replacing.add(c.ref)
            run.enqueue(c.item, c.ref, c.size, c.result, outcome="update_replaced")
    return intents


def _flag(run: _Run, c: Candidate, old_ref: str) -> None:
    """Keep the new version's file in the vault (``updates/<ref>.dcm`` and a note of what it updates)."""
    folder = vault_dir(run.lk.key_path) / FLAGGED
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{c.ref}.dcm"
    if target.exists():
        return
    try:
        data = c.item.read()
    except RejectedInput:
        data = b""
    info = {"source_ref": c.ref, "updates": old_ref, "SOPInstanceUID": c.result.row["SOPInstanceUID"]}
    for path, payload in ((folder / f"{c.ref}.json", json.dumps(info).encode()), (target, data)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(payload)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


# -- applying ---------------------------------------------------------------------------------------
def _row(ref: str, sop: str | None, action: str, reason: str, run_id: str, by: str | None = None) -> dict[str, Any]:
    return {
        "source_ref": ref,
        "SOPInstanceUID": sop,
        "action": action,
        "reason": reason,
        "replaced_by": by,
        "pixel_array": None,
        "ingest_run": run_id,
        "corrected_at": utc_now(),
    }


def record(run: _Run, rows: list[dict[str, Any]]) -> None:
    if rows:
        append(run.paths.table(NAME), to_arrow(rows, load_table_schema(NAME)))


def begin(run: _Run, intents: list[dict[str, Any]]) -> set[Path]:
    """Record the corrections, then remove what they remove; returns the tables rewritten."""
    if not intents:
        return set()
    refs = {r["source_ref"] for r in intents if r["action"] == SUPERSEDED}
    sops = {r["SOPInstanceUID"] for r in intents if r["action"] == REJECTED and r["SOPInstanceUID"]}
    held = _removed_rows(run.paths, refs, sops)
    by_ref = {str(r["source_ref"]): r["pixel_array"] for r in held}
    by_sop = {str(r["SOPInstanceUID"]): r["pixel_array"] for r in held}
    for r in intents:  # the array that holds the frames removed, compacted at the end of the run
        r["pixel_array"] = by_ref.get(r["source_ref"]) if r["action"] == SUPERSEDED else by_sop.get(r["SOPInstanceUID"])
    record(run, intents)
    crash_point("corrections.after_intent")
    for r in intents:
        (run.corrections.superseded if r["action"] == SUPERSEDED else run.corrections.rejected_sops).add(
            r["source_ref"] if r["action"] == SUPERSEDED else r["SOPInstanceUID"]
        )
    return remove(run, refs, sops, held)


def finish(run: _Run, touched: set[Path], refs: set[str]) -> None:
    """Vacuum the rewritten tables (retention 0) and purge their history, then mark ``refs`` applied."""
    for table_dir in sorted(touched):
        vacuum_table(table_dir, 0)
        purge_history(table_dir)
    crash_point("corrections.after_vacuum")
    record(run, [_row(ref, None, APPLIED, "update" if ref in run.corrections.superseded else "note", run.run_id)
                 for ref in sorted(refs)])  # fmt: skip
    record_table_fixity(run.paths, run.run_id)


def _instances(paths: LakePaths, where: str) -> list[dict[str, Any]]:
    files = snapshot_files(paths.table("instances"))
    if not files:
        return []
    with memory.connect("ingest", ordered=False) as con:
        cur = con.execute(
            "SELECT SOPInstanceUID, SeriesInstanceUID, source_ref, pixel_array, pixel_frame_start, frame_count "
            f"FROM {_files_sql(files)} WHERE {where}"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _removed_rows(paths: LakePaths, refs: set[str], sops: set[str]) -> list[dict[str, Any]]:
    clauses = [f"source_ref IN {_sql_list(refs)}"] if refs else []
    clauses += [f"SOPInstanceUID IN {_sql_list(sops)}"] if sops else []
    return _instances(paths, " OR ".join(clauses)) if clauses else []


def remove(run: _Run, refs: set[str], sops: set[str], gone: list[dict[str, Any]] | None = None) -> set[Path]:
    """Remove the committed instances with these source refs or SOP UIDs from every table; their
    arrays wait for :func:`compact_removed` (rows of the batch may point to them). ``gone``: their
    rows, when the caller has read them already.

    Order: delete from the other tables, then from ``instances`` (which shows the removal done).
    """
    paths = run.paths
    gone = _removed_rows(paths, refs, sops) if gone is None else gone
    if not gone:
        return set()
    run.summary_removed += len(gone)
    gone_refs = {str(r["source_ref"]) for r in gone}
    instances = paths.table("instances")
    touched = {instances}
    run.corrections.arrays.update(str(r["pixel_array"]) for r in gone if r["pixel_array"])
    uids: dict[str, set[str]] = defaultdict(set)
    for r in gone:
        uids["SOPInstanceUID"].add(str(r["SOPInstanceUID"]))
        if r["SeriesInstanceUID"]:
            uids["SeriesInstanceUID"].add(str(r["SeriesInstanceUID"]))
    for table_dir in table_dirs(paths):
        if table_dir.name in _KEPT_TABLES or table_dir == instances or not snapshot_files(table_dir):
            continue
        columns = set(pq.read_schema(snapshot_files(table_dir)[0]).names)
        column = next((c for c in ("SOPInstanceUID", "SeriesInstanceUID") if c in columns and uids[c]), None)
        if column is not None and delete_where(table_dir, f"{column} IN {_sql_list(uids[column])}"):
            touched.add(table_dir)
    header_index.discard_ranges(paths)
    delete_where(instances, f"source_ref IN {_sql_list(gone_refs)}")
    crash_point("corrections.after_delete")
    return touched


def compact_removed(run: _Run) -> int:
    """Compact the arrays that held removed frames (call when no row waits to be committed): an
    array no committed row uses is deleted, one used in part is copied without the frames no row
    uses and its rows switched to the copy (:func:`lake.maintenance.forget._compact`). Arrays named
    by earlier runs' corrections and not yet marked ``compacted`` (a run killed before this) are
    done too; each array is marked then, so no later run looks at it again. Returns the arrays
    compacted or deleted."""
    store = run.lk.pixel_store
    candidates = sorted(run.corrections.arrays)
    arrays = [k for k in candidates if store.exists(k)]
    run.corrections.arrays = set()
    if not arrays:
        _record_compacted(run, candidates)
        return 0
    users = _instances(run.paths, f"pixel_array IN {_sql_list(arrays)}")
    done = 0
    for key in arrays:
        keep = [r for r in users if r["pixel_array"] == key]
        used = sum(int(r["frame_count"]) for r in keep)
        if keep and used == int(store.open(key).shape[0]):
            continue  # every frame in use (a rerun rebuilt it, or nothing of it was removed)
        run.state.next_frame.pop(key, None)
        if keep:
            run.compactions += 1
            new_key = compact_array(run.lk, key, keep, f"{run.run_id}.{run.compactions}")
            run.state.next_frame[new_key] = used
        else:
            store.discard(key)
        done += 1
    if done:
        instances = run.paths.table("instances")
        vacuum_table(instances, 0)  # the rows' old pixel_array values go with the files that held them
        purge_history(instances)
        record_table_fixity(run.paths, run.run_id)
    crash_point("corrections.after_compact")
    _record_compacted(run, candidates)
    return done


def _record_compacted(run: _Run, arrays: list[str]) -> None:
    """Mark these arrays done, so that later runs do not look at them again (a run killed before
    this mark looks again: compacting is idempotent)."""
    rows = []
    for key in arrays:
        row = _row(
            hashlib.sha256(f"lake.compacted\0{key}".encode()).hexdigest()[:32], None, COMPACTED, "pixels", run.run_id
        )
        rows.append({**row, "pixel_array": key})
    record(run, rows)


def apply_note(run: _Run, item: SourceItem, ref: str, note: RejectionNote) -> None:
    """Remove the instances a rejection note lists (after committing the batch before it)."""
    run.flush()
    from lake.interrupts import deferred

    with deferred():
        intents = [_row(ref, sop, REJECTED, note.code, run.run_id) for sop in sorted(note.sop_uids)]
        before = run.summary_removed
        touched = begin(run, intents)
        run.corrections.notes.add(ref)
        finish(run, touched, {ref})
        run.summary.rejection_notes += 1
        run.summary.instances_rejected += run.summary_removed - before
    run.record(item, ref, "rejection_note", note.code)


def recover(run: _Run) -> None:
    """Complete the corrections a crashed run recorded but did not finish (no ``applied`` row), and
    compact the arrays corrections emptied in part (call before any row waits to be committed)."""
    pending = run.corrections.pending
    if pending:
        rows = [r for group in pending.values() for r in group]
        refs = {r["source_ref"] for r in rows if r["action"] == SUPERSEDED}
        sops = {r["SOPInstanceUID"] for r in rows if r["action"] == REJECTED and r["SOPInstanceUID"]}
        touched = remove(run, refs, sops)
        finish(run, touched, set(pending))
        pending.clear()
    compact_removed(run)  # what a killed run removed rows from but did not compact
