"""A private value that does not convert: removed with its element by a research lake (the parse
leaves private values to the de-identifier), rejected where the element would be kept."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from lake.deid.engine import Deidentifier, PrivateRule
from lake.deid.passthrough import PassThrough
from lake.deid.profile import Profile, ProfileOption
from lake.ingest.worker import Processed, Rejection, parse, process_file
from lake.keys import LakeKey

KEY = LakeKey(bytes(range(32)))
RESEARCH = Profile({ProfileOption.RETAIN_SAFE_PRIVATE})
CREATOR = "ACME PRIVATE"
# an undefined-length item holding an element of no known VR: pydicom cannot convert the sequence
BAD_ITEMS = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + b"\x10\x00\x10\x00ZZ\x04\x00abcd"


def _file() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.1000000000000000000001"
    ds.PatientID = "P-SYNTH-1"
    ds.Modality = "OT"
    ds.add_new(0x00090010, "LO", CREATOR)
    ds.add_new(0x00091010, "OB", BAD_ITEMS)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    at = data.index(b"\x09\x00\x10\x10OB")
    return data[: at + 4] + b"SQ" + data[at + 6 :]  # the element becomes a sequence of those bytes


def test_the_parse_finds_the_bad_value_unless_told_to_leave_private_values() -> None:
    from lake.errors import RejectedInput

    with pytest.raises(RejectedInput) as caught:
        parse(_file())
    assert (caught.value.stage, caught.value.reason) == ("parse", "malformed:NotImplementedError")
    assert "PatientID" in parse(_file(), private_values=False)


def test_a_research_lake_removes_the_element_and_keeps_the_instance() -> None:
    outcome = process_file(_file(), Deidentifier(KEY, RESEARCH), "mask")
    assert isinstance(outcome, Processed)
    assert "00091010" not in outcome.row["header_json"] and "00090010" not in outcome.row["header_json"]
    assert outcome.counts[("private", "X")] == 2  # the creator and its element


@pytest.mark.parametrize(
    "deidentifier",
    [
        PassThrough(KEY),  # keeps every private element: the parse converts them all
        Deidentifier(KEY, RESEARCH, private_safelist=[PrivateRule(9, CREATOR, 0x10)]),
    ],
    ids=["pass-through", "safelisted-slot"],
)
def test_where_the_element_would_be_kept_the_file_is_rejected_as_malformed(deidentifier: object) -> None:
    outcome = process_file(_file(), deidentifier, "mask")  # type: ignore[arg-type]
    assert isinstance(outcome, Rejection)
    assert (outcome.stage, outcome.reason) == ("parse", "malformed:NotImplementedError")
