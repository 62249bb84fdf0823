"""Burned-in annotations: the deid package's rules give regions; the per-lake policy decides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import lake
from lake.deid import burned_in, pixels
from lake.deid.pixels import PixelPolicy, apply_pixel_policy, assess, mask_regions, risk_reason
from lake.ingest import ingest
from lake.pixels.decode import DecodedPixels
from tests.deid.helpers import ROOT

US = "1.2.840.10008.5.1.4.1.1.6.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(autouse=True)
def _without_ocr() -> object:
    """These tests are of the rules and policies alone (tests/deid/test_ocr.py reads the pixels)."""
    pixels.set_text_finder(None)
    yield
    pixels.set_text_finder(pixels._UNSET)


def _image(n: int, sop_class: str, rows: int = 80, cols: int = 64, **attrs: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}8.{n}"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{ROOT}8.{n}"
    ds.StudyInstanceUID = ROOT + "81"
    ds.SeriesInstanceUID = ROOT + f"82.{sop_class[-3:]}"
    ds.PatientID = "MRN1"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((rows, cols), 200, dtype=np.uint8).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _philips_cx50(n: int) -> Dataset:
    return _image(n, US, Modality="US", Manufacturer="Philips Medical Systems", ManufacturerModelName="CX50")


def test_deid_rules_give_the_region_of_a_known_device() -> None:
    ds = _philips_cx50(1)
    matches = burned_in.match_rules(ds)
    assert any(m.label == "CX50" and m.group == "graylist" for m in matches)
    reason, boxes = burned_in.find_regions(ds) or ("", [])
    assert reason == "deid_rule:CX50" and boxes == [(0, 0, 800, 59)]  # ctpcoordinates x,y,w,h -> boxes


def test_rules_with_or_lines_and_absence_only_rules() -> None:
    # "Burned In Annotation" (blacklist): ... || contains BurnedInAnnotation YES
    ds = _image(2, CT, Modality="CT", BurnedInAnnotation="YES")
    assert any(m.label == "Burned In Annotation" for m in burned_in.match_rules(ds))
    # "Missing ImageType" tests only absence: not evidence of burned-in text on its own
    plain = _image(3, CT, Modality="CT")
    del plain.ImageType
    assert any("Missing ImageType" in m.label for m in burned_in.match_rules(plain))
    assert burned_in.rule_risk(plain) is None and risk_reason(plain) is None
    derived = _image(4, CT, Modality="CT", ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"])
    assert risk_reason(derived) is not None


def _decoded(ds: Dataset) -> DecodedPixels:
    frames = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(1, ds.Rows, ds.Columns)
    return DecodedPixels(frames=frames, status="stored", reason=None)


@pytest.mark.parametrize(
    ("policy", "ds_factory", "status", "reason_prefix", "masked"),
    [
        (PixelPolicy.MASK_OR_QUARANTINE, lambda: _philips_cx50(5), "stored", "masked:deid_rule:CX50", True),
        (
            PixelPolicy.MASK_OR_QUARANTINE,
            lambda: _image(6, US, Modality="US"),
            "quarantined",
            "at_risk_sop_class",
            None,
        ),
        (PixelPolicy.MASK, lambda: _philips_cx50(7), "stored", "masked:", True),
        (PixelPolicy.MASK, lambda: _image(8, US, Modality="US"), "stored", "unmasked_no_rule:", False),
        (PixelPolicy.QUARANTINE, lambda: _philips_cx50(9), "quarantined", "at_risk_sop_class", None),
        (PixelPolicy.KEEP_FLAGGED, lambda: _philips_cx50(10), "stored", "flagged:at_risk", False),
        (PixelPolicy.MASK_OR_QUARANTINE, lambda: _image(11, CT, Modality="CT"), "stored", None, False),
    ],
)
def test_policies(policy: PixelPolicy, ds_factory, status: str, reason_prefix: str | None, masked: bool | None) -> None:
    ds = ds_factory()
    decoded = _decoded(ds)
    frames, got_status, reason = apply_pixel_policy(ds, decoded, policy, assess(ds))
    assert got_status == status
    if reason_prefix is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(reason_prefix)
    if masked is None:
        assert frames is None
    elif masked:
        assert frames is not None and (frames[0, :59] == 0).all() and (frames[0, 59:] == 200).all()
    else:
        assert frames is not None and np.array_equal(frames, decoded.frames)


def test_mask_regions_clips_and_covers_every_frame_and_sample() -> None:
    frames = np.ones((2, 10, 12, 3), dtype=np.uint16)
    out = mask_regions(frames, [(2, 1, 5, 3), (10, 8, 99, 99)])
    assert out[:, 1:3, 2:5].sum() == 0 and out[:, 8:, 10:].sum() == 0
    assert out.sum() == frames.sum() - 2 * 3 * (2 * 3 + 2 * 2)
    assert frames.sum() == 2 * 10 * 12 * 3  # the input is not modified


def test_the_reason_is_a_column_of_instances(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _philips_cx50(20).save_as(src / "a.dcm", enforce_file_format=True)
    _image(21, US, Modality="US").save_as(src / "b.dcm", enforce_file_format=True)
    _image(22, CT, Modality="CT", BurnedInAnnotation="YES").save_as(src / "c.dcm", enforce_file_format=True)
    _image(23, CT, Modality="CT").save_as(src / "d.dcm", enforce_file_format=True)
    root = tmp_path / "lake"
    ingest(root, [src])
    lk = lake.open(root)
    rows = {r["pixel_reason"]: r for r in lk.sql("SELECT * FROM instances").to_dicts()}
    assert rows["masked:deid_rule:CX50"]["pixel_status"] == "stored"
    assert rows["at_risk_sop_class:ultrasound"]["pixel_status"] == "quarantined"
    assert rows["burned_in_annotation_yes"]["pixel_status"] == "quarantined"
    assert rows[None]["pixel_status"] == "stored"
    masked_uid = rows["masked:deid_rule:CX50"]["SOPInstanceUID"]
    stored = lk.pixels(masked_uid)
    assert (stored[0, :59] == 0).all() and (stored[0, 59:] == 200).all()
    quarantined = rows["burned_in_annotation_yes"]
    assert quarantined["PatientIdentityRemoved"] == "YES" and quarantined["frame_count"] == 0
