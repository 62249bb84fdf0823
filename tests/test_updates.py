"""Corrections from the archive (issue 16): updates by SOP Instance UID and IOCM rejection notes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import lake
from lake.audit import find_identifiers
from lake.ingest import ingest
from lake.ingest.iocm import KOS_CLASS
from lake.maintenance.verify import verify
from lake.testing.synthetic import PatientSpec, write_study
from tests.faults.conftest import running, table_rows, wait_for

SPEC = PatientSpec(name="QUIXOTE^ALONSO", patient_id="MRN448100", birth_date="19500101", accession_prefix="ACC0X")


def _study(folder: Path, n: int = 3) -> list[Path]:
    spec = PatientSpec(**{k: getattr(SPEC, k) for k in ("name", "patient_id", "birth_date", "accession_prefix")})
    return write_study(spec, folder, date(1987, 6, 3), n_images=n)


def _corrected(paths: list[Path], folder: Path, patient_id: str = "MRN990077") -> list[Path]:
    """The same instances re-sent with a corrected PatientID (UIDs kept), as a PACS sends them."""
    folder.mkdir(parents=True)
    out = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientID = patient_id
        ds.PatientName = "LOVELACE^ADA"
        out.append(folder / p.name)
        ds.save_as(out[-1], enforce_file_format=True)
    return out


def _lake(tmp_path: Path, on_update: str = "replace") -> tuple[Path, Path]:
    root, key = tmp_path / "lake", tmp_path / "lake.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged", on_update=on_update)
    return root, key


def _note(paths: list[Path], target: Path, code: str = "113001") -> Path:
    """An IOCM rejection note (KOS titled with a CID 7011 code) listing ``paths``' instances."""
    first = pydicom.dcmread(paths[0])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = KOS_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = KOS_CLASS, uid, "KO"
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = first.PatientID, first.PatientName, first.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = code, "DCM", "Rejected for Quality Reasons"
    ds.ConceptNameCodeSequence = Sequence([title])
    refs = []
    for p in paths:
        src = pydicom.dcmread(p)
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = src.SOPClassUID, src.SOPInstanceUID
        refs.append(item)
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence(refs)
    study = Dataset()
    study.StudyInstanceUID = first.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def _patients(root: Path) -> list[tuple[str, int]]:
    return [tuple(r) for r in lake.open(root).sql("SELECT PatientID, count(*) FROM instances GROUP BY 1").rows()]


def test_same_uid_same_content_is_a_duplicate(tmp_path: Path) -> None:
    root, key = _lake(tmp_path)
    paths = _study(tmp_path / "a")
    ingest(root, [tmp_path / "a"], key_file=key)
    # other bytes (another transfer syntax's file meta, a re-encoded file), the same content
    copy = tmp_path / "b"
    copy.mkdir()
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.ImplementationVersionName = "OTHER_PACS"
        ds.save_as(copy / p.name, enforce_file_format=True)
    s = ingest(root, [copy], key_file=key)
    assert (s.seen, s.ingested, s.duplicates, sum(s.updates.values())) == (3, 0, 3, 0)


def test_corrected_patient_id_moves_the_study(tmp_path: Path) -> None:
    root, key = _lake(tmp_path)
    paths = _study(tmp_path / "a")
    ingest(root, [tmp_path / "a"], key_file=key)
    lk = lake.open(root)
    [(old_pid, _)] = _patients(root)
    old_dates = set(lk.sql("SELECT DISTINCT StudyDate FROM instances")["StudyDate"].to_list())
    old_arrays = {str(p.relative_to(root / "pixels")) for p in (root / "pixels").glob("*/*")}
    sops = sorted(lk.sql("SELECT SOPInstanceUID FROM instances")["SOPInstanceUID"].to_list())
    _corrected(paths, tmp_path / "b")
    s = ingest(root, [tmp_path / "b"], key_file=key)
    assert (s.seen, s.ingested, s.duplicates, s.updates["replaced"]) == (3, 0, 0, 3)
    [(new_pid, n)] = _patients(root)
    assert new_pid != old_pid and n == 3
    lk = lake.open(root)
    assert sorted(lk.sql("SELECT SOPInstanceUID FROM instances")["SOPInstanceUID"].to_list()) == sops
    new_dates = set(lk.sql("SELECT DISTINCT StudyDate FROM instances")["StudyDate"].to_list())
    assert new_dates != old_dates  # the new patient's date offset
    # no file of the lake holds the old pseudonym or the old shifted date, no old array remains
    assert find_identifiers(root, [old_pid]) == []
    assert find_identifiers(root, [d.strftime("%Y%m%d") for d in old_dates]) == []
    arrays = sorted((root / "pixels").glob("*/*/zarr.json"))
    assert len(arrays) == len(old_arrays) == 1  # the old array went; the new versions' holds only them
    assert json.loads(arrays[0].read_text())["shape"][0] == 3
    assert verify(root).ok and _frames_unused(root) == 0
    # audited: the runs row counts it, the corrections table records the superseded versions
    runs = lk.sql("SELECT counts FROM runs WHERE operation = 'ingest' ORDER BY started_at")["counts"].to_list()
    assert '"replaced": 3' in runs[-1]
    actions = lk.sql("SELECT action, count(*) AS n FROM corrections GROUP BY 1 ORDER BY 1").rows()
    assert actions == [("applied", 3), ("compacted", 1), ("superseded", 3)]
    # the old array is marked compacted: later runs do not look for it again
    from lake.config import LakePaths
    from lake.ingest.updates import Corrections

    assert Corrections.load(LakePaths(root)).arrays == set()
    # both versions again: nothing changes (the old one is a replaced version, the new one committed)
    again = ingest(root, [tmp_path / "a", tmp_path / "b"], key_file=key)
    assert (again.ingested, again.duplicates, sum(again.updates.values())) == (0, 6, 0)
    assert _patients(root) == [(new_pid, 3)]


