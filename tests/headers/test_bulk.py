"""The bulk table and the stored photometric interpretation: a rebuilt instance is the lake's, exactly.

Round trips on pydicom's test files (palette LUTs, overlays, waveforms, YBR JPEG) and synthetic
instances (an ICC profile, an encapsulated PDF): every value of the rebuilt dataset equals the
de-identified one byte for byte, the rebuilt file's pixels decode to the stored array, the caps
omit and count, ``lake forget`` removes the bulk rows, and seeded identifiers in binary values the
profile removes never reach any file of the lake.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

import lake
from lake.audit import find_identifiers
from lake.config import BulkSettings, read_config, write_config
from lake.deid import build_deidentifier
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS
from lake.headers.bulk import BULK_OMITTED, INLINE_MAX_BYTES, OmitReason
from lake.headers.flatten import header_and_bulk
from lake.headers.rebuild import dataset
from lake.ingest import ingest
from lake.ingest.worker import Processed, process
from lake.keys import LakeKey
from lake.maintenance.forget import forget
from tests import conftest

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ROOT = "1.2.826.0.1.3680043.9.7777.15."
PHI = ("QUIXOTE", "MRN448100")
#: Burned-in text is not what these tests are about: keep the pixels (flagged) instead of reading them by OCR.
POLICY = "keep-flagged"


def _ingest(tmp_path: Path, files: dict[str, Path | Dataset], options: list[str] | None = None) -> lake.Lake:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    for name, item in files.items():
        if isinstance(item, Dataset):
            item.save_as(src / name, enforce_file_format=True)
        else:
            shutil.copy(item, src / name)
    root = tmp_path / "lake"
    lake.init(root, options=options, burned_in_policy=POLICY)
    summary = ingest(root, [src])
    assert summary.rejected == 0, summary.reject_reasons
    return lake.open(root)


def _one(lk: lake.Lake, sop_class: str) -> str:
    uid = lk.sql("SELECT SOPInstanceUID FROM instances WHERE SOPClassUID = ?", [sop_class])[0, 0]
    assert isinstance(uid, str)
    return uid


def _values(model: dict[str, Any]) -> dict[str, Any]:
    """Every element of a DICOM JSON dataset by tag path, binary values decoded to bytes."""
    out: dict[str, Any] = {}
    for tag, element in model.items():
        if "InlineBinary" in element:
            out[tag] = base64.b64decode(element["InlineBinary"])
        elif element.get("vr") == "SQ":
            for i, item in enumerate(element.get("Value") or []):
                out.update({f"{tag}[{i}].{k}": v for k, v in _values(item).items()})
        else:
            out[tag] = element.get("Value", element.get("BulkDataURI"))
    return out


def _rebuilt(lk: lake.Lake, uid: str) -> pydicom.Dataset:
    """The rebuilt instance, written as a Part 10 file and read back."""
    buffer = io.BytesIO()
    dataset(lk, uid).save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


PIXEL_ATTRIBUTES = {
    "7FE00010", "00280002", "00280004", "00280006", "00280008", "00280010", "00280011",
    "00280100", "00280101", "00280102", "00280103",
}  # fmt: skip


def _assert_round_trip(lk: lake.Lake, uid: str) -> pydicom.Dataset:
    """Rebuilt header values equal the stored (de-identified) ones; pixels decode to the stored array."""
    stored = lk.header(uid, bulk=True)
    back = _rebuilt(lk, uid)
    rebuilt = _values(json.loads(back.to_json(bulk_data_threshold=1 << 30)))
    expected = {k: v for k, v in _values(stored).items() if v != BULK_OMITTED}
    for tag, value in expected.items():
        if tag.split("[")[0] in PIXEL_ATTRIBUTES:
            continue
        assert rebuilt.get(tag) == value, tag
    if lk.sql("SELECT pixel_status FROM instances WHERE SOPInstanceUID = ?", [uid])[0, 0] == "stored":
        frames = lk.pixels(uid)
        assert np.array_equal(back.pixel_array.reshape(frames.shape), frames)
    return back


# -- round trips on pydicom's files ----------------------------------------------------------------
def test_palette_luts_waveforms_and_ybr_jpeg_round_trip(tmp_path: Path) -> None:
    files = {
        "aloka.dcm": conftest.testdata("gdcm-US-ALOKA-16.dcm"),  # segmented palette LUTs, 55-114 KB each
        "palette.dcm": conftest.testdata("OBXXXX1A.dcm"),  # palette LUTs inline (512 bytes each)
        "ecg.dcm": conftest.testdata("waveform_ecg.dcm"),  # waveform data inside WaveformSequence items
        "jpeg.dcm": conftest.testdata("SC_rgb_jpeg_dcmtk.dcm"),  # YBR_FULL JPEG baseline
        "ybr422.dcm": conftest.testdata("SC_rgb_dcmtk_+eb+cy+s2.dcm"),  # YBR_FULL_422 JPEG baseline
    }
    originals = {name: pydicom.dcmread(path) for name, path in files.items() if isinstance(path, Path)}
    lk = _ingest(tmp_path, dict(files))
    bulk = lk.sql("SELECT keyword_path, vr, length, sha256, value FROM bulk ORDER BY keyword_path")
    assert bulk["keyword_path"].to_list() == [
        "SegmentedBluePaletteColorLookupTableData",
        "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData",
        "WaveformSequence[0].WaveformData",
        "WaveformSequence[1].WaveformData",
    ]
    aloka, ecg = originals["aloka.dcm"], originals["ecg.dcm"]
    expected = [
        aloka.SegmentedBluePaletteColorLookupTableData,
        aloka.SegmentedGreenPaletteColorLookupTableData,
        aloka.SegmentedRedPaletteColorLookupTableData,
        ecg.WaveformSequence[0].WaveformData,
        ecg.WaveformSequence[1].WaveformData,
    ]
    assert bulk["value"].to_list() == expected  # research values survive exactly
    assert bulk["length"].to_list() == [len(v) for v in expected]
    uids = lk.sql("SELECT SOPInstanceUID, PhotometricInterpretation, stored_photometric_interpretation, "
                  "stored_planar_configuration, stored_bits_allocated, bulk_values FROM instances").rows()  # fmt: skip
    by_photometric = {(r[1], r[2], r[3], r[4]) for r in uids}
    assert ("YBR_FULL_422", "RGB", 0, 8) in by_photometric
    assert ("YBR_FULL", "RGB", 0, 8) in by_photometric
    assert ("PALETTE COLOR", "PALETTE COLOR", None, 16) in by_photometric
    for uid, photometric, stored_photometric, *_ in uids:
        back = _assert_round_trip(lk, uid)
        if stored_photometric is not None:
            assert back.PhotometricInterpretation == stored_photometric
            if stored_photometric == "RGB":
                assert back.PlanarConfiguration == 0
        if photometric == "PALETTE COLOR":  # the stored indices come back with their palette
            assert np.array_equal(back.pixel_array.reshape(lk.pixels(uid).shape), lk.pixels(uid))
    header = lk.header(_one(lk, "1.2.840.10008.5.1.4.1.1.9.1.1"))
    uri = header["54000100"]["Value"][0]["54001010"]["BulkDataURI"]
    assert uri == "bulk:" + bulk["sha256"][3]


def test_overlay_kept_by_clean_graphics_is_bulk_and_removed_without_it(tmp_path: Path) -> None:
    path = conftest.testdata("MR-SIEMENS-DICOM-WithOverlays.dcm")
    original = pydicom.dcmread(path)
    kept = _ingest(tmp_path / "kept", {"mr.dcm": path}, [*DEFAULT_RESEARCH_OPTIONS, "clean_graphics"])
    rows = kept.sql("SELECT tag_path, value FROM bulk").rows()
    assert ("60003000", original[0x60003000].value) in rows
    uid = kept.sql("SELECT SOPInstanceUID FROM instances")[0, 0]
    back = _assert_round_trip(kept, uid)
    assert back[0x60003000].value == original[0x60003000].value
    assert back.overlay_array(0x6000).shape == original.overlay_array(0x6000).shape
    removed = _ingest(tmp_path / "removed", {"mr.dcm": path})
    assert removed.sql("SELECT count(*) FROM bulk WHERE tag_path LIKE '6000%'")[0, 0] == 0
    assert "60003000" not in removed.header(removed.sql("SELECT SOPInstanceUID FROM instances")[0, 0])


# -- synthetic instances: an ICC profile, an encapsulated PDF -------------------------------------------
def _secondary_capture(uid: str, rgb: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ROOT + "1", ROOT + "2"
    ds.PatientID, ds.PatientName, ds.Modality = "MRN448100", "QUIXOTE^ALONSO", "OT"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    return ds


def _icc_profile(size: int) -> bytes:
    rng = np.random.default_rng(7)
    return b"acspAPPL" + rng.integers(0, 256, size - 8, dtype=np.uint8).tobytes()


def _pdf(text: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    ds.file_meta.MediaStorageSOPInstanceUID = ROOT + "30"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ENCAPSULATED_PDF, ROOT + "30"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ROOT + "1", ROOT + "3"
    ds.PatientID, ds.PatientName, ds.Modality = "MRN448100", "QUIXOTE^ALONSO", "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    body = b"%PDF-1.4\n" + (f"BT ({text}) Tj ET\n" * 40).encode() + b"%%EOF\n"
    ds.EncapsulatedDocument = body + b"\x00" * (len(body) % 2)
    return ds


def test_icc_profile_round_trips_and_pdf_is_removed_by_the_profile(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    icc = _icc_profile(3000)
    sc = _secondary_capture(ROOT + "20", rgb)
    sc.ICCProfile = icc
    pdf = _pdf("Report for QUIXOTE ALONSO MRN448100")
    lk = _ingest(tmp_path, {"sc.dcm": sc, "pdf.dcm": pdf})
    rows = lk.sql("SELECT keyword_path, value FROM bulk").rows()
    assert rows == [("ICCProfile", icc)]
    uid = _one(lk, SecondaryCaptureImageStorage)
    back = _assert_round_trip(lk, uid)
    assert back.ICCProfile == icc
    assert np.array_equal(back.pixel_array, rgb)
    # PS3.15 action D on Encapsulated Document: a dummy value, so the PDF (and its text) is gone
    document = lk.header(_one(lk, ENCAPSULATED_PDF), bulk=True)["00420011"]
    assert base64.b64decode(document.get("InlineBinary", "")) != pdf.EncapsulatedDocument
    assert find_identifiers(lk.root, PHI) == []


def test_caps_omit_and_count(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    sc = _secondary_capture(ROOT + "40", rgb)
    sc.ICCProfile = _icc_profile(5000)
    ecg = pydicom.dcmread(conftest.testdata("waveform_ecg.dcm"))
    root = tmp_path / "lake"
    lake.init(root, burned_in_policy=POLICY)
    config = read_config(lake.open(root).paths)
    config.bulk = BulkSettings(max_value_bytes=100_000, max_instance_bytes=4_000)
    write_config(lake.open(root).paths, config)
    src = tmp_path / "src"
    src.mkdir()
    sc.save_as(src / "sc.dcm", enforce_file_format=True)
    ecg.save_as(src / "ecg.dcm", enforce_file_format=True)
    ingest(root, [src])
    lk = lake.open(root)
    assert lk.sql("SELECT keyword_path FROM bulk").rows() == []  # ICC over the instance cap, ECG over both
    counts = lk.sql("SELECT bulk_values, bulk_omitted FROM instances ORDER BY bulk_omitted").rows()
    assert counts == [(0, 1), (0, 2)]
    ecg_header = lk.header(_one(lk, "1.2.840.10008.5.1.4.1.1.9.1.1"), bulk=True)
    assert ecg_header["54000100"]["Value"][0]["54001010"]["BulkDataURI"] == BULK_OMITTED
    report = json.loads(next((root / "reports").glob("deid-*.json")).read_text())
    actions = {(a["attribute"], a["action"]): a["count"] for a in report["actions"]}
    assert actions[("ICCProfile", OmitReason.INSTANCE_CAP)] == 1
    assert actions[("WaveformData", OmitReason.VALUE_CAP)] == 1  # 240 KB
    assert actions[("WaveformData", OmitReason.INSTANCE_CAP)] == 1  # 28.8 KB, over 4 KB
    # the rebuilt instance leaves omitted values out instead of writing a broken reference
    back = _rebuilt(lk, _one(lk, "1.2.840.10008.5.1.4.1.1.9.1.1"))
    assert "WaveformData" not in back.WaveformSequence[0]


def test_caps_in_order_and_inline_threshold() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = ROOT + "50"
    ds.ICCProfile = b"a" * 2000
    ds.add_new(0x00420011, "OB", b"b" * 3000)
    ds.add_new(0x00660023, "OW", b"c" * INLINE_MAX_BYTES)  # not over the threshold: inline
    text, plan = header_and_bulk(ds, BulkSettings(max_value_bytes=2500, max_instance_bytes=10_000))
    model = json.loads(text)
    assert [v.keyword_path for v in plan.values] == ["ICCProfile"]
    assert model["00282000"]["BulkDataURI"] == plan.values[0].uri
    assert model["00420011"]["BulkDataURI"] == BULK_OMITTED
    assert "InlineBinary" in model["00660023"]
    assert plan.counts[("EncapsulatedDocument", OmitReason.VALUE_CAP)] == 1


# -- forget ---------------------------------------------------------------------------------------------
def test_forget_removes_the_patients_bulk_rows(tmp_path: Path) -> None:
    lk = _ingest(
        tmp_path,
        {"aloka.dcm": conftest.testdata("gdcm-US-ALOKA-16.dcm"), "ecg.dcm": conftest.testdata("waveform_ecg.dcm")},
    )
    patients = dict(lk.sql("SELECT PatientID, count(*) FROM bulk GROUP BY ALL").rows())
    assert sorted(patients.values()) == [2, 3]
    gone = next(p for p, n in patients.items() if n == 3)
    values = lk.sql("SELECT value FROM bulk WHERE PatientID = ?", [gone])["value"].to_list()
    forget(lk.root, patient=gone)
    lk = lake.open(lk.root)
    assert lk.sql("SELECT count(*) FROM bulk WHERE PatientID = ?", [gone])[0, 0] == 0
    assert lk.sql("SELECT count(*) FROM bulk")[0, 0] == 2
    for parquet in (lk.root / "tables" / "bulk").rglob("*.parquet"):  # vacuumed: no old file holds them
        data = parquet.read_bytes()
        assert not any(v[:4096] in data for v in values)


# -- seeded identifiers in binary values the profile removes ---------------------------------------------
_SPELLINGS = st.sampled_from(["QUIXOTE", "quixote", "Quixote", "MRN448100", "QUIXOTE^ALONSO"])


@st.composite
def _seeded(draw: st.DrawFn) -> tuple[Dataset, list[str]]:
    """A secondary capture with an ICC profile (kept) and seeded identifiers in binary values the
    research profile removes, at random depth, VR and spelling: private elements, overlay data,
    encapsulated documents, each over the inline threshold so it would be bulk if kept."""
    rgb = np.full((8, 8, 3), 40, dtype=np.uint8)
    ds = _secondary_capture(ROOT + "60", rgb)
    ds.ICCProfile = _icc_profile(1200)
    seeds = []
    for n in range(draw(st.integers(1, 3))):
        spelling = draw(_SPELLINGS)
        encoding = draw(st.sampled_from(["utf-8", "utf-16-le", "latin-1"]))
        payload = (f"{spelling} " * 200).encode(encoding)[:1600]
        seeds.append(spelling)
        depth = draw(st.integers(0, 2))
        item = ds
        for _ in range(depth):  # sequences Table E.1-1 does not list: kept and walked
            inner = Dataset()
            item.ReferencedImageSequence = Sequence([inner])
            inner.ReferencedSOPClassUID, inner.ReferencedSOPInstanceUID = SecondaryCaptureImageStorage, ROOT + "61"
            item = inner
        kind = draw(st.sampled_from(["private", "overlay", "document"]))
        vr = draw(st.sampled_from(["OB", "OW", "UN"]))
        if kind == "private":
            block = item.private_block(0x0011 + 2 * n, f"SITE SEED {n}", create=True)
            block.add_new(0x10, vr, payload)
        elif kind == "overlay":
            item.add_new(0x60003000 + 0x20000 * n, "OB" if vr == "UN" else vr, payload)
        else:
            item.add_new(0x00420011, "OB", payload)
    return ds, seeds


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_seeded())
def test_seeded_identifiers_in_removed_binary_values_never_reach_bulk(case: tuple[Dataset, list[str]]) -> None:
    ds, seeds = case
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    deid = build_deidentifier(LakeKey(b"k" * 32), read_default_settings())
    result = process(buffer.getvalue(), deid, POLICY)
    assert isinstance(result, Processed)
    kept = [(v.keyword_path, v.value) for v in result.bulk]
    assert kept == [("ICCProfile", ds.ICCProfile)]  # the research value, exactly
    blob = result.row["header_json"].encode() + b"".join(v.value for v in result.bulk)
    for seed in {*seeds, *PHI}:
        for encoding in ("utf-8", "utf-16-le", "latin-1"):
            for spelling in (seed, seed.lower(), seed.title()):
                assert spelling.encode(encoding) not in blob


def read_default_settings() -> Any:
    from lake.config import DeidSettings

    return DeidSettings(options=list(DEFAULT_RESEARCH_OPTIONS))


def test_lake_with_seeded_binary_values_passes_audit(tmp_path: Path) -> None:
    ds = _secondary_capture(ROOT + "70", np.full((8, 8, 3), 9, dtype=np.uint8))
    ds.ICCProfile = _icc_profile(1500)
    block = ds.private_block(0x0013, "SITE SEED", create=True)
    block.add_new(0x10, "OB", ("QUIXOTE ALONSO MRN448100 " * 60).encode("utf-16-le"))
    ds.add_new(0x60003000, "OW", ("QUIXOTE " * 200).encode())
    lk = _ingest(tmp_path, {"sc.dcm": ds})
    assert lk.sql("SELECT keyword_path FROM bulk").rows() == [("ICCProfile",)]
    assert find_identifiers(lk.root, PHI) == []


@pytest.mark.parametrize("name", ["SC_ybr_full_422_uncompressed.dcm", "US1_J2KR.dcm"])
def test_ybr_stored_as_rgb_rebuilds_as_rgb(tmp_path: Path, name: str) -> None:
    lk = _ingest(tmp_path, {"in.dcm": conftest.testdata(name)})
    uid = lk.sql("SELECT SOPInstanceUID FROM instances")[0, 0]
    assert lk.sql("SELECT stored_photometric_interpretation FROM instances")[0, 0] == "RGB"
    back = _assert_round_trip(lk, uid)
    assert back.PhotometricInterpretation == "RGB"
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
