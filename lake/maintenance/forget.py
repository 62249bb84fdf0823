"""``lake forget``: withdraw a patient: rows, pixel arrays and every old file that held them.

Steps, under the write lock: find the patient's instances; delete the rows from every table that
has a ``PatientID`` (or the patient's UIDs) column, one commit per table; delete the pixel arrays
only the patient's instances used, and compact an array shared with other patients' instances
(rewritten without the patient's frames, the other rows' frame offsets updated); then vacuum the
tables with retention 0 and purge their log history, whose statistics quote deleted values. The
audit row records counts only: recording the pseudonym would keep the patient in the lake.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from lake import memory
from lake.catalog import header_index
from lake.catalog.tables import delete_where, open_table, snapshot_files
from lake.config import LakePaths, vault_dir
from lake.core import Lake
from lake.errors import ConfigError, NotInLakeError
from lake.fixity import record_table_fixity, table_dirs
from lake.lock import write_lock
from lake.maintenance.orphans import remove_orphans
from lake.maintenance.vacuum import purge_history, vacuum_table
from lake.review.held import delete_patients
from lake.runs import append_run, new_run_id, utc_now
from lake.withdrawals import add_withdrawn

_KEPT_TABLES = {"runs", "rejects"}  # no patient data: operation counts; keyed content hashes


@dataclass
class ForgetSummary:
    run_id: str
    instances: int = 0
    rows_deleted: int = 0
    arrays_deleted: int = 0
    arrays_compacted: int = 0
    files_vacuumed: int = 0
    log_entries_purged: int = 0
    held_deleted: int = 0  # held copies of quarantined pixels deleted from the vault (lake.review)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sql_list(values: list[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def pseudonyms_for(lk: Lake, original_id: str) -> list[str]:
    """The pseudonyms of an original patient ID, from the vault's crosswalk (kept with ``--keep-crosswalk``)."""
    path = vault_dir(lk.key_path) / "crosswalk.jsonl"
    if not path.is_file():
        raise NotInLakeError(f"no crosswalk in the vault {path.parent}; forget by pseudonym (--patient)")
    found: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            if entry.get("original_patient_id") == original_id:
                found.add(str(entry["pseudonym"]))
    if not found:
        raise NotInLakeError("that original patient ID is not in the vault's crosswalk")
    return sorted(found)


def _drop_from_crosswalk(lk: Lake, pseudonym: str) -> None:
    path = vault_dir(lk.key_path) / "crosswalk.jsonl"
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("pseudonym") != pseudonym
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


_COLUMNS = "SOPInstanceUID, PatientID, StudyInstanceUID, SeriesInstanceUID, pixel_array, pixel_frame_start, frame_count"


def _instances(paths: LakePaths, where: str = "", columns: str = _COLUMNS) -> list[dict[str, Any]]:
    """Rows of the instances snapshot matching ``where`` (DuckDB filters them: a lake of 10^7
    instances is never held in memory, only the patient's rows and those sharing their arrays)."""
    files = snapshot_files(paths.table("instances"))
    if not files:
        return []
    with memory.connect("forget", ordered=False) as con:
        src = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "], union_by_name=true)"
        cur = con.execute(f"SELECT {columns} FROM {src}" + (f" WHERE {where}" if where else ""))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _arrays(paths: LakePaths, where: str = "") -> set[str]:
    """The distinct pixel arrays of the rows matching ``where``."""
    condition = "pixel_array IS NOT NULL" + (f" AND ({where})" if where else "")
    return {str(r["pixel_array"]) for r in _instances(paths, condition, "DISTINCT pixel_array")}


def _compact(lk: Lake, key: str, keep: list[dict[str, Any]], run_id: str) -> str:
    """Copy the ``keep`` rows' frames of array ``key`` to a new array and switch the rows to it.

    The switch is one Delta commit, so a crash leaves either the old array in use (the new one an
    orphan) or the new one (the old one an orphan); orphans go with the next cleanup.
    """
    store = lk.pixel_store
    keep = sorted(keep, key=lambda r: int(r["pixel_frame_start"]))
    parts = [store.read(key, int(r["pixel_frame_start"]), int(r["frame_count"])) for r in keep]
    attrs = {k: v for k, v in store.attributes(key).items() if k not in {"codec", "codec_fallback"}}
    # Attributes copied from the array's first instance may be the forgotten patient's: take them
    # from the first kept instance instead (values that are not columns describe the pixels only).
    first = lk.sql("SELECT * FROM instances WHERE SOPInstanceUID = ?", [keep[0]["SOPInstanceUID"]]).to_dicts()[0]
    attrs = {k: first.get(k, v) for k, v in attrs.items()}
    attrs = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in attrs.items() if v is not None}
    new_key = f"{key.split('~', 1)[0]}~{run_id}"
    store.write(new_key, 0, np.concatenate(parts), attrs, run=run_id)
    cases, start = [], 0
    for row in keep:
        cases.append(f"WHEN '{str(row['SOPInstanceUID']).replace(chr(39), chr(39) * 2)}' THEN {start}")
        start += int(row["frame_count"])
    dt = open_table(lk.paths.table("instances"))
    assert dt is not None
    sops = [str(r["SOPInstanceUID"]) for r in keep]
    dt.update(
        updates={
            "pixel_array": "'" + new_key.replace("'", "''") + "'",
            "pixel_frame_start": f"CAST(CASE SOPInstanceUID {' '.join(cases)} END AS BIGINT)",
        },
        predicate=f"SOPInstanceUID IN {_sql_list(sops)}",
    )
    shutil.rmtree(store.root / key)
    return new_key


