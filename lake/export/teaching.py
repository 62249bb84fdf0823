"""``lake export teaching``: a teaching set people can open anywhere, from one snapshot of a lake.

The output folder holds, beside nothing of the lake's internals::

    OUT/DICOMDIR                      the file-set directory (pydicom's FileSet, PS3.10)
    OUT/PT000000/ST000000/SE000000/IM000000 ...
                                      de-identified Part 10 files rebuilt from the lake
                                      (:mod:`lake.export.dicom`), in the DICOMDIR layout every viewer reads
    OUT/previews/CASE-SERIES.png      a windowed middle image per series (at most 512 px)
    OUT/thumbs/CASE-SERIES.png        the same at most 128 px, shown on the page
    OUT/index.html                    the cases with thumbnails, de-identified study facts and notes
                                      (:mod:`lake.export.page`; the unknown-case mode hides diagnoses)
    OUT/manifest.json                 what was exported, from which snapshot, with which options

Only instances with stored pixels are exported: quarantined ones (burned-in text that could not
be masked) and those without pixels are left out and counted. Nothing is less de-identified than
the lake: the files carry exactly the stored header (with its de-identification marks) and the
stored pixels. The output must be outside every lake and outside the key and vault folders; a
failed export removes what it created (:mod:`lake.created`). Every export, failed or not, adds a
``runs`` row (operation ``export-teaching``; parameters and counts without PHI).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake import __version__
from lake.created import CreatedPaths
from lake.errors import ExportError
from lake.export.notes import CaseNote, load_notes
from lake.export.page import Case, SeriesPreview, index_html

if TYPE_CHECKING:
    from lake.catalog.snapshot import Snapshot
    from lake.core import Lake

FORMAT = "lake-teaching-set/1"
PREVIEW_SIZE = 512
THUMBNAIL_SIZE = 128

_INSTANCES_SQL = """
SELECT SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID, SeriesNumber, SeriesDescription, Modality,
       InstanceNumber, pixel_status
FROM instances WHERE list_contains(?, StudyInstanceUID)
ORDER BY StudyInstanceUID, SeriesNumber NULLS LAST, SeriesInstanceUID, InstanceNumber NULLS LAST, SOPInstanceUID
"""
_STUDIES_SQL = """
SELECT StudyInstanceUID, any_value(StudyDescription) AS StudyDescription, any_value(StudyDate) AS StudyDate,
       any_value(PatientSex) AS PatientSex, any_value(PatientAge) AS PatientAge,
       any_value(BodyPartExamined) AS BodyPartExamined,
       string_agg(DISTINCT Modality, ', ' ORDER BY Modality) AS modalities
