"""The profile as data: checked row by row against the standard's table, options resolved and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lake
from lake.deid.profile import PROFILE_PATH, Action, Profile, ProfileOption, load_profile_table, parse_options
from lake.errors import ConfigError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ps3.15-table-e.1-1.json"
#: the reference's option columns -> our option names
COLUMNS = {
    "rtnSafePrivOpt": ProfileOption.RETAIN_SAFE_PRIVATE,
    "rtnUIDsOpt": ProfileOption.RETAIN_UIDS,
    "rtnDevIdOpt": ProfileOption.RETAIN_DEVICE_IDENTITY,
    "rtnInstIdOpt": ProfileOption.RETAIN_INSTITUTION_IDENTITY,
    "rtnPatCharsOpt": ProfileOption.RETAIN_PATIENT_CHARACTERISTICS,
    "rtnLongFullDatesOpt": ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES,
    "rtnLongModifDatesOpt": ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    "cleanDescOpt": ProfileOption.CLEAN_DESCRIPTORS,
    "cleanStructContOpt": ProfileOption.CLEAN_STRUCTURED_CONTENT,
    "cleanGraphOpt": ProfileOption.CLEAN_GRAPHICS,
}


def _our_tag(ref_tag: str) -> str:
    return "private" if "where" in ref_tag.lower() else ref_tag.upper()


def test_profile_matches_the_reference_row_by_row() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is absent")
    reference = json.loads(REFERENCE.read_text())
    _, rows = load_profile_table()
    ours = {row.tag.upper() if row.tag != "private" else "private": row for row in rows}
    assert len(ours) == len(rows) == len(reference)
    for ref in reference:
        row = ours[_our_tag(ref["tag"])]
        assert row.name == ref["name"], ref["tag"]
        assert row.basic.value == ref["basicProfile"], ref["tag"]
        want = {COLUMNS[k]: Action(v) for k, v in ref.items() if k in COLUMNS}
        assert row.options == want, ref["tag"]
    doc = json.loads(PROFILE_PATH.read_text())
    in_iod = {r["tag"].upper() if r["tag"] != "private" else "private": r["in_standard_iod"] for r in doc["attributes"]}
    for ref in reference:
        assert in_iod[_our_tag(ref["tag"])] == (ref["stdCompIOD"] == "Y"), ref["tag"]


def test_profile_records_its_edition_and_cid_7050_codes() -> None:
    doc, _ = load_profile_table()
    assert doc["edition"] and doc["basic_profile_code"]["code"] == "113100"
    assert {o.value for o in ProfileOption} == set(doc["options"])
    codes = {v["code"] for v in doc["options"].values()}
    assert codes == {str(c) for c in range(113101, 113113)} - {"113101", "113102"}


@pytest.mark.parametrize("option", list(ProfileOption))
def test_each_option_changes_what_it_names(option: ProfileOption) -> None:
    basic = Profile([])
    with_option = Profile([option])
    _, rows = load_profile_table()
    changed = [r for r in rows if option in r.options and r.tag != "private"]
    if option is ProfileOption.RETAIN_SAFE_PRIVATE:
        assert with_option.private_action is Action.CLEAN and basic.private_action is Action.REMOVE
        return
    assert changed
    for row in changed:
        tag = int(row.tag[1:5] + row.tag[6:10], 16) if "X" not in row.tag[1:10] else None
        if tag is None:
            continue
        assert with_option.action_for(tag) is row.options[option]
        assert basic.action_for(tag) is row.basic


def test_retain_wins_over_clean_when_options_overlap() -> None:
    # DateOfLastDetectorCalibration: K under device identity and full dates, C under modified dates
    profile = Profile([ProfileOption.RETAIN_DEVICE_IDENTITY, ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES])
    assert profile.action_for(0x0018700C) is Action.KEEP


def test_option_typos_and_conflicts_are_refused() -> None:
    with pytest.raises(ConfigError, match="valid: retain_safe_private"):
        parse_options(["retain_everything"])
    with pytest.raises(ConfigError, match="choose one"):
        parse_options(["retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"])


@pytest.mark.parametrize("option", list(ProfileOption))
def test_each_option_is_selectable_per_lake_and_recorded(option: ProfileOption, tmp_path: Path) -> None:
    lk = lake.init(tmp_path / "lake", options=[option])
    assert json.loads((tmp_path / "lake" / "lake.json").read_text())["deid"]["options"] == [option.value]
    assert lake.open(tmp_path / "lake").config.deid.options == [option.value]
    assert lk.info()["deid_options"] == [option.value]
