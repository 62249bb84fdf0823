"""One pseudonym per person, never one for several: the lake's patient identity (lake.deid.identity).

Engine-level properties (Hypothesis: random issuer spellings, random crosswalk groupings), then
lakes built from small synthetic files: linking across issuers, crosswalk and studies without a
Patient ID in the views, anomaly counts across runs, and the setting that cannot change.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset

import lake
from lake.audit import find_identifiers
from lake.cli import main
from lake.config import LakePaths, read_config
from lake.deid.engine import Deidentifier
from lake.deid.identity import (
    PatientIdentifier,
    PatientIdentity,
    PatientRef,
    issuer_aliases_from,
    load_crosswalk,
    load_issuer_aliases,
)
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile
from lake.errors import ConfigError
from lake.ingest import ingest
from lake.keys import LakeKey
from tests.deid.helpers import ROOT, base

KEY = LakeKey(bytes(range(32)))
PROFILE = Profile(DEFAULT_RESEARCH_OPTIONS)
SPELLINGS = ["", "HOSP", "Hosp A"]  # one hospital's issuer, as three generations of scanners write it
ALIASES = {"": "HOSP A", "HOSP": "HOSP A", "Hosp A": "HOSP A"}


def _ds(pid: str | None, issuer: str | None = None, study: str = "1", study_date: str = "20190314") -> Dataset:
    ds = base(study + "." + (pid or "none"))
    ds.StudyInstanceUID = ROOT + "1." + study
    if pid is None:
        del ds.PatientID
    else:
        ds.PatientID = pid
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    ds.StudyDate = study_date
    return ds


def _deid(identifier: PatientIdentifier) -> Deidentifier:
    return Deidentifier(KEY, PROFILE, identifier=identifier)


def _respell(draw: st.DrawFn, issuer: str) -> str:
    """The same issuer as another system may write it: case and surrounding or inner spaces."""
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in issuer)
    return (
        draw(st.sampled_from(["", " "]))
        + cased.replace(" ", draw(st.sampled_from([" ", "  "])))
        + draw(st.sampled_from(["", " "]))
    )


@st.composite
def issuer_spellings(draw: st.DrawFn) -> list[str]:
    return [_respell(draw, draw(st.sampled_from(SPELLINGS))) for _ in range(draw(st.integers(2, 5)))]


# -- one person under several issuer spellings --------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(spellings=issuer_spellings(), gaps=st.lists(st.integers(1, 4000), min_size=4, max_size=4))
def test_issuer_spellings_link_in_a_patient_id_lake_and_with_aliases(spellings: list[str], gaps: list[int]) -> None:
    qualified = PatientIdentifier(PatientIdentity.ISSUER_QUALIFIED, issuer_aliases_from(ALIASES))
    for identifier in (PatientIdentifier(PatientIdentity.PATIENT_ID), qualified):
        day = date(2001, 2, 3)
        originals, results = [], []
        for i, issuer in enumerate(spellings):
            day += timedelta(days=gaps[i % len(gaps)])
            originals.append(day)
            results.append(_deid(identifier).deidentify(_ds("MRN448100", issuer, str(i), f"{day:%Y%m%d}")))
        assert len({r.patient_pseudonym for r in results}) == 1
        assert len({r.day_offset for r in results}) == 1
        shifted = [_date(str(r.dataset.StudyDate)) for r in results]
        assert [b - a for a, b in pairwise(shifted)] == [b - a for a, b in pairwise(originals)]  # exact intervals
        assert all("IssuerOfPatientID" not in r.dataset for r in results)


def _date(da: str) -> date:
    return date(int(da[:4]), int(da[4:6]), int(da[6:8]))


def test_an_issuer_qualified_lake_keeps_different_issuers_apart() -> None:
    identifier = PatientIdentifier(PatientIdentity.ISSUER_QUALIFIED, issuer_aliases_from(ALIASES))
    ours = _deid(identifier).deidentify(_ds("123", "hosp a")).patient_pseudonym
    theirs = _deid(identifier).deidentify(_ds("123", "OTHER CLINIC")).patient_pseudonym
    assert ours != theirs
    # and a patient_id lake is one MRN domain: the same number is the same patient
    plain = PatientIdentifier(PatientIdentity.PATIENT_ID)
    assert _deid(plain).deidentify(_ds("123", "hosp a")).patient_pseudonym == (
        _deid(plain).deidentify(_ds("123", "OTHER CLINIC")).patient_pseudonym
    )


def test_issuer_qualified_without_aliases_keys_exactly_as_lakes_always_did() -> None:
    """Old lakes (no identity setting) read as issuer_qualified: their patients keep linking."""
    result = _deid(PatientIdentifier(PatientIdentity.ISSUER_QUALIFIED)).deidentify(_ds("MRN7", " HOSP "))
    assert result.patient_pseudonym == KEY.pseudonym("HOSP", "MRN7")
    assert result.day_offset == KEY.day_offset("HOSP\x00MRN7", 30, 1095)


def test_alias_tables_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "aliases.csv"
    good.write_text('issuer,domain\n,HOSP A\nHOSP,HOSP A\n"  hosp   b ",HOSP B\n')
    assert load_issuer_aliases(good) == {"": "HOSP A", "hosp": "HOSP A", "hosp a": "HOSP A", "hosp b": "HOSP B"}
    for text, message in (
        ("spelling,target\nX,Y\n", "header `issuer,domain`"),
        ("issuer,domain\nX,\n", "line 2"),
        ("issuer,domain\nX,A\nx,B\n", "line 3: this issuer spelling is already mapped"),
    ):
        good.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_issuer_aliases(good)


# -- several MRNs that are one person: the crosswalk ------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(
        st.lists(st.from_regex(r"[A-Z]{0,3}[0-9]{1,6}", fullmatch=True), min_size=1, max_size=4, unique=True),
        min_size=1,
        max_size=4,
    )
)
def test_crosswalk_groups_share_one_pseudonym_and_offset(tmp_path_factory: pytest.TempPathFactory, groups) -> None:  # type: ignore[no-untyped-def]
    seen: set[str] = set()
    groups = [[m for m in g if not (m in seen or seen.add(m))] for g in groups]  # an MRN in one group only
    groups = [g for g in groups if g]
    path = tmp_path_factory.mktemp("cw") / "identities.csv"
    path.write_text("person,patient_id\n" + "".join(f"person{i},{m}\n" for i, g in enumerate(groups) for m in g))
    identifier = PatientIdentifier()
    identifier.crosswalk = load_crosswalk(path, identifier)
    pseudonyms = []
    for i, group in enumerate(groups):
        results = [_deid(identifier).deidentify(_ds(m, "", f"{i}.{j}")) for j, m in enumerate(group)]
        assert len({r.patient_pseudonym for r in results}) == 1
        assert len({r.day_offset for r in results}) == 1
        # keyed on the group's canonical member, the smallest ID: unchanged for that member
        assert results[0].patient_pseudonym == KEY.pseudonym("", min(group))
        pseudonyms.append(results[0].patient_pseudonym)
    assert len(set(pseudonyms)) == len(groups)  # never one pseudonym for several persons


def test_a_crosswalk_qualifies_ids_by_issuer_through_the_aliases(tmp_path: Path) -> None:
    path = tmp_path / "identities.csv"
    path.write_text("person,issuer,patient_id\nA,Hosp A,123\nA,OTHER CLINIC,77\n")
    identifier = PatientIdentifier(PatientIdentity.ISSUER_QUALIFIED, issuer_aliases_from(ALIASES))
    identifier.crosswalk = load_crosswalk(path, identifier)
    assert identifier.crosswalk.canonical[PatientRef("HOSP A", "123")] == PatientRef("HOSP A", "123")
    linked = {_deid(identifier).deidentify(_ds(pid, issuer)).patient_pseudonym for pid, issuer in
              (("123", ""), ("123", "HOSP"), ("77", "OTHER CLINIC"))}  # fmt: skip
    assert len(linked) == 1
    assert _deid(identifier).deidentify(_ds("77", "HOSP")).patient_pseudonym not in linked


def test_a_malformed_crosswalk_names_the_line_and_no_value(tmp_path: Path) -> None:
    path = tmp_path / "identities.csv"
    for text, message in (
        ("who,mrn\nA,1\n", "first line is `person,issuer,patient_id`"),
        ("person,patient_id\nA,SECRET1\nB,SECRET1\n", "lines 2 and 3 put one patient ID under two persons"),
        ("person,patient_id\nA,\n", "line 2: every row needs"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message) as caught:
            load_crosswalk(path, PatientIdentifier())
        assert "SECRET" not in str(caught.value)
    assert len(load_crosswalk(tmp_path / "missing.csv", PatientIdentifier())) == 0


# -- a study without a Patient ID is its own patient --------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(studies=st.lists(st.integers(1, 10**9), min_size=2, max_size=6, unique=True), empty=st.booleans())
def test_each_study_without_a_patient_id_is_its_own_patient(studies: list[int], empty: bool) -> None:
    deid = _deid(PatientIdentifier())
    results = [deid.deidentify(_ds("" if empty else None, None, str(s))) for s in studies]
    again = [deid.deidentify(_ds(None, None, str(s))) for s in studies]  # the study's other instances
    pseudonyms = [r.patient_pseudonym for r in results]
    assert pseudonyms == [r.patient_pseudonym for r in again] and [r.day_offset for r in results] == [
        r.day_offset for r in again
    ]
    assert len(set(pseudonyms)) == len(studies)
    assert all(str(r.dataset.PatientID) == r.patient_pseudonym for r in results)  # never NULL
    # never a real patient's pseudonym, not even one whose ID is the old fallback spelling
    for s, pseudonym in zip(studies, pseudonyms, strict=True):
        real = deid.deidentify(_ds("study:" + ROOT + "1." + str(s), None, "x")).patient_pseudonym
        assert pseudonym != real
        assert pseudonym != KEY.pseudonym("", "study:" + ROOT + "1." + str(s))


# -- lakes -----------------------------------------------------------------------------------------
def _write(
    folder: Path,
    name: str,
    pid: str | None,
    issuer: str | None = None,
    study: str = "1",
    study_date: date = date(2019, 3, 14),
    birth: str = "19500101",
    sex: str = "F",
) -> Path:
    ds = _ds(pid, issuer, study, f"{study_date:%Y%m%d}")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ROOT + "9." + name
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _patients(root: Path) -> list[dict]:  # type: ignore[type-arg]
    return lake.open(root).sql("SELECT * FROM patients ORDER BY PatientID").to_dicts()


@pytest.mark.parametrize("how", ["patient_id", "issuer_qualified"])
def test_one_person_under_three_issuer_spellings_is_one_patient_in_the_lake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    src = tmp_path / "src"
    days = [date(2001, 1, 5), date(2009, 6, 30), date(2019, 3, 14)]
    for i, (issuer, day) in enumerate(zip(SPELLINGS, days, strict=True)):
        _write(src, f"{i}", "MRN448100", issuer, study=str(i), study_date=day)
    aliases = tmp_path / "aliases.csv"
    aliases.write_text("issuer,domain\n" + "".join(f"{s},HOSP A\n" for s in SPELLINGS))
    root, key = tmp_path / "lk", tmp_path / "k.key"
    extra = ["--issuer-aliases", str(aliases)] if how == "issuer_qualified" else []
    assert main(["init", str(root), "--key-file", str(key), "--patient-identity", how, *extra]) == 0
    assert f"patient identity: {how}" in capsys.readouterr().out
    ingest(root, [src], key_file=key)
    (patient,) = _patients(root)
    assert patient["study_count"] == 3
    timeline = lake.open(root).sql("SELECT days_from_first_study FROM timeline ORDER BY study_index")
    assert timeline.to_series().to_list() == [(d - days[0]).days for d in days]
    assert main(["info", "--lake", str(root)]) == 0
    assert f"patient_identity       {how}" in capsys.readouterr().out


def test_old_lakes_without_the_setting_read_as_issuer_qualified(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "a", "MRN1", "HOSP")
    _write(src, "b", "MRN1", "")
    _write(src, "c", None, None, study="7")  # studies without a Patient ID keep their old keys too
    root, key = tmp_path / "lk", tmp_path / "k.key"
    lake.init(root, key_file=key)
    config = json.loads((root / "lake.json").read_text())
    del config["identity"]  # as lake.json was written before the setting existed
    (root / "lake.json").write_text(json.dumps(config))
    assert read_config(LakePaths(root)).identity.patient_identity == "issuer_qualified"
    ingest(root, [src], key_file=key)
    found = {p["PatientID"] for p in _patients(root)}
    secret = LakeKey(bytes.fromhex(key.read_text()))
    study = secret.pseudonym("", "study:" + ROOT + "1.7")
    assert found == {secret.pseudonym("HOSP", "MRN1"), secret.pseudonym("", "MRN1"), study}  # as those lakes did


def test_studies_without_a_patient_id_are_separate_patients_never_null(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "a1", None, study="1", study_date=date(2000, 1, 1))
    _write(src, "a2", None, study="1", study_date=date(2000, 1, 1))
    _write(src, "b1", None, study="2", study_date=date(2018, 1, 1))  # 18 years later, someone else
    _write(src, "c1", "MRN5", study="3")
    root = tmp_path / "lk"
    summary = ingest(root, [src])
    patients = _patients(root)
    assert len(patients) == 3 and all(p["PatientID"] for p in patients)
    assert sorted(p["study_count"] for p in patients) == [1, 1, 1]
    assert lake.open(root).sql("SELECT count(*) FROM instances WHERE PatientID IS NULL")[0, 0] == 0
    assert summary.identity["studies_without_patient_id"] == 2


def test_two_mrns_in_the_vault_crosswalk_are_one_patient_and_the_file_stays_out_of_the_lake(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "a", "MRN448100", study="1", study_date=date(2010, 1, 1))
    _write(src, "b", "ZZ99881", study="2", study_date=date(2012, 5, 1))
    _write(src, "c", "MRN000777", study="3")
    root, key = tmp_path / "lk", tmp_path / "k.key"
    lake.init(root, key_file=key)
    vault = tmp_path / "k.key.vault"
    vault.mkdir()
    (vault / "identities.csv").write_text("person,patient_id\nx,ZZ99881\nx,MRN448100\n")
    ingest(root, [src], key_file=key)
    patients = _patients(root)
    assert sorted(p["study_count"] for p in patients) == [1, 2]
    assert not find_identifiers(root, ["MRN448100", "ZZ99881", "MRN000777", "identities"])


def test_a_crosswalk_that_would_rekey_ingested_patients_is_refused(tmp_path: Path) -> None:
    src1, src2 = tmp_path / "s1", tmp_path / "s2"
    _write(src1, "a", "MRN2")
    _write(src1, "b", "MRN3", study="2")
    _write(src2, "c", "MRN1", study="3")
    root, key = tmp_path / "lk", tmp_path / "k.key"
    lake.init(root, key_file=key)
    ingest(root, [src1], key_file=key)
    crosswalk = tmp_path / "k.key.vault" / "identities.csv"
    # MRN2 is canonical (smallest) of its new group: MRN2 keeps its pseudonym, MRN9 joins it
    crosswalk.write_text("person,patient_id\np,MRN2\np,MRN9\n")
    _write(src2, "d", "MRN9", study="4")
    ingest(root, [src2], key_file=key)
    before = _patients(root)
    assert sorted(p["study_count"] for p in before) == [1, 1, 2]
    # linking MRN3 under MRN1 (smaller) would move MRN3's studies to another pseudonym
    crosswalk.write_text("person,patient_id\np,MRN2\np,MRN9\nq,MRN1\nq,MRN3\n")
    with pytest.raises(ConfigError, match=r"links 1 patient ID\(s\) already in the lake .*lines 5"):
        ingest(root, [src2], key_file=key)
    # removing a row under an ingested member is caught per file (rejected, never split)
    crosswalk.write_text("person,patient_id\n")
    _write(src2, "e", "MRN9", study="5")
    summary = ingest(root, [src2], key_file=key)
    assert summary.reject_reasons == {"patient_rekeyed": 1}
    assert _patients(root) == before


def test_mrn_reuse_is_counted_across_runs_without_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src1, src2 = tmp_path / "s1", tmp_path / "s2"
    _write(src1, "a", "MRN1", birth="19500101", sex="F")
    _write(src1, "b", "MRN2", birth="19600101", sex="M")
    _write(src2, "c", "MRN1", study="2", birth="19770707", sex="M")  # another person under MRN1
    _write(src2, "d", "MRN2", study="3", birth="19600101", sex="M")  # the same person again
    root, key = tmp_path / "lk", tmp_path / "k.key"
    assert ingest(root, [src1], key_file=key).identity == {}
    assert main(["ingest", str(src2), "--lake", str(root), "--key-file", str(key), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "identity: several_birth_dates 1, several_sexes 1" in out
    runs = lake.open(root).sql("SELECT counts FROM runs WHERE operation = 'ingest' ORDER BY started_at")
    counts = [json.loads(c)["identity"] for c in runs.to_series()]
    assert counts == [{}, {"several_birth_dates": 1, "several_sexes": 1}]
    ledger = next((tmp_path / "k.key.vault").glob("identity-*.jsonl")).read_text()
    for value in ("MRN1", "MRN2", "19500101", "19770707", "1977"):
        assert value not in ledger and value not in out  # keyed digests only


def test_several_issuers_count_only_in_an_issuer_qualified_lake(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "a", "MRN1", "HOSP")
    _write(src, "b", "MRN1", "OTHER CLINIC", study="2")
    qualified = ingest(tmp_path / "q", [src], patient_identity="issuer_qualified")
    assert qualified.identity == {"several_issuers": 1}
    assert len(_patients(tmp_path / "q")) == 2
    plain = ingest(tmp_path / "p", [src])
    assert plain.identity == {} and len(_patients(tmp_path / "p")) == 1


def test_the_identity_setting_cannot_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    _write(src, "a", "MRN1", "HOSP")
    root, key = tmp_path / "lk", tmp_path / "k.key"
    ingest(root, [src], key_file=key)
    with pytest.raises(ConfigError, match="lake init NEW --patient-identity issuer_qualified"):
        ingest(root, [src], key_file=key, patient_identity="issuer_qualified")
    assert main(["init", str(root), "--patient-identity", "issuer_qualified"]) == 2
    config = json.loads((root / "lake.json").read_text())
    config["identity"]["patient_identity"] = "issuer_qualified"  # a hand edit after patients were keyed
    (root / "lake.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["ingest", str(src), "--lake", str(root), "--key-file", str(key), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "would re-key the lake" in err and "lake init NEW --patient-identity" in err and "Traceback" not in err
    config["identity"]["patient_identity"] = "patient_id"
    (root / "lake.json").write_text(json.dumps(config))
    assert ingest(root, [src], key_file=key).duplicates == 1


def test_bad_identity_settings_are_refused_at_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aliases = tmp_path / "aliases.csv"
    aliases.write_text("issuer,domain\nHOSP,HOSP A\n")
    assert main(["init", str(tmp_path / "a"), "--issuer-aliases", str(aliases)]) == 2
    assert "issuer aliases need an issuer-qualified lake" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["init", str(tmp_path / "b"), "--patient-identity", "mrn"])
    assert exited.value.code == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="unknown patient identity"):
        lake.init(tmp_path / "c", patient_identity="mrn")
