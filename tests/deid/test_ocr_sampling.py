"""Series sampling is a function of the input: the same files give the same pixel_phi columns with
one worker or two, in any order and batch size, and a series with text anywhere is read whole.

OCR here is a stand-in (:func:`_marker_finder`: a block of white pixels is "text"), so the tests are
of the sampling and the run's holding of unread instances, fast and without Tesseract.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import lake
from lake.deid import ocr, pixels
from lake.ingest import ingest, sampling
from tests.deid.helpers import ROOT

CT = "1.2.840.10008.5.1.4.1.1.2"
PHI_COLUMNS = ("pixel_status", "pixel_reason", "pixel_sha256", "pixel_phi_method", "pixel_phi_reason",
               "pixel_phi_boxes", "pixel_phi_masked_fraction", "pixel_phi_frames_read")  # fmt: skip
WHITE = 255


def _marker_finder(frame: np.ndarray) -> list[ocr.TextBox]:
    """A stand-in for OCR: the white pixels of a frame are one line of text, if there are 20."""
    ys, xs = np.nonzero(frame >= 250)
    if len(ys) < 20:
        return []
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return [ocr.TextBox(box, 90.0, "MUSTERMANN")]  # the patient's name: identifier_in_text


@pytest.fixture(autouse=True)
def _stand_in_ocr() -> Any:
    pixels.set_text_finder(_marker_finder)  # the forked workers inherit it
    yield
    pixels.set_text_finder(pixels._UNSET)


def _derived(series: int, number: int, text: bool) -> Dataset:
    rng = np.random.default_rng(series * 100 + number)
    frame = rng.integers(0, 150, (64, 64), dtype=np.uint8)
    if text:
        frame[40:46, 8:40] = WHITE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    uid = f"{ROOT}5.{series}.{number}"
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = CT, uid
    ds.StudyInstanceUID = ROOT + "51"
    ds.SeriesInstanceUID = f"{ROOT}52.{series}"
    ds.PatientID, ds.PatientName = "MRN5501", "MUSTERMANN^ERIKA"
    ds.Modality, ds.ImageType = "CT", ["DERIVED", "SECONDARY", "MPR"]
    ds.InstanceNumber = number
    ds.Rows, ds.Columns = frame.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = frame.tobytes()
    return ds


#: series -> (instances, instance numbers with text): clean; text in one instance that is always
#: read (numbered 1-4); text in every instance.
SERIES = {1: (24, set()), 2: (24, {2}), 3: (12, set(range(1, 13)))}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    src = tmp_path_factory.mktemp("sampled-series")
    out = []
    for series, (count, with_text) in SERIES.items():
        for number in range(1, count + 1):
            path = src / f"s{series}-{number:02d}.dcm"
            _derived(series, number, number in with_text).save_as(path, enforce_file_format=True)
            out.append(path)
    return out


def _lake(tmp: Path, name: str, key_file: Path, files: list[Path], **options: Any) -> dict[str, dict[str, Any]]:
    root = tmp / name
    lake.init(root, key_file=key_file)
    ingest(root, files, key_file=key_file, **options)
    rows = lake.open(root, key_file=key_file).sql("SELECT * FROM instances").to_dicts()
    return {r["SOPInstanceUID"]: r for r in rows}


def _in_sample(keyed_uid: str) -> bool:
    """Whether OCR reads an instance numbered beyond 1-4 of a sampled series (as ``in_series_sample``)."""
    return hashlib.sha256(b"lake.ocr-sample\0" + keyed_uid.encode()).digest()[0] % pixels.SERIES_STRIDE == 0


def _by_series(rows: dict[str, dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Rows per input series (told apart by their size and text), each in instance order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows.values():
        groups.setdefault(row["SeriesInstanceUID"], []).append(row)
    out = {}
    for members in groups.values():
        members.sort(key=lambda r: int(r["InstanceNumber"]))
        texts = sum(r["pixel_phi_reason"] == "identifier_in_text" for r in members)
        out[3 if len(members) == 12 else 2 if texts else 1] = members
    return out


def test_the_verdict_does_not_depend_on_workers_order_or_batches(
    tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "keys" / "lake.key"
    one = _lake(tmp_path, "one", key_file, files)
    two = _lake(tmp_path, "two", key_file, list(reversed(files)), workers=2, batch_size=3)
    monkeypatch.setattr(sampling, "HELD_BYTES", 0)  # every held instance read again at the end
    shuffled = random.Random(7).sample(files, len(files))
    three = _lake(tmp_path, "three", key_file, shuffled, workers=2, batch_size=5)
    assert sorted(one) == sorted(two) == sorted(three) and len(one) == len(files)
    for sop, row in one.items():
        want = [row[c] for c in PHI_COLUMNS]
        assert [two[sop][c] for c in PHI_COLUMNS] == want, sop
        assert [three[sop][c] for c in PHI_COLUMNS] == want, sop

    series = _by_series(one)
    clean = series[1]
    assert all(r["pixel_status"] == "stored" and r["pixel_reason"] is None for r in clean)
    assert [r["pixel_phi_reason"] for r in clean[:4]] == ["no_text_found"] * 4  # numbered 1-4: read
    unread = [r for r in clean if r["pixel_phi_reason"] == "series_sampled_clean"]
    # the sample is a function of each keyed UID (about 1 in 8 beyond 1-4 read): the exact set, whatever the key
    sampled_out = [r for r in clean[4:] if not _in_sample(r["SOPInstanceUID"])]
    assert [r["SOPInstanceUID"] for r in unread] == [r["SOPInstanceUID"] for r in sampled_out]
    assert len(unread) >= 1 and all(r["pixel_phi_frames_read"] == 0 for r in unread)

    for r in series[2]:  # text in instance 2 only: every instance of the series is read
        assert r["pixel_phi_frames_read"] == 1
        assert r["pixel_phi_reason"] == ("identifier_in_text" if r["InstanceNumber"] == 2 else "no_text_found")
    for r in series[3]:  # text everywhere: every instance read and masked
        assert r["pixel_phi_reason"] == "identifier_in_text" and r["pixel_reason"] == "masked:ocr"
    lk = lake.open(tmp_path / "two", key_file=key_file)
    for r in series[3] + series[2][1:2]:
        stored = lk.pixels(r["SOPInstanceUID"])
        assert stored.max() < 250 and (stored[0, 40:46, 8:40] == 0).all()


def test_text_in_the_lake_has_a_later_run_read_every_instance(tmp_path: Path, files: list[Path]) -> None:
    key_file = tmp_path / "keys" / "lake.key"
    root = tmp_path / "lake"
    lake.init(root, key_file=key_file)
    second = [f for f in files if f.name.startswith("s2-")]
    ingest(root, [second[1]], key_file=key_file)  # the instance with text, alone
    ingest(root, second, key_file=key_file, workers=2)
    rows = lake.open(root, key_file=key_file).sql("SELECT * FROM instances").to_dicts()
    assert len(rows) == 24
    assert all(r["pixel_phi_frames_read"] == 1 for r in rows)
    assert [r["pixel_phi_reason"] for r in rows].count("identifier_in_text") == 1
