"""Hypothesis: identifiers injected anywhere never survive; technical attributes always do.

Identifiers (name parts, IDs, accession numbers, birth dates in written forms, phone numbers,
e-mail addresses) go into random standard text attributes, nested sequences at random depth,
private blocks (including safelisted ones), free text and person-name attributes in odd places.
The whole output dataset (every element at every depth, and the file meta) is then searched.
"""

from __future__ import annotations

import json
from datetime import date

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.datadict import DicomDictionary
from pydicom.sequence import Sequence

from lake.audit import identifier_pattern
from lake.deid.engine import Deidentifier
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile, ProfileOption
from lake.keys import LakeKey
from tests.deid.helpers import base

KEY = LakeKey(bytes(range(32)))
TECHNICAL = {
    "Manufacturer": "ACME Imaging",
    "ManufacturerModelName": "Phantom 3000",
    "BodyPartExamined": "HEAD",
    "ConvolutionKernel": "B30f",
    "ScanOptions": "HELICAL",
    "PixelSpacing": [0.5, 0.5],
    "SliceThickness": 5.0,
    "KVP": 120.0,
    "XRayTubeCurrent": 200,
    "ImagePositionPatient": [-120.0, -130.5, 42.0],
    "ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "Rows": 32,
    "Columns": 32,
    "RepetitionTime": 2300.0,
    "EchoTime": 2.98,
    "MagneticFieldStrength": 3.0,
    "SpacingBetweenSlices": 5.0,
    "PatientPosition": "HFS",
    "PhotometricInterpretation": "MONOCHROME2",
    "RescaleSlope": 1.0,
    "RescaleIntercept": -1024.0,
    "WindowCenter": 40.0,
    "WindowWidth": 400.0,
}
PROFILES = [
    Profile(DEFAULT_RESEARCH_OPTIONS),
    Profile([]),
    Profile([ProfileOption.CLEAN_DESCRIPTORS, ProfileOption.RETAIN_SAFE_PRIVATE]),
]
#: what the test writes itself (the identity, a description it checks): injections must not overwrite it
IDENTITY = {
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "PatientTelephoneNumbers",
    "PatientBirthDate",
    "SeriesDescription",
}
TEXT_VRS = ("LO", "SH", "ST", "LT", "UT", "UC", "PN")
SKIP_GROUPS = {0x0000, 0x0002, 0x0004, 0xFFFE}
TARGETS = sorted(
    entry[4]
    for tag, entry in DicomDictionary.items()
    if entry[0] in TEXT_VRS
    and entry[4]
    and tag >> 16 not in SKIP_GROUPS
    and entry[4] not in TECHNICAL.keys() | IDENTITY
)
NESTING = ("SharedFunctionalGroupsSequence", "ReferencedSeriesSequence", "AnatomicRegionSequence", "ContentSequence")
PRIVATE = [
    (0x0051, "SIEMENS MR HEADER", 0x0F, "LO"),  # safelisted CoilString
    (0x0019, "GEMS_ACQU_01", 0x9C, "LO"),  # safelisted Pulse Sequence Name
    (0x0029, "SIEMENS CSA HEADER", 0x10, "OB"),
    (0x0009, "ACME NOTES", 0x01, "LT"),
]
ODD_NAME_PLACES = ("ContentCreatorName", "VerifyingObserverName", "PersonName", "ReviewerName", "TextValue")

letters = st.text(alphabet="BCDFGHJKLMNPQRSTVWXZ", min_size=5, max_size=9)


@st.composite
def identities(draw: st.DrawFn) -> dict[str, str]:
    family, given_name = draw(letters), draw(letters)
    assume(family != given_name)
    birth = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2005, 12, 31)))
    return {
        "family": family,
        "given": given_name,
        "id": "MRN" + str(draw(st.integers(100000, 99999999))),
        "accession": "ACC" + str(draw(st.integers(1000000, 9999999))),
        "birth": birth.strftime("%Y%m%d"),
        "birth_written": birth.strftime(draw(st.sampled_from(["%d/%m/%Y", "%Y-%m-%d", "%d %B %Y", "%m/%d/%Y"]))),
        "phone": "+1 555 {:03d} {:04d}".format(*draw(st.tuples(st.integers(100, 999), st.integers(1000, 9999)))),
        "email": draw(letters).lower() + "@example.org",
    }


