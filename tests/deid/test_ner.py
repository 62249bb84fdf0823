"""Hypothesis: person names the header does not hold (a relative, a technologist, a third party, a
katakana reading) leave free text under Clean Descriptors, at any depth and VR and in any common
spelling, while research words survive exactly; without the named-entity step the text is removed,
counted, and the run says how to install the step (issue 12, leak path 6)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.datadict import DicomDictionary
from pydicom.sequence import Sequence

import lake
from lake.audit import find_identifiers
from lake.cli import main
from lake.deid import ner
from lake.deid.engine import REASONS, Deidentifier
from lake.deid.names import fold
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Action, Profile, ProfileOption
from lake.headers.flatten import header_json
from lake.ingest import ingest
from lake.keys import LakeKey
from lake.testing.synthetic import PatientSpec, write_study
from tests.deid.helpers import base, nest

KEY = LakeKey(bytes(range(32)))
RESEARCH = Profile(DEFAULT_RESEARCH_OPTIONS)
needs_ner = pytest.mark.skipif(not ner.available(), reason='needs the named-entity step: pip install "lake[ner]"')

#: (first, last) names of several origins, none of them in the header
PEOPLE = [
    ("Margaret", "Thompson"),
    ("Oliver", "Bennett"),
    ("Jürgen", "Hoffmann"),
    ("Sabine", "Krüger"),
    ("Amélie", "Dubois"),
    ("Thierry", "Lefèvre"),
    ("Lucía", "Fernández"),
    ("João", "Gonçalves"),
    ("Giulia", "Esposito"),
    ("Agnieszka", "Wiśniewski"),
    ("Dmitri", "Smirnov"),
    ("Mehmet", "Yılmaz"),
    ("Eleni", "Papadopoulos"),
    ("Fatima", "Haddad"),
    ("Youssef", "Mansour"),
    ("Priya", "Sharma"),
    ("Rajesh", "Krishnan"),
    ("Xiaoming", "Zhang"),
    ("Hiroshi", "Tanaka"),
    ("Yuki", "Nakamura"),
    ("Chinedu", "Okafor"),
    ("Ngozi", "Adeyemi"),
    ("Kwame", "Mensah"),
    ("Huong", "Nguyen"),
]
#: (template, research phrases in it that must survive exactly)
TEMPLATES = [
    ("CT HEAD W/O CONTRAST. Discussed with the patient's daughter {name} by phone.", ["CT HEAD W/O CONTRAST"]),
    ("Technologist: {name}. T1 AXIAL 5 mm, Gadovist 7.5 mL.", ["T1 AXIAL 5 mm", "Gadovist 7.5 mL"]),
    ("{name} present during the exam. CHEST PA and lateral.", ["CHEST PA and lateral"]),
    ("Lung Perfusion SPECT; wife {name} informed.", ["Lung Perfusion SPECT"]),
    ("SCAN PERFORMED BY {name} ON SIEMENS SKYRA", ["SIEMENS SKYRA"]),
    ("Images reviewed with {name}; Omnipaque 350 100 mL IV.", ["Omnipaque 350 100 mL IV"]),
    ("Called {name} at home. Baker cyst, left knee.", ["Baker cyst, left knee"]),
]
#: research values that survive the step exactly, alone or together (issue 12's list and more)
RESEARCH_TEXTS = [
    "T1 AXIAL",
    "CHEST PA",
    "Lung",
    "Perfusion",
    "T2 FLAIR SAG",
    "AX T1 POST GAD",
    "MR BRAIN WITH AND WITHOUT CONTRAST",
    "Gadovist 7.5 mL IV",
    "Heparin lock flushed, propofol sedation",
    "SIEMENS SKYRA 3T",
    "Philips Ingenia 1.5T",
    "GE Signa Premier",
    "Canon Aquilion ONE",
    "FDG PET/CT whole body",
    "Left lower lobe consolidation, 5 mm nodule, stable",
    "Hill-Sachs lesion and Bankart lesion",
    "Circle of Willis patent",
    "Fluid in Morison pouch",
    "ヘリカル スキャン",
]
#: unlisted free-text attributes of the dictionary (Table E.1-1 does not name them)
UNLISTED_FREE_TEXT = sorted(
    entry[4]
    for tag, entry in DicomDictionary.items()
    if entry[0] in ("UT", "UC", "LT", "ST")
    and entry[4]
    and entry[3] != "RET"
    and tag >> 16 not in (0x0000, 0x0002, 0x0004, 0xFFFE)
    and RESEARCH.action_for(tag) is None
    and not entry[4].startswith(("Coding", "LongCode", "URNCode"))
)


def spellings(first: str, last: str) -> st.SearchStrategy[tuple[str, list[str]]]:
    """(written form, the words that must not survive) in the forms reports use."""
    return st.sampled_from(
        [
            (f"{first} {last}", [first, last]),
            (f"{last}, {first}", [first, last]),
            (f"{first[0]}. {last}", [last]),
            (f"{first} {last}".upper(), [first, last]),
            (f"{last}^{first}".upper(), [first, last]),
            (f"Dr. {last}", [last]),
        ]
    )


@st.composite
def third_parties(draw: st.DrawFn) -> tuple[str, list[str]]:
    first, last = draw(st.sampled_from(PEOPLE))
    return draw(spellings(first, last))


def strings(value: Any) -> list[str]:
    """Every string in a DICOM JSON header (names are compared on the decoded text, not on escapes)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def words_in(ds: Dataset) -> set[str]:
    import re

    text = " ".join(strings(json.loads(header_json(ds))))
    return {fold(w) for w in re.findall(r"[^\W\d_]+", text)}


