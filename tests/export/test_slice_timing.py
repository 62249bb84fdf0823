"""SliceTiming and PhaseEncodingDirection of the NIfTI sidecar read through the lake, without the
shared data: a synthetic Siemens mosaic whose CSA image header reaches the ``bulk`` table
(compared with dcm2niix on the same file), and dcm2niix's GE estimate from a Protocol Data Block
(sequential, interleaved, both directions; what is not derivable is said in the sidecar)."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

import lake
from lake.deid import csa
from lake.export.nifti import export_nifti
from lake.export.slice_timing import GE_NO_PROTOCOL, ge_acquisition_times, ge_protocol
from lake.ingest import ingest

nib = pytest.importorskip("nibabel")

TILE, IMAGES, TIMEPOINTS = 8, 4, 2
#: MosaicRefAcqTimes (ms) of an interleaved 4-slice acquisition, TR 2000
REF_TIMES = ["0.00000000", "1000.00000001", "500.00000000", "1500.00000001"]


def _csa_image_header(positive: str) -> bytes:
    def text(name: str, values: list[str], vr: str = "DS", n: int = 6) -> csa.CsaElement:
        items = [v.encode() + b"\x00" for v in values]
        return csa.element(name, max(len(values), 1), vr, 3, items, n)

    elements = [
        text("NumberOfImagesInMosaic", [str(IMAGES)], "US"),
        text("MosaicRefAcqTimes", REF_TIMES, "FD", len(REF_TIMES)),
        text("SliceNormalVector", ["0.00000000", "0.00000000", "1.00000000"], "FD", 3),
        text("PhaseEncodingDirectionPositive", [positive], "IS"),
        text("BandwidthPerPixelPhaseEncode", ["20.833"], "FD"),
        text("RealDwellTime", ["2600"], "IS"),
        text("SlicePosition_PCS", ["-12.00000000", "-12.00000000", "-6.00000000"], "FD", 3),
        text("ProtocolSliceNumber", ["0"], "IS"),
    ]
    return csa.write(csa.CsaHeader(b"\x04\x03\x02\x01", tuple(elements)))


def _mosaic(path: Path, series: str, study: str, number: int, positive: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, study + ".1"
    ds.PatientName, ds.PatientID, ds.PatientSex = "SYNTH^MOSAIC", "SYN-MOSAIC-1", "O"
    ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate = "20200102", "20200102", "20200102"
    ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime = "101500", "101500", f"1015{number:02d}.000000"
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "MR", "SIEMENS", "Prisma"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = 7, number, number
    ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "EP", "SK", "2D"
    ds.RepetitionTime, ds.EchoTime, ds.FlipAngle, ds.MagneticFieldStrength = 2000, 30, 75, 3
    ds.SliceThickness, ds.SpacingBetweenSlices = 3, 4
    ds.AcquisitionMatrix = [TILE, 0, 0, TILE]
    ds.InPlanePhaseEncodingDirection = "COL"
    ds.PixelSpacing = [3, 3]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    grid = int(np.ceil(np.sqrt(IMAGES)))
    # the mosaic's corner, as Siemens writes it (the first slice's centre offset by half the grid)
    ds.ImagePositionPatient = [-12.0 - 3 * TILE * (grid - 1) / 2, -12.0 - 3 * TILE * (grid - 1) / 2, -6.0]
    ds.Rows = ds.Columns = TILE * grid
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    frame = np.zeros((TILE * grid, TILE * grid), dtype=np.uint16)
    for k in range(IMAGES):
        r, c = divmod(k, grid)
        frame[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = 100 * (k + 1) + number + np.arange(TILE)
    ds.PixelData = frame.tobytes()
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x10, "OB", _csa_image_header(positive))
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def mosaic_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[lake.Lake, Path, Path]:
    base = tmp_path_factory.mktemp("mosaic")
    src = base / "src"
    src.mkdir()
    study, series = generate_uid(), generate_uid()
    for n in range(1, TIMEPOINTS + 1):
        _mosaic(src / f"mosaic-{n}.dcm", series, study, n, positive="1")
    root = base / "lake"
    lake.init(root, key_file=base / "k.key", burned_in_policy="keep-flagged")
    summary = ingest(root, [src], key_file=base / "k.key")
    assert summary.ingested == TIMEPOINTS, summary.reject_reasons
    return lake.open(root, key_file=base / "k.key"), src, base


def _sidecar(nii: Path) -> dict[str, object]:
    return json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())


def test_the_csa_header_is_a_bulk_value_of_the_lake(mosaic_lake: tuple[lake.Lake, Path, Path]) -> None:
    lk, _src, _base = mosaic_lake
    rows = lk.sql("SELECT keyword_path, length FROM bulk").rows()
    assert len(rows) == TIMEPOINTS and {length for _, length in rows} == {len(_csa_image_header("1"))}
    uid = lk.sql("SELECT SOPInstanceUID FROM instances LIMIT 1")[0, 0]
    assert lk.header(uid)["00291010"]["BulkDataURI"].startswith("bulk:")


def test_slice_timing_and_phase_direction_come_from_the_lake_and_match_dcm2niix(
    mosaic_lake: tuple[lake.Lake, Path, Path],
) -> None:
    lk, src, base = mosaic_lake
    uid = lk.sql("SELECT DISTINCT SeriesInstanceUID FROM instances")[0, 0]
    (written,) = export_nifti(lk, [uid], base / "out").written
    assert written.shape == (TILE, TILE, IMAGES, TIMEPOINTS)
    side = _sidecar(written.nifti)
    assert side["SliceTiming"] == [float(t) / 1000 for t in (0, 1000, 500, 1500)]
    assert side["PhaseEncodingDirection"] == "j-" and "LakeSidecarNotes" not in side
    dcm2niix = pytest.importorskip("dcm2niix")
    out = base / "d2n"
    out.mkdir()
    subprocess.run(
        [dcm2niix.bin, "-z", "y", "-b", "y", "-f", "%s", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (reference,) = out.glob("*.json")
    theirs = json.loads(reference.read_text())
    np.testing.assert_allclose(side["SliceTiming"], theirs["SliceTiming"], atol=1e-4)
    assert side["PhaseEncodingDirection"] == theirs["PhaseEncodingDirection"]
    (image,) = out.glob("*.nii.gz")
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(str(written.nifti)).dataobj), np.asanyarray(nib.load(str(image)).dataobj)
    )


def test_without_the_csa_header_the_sidecar_says_what_is_missing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    study, series = generate_uid(), generate_uid()
    for n in range(1, TIMEPOINTS + 1):
        path = src / f"m{n}.dcm"
        _mosaic(path, series, study, n, positive="0")
        ds = pydicom.dcmread(path)
        ds[0x0029, 0x1010].value = b"CSA1" + bytes(2000)  # not CSA2: the de-identification drops it
        ds.save_as(path)
    root = tmp_path / "lake"
    lake.init(root, key_file=tmp_path / "k.key", burned_in_policy="keep-flagged")
    ingest(root, [src], key_file=tmp_path / "k.key")
    lk = lake.open(root, key_file=tmp_path / "k.key")
    assert lk.sql("SELECT count(*) FROM bulk")[0, 0] == 0
    uid = lk.sql("SELECT DISTINCT SeriesInstanceUID FROM instances")[0, 0]
    written = export_nifti(lk, [uid], tmp_path / "out").written
    side = _sidecar(written[0].nifti)
    assert "SliceTiming" not in side and "PhaseEncodingDirection" not in side
    assert side["PhaseEncodingAxis"] == "j"
    assert any("CSA image header" in note for note in side["LakeSidecarNotes"])  # type: ignore[union-attr]


def _protocol_block(**keys: str) -> bytes:
    text = "".join(f'{k} "{v}"\n' for k, v in keys.items()).encode("latin-1")
    packed = gzip.compress(text)
    return struct.pack("<I", len(packed)) + packed


def test_ge_protocol_block_is_read() -> None:
    keys = ge_protocol(_protocol_block(SLICEORDER="1", IOPT="EPI, FMRI", MBACCEL="1", NOSLC="15"))
    assert keys == {"SLICEORDER": "1", "IOPT": "EPI, FMRI", "MBACCEL": "1", "NOSLC": "15"}
    assert ge_protocol(b"\x00\x01junk") == {} and ge_protocol(b"\x1f\x8b\x08broken") == {}


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("0", [0, 1, 2, 3, 4]),  # sequential from the first prescribed slice
        ("1", [0, 3, 1, 4, 2]),  # interleaved: even positions first, then odd
    ],
)
def test_ge_slice_times_follow_dcm2niix(order: str, expected: list[int]) -> None:
    times, why = ge_acquisition_times({"SLICEORDER": order, "IOPT": "EPI, FMRI"}, 5000.0, 5)
    assert why is None and times == pytest.approx([1000.0 * e for e in expected])
    # the GE EPI of dcm_qa_nih (15 slices, TR 5 s, interleaved): dcm2niix writes 0, 2.667, 0.333, ...
    fifteen, _ = ge_acquisition_times({"SLICEORDER": "1", "IOPT": "EPI, FMRI"}, 5000.0, 15)
    assert fifteen is not None and [round(t / 1000, 5) for t in fifteen[:4]] == [0, 2.66667, 0.33333, 3.0]


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"IOPT": "EPI, FMRI"}, "no SLICEORDER"),
        ({"SLICEORDER": "1", "IOPT": "EPI, FMRI", "MBACCEL": "3"}, "HyperBand"),
        ({"SLICEORDER": "1", "IOPT": "EPI, MPhVar"}, "variable delays"),
        ({"SLICEORDER": "1", "IOPT": "DIFF"}, "only GE EPI fMRI"),
    ],
)
def test_ge_slice_times_that_are_not_derivable_say_why(keys: dict[str, str], reason: str) -> None:
    times, why = ge_acquisition_times(keys, 2000.0, 10)
    assert times is None and why is not None and reason in why


def test_the_ge_note_names_the_removed_block() -> None:
    assert "(0025,xx1B)" in GE_NO_PROTOCOL and "interleaved" in GE_NO_PROTOCOL
