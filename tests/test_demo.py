"""The demo lake: a synthetic longitudinal archive on pip-shipped pixel data, and the test-file option.

The archive is checked as files (read back with pydicom), the lake built from it against the
archive's own record (what was written, with which identifiers): every identifier absent from every
lake file (``lake.audit``), the research values there exactly, and two builds the same.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

import lake
from lake.audit import audit
from lake.cli import main
from lake.demo import ArchiveSpec, DemoBuild, build_demo, write_archive
from lake.demo.archive import MONTHS
from lake.keys import read_key

SMALL = ArchiveSpec(patients=6, without_patient_id=2, issuer_variation_every=2)
#: what research reads and must survive de-identification exactly
RESEARCH_COLUMNS = "Modality, BodyPartExamined, StudyDescription, SeriesDescription, Rows, Columns, SliceThickness"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm"))


@pytest.fixture(scope="module")
def full_archive(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("demo-archive") / "archive"
    archive = write_archive(root, ArchiveSpec())
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(root)]
    return archive, headers


def test_the_archive_has_the_promised_shape(full_archive) -> None:
    archive, headers = full_archive
    assert len(headers) == archive.files == sum(len(s.sop_uids) for s in archive.studies)
    by_mrn: dict[str, set[str]] = defaultdict(set)
    issuers: dict[str, set[str]] = defaultdict(set)
    without_id: set[str] = set()
    for ds in headers:
        if ds.PatientID:
            by_mrn[ds.PatientID].add(ds.StudyInstanceUID)
            issuers[ds.PatientID].add(str(ds.IssuerOfPatientID))
        else:
            without_id.add(ds.StudyInstanceUID)
    assert 30 <= len(archive.patients) <= 60 and len(by_mrn) == len(archive.patients)
    for patient in archive.patients:
        days = [s.study_date for s in patient.studies]
        assert 2 <= len(days) <= 6 and days == sorted(days)
        assert 365 <= (days[-1] - days[0]).days <= 3650  # 1 to 10 years
        assert len(by_mrn[patient.patient_id]) >= 2  # linked studies, also for one without a Patient ID
    assert {ds.Modality for ds in headers} == {"CT", "MR", "CR"}
    assert len(without_id) == 3 and all(u not in s for s in by_mrn.values() for u in without_id)
    assert sum(issuers[m] >= {"", "GHGH"} for m in issuers) >= 10  # empty issuer on old, site code on new
    # CT and MR series are stacks: distinct positions along the normal, one spacing apart
    for study in [s for s in archive.studies if s.modality != "CR"][:20]:
        z = sorted(float(ds.ImagePositionPatient[2]) for ds in headers if ds.SeriesInstanceUID == study.series_uid)
        assert len(z) >= 5 and np.allclose(np.diff(z), float(np.diff(z)[0])) and np.diff(z)[0] > 0


def test_the_archive_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}

    write_archive(tmp_path / "a", SMALL)
    write_archive(tmp_path / "b", SMALL)
    write_archive(tmp_path / "c", ArchiveSpec(patients=6, seed=14))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def _build(base: Path, name: str, key: Path) -> DemoBuild:
    return build_demo(base / name, SMALL, key_file=key, workers=1, archive_dir=base / f"{name}-archive")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoBuild, lake.Lake, Path]:
    base = tmp_path_factory.mktemp("demo-lake")
    built = _build(base, "lake", base / "demo.key")
    return built, lake.open(base / "lake", key_file=base / "demo.key"), base


def test_the_lake_links_each_patient_and_keeps_studies_without_id_apart(small) -> None:
    built, lk, _ = small
    key = read_key(lk.key_path)
    assert built.summary.ingested == built.archive.files and built.summary.rejected == 0
    assert built.summary.identity == {"studies_without_patient_id": 2}
    studies = {r["StudyInstanceUID"]: r for r in lk.sql("SELECT * FROM studies").iter_rows(named=True)}
    assert len(studies) == len(built.archive.studies)
    for patient in built.archive.patients:
        mine = [s for s in patient.studies if s.has_patient_id]
        # issuer "" and "GHGH" are one MRN domain in a patient_id lake: one pseudonym
        assert {studies[key.uid(s.study_uid)]["PatientID"] for s in mine} == {key.pseudonym("", patient.patient_id)}
        for s in patient.studies:
            if not s.has_patient_id:
                assert studies[key.uid(s.study_uid)]["PatientID"] == key.study_pseudonym(s.study_uid)
    per_patient = lk.sql("SELECT PatientID, count(*) AS n FROM studies GROUP BY ALL")
    assert per_patient.height == SMALL.patients + 2 and (per_patient["n"] >= 2).sum() == SMALL.patients


def test_no_seeded_identifier_is_in_any_lake_file(small) -> None:
    built, lk, _ = small
    identifiers = built.archive.identifiers()
    report = audit(lk.root, identifiers)
    assert report.hits == []
    skipped = {n.identifier for n in report.not_searched}
    for patient in built.archive.patients:  # names, MRNs and birth dates were searched, not skipped
        assert not skipped & {patient.patient_id, patient.birth_date, patient.name.split("^")[0]}
    assert report.searched >= len(identifiers) - len(skipped) > 100


def test_research_values_and_intervals_survive_exactly(small) -> None:
    built, lk, _ = small
    key = read_key(lk.key_path)
    rows = {
        r["SOPInstanceUID"]: r
        for r in lk.sql(
            f"SELECT SOPInstanceUID, StudyDate, ImagePositionPatient, {RESEARCH_COLUMNS} FROM instances"
        ).iter_rows(named=True)
    }
    for patient in built.archive.patients:
        shifted = {}
        for s in patient.studies:
            folder = next((built.kept or Path()).rglob(f"{s.study_date:%Y%m%d}_{s.modality}_{s.accession}"))
            for path in sorted(folder.glob("*.dcm")):
                ds = pydicom.dcmread(path)
                row = rows[key.uid(ds.SOPInstanceUID)]
                for column in RESEARCH_COLUMNS.split(", "):
                    original = ds.get(column)
                    expected = float(original) if column == "SliceThickness" and original is not None else original
                    assert row[column] == expected, column
                if "ImagePositionPatient" in ds:
                    assert row["ImagePositionPatient"] == [float(v) for v in ds.ImagePositionPatient]
                shifted[s.study_uid] = row["StudyDate"]
        linked = [s for s in patient.studies if s.has_patient_id]
        offsets = {s.study_date - shifted[s.study_uid] for s in linked}
        assert len(offsets) == 1 and timedelta(days=30) <= offsets.pop() <= timedelta(days=1095)
    # the pixels are the stored values, exactly
    study = built.archive.patients[0].studies[-1]
    folder = next((built.kept or Path()).rglob(f"*_{study.accession}"))
    for path in sorted(folder.glob("*.dcm"))[:2]:
        ds = pydicom.dcmread(path)
        assert np.array_equal(lk.pixels(key.uid(ds.SOPInstanceUID))[0], ds.pixel_array)


def test_dates_in_text_are_shifted_with_the_patient(small) -> None:
    built, lk, _ = small
    key = read_key(lk.key_path)
    texts = lk.sql(
        "SELECT StudyInstanceUID, StudyDate, dicom_value(header_json, 'AdditionalPatientHistory') AS history "
        "FROM instances WHERE InstanceNumber = 1"
    )
    by_study = {r["StudyInstanceUID"]: r for r in texts.iter_rows(named=True)}
    checked = 0
    for patient in built.archive.patients:
        for s in patient.studies:
            row = by_study[key.uid(s.study_uid)]
            if not s.date_in_text:
                continue
            assert s.date_in_text not in row["history"] and "compare with the" in row["history"]
            found = re.search(r"(\d{2})-([A-Z]+)-(\d{4})", row["history"])
            assert found, "the prior's date was removed instead of shifted"
            written = date(int(found[3]), MONTHS.index(found[2][:3]) + 1, int(found[1]))
            prior = date(int(s.date_in_text[-4:]), MONTHS.index(s.date_in_text[3:6]) + 1, int(s.date_in_text[:2]))
            assert prior - written == s.study_date - row["StudyDate"]  # the patient's own offset
            checked += 1
    assert checked >= 5


def test_two_builds_have_the_same_rows(small) -> None:
    built, lk, base = small
    again = _build(base, "again", base / "demo.key")
    assert again.archive.files == built.archive.files
    other = lake.open(base / "again", key_file=base / "demo.key")
    query = "SELECT * EXCLUDE (ingest_run, ingested_at) FROM instances ORDER BY SOPInstanceUID"
    assert lk.sql(query).equals(other.sql(query))
    assert lk.sql("SELECT * FROM studies ORDER BY StudyInstanceUID").equals(
        other.sql("SELECT * FROM studies ORDER BY StudyInstanceUID")
    )


def test_an_archive_folder_inside_the_lake_is_refused(tmp_path: Path) -> None:
    from lake.errors import ConfigError

    with pytest.raises(ConfigError, match="overlap"):
        build_demo(tmp_path / "lake", SMALL, archive_dir=tmp_path / "lake" / "archive")
    assert not (tmp_path / "lake").exists()


@pytest.mark.slow
def test_lake_demo_ends_with_the_longitudinal_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake_dir = tmp_path / "demo"
    assert main(["demo", "--lake", str(lake_dir), "--no-progress", "--patients", "30", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo archive: 30 synthetic patients, ")
    assert "in a temporary folder, deleted after the ingest" in out and not list(tmp_path.glob("*archive*"))
    tail = out[out.index("the lake over time:") :]
    assert "with_follow_up" in tail and "longest_follow_up_years" in tail
    lk = lake.open(lake_dir)
    linked = lk.sql("SELECT count(*) FROM (SELECT PatientID FROM studies GROUP BY ALL HAVING count(*) >= 2)")[0, 0]
    assert linked >= 30
    assert lk.sql("SELECT count(DISTINCT Modality) FROM instances")[0, 0] == 3


def test_the_test_file_demo_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lake.demo

    source = tmp_path / "files"
    source.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = pydicom.data.get_testdata_file(name, download=False)
        assert path
        (source / name).write_bytes(Path(str(path)).read_bytes())
    monkeypatch.setattr(lake.demo, "demo_sources", lambda: [source])
    assert main(["demo", "--from-test-files", "--lake", str(tmp_path / "demo"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"demo sources: {source}") and "example query:" in out
    assert lake.open(tmp_path / "demo").sql("SELECT count(*) FROM instances")[0, 0] == 2


def test_an_mrn_only_in_the_text_of_a_file_without_patient_id_is_removed(tmp_path: Path) -> None:
    """Found by the demo archive: the cleaner learned identifiers from the header only, so a labelled
    "MRN <token>" in the text of a file without Patient ID survived."""
    from lake.ingest import ingest

    archive = write_archive(tmp_path / "archive", ArchiveSpec(patients=1, without_patient_id=0))
    path = _files(archive.root)[0]
    ds = pydicom.dcmread(path)
    mrn = ds.PatientID
    ds.PatientID = ""
    del ds[0x00291011]  # the private copy of the MRN
    ds.AdditionalPatientHistory = f"Known to us as MRN {mrn}."
    source = tmp_path / "source"
    source.mkdir()
    ds.save_as(source / "one.dcm", enforce_file_format=True)
    ingest(tmp_path / "lake", [source], key_file=tmp_path / "k.key")
    assert audit(tmp_path / "lake", [mrn]).hits == []
