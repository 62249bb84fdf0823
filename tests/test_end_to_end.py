"""The whole path on real and synthetic files: ingest, tables, SQL, pixels, idempotence, no PHI."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

import lake
from lake.audit import find_identifiers
from lake.deid import build_deidentifier
from lake.ingest import ingest
from lake.testing.synthetic import make_cohort
from tests.conftest import shared_dicom


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory, pydicom_files_dir: Path, pydicom_data_dir: Path):
    home = tmp_path_factory.mktemp("home")
    os.environ["LAKE_HOME"] = str(home)
    root = tmp_path_factory.mktemp("lakes") / "demo"
    before = _tree_digest(pydicom_files_dir)
    summary = ingest(root, [pydicom_files_dir, pydicom_data_dir], workers=2)
    assert _tree_digest(pydicom_files_dir) == before, "input files must never be modified"
    return root, summary, home


def test_every_file_is_accounted_for(demo_lake) -> None:
    _root, s, _ = demo_lake
    # pydicom's test files reuse SOP Instance UIDs for other content: each later one is an update
    assert s.seen == s.ingested + s.duplicates + s.rejected + sum(s.updates.values())
    assert s.ingested > 100
    assert s.rejected > 0  # pydicom ships deliberately broken and non-DICOM files


def test_tables_are_typed_and_queryable(demo_lake, monkeypatch: pytest.MonkeyPatch) -> None:
    root, s, home = demo_lake
    monkeypatch.setenv("LAKE_HOME", str(home))
    lk = lake.open(root)
    types = dict(lk.sql("SELECT column_name, column_type FROM (DESCRIBE instances)").iter_rows())
    assert types["StudyDate"] == "DATE"
    assert types["StudyTime"] == "TIME"
    assert types["AcquisitionDateTime"] == "TIMESTAMP"
    assert types["SeriesNumber"] == "BIGINT"
    assert types["KVP"] == "DOUBLE"
    assert types["ImagePositionPatient"] == "DOUBLE[]"
    assert lk.sql("SELECT count(*) FROM instances")[0, 0] == s.ingested
    assert lk.sql("SELECT count(*) FROM rejects")[0, 0] > 0
    for view in ("series", "studies", "patients", "timeline"):
        assert lk.sql(f"SELECT count(*) FROM {view}")[0, 0] > 0
    assert lk.table("instances").collect().height == s.ingested
    # every instance is de-identified and carries its marker
    assert lk.sql("SELECT count(*) FROM instances WHERE PatientIdentityRemoved <> 'YES'")[0, 0] == 0
    assert lk.sql("SELECT count(*) FROM instances WHERE NOT starts_with(SOPInstanceUID, '2.25.')")[0, 0] == 0
    assert lk.sql("SELECT count(*) FROM instances WHERE NOT starts_with(PatientID, 'P-')")[0, 0] == 0
    # the full header is kept as DICOM JSON
    hdr = lk.sql("SELECT header_json FROM instances WHERE Modality = 'CT' LIMIT 1")[0, 0]
    assert json.loads(hdr)["00080060"]["Value"] == ["CT"]
    info = lk.info()
    assert info["instances"] == s.ingested and info["bytes_on_disk"] > 0


def test_pixels_equal_pydicom_bit_for_bit(pydicom_files_dir: Path, pydicom_data_dir: Path, tmp_path: Path) -> None:
    """Every stored instance reads back equal to pydicom's pixel_array of the de-identified file."""
    root = tmp_path / "lake"
    ingest(root, [pydicom_data_dir, pydicom_files_dir / "CT_small.dcm", pydicom_files_dir / "MR_small.dcm"])
    lk = lake.open(root)
    deid = build_deidentifier(lk.key(), lk.config.deid)
    expected: dict[str, list[np.ndarray]] = {}  # some test files share a SOP Instance UID: the lake keeps one
    for path in [
        *sorted(pydicom_data_dir.glob("*.dcm")),
        pydicom_files_dir / "CT_small.dcm",
        pydicom_files_dir / "MR_small.dcm",
    ]:
        try:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
        except Exception:
            continue
        new_uid = deid.map_uid(str(ds.SOPInstanceUID))
        expected.setdefault(new_uid, []).append(arr)
    # masked instances differ by design inside the blanked regions (tests/deid/test_burned_in.py)
    unmasked = "pixel_status = 'stored' AND coalesce(pixel_reason, '') NOT LIKE 'masked:%'"
    stored = lk.sql(f"SELECT SOPInstanceUID FROM instances WHERE {unmasked}")["SOPInstanceUID"].to_list()
    assert len(stored) >= 10
    for uid in stored:
        got = lk.pixels(uid)
        wants = [w[np.newaxis] if got.shape[0] == 1 and w.ndim == got.ndim - 1 else w for w in expected[uid]]
        same = [w for w in wants if got.dtype == w.dtype and np.array_equal(got, w)]
        assert same, uid  # bit for bit equal to the file the lake kept
        assert np.array_equal(lk.pixels(uid, frame=0), same[0][0])