FROM instances WHERE list_contains(?, StudyInstanceUID) AND pixel_status = 'stored' GROUP BY StudyInstanceUID
"""


@dataclass
class TeachingExport:
    """What an export wrote (counts carry no PHI)."""

    out: Path
    run_id: str
    studies: int = 0
    series: int = 0
    instances: int = 0
    quarantined: int = 0
    without_pixels: int = 0
    missing_studies: int = 0
    zip_path: Path | None = None
    files: dict[str, str] = field(default_factory=dict)  # SOPInstanceUID -> path relative to out

    def counts(self) -> dict[str, int]:
        return {
            "studies": self.studies,
            "series": self.series,
            "instances": self.instances,
            "quarantined": self.quarantined,
            "without_pixels": self.without_pixels,
            "missing_studies": self.missing_studies,
        }


def check_out_folder(out: str | os.PathLike[str], lk: Lake) -> Path:
    """The resolved output folder if an export may be written there; raises :class:`ExportError`.

    Refused: a folder inside any lake (or holding this lake), inside the key's folder, inside
    ``$LAKE_HOME/keys`` or a ``*.vault`` folder, a file, a folder that is not empty, and a folder
    whose ``.zip`` sibling exists.
    """
    from lake.config import CONFIG_NAME, lake_home

    target = Path(os.path.realpath(out))
    lake_dir = Path(os.path.realpath(lk.root))
    key_dir = Path(os.path.realpath(lk.key_path)).parent
    keys = Path(os.path.realpath(lake_home() / "keys"))
    for folder in (target, *target.parents):
        if folder == lake_dir or (folder / CONFIG_NAME).is_file():
            raise ExportError(f"--out {out} is inside the lake {folder}: write the export outside every lake")
        if folder in (key_dir, keys) or folder.name.endswith(".vault"):
            raise ExportError(f"--out {out} is inside {folder}, which holds keys or a vault: write it elsewhere")
    if lake_dir.is_relative_to(target) or key_dir.is_relative_to(target):
        raise ExportError(f"--out {out} holds the lake or its key: choose a folder of its own")
    if target.exists() and not target.is_dir():
        raise ExportError(f"--out {out} is a file: name a new (or empty) folder")
    if target.is_dir() and any(target.iterdir()):
        raise ExportError(f"--out {out} is not empty: name a new (or empty) folder")
    return target


def selected_studies(
    snapshot: Snapshot, sql: str | None, cohort: str | os.PathLike[str] | None, key_file: Any = None
) -> tuple[list[str], dict[str, Any]]:
    """The StudyInstanceUIDs chosen (first-seen order) and how (for the manifest)."""
    if (sql is None) == (cohort is None):
        raise ExportError("give exactly one of --sql and --cohort")
    if sql is not None:
        frame = snapshot.sql(sql)
        how: dict[str, Any] = {"sql": sql}
    else:
        from lake.cohorts.manifest import load_cohort

        loaded = load_cohort(cohort, lake=snapshot.lake, key_file=key_file)  # type: ignore[arg-type]
        frame = loaded.frame
        m = loaded.manifest
        how = {"cohort": str(cohort), "cohort_sql": m.sql, "cohort_versions": m.versions, "cohort_hash": m.content_hash}
        how["cohort_withdrawn"] = loaded.withdrawn
    if "StudyInstanceUID" not in frame.columns:
        raise ExportError(
            "the selection has no StudyInstanceUID column: select it, e.g. "
            "--sql \"SELECT DISTINCT StudyInstanceUID FROM instances WHERE Modality = 'CT'\""
        )
    studies = list(dict.fromkeys(str(u) for u in frame["StudyInstanceUID"].to_list() if u is not None))
    if not studies:
        raise ExportError("the selection chose no study: nothing to export")
    return studies, how


def export_teaching(
    lk: Lake,
    out: str | os.PathLike[str],
    sql: str | None = None,
    cohort: str | os.PathLike[str] | None = None,
    make_zip: bool = False,
    title: str = "Teaching set",
    notes: str | os.PathLike[str] | None = None,
    key_file: Any = None,
) -> TeachingExport:
    """Write a teaching set of the studies chosen by ``sql`` or the saved ``cohort`` to ``out``
    (see the module's documentation). Raises :class:`ExportError` (nothing is left behind)."""
    from lake.runs import append_run, new_run_id, utc_now

    started = utc_now()
    run_id = new_run_id("E")
    target = check_out_folder(out, lk)
    zip_path = target.with_name(target.name + ".zip") if make_zip else None
    if zip_path is not None and zip_path.exists():
        raise ExportError(f"{zip_path} exists: remove it, or export without --zip")
    params = {"sql": sql, "cohort": str(cohort) if cohort else None, "zip": make_zip, "notes": bool(notes)}
    result = TeachingExport(out=target, run_id=run_id, zip_path=zip_path)
    created = CreatedPaths()
    try:
        with lk.snapshot() as snapshot:
            studies, how = selected_studies(snapshot, sql, cohort, key_file)
            case_notes = load_notes(notes, studies) if notes is not None else {}
            created.will_create(target)
            target.mkdir(parents=True, exist_ok=True)
            if zip_path is not None:
                created.will_create(zip_path)
            _write_set(snapshot, studies, case_notes, title, result, how)
            if zip_path is not None:
                _zip(target, zip_path)
    except BaseException:
        created.remove()
        append_run(lk.paths, run_id, "export-teaching", started, params, result.counts(), "failed")
        raise
    append_run(lk.paths, run_id, "export-teaching", started, params, result.counts(), "ok")
    return result


def _write_set(
    snapshot: Snapshot,
    studies: list[str],
    case_notes: dict[str, CaseNote],
    title: str,
    result: TeachingExport,
    how: dict[str, Any],
) -> None:
    from pydicom.fileset import FileSet

    from lake.catalog.query import fetch_rows
    from lake.export.dicom import rebuild
    from lake.export.dicomdir import add_instance

    con = snapshot.connection()
    cursor = con.execute(_INSTANCES_SQL, [studies])
    names = [d[0] for d in cursor.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    status = Counter(r["pixel_status"] for r in rows)
    result.quarantined = status.get("quarantined", 0)
    result.without_pixels = sum(n for s, n in status.items() if s not in ("stored", "quarantined"))
    stored = [r for r in rows if r["pixel_status"] == "stored"]
    present = {r["StudyInstanceUID"] for r in rows}
    result.missing_studies = sum(1 for s in studies if s not in present)
    exported = [s for s in studies if any(r["StudyInstanceUID"] == s for r in stored)]
    if not exported:
        raise ExportError(
            f"none of the {len(studies)} selected studies has an instance with stored pixels "
            f"({result.quarantined} quarantined, {result.without_pixels} without pixels): nothing to export"
        )
    fileset = FileSet()
    fileset.ID = "LAKE_TEACHING"
    try:
        case_of = {s: n for n, s in enumerate(exported, start=1)}
        series_of: dict[str, int] = {}
        for image, row in enumerate(stored, start=1):
            series = series_of.setdefault(row["SeriesInstanceUID"], len(series_of) + 1)
            ds = rebuild(snapshot, row["SOPInstanceUID"])
            add_instance(fileset, ds, case_of[row["StudyInstanceUID"]], series, image)
        fileset.write(result.out)
        for instance in fileset:
            result.files[str(instance.SOPInstanceUID)] = Path(instance.path).relative_to(result.out).as_posix()
    finally:
        # pydicom stages the instances in a TemporaryDirectory it removes only at garbage collection
        # (with a ResourceWarning); remove it now
        fileset._stage["t"].cleanup()
    facts = {r[0]: r for r in fetch_rows(con, _STUDIES_SQL, [exported])}
    cols = ["StudyInstanceUID", "StudyDescription", "StudyDate", "PatientSex", "PatientAge", "BodyPartExamined"]
    cols.append("modalities")
    cases = []
    for number, study in enumerate(exported, start=1):
        series_rows: dict[str, list[dict[str, Any]]] = {}
        for r in stored:
            if r["StudyInstanceUID"] == study:
                series_rows.setdefault(r["SeriesInstanceUID"], []).append(r)
        row = dict(zip(cols, facts[study], strict=True))
        row["series"], row["instances"] = len(series_rows), sum(len(v) for v in series_rows.values())
        case = Case(number, row, case_notes.get(study, CaseNote()))
        for s_index, (series_uid, members) in enumerate(series_rows.items(), start=1):
            case.series.append(_previews(snapshot, result.out, number, s_index, series_uid, members))
        cases.append(case)
    result.studies = len(exported)
    result.series = sum(len(c.series) for c in cases)
    result.instances = len(stored)
    left_out = result.quarantined + result.without_pixels
    summary = f"{result.studies} cases, {result.series} series, {result.instances} images"
    if left_out:
        summary += f"; {left_out} instances left out ({result.quarantined} quarantined, "
        summary += f"{result.without_pixels} without pixels)"
    (result.out / "index.html").write_text(index_html(title, cases, summary), encoding="utf-8")
    manifest = _manifest(snapshot, result, how, title, cases)
    (result.out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _previews(
    snapshot: Snapshot, out: Path, case: int, index: int, series_uid: str, members: list[dict[str, Any]]
) -> SeriesPreview:
    from lake.pixels import api as pixel_api

    name = f"case{case:03d}-series{index:02d}.png"
    uid = series_uid if len(members) > 1 else members[0]["SOPInstanceUID"]
    for folder, size in (("previews", PREVIEW_SIZE), ("thumbs", THUMBNAIL_SIZE)):
        (out / folder).mkdir(exist_ok=True)
        (out / folder / name).write_bytes(pixel_api.thumbnail(snapshot._as_lake(), uid, size))
    first = members[0]
    label = " ".join(
        str(x)
        for x in (first["Modality"], f"series {first['SeriesNumber']}" if first["SeriesNumber"] is not None else "")
        if x
    )
    if first.get("SeriesDescription"):
        label += f": {first['SeriesDescription']}"
    return SeriesPreview(
        label=label or f"series {index}", images=len(members), thumbnail=f"thumbs/{name}", preview=f"previews/{name}"
    )


def _manifest(
    snapshot: Snapshot, result: TeachingExport, how: dict[str, Any], title: str, cases: list[Case]
) -> dict[str, Any]:
    config = snapshot.lake.config
    return {
        "format": FORMAT,
        "lake_version": __version__,
        "run_id": result.run_id,
        "lake_id": config.lake_id,
        "key_fingerprint": config.key_fingerprint,
        "snapshot": dict(snapshot.versions),
        "deid_options": list(config.deid.options),
        "selection": how,
        "options": {
            "title": title,
            "zip": result.zip_path is not None,
            "notes": any(c.note != CaseNote() for c in cases),
        },
        "counts": result.counts(),
        "cases": [
            {
                "case": c.number,
                "StudyInstanceUID": c.facts["StudyInstanceUID"],
                "series": [asdict(s) for s in c.series],
                "note": c.note.as_dict(),
            }
            for c in cases
        ],
        "files": dict(sorted(result.files.items(), key=lambda kv: kv[1])),
    }


def _zip(folder: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