def place(ds: Dataset, where: str, depth: int, text: str) -> None:
    """``text`` in a free-text attribute at ``depth``: a descriptor the profile cleans, an unlisted
    UT/ST/LT/UC attribute, or an SR TextValue in a ContentSequence."""
    item = nest(ds, depth)
    if where == "TextValue":
        content = Dataset()
        content.ValueType = "TEXT"
        content.TextValue = text
        item.ContentSequence = Sequence([content])
    else:
        setattr(item, where, text)


WHERE = st.sampled_from(["ImageComments", "StudyDescription", "SeriesDescription", "TextValue", *UNLISTED_FREE_TEXT])


@needs_ner
@given(person=third_parties(), template=st.sampled_from(TEMPLATES), where=WHERE, depth=st.integers(0, 3))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_third_party_names_at_any_depth_vr_and_spelling_leave_the_header(
    person: tuple[str, list[str]], template: tuple[str, list[str]], where: str, depth: int
) -> None:
    name, gone = person
    text, kept = template
    ds = base()
    value = text.format(name=name)
    place(ds, where, depth, value[:64] if where in ("StudyDescription", "SeriesDescription") else value)
    result = Deidentifier(KEY, RESEARCH).deidentify(ds)
    left = words_in(result.dataset)
    for word in gone:
        assert fold(word) not in left, (word, where, depth)
    assert any(why == "cleaned_person_name" for _attr, why in result.counts)
    out = " ".join(strings(json.loads(header_json(result.dataset))))
    for phrase in kept:
        if where not in ("StudyDescription", "SeriesDescription") or phrase in value[:64]:
            assert phrase in out, (phrase, where)


@needs_ner
@pytest.mark.parametrize("text", RESEARCH_TEXTS)
def test_research_words_survive_the_name_step_exactly(text: str) -> None:
    ds = base()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageComments = text
    ds.StudyDescription = text
    out = Deidentifier(KEY, RESEARCH).deidentify(ds).dataset
    assert out.ImageComments == text
    assert out.StudyDescription == text


@needs_ner
@given(
    reading=st.sampled_from([("ヤマダ", "タロウ"), ("サトウ", "ハナコ"), ("ｲﾄｳ", "ｹﾝｼﾞ"), ("タカハシ", "ユミ")]),
    sep=st.sampled_from([" ", "\u3000", "^", "・"]),
    honorific=st.sampled_from(["", "様", " さん"]),
    depth=st.integers(0, 2),
)
@settings(max_examples=25, deadline=None)
def test_katakana_readings_leave_free_text_and_imaging_loanwords_stay(
    reading: tuple[str, str], sep: str, honorific: str, depth: int
) -> None:
    family, given_name = reading
    ds = base()
    ds.SpecificCharacterSet = "ISO_IR 192"
    nest(ds, depth).ImageComments = f"付添: {family}{sep}{given_name}{honorific} / ヘリカル スキャン 5 mm"
    out = Deidentifier(KEY, RESEARCH).deidentify(ds).dataset
    text = " ".join(strings(json.loads(header_json(out))))
    assert family not in text and given_name not in text
    assert "ヘリカル スキャン 5 mm" in text