def test_reingest_adds_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=3)
    root = tmp_path / "lake"
    first = ingest(root, [src])
    assert first.ingested == 6
    tables_before = lake.open(root).sql("SELECT count(*) FROM instances")[0, 0]
    second = ingest(root, [src, src / os.listdir(src)[0]])  # overlapping sources
    assert second.ingested == 0 and second.duplicates == second.seen
    lk = lake.open(root)
    assert lk.sql("SELECT count(*) FROM instances")[0, 0] == tables_before
    assert lk.sql("SELECT count(DISTINCT SOPInstanceUID) FROM instances")[0, 0] == tables_before


def test_same_patient_links_across_batches_with_dates_shifted_consistently(tmp_path: Path) -> None:
    src = tmp_path / "src"
    specs = make_cohort(src, n_patients=2, studies_per_patient=2, n_images=2)
    root = tmp_path / "lake"
    folders = sorted(src.iterdir())
    ingest(root, [folders[0] / "study0", folders[1]])
    ingest(root, [folders[0] / "study1"])  # months later, another batch
    lk = lake.open(root)
    patients = lk.sql("SELECT * FROM patients ORDER BY PatientID")
    assert patients.height == 2
    assert patients["study_count"].to_list() == [2, 2]
    # the interval between a patient's studies is preserved exactly (7 days in make_cohort)
    assert sorted(patients["follow_up_days"].to_list()) == [7, 7]
    timeline = lk.sql("SELECT * FROM timeline WHERE study_index = 2")
    assert timeline["days_since_previous_study"].to_list() == [7, 7]
    # and the dates moved: no study is in June 1987 any more
    assert lk.sql("SELECT count(*) FROM studies WHERE StudyDate >= DATE '1987-06-01'")[0, 0] == 0
    assert len(specs) == 2


def test_no_injected_identifier_reaches_any_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    specs = make_cohort(src, n_patients=3, studies_per_patient=2, n_images=2)
    root = tmp_path / "lake"
    ingest(root, [src], workers=2)
    lk = lake.open(root)
    assert lk.sql("SELECT count(*) FROM instances")[0, 0] == 12
    identifiers = [i for spec in specs for i in spec.identifiers()]
    identifiers += [p.name for p in src.iterdir()]  # source folder names carry names and IDs
    identifiers += ["19870601", "1987-06-0", "HOSP_PACS_7"]
    hits = find_identifiers(root, identifiers)
    assert hits == [], hits[:5]
    # technical attributes researchers need survive
    row = lk.sql("SELECT * FROM instances LIMIT 1").to_dicts()[0]
    assert row["Manufacturer"] == "ACME Imaging" and row["ManufacturerModelName"] == "Phantom 3000"
    assert row["PixelSpacing"] == [0.5, 0.5] and row["KVP"] == 120.0 and row["SliceThickness"] == 5.0
    assert row["PatientAge"] == "047Y" and row["PatientSex"] == "F"
    # the vault, outside the lake, has the real paths
    logs = list((Path(os.environ["LAKE_HOME"]) / "keys").glob("*.vault/runs/*.jsonl"))
    assert logs and "QUIXOTE" in logs[0].read_text()


def test_rejects_carry_reasons_not_paths(tmp_path: Path) -> None:
    src = tmp_path / "SMITH_JOHN_4711"
    src.mkdir()
    (src / "notes.dcm").write_text("not dicom at all, patient SMITH JOHN")
    (src / "empty.dcm").write_bytes(b"")
    make_cohort(src, n_patients=1, studies_per_patient=1, n_images=1)
    dcm = next(src.rglob("*_000.dcm"))
    (src / "truncated.dcm").write_bytes(dcm.read_bytes()[:695])
    root = tmp_path / "lake"
    s = ingest(root, [src])
    assert s.seen == 4 and s.ingested == 1 and s.rejected == 3
    rejects = lake.open(root).sql("SELECT stage, reason FROM rejects ORDER BY reason")
    assert rejects.height == 3
    assert all(r for r in rejects["reason"].to_list())
    assert find_identifiers(root, ["SMITH", "4711", "notes.dcm", "empty.dcm"]) == []


def test_zip_sources(tmp_path: Path) -> None:
    import zipfile

    src = tmp_path / "src"
    make_cohort(src, n_patients=1, studies_per_patient=1, n_images=3)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.rglob("*.dcm")):
            z.write(f, f.relative_to(src).as_posix())
        z.writestr("../../evil.dcm", b"not dicom")
    s = ingest(tmp_path / "lake", [archive])
    assert s.ingested == 3 and s.rejected == 1


@pytest.mark.shared_data
def test_shared_scanner_series(tmp_path: Path) -> None:
    ct = shared_dicom("dcm_qa_ct/GE")
    s = ingest(tmp_path / "lake", [ct], workers=2)
    assert s.ingested == 28 and s.rejected == 0
    lk = lake.open(tmp_path / "lake")
    series = lk.sql("SELECT * FROM series")
    assert series.height == 1 and series["instance_count"][0] == 28 and series["frame_count"][0] == 28
    for path in sorted(ct.glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(path)
        uid = build_deidentifier(lk.key(), lk.config.deid).map_uid(str(ds.SOPInstanceUID))
        assert np.array_equal(lk.pixels(uid)[0], ds.pixel_array)
