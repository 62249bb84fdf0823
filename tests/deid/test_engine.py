"""Clean semantics, markers, keyed determinism, dates and time zones, references, private elements."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

import lake
from lake.audit import find_identifiers
from lake.deid import build_deidentifier
from lake.deid.engine import Deidentifier
from lake.deid.private import load_safelist
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile, ProfileOption
from lake.ingest import ingest
from lake.keys import LakeKey
from lake.testing.synthetic import make_cohort
from tests.deid.helpers import ROOT, base

RESEARCH = Profile(DEFAULT_RESEARCH_OPTIONS)


def _with_identity() -> Dataset:
    ds = base()
    ds.PatientBirthDate = "19500611"
    ds.AccessionNumber = "ACC0X870601"
    ds.StudyDate = "19870601"
    ds.PatientAddress = "12 Imaginary Lane, Nowhere 99999"
    ds.PatientTelephoneNumbers = "+1 555 010 4477"
    ds.ReferringPhysicianName = "ZORRO^DIEGO"
    ds.InstitutionName = "SAINT HYPOTHETICAL HOSPITAL"
    return ds


def test_clean_keeps_the_words_and_removes_every_identifier(key: LakeKey) -> None:
    ds = _with_identity()
    ds.ImageComments = (
        "Quixote, Alonso (MRN448100) acc ACC0X870601 born 11/06/1950, 1950-06-11 and 11 June 1950; "
        "ref. Dr Zorro; call +1 555 010 4477 or jane@example.org; lives 12 Imaginary Lane, Nowhere. "
        "CT HEAD W/O CONTRAST 5 mm, 120 kV"
    )
    ds.SeriesDescription = "T1 MPRAGE SAG quixote"
    ds.StudyDescription = "CHEST PA"
    out = Deidentifier(key, RESEARCH).deidentify(ds).dataset
    text = out.ImageComments
    for gone in (
        "Quixote",
        "Alonso",
        "448100",
        "ACC0X",
        "1950",
        "June",
        "Zorro",
        "555",
        "jane@",
        "Imaginary",
        "Nowhere",
    ):
        assert gone.lower() not in text.lower(), gone
    for kept in ("CT HEAD W/O CONTRAST", "5 mm", "120 kV", "ref. Dr"):
        assert kept in text, kept
    assert out.SeriesDescription.startswith("T1 MPRAGE SAG") and "quixote" not in out.SeriesDescription.lower()
    assert out.StudyDescription == "CHEST PA"


def test_markers_name_the_profile_and_options(key: LakeKey) -> None:
    for options, temporal in (
        (DEFAULT_RESEARCH_OPTIONS, "MODIFIED"),
        ([ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES], "UNMODIFIED"),
        ([], "REMOVED"),
    ):
        out = Deidentifier(key, Profile(options)).deidentify(base()).dataset
        assert out.PatientIdentityRemoved == "YES"
        assert "PS3.15" in out.DeidentificationMethod
        codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence]
        assert codes[0] == ("113100", "DCM")
        doc_codes = {o: Profile(options).option_codes[o.value][0] for o in options}
        assert sorted(c for c, _ in codes[1:]) == sorted(doc_codes.values())
        assert out.LongitudinalTemporalInformationModified == temporal


def test_keyed_determinism_across_runs_and_keys(key: LakeKey, other_key: LakeKey) -> None:
    first = Deidentifier(key, RESEARCH).deidentify(_with_identity())
    again = Deidentifier(key, RESEARCH).deidentify(_with_identity())  # another worker, months later
    other = Deidentifier(other_key, RESEARCH).deidentify(_with_identity())
    assert first.dataset.to_json_dict() == again.dataset.to_json_dict()
    assert first.day_offset == again.day_offset != 0
    assert first.patient_pseudonym != other.patient_pseudonym
    assert first.dataset.SOPInstanceUID != other.dataset.SOPInstanceUID
    assert first.dataset.StudyDate != other.dataset.StudyDate
    assert first.day_offset != other.day_offset
    # the same patient in another study gets the same pseudonym and offset
    second_study = _with_identity()
    second_study.StudyInstanceUID = ROOT + "77"
    same = Deidentifier(key, RESEARCH).deidentify(second_study)
    assert (same.patient_pseudonym, same.day_offset) == (first.patient_pseudonym, first.day_offset)


def test_offsets_stay_in_the_configured_range_and_are_never_zero(key: LakeKey) -> None:
    offsets = {key.day_offset(f"\x00P{i}", 1, 3) for i in range(200)}
    assert offsets == {-1, -2, -3}


def test_dates_times_datetimes_and_time_zones(key: LakeKey) -> None:
    deid = Deidentifier(key, RESEARCH)
    ds = _with_identity()
    ds.AcquisitionDateTime = "19870601233000.123456+1400"
    ds.ContentDate = "19870601"
    ds.ContentTime = "233000"
    ds.TimezoneOffsetFromUTC = "+1400"
    ds.PatientAge = "037Y"
    ds.add_new(0x00181202, "DT", "1987")  # DateTimeOfLastCalibration, year only: cannot be shifted
    ds.add_new(0x00400244, "DA", "19870601")  # PerformedProcedureStepStartDate
    seq_item = Dataset()
    seq_item.ObservationDateTime = "19870602010203-0500"
    ds.AcquisitionContextSequence = Sequence([seq_item])
    ds.add_new(0x0018700C, "DA", ["19870101", "19870301"])  # multi-valued
    result = deid.deidentify(ds)
    out, days = result.dataset, result.day_offset
    from datetime import date, timedelta

    def shifted(d: str) -> str:
        return (date(int(d[:4]), int(d[4:6]), int(d[6:8])) + timedelta(days=days)).strftime("%Y%m%d")

    assert out.StudyDate == shifted("19870601") == out.ContentDate
    assert out.AcquisitionDateTime == shifted("19870601") + "233000.123456+1400"  # time and zone as they were
    assert out.ContentTime == "233000" and out.TimezoneOffsetFromUTC == "+1400"
    assert out.PatientAge == "037Y"  # intervals are kept, so ages stay right
    assert Tag(0x00181202) not in out  # a partial date is removed, never kept as it was
    assert out[0x00400244].value == shifted("19870601")
    assert out.AcquisitionContextSequence[0].ObservationDateTime == shifted("19870602") + "010203-0500"
    assert list(out[0x0018700C].value) == [shifted("19870101"), shifted("19870301")]
    assert "PatientBirthDate" not in out or out.PatientBirthDate == ""  # Z: no option retains it


def test_full_dates_keep_and_basic_removes_dates(key: LakeKey) -> None:
    full = Deidentifier(key, Profile([ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES])).deidentify(_with_identity())
    assert full.dataset.StudyDate == "19870601"
    basic = Deidentifier(key, Profile([])).deidentify(_with_identity())
    assert basic.dataset.StudyDate == ""


def test_references_map_to_the_referenced_instances_new_uids(key: LakeKey) -> None:
    deid = Deidentifier(key, RESEARCH)
    image = base("10")
    image.FrameOfReferenceUID = ROOT + "for"
    image_out = deid.deidentify(image).dataset
    seg = base("11")
    seg.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    seg.FrameOfReferenceUID = ROOT + "for"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = ROOT + "9.10"
    series = Dataset()
    series.SeriesInstanceUID = ROOT + "2"
    series.ReferencedInstanceSequence = Sequence([ref])
    seg.ReferencedSeriesSequence = Sequence([series])
    source = Dataset()
    source.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    source.ReferencedSOPInstanceUID = ROOT + "9.10"
    seg.SourceImageSequence = Sequence([source])
    sr_item = Dataset()
    sr_item.ValueType = "IMAGE"
    sr_ref = Dataset()
    sr_ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    sr_ref.ReferencedSOPInstanceUID = ROOT + "9.10"
    sr_item.ReferencedSOPSequence = Sequence([sr_ref])
    seg.ContentSequence = Sequence([sr_item])
    rt = Dataset()
    rt.FrameOfReferenceUID = ROOT + "for"
    seg.ReferencedFrameOfReferenceSequence = Sequence([rt])
    out = deid.deidentify(seg).dataset
    new_sop = image_out.SOPInstanceUID
    assert out.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == new_sop
    assert out.ReferencedSeriesSequence[0].SeriesInstanceUID == image_out.SeriesInstanceUID
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == new_sop
    assert out.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new_sop
    assert out.FrameOfReferenceUID == image_out.FrameOfReferenceUID == key.uid(ROOT + "for")
    assert out.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == image_out.FrameOfReferenceUID
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # standard UIDs are kept
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    # Retain UIDs keeps them all
    kept = Deidentifier(key, Profile([ProfileOption.RETAIN_UIDS])).deidentify(base("10")).dataset
    assert kept.SOPInstanceUID == ROOT + "9.10"


def _private(ds: Dataset, group: int, creator: str, element: int, vr: str, value: object) -> None:
    block = ds.private_block(group, creator, create=True)
    block.add_new(element, vr, value)


def test_private_elements_kept_only_when_safelisted_with_a_known_creator(key: LakeKey) -> None:
    assert load_safelist()
    ds = base()
    _private(ds, 0x0019, "SIEMENS MR HEADER", 0x0C, "IS", "1000")  # B_value: safelisted
    _private(ds, 0x0019, "SIEMENS MR HEADER", 0x13, "SL", [1, 2, 3])  # not safelisted
    _private(ds, 0x0029, "ACME PRIVATE", 0x10, "LO", "QUIXOTE")  # unknown creator
    _private(ds, 0x0043, "GEMS_PARM_01", 0x39, "UN", b"QUIXOTE ")  # safelisted, but UN that is no IS value
    _private(ds, 0x2001, "Philips Imaging DD 001", 0x5F, "SQ", Sequence([Dataset()]))  # a private sequence
    ds.add_new(Tag(0x0031, 0x1010), "LO", "no creator")  # element without a creator
    out = Deidentifier(key, RESEARCH).deidentify(ds).dataset
    private = {(e.tag.group, e.tag.element) for e in out if e.tag.is_private}
    assert private == {(0x0019, 0x0010), (0x0019, 0x100C)}
    assert out[Tag(0x0019, 0x0010)].value == "SIEMENS MR HEADER" and out[Tag(0x0019, 0x100C)].value == "1000"
    basic = Deidentifier(key, Profile([])).deidentify(ds).dataset
    assert not [e for e in basic if e.tag.is_private]


def test_crosswalk_only_in_the_vault(tmp_path: Path) -> None:
    src = tmp_path / "src"
    specs = make_cohort(src, n_patients=2, studies_per_patient=1, n_images=1)
    root = tmp_path / "lake"
    lake.init(root, keep_crosswalk=True)
    ingest(root, [src])
    lk = lake.open(root)
    crosswalk = Path(str(lk.key_path) + ".vault") / "crosswalk.jsonl"
    rows = [json.loads(line) for line in crosswalk.read_text().splitlines()]
    assert {r["original_patient_id"] for r in rows} == {s.patient_id for s in specs}
    assert {r["pseudonym"] for r in rows} == set(lk.sql("SELECT DISTINCT PatientID FROM instances")["PatientID"])
    assert oct(crosswalk.stat().st_mode & 0o777) == "0o600"
    assert find_identifiers(root, [s.patient_id for s in specs]) == []
    assert not str(crosswalk).startswith(str(root))
    # without the option there is none
    root2 = tmp_path / "lake2"
    ingest(root2, [src])
    assert not (Path(str(lake.open(root2).key_path) + ".vault") / "crosswalk.jsonl").exists()
    assert os.environ["LAKE_HOME"] in str(lk.key_path)


def test_deidentifier_from_lake_settings(tmp_path: Path) -> None:
    lk = lake.init(tmp_path / "lake", options=[ProfileOption.RETAIN_UIDS], date_offset_days=(5, 6))
    deid = build_deidentifier(lk.key(), lk.config.deid)
    assert deid.retain_uids and deid.date_offset_days == (5, 6)
    assert deid.deidentify(base()).day_offset in (-5, -6)