def _forms(who: dict[str, str]) -> list[str]:
    """How the identifiers are written where they are injected."""
    f, g = who["family"], who["given"]
    return [
        f,
        f"{f}^{g}",
        f"{g} {f}".title(),
        f"{f}, {g}".lower(),
        who["id"],
        who["accession"],
        who["birth_written"],
        who["birth"],
        who["phone"],
        who["email"],
    ]


def _needles(who: dict[str, str]) -> list[str]:
    return [who["family"], who["given"], who["id"], who["accession"], who["birth"], who["phone"], who["email"]]


def _dataset(who: dict[str, str]) -> Dataset:
    ds = base()
    ds.PatientName = f"{who['family']}^{who['given']}"
    ds.PatientID = who["id"]
    ds.AccessionNumber = who["accession"]
    ds.PatientBirthDate = who["birth"]
    ds.PatientTelephoneNumbers = who["phone"]
    ds.StudyDate = "20190311"
    ds.SeriesDescription = "T1 AXIAL"
    for k, v in TECHNICAL.items():
        setattr(ds, k, v)
    return ds


def _text(ds: Dataset) -> str:
    """Every value of every element at every depth, and the file meta, as text."""
    parts = [json.dumps(ds.to_json_dict(bulk_data_threshold=10**9, bulk_data_element_handler=lambda e: ""))]
    parts += [repr(elem.value) for elem in ds.iterall()]
    parts += [repr(elem.value) for elem in ds.file_meta]
    return "\n".join(parts)


def _injected(draw: st.DrawFn, ds: Dataset, forms: list[str]) -> None:
    def value() -> str:
        v = draw(st.sampled_from(forms))
        return draw(st.sampled_from([v, f"seen {v} today", f"{v}; CT HEAD", f"Re: {v}"]))

    for _ in range(draw(st.integers(1, 4))):  # random standard attributes, top level
        setattr(ds, draw(st.sampled_from(TARGETS)), value())
    item = ds  # nested sequences at random depth
    for i in range(draw(st.integers(1, 5))):
        inner = Dataset()
        setattr(
            item,
            NESTING[draw(st.integers(0, len(NESTING) - 1))] if i else "SharedFunctionalGroupsSequence",
            Sequence([inner]),
        )
        item = inner
    setattr(item, draw(st.sampled_from(TARGETS)), value())
    setattr(item, draw(st.sampled_from(ODD_NAME_PLACES)), value())
    group, creator, element, vr = draw(st.sampled_from(PRIVATE))  # private blocks
    block = ds.private_block(group, creator, create=True)
    block.add_new(element, vr, value().encode() if vr == "OB" else value())
    ds.ImageComments = f"Patient {value()} referred; {value()}. Axial 5 mm, contrast."  # free text
    ds.ContentCreatorName = draw(st.sampled_from(forms[:4]))  # a person name in an odd place


@given(who=identities(), data=st.data(), which=st.integers(0, len(PROFILES) - 1))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_injected_identifiers_never_survive_and_technical_attributes_do(
    who: dict[str, str], data: st.DataObject, which: int
) -> None:
    ds = _dataset(who)
    _injected(data.draw, ds, _forms(who))
    out = Deidentifier(KEY, PROFILES[which]).deidentify(ds).dataset
    text = _text(out)
    for needle in _needles(who):
        assert not identifier_pattern(needle).search(text), needle
    for keyword, want in TECHNICAL.items():
        got = out.get(keyword)
        assert got is not None, keyword
        assert (list(got) if isinstance(want, list) else got) == want, keyword
    assert out.get("SeriesDescription") in ("T1 AXIAL", None)
    if ProfileOption.CLEAN_DESCRIPTORS in PROFILES[which].options:
        assert out.SeriesDescription == "T1 AXIAL"
        assert "Axial 5 mm, contrast." in out.ImageComments  # cleaned, not deleted
