"""``lake export nifti``: series of the lake as NIfTI-1 volumes with BIDS JSON sidecars.

One ``.nii.gz`` per volume (a series, a stack of it, a time series, or a part of an irregular
stack), laid out as dcm2niix writes it (:mod:`lake.export.nifti_image`), beside a ``.json``
sidecar (:mod:`lake.export.sidecar`), in ``sub-<PatientID>/`` folders named from the lake's
pseudonyms and series numbers: ``sub-<pid>_series-<NNN>[_stack-<s>][_part-<p>].nii.gz``.
``participants.tsv`` lists the exported patients (``participant_id``, ``sex``, ``age``).

Geometry: several stacks at the same positions are time points (a 4-D image, ``pixdim[4]`` the
RepetitionTime in seconds); stacks that are not are written one by one. A gantry-tilted stack is
written as acquired (its sform is sheared, the tilt in the sidecar's ``GantryTiltGeometry``), or
resampled to an orthogonal grid with ``correct_tilt``. Irregular slice spacing is never written
as a regular grid: ``irregular="split"`` (default) writes each run of equal spacing as a part,
``"refuse"`` writes nothing for the series and reports why, ``"resample"`` interpolates to the
smallest spacing. Nothing from outside the lake (source paths, original identifiers) is written.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.errors import GeometryError, GeometryWarning, LakeError
from lake.export import nifti_geometry as geometry
from lake.export.nifti_image import to_nifti
from lake.export.sidecar import sidecar
from lake.export.slice_timing import slice_timing
from lake.pixels.volume import Volume

if TYPE_CHECKING:
    from lake.core import Lake

_ROW_SQL = (
    "SELECT * EXCLUDE (header_json) FROM instances WHERE SeriesInstanceUID = ? AND pixel_array IS NOT NULL "
    "ORDER BY InstanceNumber NULLS LAST, SOPInstanceUID LIMIT 1"
)
_SAFE = re.compile(r"[^A-Za-z0-9]")


class Irregular(StrEnum):
    SPLIT = "split"
    REFUSE = "refuse"
    RESAMPLE = "resample"


class ExportError(LakeError, ValueError):
    """An export that cannot run as asked (no series selected, a bad selection, an output folder in use)."""


@dataclass(frozen=True)
class Written:
    nifti: Path
    sidecar: Path
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Refused:
    name: str  # the file name stem the series would have had (pseudonym and series number)
    reason: str


@dataclass
class NiftiExport:
    written: list[Written] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    participants: Path | None = None


def _safe(value: Any, default: str) -> str:
    text = _SAFE.sub("", str(value or ""))
    return text or default


def _row(lk: Lake, series_uid: str) -> dict[str, Any]:
    cursor = lk.connection().execute(_ROW_SQL, [series_uid])
    names = [d[0] for d in cursor.description or []]
    found = cursor.fetchone()
    return dict(zip(names, found, strict=True)) if found else {}


def _volumes(lk: Lake, series_uid: str) -> list[tuple[str, Volume]]:
    """(name suffix, volume) of a series: one 3-D or 4-D volume, or one per stack."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)  # findings stay in each volume's findings
        try:
            vol = lk.volume(series_uid, timepoints=True)
        except GeometryError:
            first = lk.volume(series_uid, stack=0)
            return [
                (f"_stack-{s + 1}", first if s == 0 else lk.volume(series_uid, stack=s)) for s in range(first.stacks)
            ]
    if vol.timepoints == 1:
        vol.array, vol.slopes, vol.intercepts = vol.array[0], vol.slopes[0], vol.intercepts[0]
        vol.temporal_spacing = None
    return [("", vol)]


def _regular(vol: Volume, irregular: Irregular, correct_tilt: bool) -> tuple[list[Volume], list[str], str | None]:
    """(volumes to write, notes for the sidecar, refusal reason)."""
    notes: list[str] = []
    if correct_tilt and geometry.is_tilted(vol):
        vol = geometry.correct_tilt(vol)
        notes.append("gantry tilt resampled to an orthogonal grid (--correct-tilt)")
    if not geometry.is_irregular(vol):
        return [vol], notes, None
    detail = "; ".join(str(f) for f in vol.findings if f.issue in geometry.IRREGULAR)
    if irregular is Irregular.REFUSE:
        return [], notes, f"irregular slice spacing ({detail}); export it with --irregular split or resample"
    if irregular is Irregular.RESAMPLE:
        notes.append(f"resampled to a regular grid from {detail}")
        return [geometry.resample_spacing(vol)], notes, None
    runs = geometry.regular_runs(vol)
    notes.append(f"one of {len(runs)} parts of equal spacing split from a stack with {detail}")
    return [geometry.part(vol, a, b) for a, b in runs], notes, None