def _delete_rows(table_dir: Path, pseudonyms: list[str], uids: dict[str, list[str]]) -> int:
    columns = set(pq.read_schema(snapshot_files(table_dir)[0]).names) if snapshot_files(table_dir) else set()
    if "PatientID" in columns:
        return delete_where(table_dir, f"PatientID IN {_sql_list(pseudonyms)}")
    for column in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        if column in columns and uids[column]:
            return delete_where(table_dir, f"{column} IN {_sql_list(uids[column])}")
    return 0


def forget(
    root: str | os.PathLike[str],
    patient: str | None = None,
    original_id: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> ForgetSummary:
    """Remove one patient (by pseudonym, or by original ID through the vault) from the lake.

    Raises :class:`NotInLakeError` when the patient has no instances in the lake.
    """
    if (patient is None) == (original_id is None):
        raise ConfigError("give exactly one of patient (the pseudonym) or original_id")
    lk = Lake(root, key_file)
    pseudonyms = [patient] if patient is not None else pseudonyms_for(lk, str(original_id))
    started = utc_now()
    summary = ForgetSummary(new_run_id("F"))
    with write_lock(lk.paths.lock):
        theirs = f"PatientID IN {_sql_list(pseudonyms)}" if pseudonyms else "false"
        others = f"PatientID IS NULL OR NOT ({theirs})"
        gone = _instances(lk.paths, theirs)
        if not gone:
            # Nothing to delete, but a forget cut short after its commits left old files: finish it.
            summary.held_deleted = delete_patients(lk.key_path, pseudonyms)
            _clean_up(lk, summary, _arrays(lk.paths))
            append_run(lk.paths, summary.run_id, "forget", started, _params(patient), summary.to_dict(), "not_found")
            raise NotInLakeError("no instances of that patient in this lake (old files were vacuumed anyway)")
        summary.instances = len(gone)
        add_withdrawn(lk.key_path, pseudonyms)  # first: a later ingest must never bring them back
        summary.held_deleted = delete_patients(lk.key_path, pseudonyms)  # the vault's quarantined originals
        uids: dict[str, list[str]] = defaultdict(list)
        for column in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            uids[column] = sorted({str(r[column]) for r in gone if r[column]})
        for table_dir in table_dirs(lk.paths):
            if table_dir.name not in _KEPT_TABLES:
                summary.rows_deleted += _delete_rows(table_dir, pseudonyms, uids)
        header_index.discard_ranges(lk.paths)  # it may name their UIDs; the next optimize rebuilds it
        arrays = {r["pixel_array"] for r in gone if r["pixel_array"]}
        # the other patients' rows in those arrays, read before the rows are deleted below
        shared = _instances(lk.paths, f"pixel_array IN {_sql_list(sorted(arrays))} AND ({others})") if arrays else []
        kept = _arrays(lk.paths, others)
        compacted: dict[str, str] = {}
        for key in sorted(arrays):
            keep = [r for r in shared if r["pixel_array"] == key]
            if keep:
                compacted[key] = _compact(lk, key, keep, summary.run_id)
                summary.arrays_compacted += 1
            elif (lk.paths.pixels / key).is_dir():
                shutil.rmtree(lk.paths.pixels / key)
                summary.arrays_deleted += 1
            series = (lk.paths.pixels / key).parent
            if series.is_dir() and not any(series.iterdir()):
                series.rmdir()
        for pseudonym in pseudonyms:
            _drop_from_crosswalk(lk, pseudonym)
        kept = {compacted.get(k, k) for k in kept}
        _clean_up(lk, summary, kept)
        append_run(lk.paths, summary.run_id, "forget", started, _params(patient), summary.to_dict(), "ok")
    return summary


def _params(patient: str | None) -> dict[str, Any]:
    return {"by": "pseudonym" if patient is not None else "original_id"}


def _clean_up(lk: Lake, summary: ForgetSummary, kept_arrays: set[str]) -> None:
    """Vacuum every table with retention 0, purge the logs' history, drop uncommitted arrays."""
    for table_dir in table_dirs(lk.paths):
        summary.files_vacuumed += vacuum_table(table_dir, 0)
        summary.log_entries_purged += purge_history(table_dir)
    summary.arrays_deleted += len(remove_orphans(lk.paths, kept_arrays))
    record_table_fixity(lk.paths, summary.run_id)