@needs_ner
def test_third_party_names_reach_no_lake_file_after_ingest(tmp_path: Path) -> None:
    """Through worker processes (they share the name lists the parent loaded before forking)."""
    spec = PatientSpec("QUIXOTE^ALONSO", "MRN448100", "19500611", "ACC9")
    paths = write_study(spec, tmp_path / "src", date(2019, 3, 11), n_images=3)
    people = PEOPLE[:3]
    for path, (first, last) in zip(paths, people, strict=True):
        ds = pydicom.dcmread(path)
        ds.ImageComments = f"CT HEAD W/O CONTRAST. Technologist: {first} {last}; daughter {last.upper()} informed."
        content = Dataset()
        content.ValueType = "TEXT"
        content.TextValue = f"Discussed with Dr. {last} and {first}. Lung Perfusion normal."
        ds.ContentSequence = Sequence([content])
        ds.save_as(path)
    root = tmp_path / "lake"
    summary = ingest(root, [tmp_path / "src"], workers=2)
    assert summary.ingested == 3
    names = [w for pair in people for w in pair]
    assert find_identifiers(root, names) == []
    assert find_identifiers(root, ["CT HEAD W/O CONTRAST", "Lung Perfusion normal"])
    report = json.loads(next((root / "reports").glob("deid-*.json")).read_text())
    assert {a["action"] for a in report["actions"]} >= {"cleaned_person_name"}
    assert "notes" not in report


def test_without_the_step_free_text_is_removed_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ner, "available", lambda: False)
    assert ner.finder() is None
    ds = base()
    ds.ImageComments = "Technologist: Margaret Thompson"
    ds.StudyDescription = "CT HEAD"
    content = Dataset()
    content.TextValue = "Discussed with Oliver Bennett"
    nest(ds, 2).ContentSequence = Sequence([content])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    result = Deidentifier(KEY, RESEARCH).deidentify(ds)
    out = result.dataset
    assert "ImageComments" not in out and "StudyDescription" not in out
    assert not {"MARGARET", "THOMPSON", "OLIVER", "BENNETT"} & words_in(out)
    assert list(out.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"] and out.Modality == "CT"
    removed = {attr for (attr, why), n in result.counts.items() if why == "removed_free_text_no_ner" and n}
    assert removed == {"ImageComments", "StudyDescription", "TextValue"}
    assert "removed_free_text_no_ner" in REASONS and "cleaned_person_name" in REASONS


def test_the_fallback_applies_only_under_clean_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clean Structured Content alone cleans SR text with the file's identifiers and patterns, as before."""
    monkeypatch.setattr(ner, "available", lambda: False)
    profile = Profile([ProfileOption.CLEAN_STRUCTURED_CONTENT])
    assert profile.action_for(0x0040A730) is Action.CLEAN  # ContentSequence
    ds = base()
    content = Dataset()
    content.TextValue = "QUIXOTE reviewed; T1 AXIAL"
    ds.ContentSequence = Sequence([content])
    result = Deidentifier(KEY, profile).deidentify(ds)
    assert result.dataset.ContentSequence[0].TextValue == "* reviewed; T1 AXIAL"
    assert not any(why == "removed_free_text_no_ner" for _attr, why in result.counts)


def test_the_run_says_once_that_the_step_is_missing_and_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ner.ENV_SWITCH, "off")  # reaches the worker processes too
    spec = PatientSpec("QUIXOTE^ALONSO", "MRN448100", "19500611", "ACC9")
    paths = write_study(spec, tmp_path / "src", date(2019, 3, 11), n_images=2)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.ImageComments = "Technologist: Margaret Thompson; CT HEAD W/O CONTRAST"
        ds.save_as(path)
    root = tmp_path / "lake"
    assert main(["ingest", str(tmp_path / "src"), "--lake", str(root), "--no-progress", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(ner.NOT_INSTALLED) == 1
    assert f"{ner.NO_NER_WARNING} 2" in out
    assert find_identifiers(root, ["Margaret", "Thompson"]) == []
    report = json.loads(next((root / "reports").glob("deid-*.json")).read_text())
    assert report["notes"] == [ner.NOT_INSTALLED]
    assert {"attribute": "ImageComments", "action": "removed_free_text_no_ner", "count": 2} in report["actions"]
    rows = lake.open(root).sql("SELECT header_json FROM instances").to_dicts()
    assert all("00204000" not in json.loads(r["header_json"]) for r in rows)  # ImageComments