def series_of_selection(lk: Lake, sql: str | None = None, cohort: str | os.PathLike[str] | None = None) -> list[str]:
    """The SeriesInstanceUIDs a query (a SeriesInstanceUID column) or a cohort manifest selects
    (its series, studies or patients, by the first of those columns it has)."""
    if (sql is None) == (cohort is None):
        raise ExportError("choose the series with exactly one of --sql and --cohort")
    if sql is not None:
        frame = lk.sql(sql)
        if "SeriesInstanceUID" not in frame.columns:
            raise ExportError(
                "the --sql query has no SeriesInstanceUID column: select it, e.g. "
                "\"SELECT DISTINCT SeriesInstanceUID FROM instances WHERE Modality = 'MR'\""
            )
        return [str(u) for u in dict.fromkeys(frame["SeriesInstanceUID"].to_list()) if u]
    from lake.cohorts.manifest import load_cohort

    assert cohort is not None
    frame = load_cohort(cohort, lake=lk).frame
    for column in ("SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        if column in frame.columns:
            wanted = [str(v) for v in dict.fromkeys(frame[column].to_list()) if v]
            break
    else:
        raise ExportError("the cohort has no SeriesInstanceUID, StudyInstanceUID or PatientID column")
    found = lk.connection().execute(
        f"SELECT DISTINCT SeriesInstanceUID FROM instances WHERE pixel_array IS NOT NULL "
        f"AND list_contains(?, {column}) ORDER BY 1",
        [wanted],
    )
    return [str(r[0]) for r in found.fetchall()]


def export_nifti(
    lk: Lake,
    series: Iterable[str],
    out: str | os.PathLike[str],
    correct_tilt: bool = False,
    irregular: Irregular | str = Irregular.SPLIT,
) -> NiftiExport:
    """Write each series of ``series`` under ``out`` (see the module docstring)."""
    import nibabel as nib

    mode = Irregular(irregular)
    root = Path(out)
    if lk.local_root is not None and root.resolve().is_relative_to(lk.local_root.resolve()):
        raise ExportError(f"{root} lies inside the lake: export to a folder outside it")
    root.mkdir(parents=True, exist_ok=True)
    result = NiftiExport()
    people: dict[str, dict[str, Any]] = {}
    for uid in series:
        row = _row(lk, uid)
        if not row:
            continue
        pid = _safe(row.get("PatientID"), "unknown")
        stem = f"sub-{pid}_series-{int(row.get('SeriesNumber') or 0):03d}"
        try:
            volumes = _volumes(lk, uid)
        except (GeometryError, LakeError) as exc:
            result.refused.append(Refused(stem, str(exc)))
            continue
        people.setdefault(pid, {"sex": row.get("PatientSex"), "age": row.get("PatientAgeYears"), "series": 0})
        for suffix, vol in volumes:
            regular, notes, reason = _regular(vol, mode, correct_tilt)
            if reason:
                result.refused.append(Refused(stem + suffix, reason))
                continue
            timing = slice_timing(lk, uid, vol)
            for n, part in enumerate(regular):
                name = stem + suffix + (f"_part-{n + 1}" if len(regular) > 1 else "")
                folder = root / f"sub-{pid}"
                folder.mkdir(exist_ok=True)
                stem_path = _unique(folder, name)
                image = to_nifti(part)
                nii, side = (
                    stem_path.with_name(stem_path.name + ".nii.gz"),
                    stem_path.with_name(stem_path.name + ".json"),
                )
                nib.save(image, str(nii))
                fields = sidecar(
                    row,
                    part,
                    timing.slice_timing if len(regular) == 1 else None,
                    timing.polarity,
                    notes,
                    timing.notes,
                )
                side.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
                result.written.append(Written(nii, side, tuple(image.shape)))
                people[pid]["series"] += 1
    if people:
        result.participants = _participants(root, people)
    return result


def _unique(folder: Path, name: str) -> Path:
    """``folder/name`` (without extension), with ``_run-N`` when a file of that name exists."""
    candidate, n = folder / name, 1
    while candidate.with_name(candidate.name + ".nii.gz").exists():
        n += 1
        candidate = folder / f"{name}_run-{n}"
    return candidate


def _participants(root: Path, people: dict[str, dict[str, Any]]) -> Path:
    path = root / "participants.tsv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["participant_id", "sex", "age", "volumes"])
        for pid, info in sorted(people.items()):
            age = info["age"]
            writer.writerow([f"sub-{pid}", info["sex"] or "n/a", "n/a" if age is None else age, info["series"]])
    return path


def export_selection(
    lk: Lake,
    out: str | os.PathLike[str],
    sql: str | None = None,
    cohort: str | os.PathLike[str] | None = None,
    correct_tilt: bool = False,
    irregular: Irregular | str = Irregular.SPLIT,
) -> NiftiExport:
    """:func:`export_nifti` of the series a query or a cohort manifest selects."""
    series: Sequence[str] = series_of_selection(lk, sql=sql, cohort=cohort)
    if not series:
        raise ExportError("the selection holds no series with stored pixels")
    return export_nifti(lk, series, out, correct_tilt=correct_tilt, irregular=irregular)
