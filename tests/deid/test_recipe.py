"""Site recipes in the deid format: parsed by deid, applied on top of the profile, stricter only."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

import lake
from lake.cli import main
from lake.deid.engine import Deidentifier
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile, ProfileOption
from lake.deid.recipe import RecipeAction, check_recipe, load_recipe, parse_recipe
from lake.errors import RecipeError
from lake.keys import LakeKey
from lake.testing.synthetic import make_cohort
from tests.deid.helpers import base

RECIPE = """FORMAT dicom

%header

ADD ClinicalTrialSponsorName RESEARCH-CONSORTIUM
REPLACE BodyPartExamined HEAD
REMOVE endswith:Comments
BLANK (0008,103E)
KEEP Manufacturer
REMOVE Manufacturer
JITTER StudyDate -5
REMOVE contains:Protocol
"""


def _dataset() -> Dataset:
    ds = base()
    ds.StudyDate = "19870601"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "ACME Imaging"
    ds.SeriesDescription = "T1 SAG"
    ds.ProtocolName = "T1 PROTOCOL"
    item = Dataset()
    item.ImageComments = "deep comment"
    item.BodyPartExamined = "CHEST"
    ds.SharedFunctionalGroupsSequence = Sequence([item])
    ds.ImageComments = "top comment"
    return ds


def test_recipe_is_parsed_by_deid_with_its_hash() -> None:
    recipe = parse_recipe(RECIPE)
    assert [line.action for line in recipe.lines] == [
        RecipeAction.ADD,
        RecipeAction.REPLACE,
        RecipeAction.REMOVE,
        RecipeAction.BLANK,
        RecipeAction.KEEP,
        RecipeAction.REMOVE,
        RecipeAction.JITTER,
        RecipeAction.REMOVE,
    ]
    assert recipe.lines[0].value == "RESEARCH-CONSORTIUM" and recipe.lines[6].value == "-5"
    assert recipe.sha256 == hashlib.sha256(RECIPE.encode()).hexdigest()


def test_recipe_actions_apply_at_every_depth(key: LakeKey) -> None:
    profile = Profile(DEFAULT_RESEARCH_OPTIONS)
    plain = Deidentifier(key, profile).deidentify(_dataset())
    result = Deidentifier(key, profile, recipe=parse_recipe(RECIPE)).deidentify(_dataset())
    out = result.dataset
    assert out.ClinicalTrialSponsorName == "RESEARCH-CONSORTIUM"
    assert out.BodyPartExamined == "HEAD" and out.SharedFunctionalGroupsSequence[0].BodyPartExamined == "HEAD"
    assert "ImageComments" not in out and "ImageComments" not in out.SharedFunctionalGroupsSequence[0]
    assert out.SeriesDescription == ""
    assert out.Manufacturer == "ACME Imaging"  # KEEP protects it from the recipe's own REMOVE
    assert "ProtocolName" not in out
    moved = date(1987, 6, 1) + timedelta(days=result.day_offset - 5)
    assert out.StudyDate == moved.strftime("%Y%m%d") and plain.dataset.StudyDate != out.StudyDate
    assert out.PatientIdentityRemoved == "YES"  # markers are written after the recipe
    assert result.counts[("ImageComments", "recipe:REMOVE")] == 2


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("KEEP PatientBirthDate", "KEEP cannot retain"),
        ("ADD PatientName RESEARCH^SUBJECT", "pseudonym"),
        ("REPLACE PatientID SUBJ-1", "pseudonym"),
        ("ADD OtherPatientNames SOMEONE", "removes it"),
        ("ADD InstitutionName SITE", "removes it"),  # X/Z/D may resolve to X
        ("REPLACE SOPInstanceUID 1.2.3", "UIDs are keyed"),
        ("ADD (0019,1010) x", "private"),
        ("ADD AccessionNumber var:item_id", "computed values"),
        ("ADD endswith:Name x", "exact keyword"),
        ("KEEP PatientSex", "KEEP cannot retain"),
    ],
)
def test_recipe_cannot_readmit_what_the_profile_removes(line: str, why: str) -> None:
    with pytest.raises(RecipeError, match=why):
        check_recipe(parse_recipe(f"FORMAT dicom\n\n%header\n\n{line}\n"), Profile([]))


def test_options_decide_what_a_recipe_may_keep() -> None:
    keep_sex = parse_recipe("FORMAT dicom\n%header\nKEEP PatientSex\nREPLACE SOPInstanceUID 1.2.3\n")
    with pytest.raises(RecipeError):
        check_recipe(keep_sex, Profile([]))
    check_recipe(keep_sex, Profile([ProfileOption.RETAIN_PATIENT_CHARACTERISTICS, ProfileOption.RETAIN_UIDS]))


def test_invalid_recipes_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="invalid"):
        parse_recipe("FORMAT dicom\n%header\nADD PatientIdentityRemoved\n")
    with pytest.raises(RecipeError, match="line 3: 'REMVOE'"):
        parse_recipe("FORMAT dicom\n%header\nREMVOE PatientName\n")
    with pytest.raises(RecipeError, match="whole number"):
        parse_recipe("FORMAT dicom\n%header\nJITTER StudyDate soon\n")
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "missing.deid")


def test_ingest_with_recipe_in_worker_processes_records_its_hash(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=2)
    recipe = tmp_path / "site.deid"
    recipe.write_text("FORMAT dicom\n\n%header\n\nREPLACE ManufacturerModelName MODEL-X\nREMOVE KVP\n")
    root = tmp_path / "lake"
    code = main(["ingest", str(src), "--lake", str(root), "--recipe", str(recipe), "--workers", "2", "--no-progress"])
    assert code == 0
    lk = lake.open(root)
    rows = lk.sql("SELECT ManufacturerModelName, KVP FROM instances")
    assert rows.height == 4
    assert set(rows["ManufacturerModelName"]) == {"MODEL-X"} and rows["KVP"].null_count() == 4
    reports = list((root / "reports").glob("deid-*.json"))
    report = json.loads(reports[0].read_text())
    assert report["recipe_sha256"] == hashlib.sha256(recipe.read_bytes()).hexdigest()
    assert {"attribute": "KVP", "action": "recipe:REMOVE", "count": 4} in report["actions"]
    params = json.loads(lk.sql("SELECT parameters FROM runs")[0, 0])
    assert params["recipe_sha256"] == report["recipe_sha256"]
    # a refused recipe stops the ingest before the lake is touched, naming the attribute
    bad = tmp_path / "bad.deid"
    bad.write_text("FORMAT dicom\n%header\nKEEP PatientBirthDate\n")
    capsys.readouterr()
    assert main(["ingest", str(src), "--lake", str(tmp_path / "other"), "--recipe", str(bad)]) == 2
    assert "PatientBirthDate" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
