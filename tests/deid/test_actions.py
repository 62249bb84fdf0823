"""Every row of Table E.1-1, with its action and combinations, applied at every sequence depth."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from lake.deid.attribute_types import concrete_action
from lake.deid.engine import Deidentifier
from lake.deid.profile import Action, Profile, ProfileOption, load_profile_table
from lake.keys import LakeKey
from tests.deid.helpers import ROOT, VALUES, at_depth, base, nest

PSEUDONYMISED = {0x00100020, 0x00100010}


def _rows() -> list[tuple[int, str, str]]:
    out = []
    for row in load_profile_table()[1]:
        if row.tag == "private" or "X" in row.tag[1:10]:
            continue
        tag = int(row.tag[1:5] + row.tag[6:10], 16)
        if tag >> 16 in (0x0000, 0x0002, 0x0004):  # command, file meta, directory: not in a dataset
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        if vr in VALUES or vr == "SQ":
            out.append((tag, vr, row.keyword))
    return out


ROWS = _rows()


def _value(vr: str, tag: int) -> object:
    if vr == "UI":
        return f"{ROOT}5.{tag}"
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = f"{ROOT}6.{tag}"
        return Sequence([item])
    return VALUES[vr]


def _empty(value: object) -> bool:
    return value in (None, "", b"") or (isinstance(value, Sequence | list) and len(value) == 0)


def _check(key: LakeKey, profile: Profile, depth: int) -> list[str]:
    """Apply the profile to each row's attribute at ``depth``; return the rows that went wrong."""
    deid = Deidentifier(key, profile)
    wrong = []
    for tag, vr, keyword in ROWS:
        ds = base()
        holder = nest(ds, depth)
        original = _value(vr, tag)
        holder.add_new(tag, vr, original)
        action = profile.action_for(tag)
        assert action is not None
        result = deid.deidentify(ds)
        item = at_depth(result.dataset, depth)
        present = tag in item
        value = item[tag].value if present else None
        concrete = concrete_action(action, tag, ds)
        ok = True
        if tag in PSEUDONYMISED:
            ok = value == result.patient_pseudonym
        elif concrete is Action.REMOVE:
            ok = not present
        elif concrete is Action.ZERO:
            ok = present and _empty(value)
        elif concrete is Action.DUMMY:
            if vr == "SQ":
                ok = present and _empty(value)  # an emptied sequence: no invented content
            elif vr == "UI":
                ok = value == key.uid(str(original))
            else:
                ok = present and not _empty(value) and str(value) != str(original)
        elif concrete is Action.UID:
            ok = value == key.uid(str(original))
        elif concrete is Action.REMOVE_OR_ZERO_OR_UID:
            # kept, with every UID inside replaced consistently (referential integrity)
            ok = present and value[0].ReferencedSOPInstanceUID == key.uid(f"{ROOT}6.{tag}")
            ok = ok and value[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        elif concrete is Action.KEEP:
            if vr == "SQ":
                inner = f"{ROOT}6.{tag}"
                want = inner if ProfileOption.RETAIN_UIDS in profile.options else key.uid(inner)
                ok = present and value[0].ReferencedSOPInstanceUID == want
            elif vr in ("DA", "DT"):
                ok = present  # kept, shifted in modified-dates lakes (tested in test_dates)
            else:
                ok = present and value == original
        elif concrete is Action.CLEAN:
            ok = True  # checked value by value in test_clean
        if not ok:
            wrong.append(f"{keyword} {action.value}->{concrete.value} depth {depth}: {value!r}")
    return wrong


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_basic_profile_every_row_at_depth(key: LakeKey, depth: int) -> None:
    assert len(ROWS) > 500
    assert _check(key, Profile([]), depth) == []


@pytest.mark.parametrize("depth", [2])
def test_every_option_at_depth(key: LakeKey, depth: int) -> None:
    for option in ProfileOption:
        if option is ProfileOption.RETAIN_SAFE_PRIVATE:
            continue
        assert _check(key, Profile([option]), depth) == [], option


def test_combined_actions_follow_the_attribute_type(key: LakeKey) -> None:
    deid = Deidentifier(key, Profile([]))
    ds = base()
    ds.InstitutionName = "SAINT HYPOTHETICAL"  # X/Z/D, Type 3 -> X
    ds.ContentDate = "19870601"  # Z/D, Type 2C -> Z
    ds.RequestedProcedureDescription = "CT HEAD"  # X/Z, Type 3 -> X
    ds.AcquisitionContextSequence = Sequence([Dataset()])  # X/Z, Type 2 -> Z
    ds.InstructionPerformedDateTime = "19870601120000"  # Z/D, Type 1 -> D
    out = deid.deidentify(ds).dataset
    assert "InstitutionName" not in out and "RequestedProcedureDescription" not in out
    assert out.ContentDate == "" and len(out.AcquisitionContextSequence) == 0
    assert out.InstructionPerformedDateTime not in ("", "19870601120000")
    # enhanced multi-frame IODs make some of them Type 1: a dummy instead of removal
    enhanced = base("2")
    enhanced.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    enhanced.InstitutionName = "SAINT HYPOTHETICAL"
    enhanced.ContentDate = "19870601"
    out = deid.deidentify(enhanced).dataset
    assert out.InstitutionName == "ANONYMIZED" and out.ContentDate == "19000101"
    # Patient's Sex Neutered is required (2C) only for non-human patients
    animal = base("3")
    animal.PatientSpeciesDescription = "CANINE"
    animal.PatientSexNeutered = "ALTERED"
    human = base("4")
    human.PatientSexNeutered = "ALTERED"
    assert deid.deidentify(animal).dataset.PatientSexNeutered == ""
    assert "PatientSexNeutered" not in deid.deidentify(human).dataset


def test_tag_patterns_overlays_and_curves(key: LakeKey) -> None:
    deid = Deidentifier(key, Profile([]))
    ds = base()
    ds.add_new(Tag(0x6002, 0x4000), "LT", "overlay comment")
    ds.add_new(Tag(0x6002, 0x3000), "OW", b"\x01\x00")
    ds.add_new(Tag(0x6002, 0x0010), "US", 16)  # overlay rows: not listed, kept
    ds.add_new(Tag(0x5004, 0x0005), "US", 2)  # curve dimensions: (50XX,XXXX) removed
    out = deid.deidentify(ds).dataset
    assert Tag(0x6002, 0x4000) not in out and Tag(0x6002, 0x3000) not in out
    assert out[Tag(0x6002, 0x0010)].value == 16 and Tag(0x5004, 0x0005) not in out


def test_unknown_public_attributes_and_group_lengths_are_removed(key: LakeKey) -> None:
    deid = Deidentifier(key, Profile([]))
    ds = base()
    ds.add_new(Tag(0x0009 - 1, 0x0001), "LO", "?")  # (0008,0001): retired group-length-like, not in the dictionary
    ds.add_new(Tag(0x0018, 0x0000), "UL", 4)
    ds.add_new(Tag(0x0019 - 1, 0xFFF0), "LO", "hidden")  # (0018,FFF0): not a dictionary attribute
    out = deid.deidentify(ds).dataset
    assert Tag(0x0018, 0x0000) not in out and Tag(0x0018, 0xFFF0) not in out