@pytest.mark.parametrize("policy", ["keep-first", "flag"])
def test_keep_first_and_flag_leave_the_lake(tmp_path: Path, policy: str) -> None:
    root, key = _lake(tmp_path, policy)
    paths = _study(tmp_path / "a")
    ingest(root, [tmp_path / "a"], key_file=key)
    before = table_rows(root, "instances")
    _corrected(paths, tmp_path / "b")
    s = ingest(root, [tmp_path / "b"], key_file=key)
    name = {"keep-first": "kept_first", "flag": "flagged"}[policy]
    assert (s.seen, s.ingested, s.duplicates, dict(s.updates)) == (3, 0, 0, {name: 3})
    assert table_rows(root, "instances") == before
    flagged = sorted((Path(f"{key}.vault") / "updates").glob("*.dcm"))
    assert len(flagged) == (3 if policy == "flag" else 0)
    if flagged:  # the vault holds the new versions as sent, for review
        assert pydicom.dcmread(flagged[0]).PatientID == "MRN990077"


def test_rejection_note_removes_its_instances(tmp_path: Path) -> None:
    root, key = _lake(tmp_path)
    paths = _study(tmp_path / "a", n=4)
    ingest(root, [tmp_path / "a"], key_file=key)
    _note(paths[:2], tmp_path / "note" / "ko.dcm")
    s = ingest(root, [tmp_path / "note"], key_file=key)
    assert (s.seen, s.rejection_notes, s.instances_rejected, s.ingested, s.duplicates) == (1, 1, 2, 0, 0)
    lk = lake.open(root)
    assert lk.sql("SELECT count(*) FROM instances").item() == 2  # the note is not stored either
    assert verify(root).ok and _frames_unused(root) == 0
    # the rejected instances are not stored again; the note is known
    again = ingest(root, [tmp_path / "a", tmp_path / "note"], key_file=key)
    assert (again.rejected_by_note, again.duplicates, again.ingested) == (2, 3, 0)
    assert lk.sql("SELECT count(*) FROM instances").item() == 2


def test_a_kos_with_another_title_is_stored(tmp_path: Path) -> None:
    root, key = _lake(tmp_path)
    paths = _study(tmp_path / "a", n=2)
    _note(paths, tmp_path / "a" / "ko.dcm", code="113000")  # "Of Interest": not a rejection
    s = ingest(root, [tmp_path / "a"], key_file=key)
    assert (s.ingested, s.rejection_notes) == (3, 0)


@pytest.mark.parametrize(
    "point",
    [
        "corrections.after_intent",
        "corrections.after_compact",
        "corrections.after_delete",
        "ingest.after_instances",
        "corrections.after_vacuum",
    ],
)
def test_update_killed_midway_then_rerun(tmp_path: Path, point: str) -> None:
    ref_root, ref_key = tmp_path / "ref", tmp_path / "lake.key"  # one key: the same pseudonyms
    paths = _study(tmp_path / "a", n=4)
    _corrected(paths[1:3], tmp_path / "b")
    for root, key in ((ref_root, ref_key), (tmp_path / "lake", tmp_path / "lake.key")):
        lake.init(root, key_file=key, burned_in_policy="keep-flagged")
        ingest(root, [tmp_path / "a"], key_file=key)
    ingest(ref_root, [tmp_path / "b"], key_file=ref_key)
    root, key = tmp_path / "lake", tmp_path / "lake.key"
    args = (
        "ingest",
        str(tmp_path / "b"),
        "--lake",
        str(root),
        "--key-file",
        str(key),
        "--workers",
        "1",
        "--no-progress",
    )
    with running(*args, env={"LAKE_CRASH_AT": point}) as proc:
        wait_for(lambda: proc.poll() is not None, "the ingest ends")
        assert proc.returncode == -9
    ingest(root, [tmp_path / "b"], key_file=key)
    for table in ("instances", "bulk", "corrections"):
        rows = [
            {k: v for k, v in r.items() if k not in {"pixel_array", "pixel_frame_start", "corrected_at"}}
            for r in table_rows(root, table)
        ]
        want = [
            {k: v for k, v in r.items() if k not in {"pixel_array", "pixel_frame_start", "corrected_at"}}
            for r in table_rows(ref_root, table)
        ]
        assert len(rows) == len(want) and sorted(map(repr, rows)) == sorted(map(repr, want)), table
    assert verify(root).ok
    assert _frames_unused(root) == 0  # the removed versions' frames left their arrays
    [(pid_a, pid_b)] = [tuple(sorted(p for p, _ in _patients(root)))]
    assert sorted(_patients(root)) == sorted(_patients(ref_root))
    assert find_identifiers(root, []) == [] and pid_a != pid_b


def _frames_unused(root: Path) -> int:
    """Frames of the lake's arrays that no committed row points to."""
    lk = lake.open(root)
    used: dict[str, int] = {}
    for key, frames in lk.sql(
        "SELECT pixel_array, sum(frame_count) FROM instances WHERE pixel_array IS NOT NULL GROUP BY ALL"
    ).rows():
        used[str(key)] = int(frames)
    stored = {key: int(lk.pixel_store.open(key).shape[0]) for key in sorted(lk.pixel_store.keys())}
    assert set(stored) == set(used)  # no orphan array, no row without its array
    return sum(stored[k] - used[k] for k in stored)
